from pathlib import Path

import pytest

from kindling.errors import ValidationError
from kindling.runtimes.catalog import RuntimeCatalog, find_python


def test_python_resolves_to_a_real_interpreter_not_a_shim(tmp_path: Path) -> None:
    launch = RuntimeCatalog(cache_dir=tmp_path).resolve("python3.11")
    assert launch.interpreter is not None
    assert "shims" not in launch.interpreter
    with open(launch.interpreter, "rb") as fh:
        assert fh.read(4) == b"\x7fELF"
    client = Path(launch.argv[-1])
    assert client.suffix == ".pyc" and client.parent == tmp_path / "python3.11"
    assert (client.parent / "kindling_runtime_api.pyc").is_file()  # its siblings beside it


def test_provided_runs_the_functions_bootstrap() -> None:
    launch = RuntimeCatalog().resolve("provided.al2023")
    assert launch.family == "provided" and launch.argv == ()


def test_unknown_runtime_is_refused_clearly() -> None:
    with pytest.raises(ValidationError, match="not supported by this kindling host"):
        RuntimeCatalog().resolve("nodejs20.x")


def test_missing_interpreter_is_none() -> None:
    assert find_python("3.99") is None

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


def test_a_runtime_build_is_the_digest_of_the_interpreter_it_starts(tmp_path: Path) -> None:
    """RuntimeVersionConfig names the exact build a function runs on: the same
    interpreter gives the same digest in any catalog; another build of it (one byte
    more) is another runtime version; another runtime is another version."""
    found = find_python("3.11")
    assert found is not None
    digest = RuntimeCatalog().build("python3.11")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert RuntimeCatalog().build("python3.11") == digest
    assert RuntimeCatalog().build("provided.al2023") != digest

    other = tmp_path / "python3.11"
    other.write_bytes(Path(found).read_bytes() + b"\0")
    other.chmod(0o755)
    rebuilt = RuntimeCatalog(extra_pythons=(str(other),))
    assert rebuilt.resolve("python3.11").interpreter == str(other)
    assert rebuilt.build("python3.11") != digest
    with pytest.raises(ValidationError):
        RuntimeCatalog().build("python2.7")

"""The ``kindling`` command's own parsing (what runs before any server starts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kindling.cli import app


@pytest.mark.parametrize("value", ["fd00::/8", "10.0.0.1/8", "ten"])
def test_serve_refuses_an_egress_allow_list_it_cannot_mean(value: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--egress-allow", value])
    assert result.exit_code == 2, result.output
    assert "--egress-allow" in result.output


@pytest.mark.parametrize(
    "value", ["mysql://u@h/k", "postgresql+asyncpg://u@h/k", "sqlite://", "nonsense"]
)
def test_serve_refuses_a_store_it_cannot_use(value: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--store", value])
    assert result.exit_code == 2, result.output
    assert "--store" in result.output


def test_serve_says_so_and_exits_when_the_store_is_unreachable(tmp_path: Path) -> None:
    """A PostgreSQL that is not there at start: one line and exit 1 (systemd restarts),
    within the connect bound, not a traceback or a hang."""
    url = f"postgresql://kindling@/kindling?host={tmp_path}&port=1"  # no server there
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kindling"), "serve", "--port", "0",
         "--data-dir", str(tmp_path / "data"), "--store", url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the store is unavailable" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_counting_url_that_is_not_redis() -> None:
    result = CliRunner().invoke(app, ["serve", "--counting", "postgresql://db/kindling"])
    assert result.exit_code == 2, result.output
    assert "--counting" in result.output

"""The ``kindling`` command's own parsing (what runs before any server starts)."""

from __future__ import annotations

import socket
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


def test_version_prints_the_package_version() -> None:
    import kindling

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"kindling {kindling.__version__}"


def test_serve_on_a_port_in_use_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """Another process holds the port: one line naming it and exit 1, no traceback, and
    what start made before it tried to listen (sandbox pools, zygotes) is gone."""
    from tests.e2e.support import working_in

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [str(Path(sys.executable).parent / "kindling"), "serve", "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("kindling: ")]
    assert errors == [
        f"kindling: cannot listen on 127.0.0.1:{port}: the address is in use "
        "(another kindling serve?); choose --port"
    ], done.stderr
    assert not working_in(tmp_path / "data")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["deploy", "/nonexistent-dir", "--name", "f"], "does not exist"),
        (["no-such-command"], "No such command"),
        (["invoke"], "Missing argument"),
        (["serve", "--store", "mysql://u@h/k"], "--store"),
    ],
    ids=["missing-dir", "unknown-command", "missing-argument", "bad-store"],
)
def test_usage_errors_are_one_line_with_exit_code_2(args: list[str], words: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kindling"), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kindling: "), done.stderr
    assert words in lines[0] and "--help" in lines[0]

"""docs/cluster.md's walkthrough, run as written: its two shell blocks, with only the
ports, the data dirs and the secret's path moved to this test's own (every server line
of the first block in the background, the rest by bash in order)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.support import BIN, free_port

REPO = Path(__file__).resolve().parents[2]


def _blocks() -> list[str]:
    text = (REPO / "docs" / "cluster.md").read_text()
    return re.findall(r"```\n(.*?)```", text, flags=re.S)


def _commands(block: str) -> list[str]:
    """One command per line, a trailing backslash joining the next."""
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def test_the_walkthrough_works_as_written(tmp_path: Path) -> None:
    ports = {p: str(free_port()) for p in ("9000", "9101", "9102")}

    def moved(command: str) -> str:
        command = command.replace("/var/lib/kindling", str(tmp_path / "data"))
        command = command.replace("/etc/kindling-cluster.secret", str(tmp_path / "secret"))
        command = command.replace(".venv/bin/", f"{BIN}/")
        for old, new in ports.items():
            command = re.sub(rf"\b{old}\b", new, command)
        return command

    setup, use = _blocks()[:2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KINDLING_"))}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    shell: list[str] = []
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for command in map(moved, _commands(setup)):
            if " serve " in command:
                log = open(tmp_path / f"serve-{len(servers)}.log", "wb")  # noqa: SIM115
                script = "\n".join([*shell, f"exec {command}"])
                servers.append(
                    subprocess.Popen(
                        ["bash", "-ec", script], cwd=tmp_path, env=env, stdout=log, stderr=log
                    )
                )
                time.sleep(1.0)  # the control node first, as a reader starts them
            elif command.startswith("export "):
                shell.append(command)  # the environment every later command starts with
            else:
                subprocess.run(["bash", "-ec", command], cwd=tmp_path, env=env, check=True)
        assert len(servers) == 3
        status = [
            *shell,
            f"{BIN}/kindling cluster status --json --endpoint http://127.0.0.1:{ports['9000']}",
        ]
        deadline = time.monotonic() + 60
        while True:
            done = subprocess.run(
                ["bash", "-ec", "\n".join(status)], cwd=tmp_path, env=env, capture_output=True
            )
            if done.returncode == 0 and len(json.loads(done.stdout)) == 2:
                break
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.5)
        script = "\n".join([*shell, *map(moved, _commands(use))])
        version = subprocess.run(
            [f"{BIN}/aws", "--version"], capture_output=True, text=True, check=True
        )
        if (version.stdout + version.stderr).startswith("aws-cli/1."):  # as the doc says
            script = script.replace("--cli-binary-format raw-in-base64-out", "")
        out = subprocess.run(
            ["bash", "-ec", script], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert '{"hello": "cluster"}' in out.stdout, out.stdout
        assert json.loads((tmp_path / "out.json").read_text()) == {"hello": "cluster"}
        assert re.search(r"w1|w2", out.stdout)  # the status table named the workers
    finally:
        for proc in reversed(servers):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in servers:
            try:
                proc.wait(45)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

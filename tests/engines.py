"""Engines for the cluster tests, started by the tests themselves from Debian's packages in
temporary directories on free ports, and stopped at the end; never a system service.

The session fixtures that hand them out live in ``tests/conftest.py``; a test that must
stop, kill or restart an engine builds a private one here instead of disturbing the
shared one.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

# --------------------------------------------------------------------------- Redis


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A ``redis-server`` (Debian's ``redis-server`` package) in ``directory`` on a free
    loopback port, without persistence: a restart starts it empty, as a crash of a Redis
    without persistence would. The port is kept across restarts."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make test installs it)")
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None, "already running"
        for _ in range(5):  # a free port may be taken between the probe and the bind
            port = self.port or _free_port()
            log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
            with log:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(self.directory),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--daemonize",
                        "no",
                        "--protected-mode",
                        "yes",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._answers(port, timeout):
                self.port = port
                return
            self._reap()
        raise AssertionError(f"redis-server did not start:\n{self.log_tail()}")

    def _answers(self, port: int, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return True
            time.sleep(0.02)
        return False

    def _reap(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """Gone at once, its data with it (SIGKILL: no persistence to flush anyway)."""
        self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "redis.log").read_text(errors="replace")[-size:]
        return ""

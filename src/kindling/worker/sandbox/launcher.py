"""The launcher: one long-lived ``nsinit --serve`` that forks a builder per sandbox.

Starting nsinit afresh for every sandbox cost an interpreter start and its imports
(~21 ms of a ~70 ms cold start, bench coldstart). The launcher is started once, on the
first sandbox, and is handed each sandbox's config with its fds (network namespace,
status pipe, log pipe) over a Unix seqpacket socket. Its forks are children of the
worker's subtree, so a sandbox's PID 1 still ends up the worker's child (subreaper).
"""

from __future__ import annotations

import contextlib
import marshal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from kindling.worker.sandbox import seccomp_policy

NSINIT = Path(__file__).with_name("nsinit.py")


class Launcher:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [
                    seccomp_policy.SYSTEM_PYTHON,
                    "-I",
                    "-S",
                    str(NSINIT),
                    "--serve",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
            )
        finally:
            theirs.close()
        self._sock = ours
        return ours

    def launch(self, config: dict[str, Any], netns_fd: int, status_fd: int, log_fd: int) -> None:
        """Asks for one sandbox; its builder reports on ``status_fd``."""
        with self._lock:
            socket.send_fds(self._ensure(), [marshal.dumps(config)], [netns_fd, status_fd, log_fd])

    def close(self) -> None:
        """The launcher ends when its socket closes."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(5)
            self._proc = None

"""Launchers and runtime zygotes: long-lived ``nsinit --serve`` processes that fork a
builder per sandbox, so no sandbox pays for an interpreter start.

Starting nsinit afresh for every sandbox cost an interpreter start and its imports
(~21 ms of a ~70 ms cold start, bench coldstart), and exec'ing the Python runtime cost
another ~20 ms. A launcher is started once per key and is handed each sandbox's fds
(config pipe, network namespace, status pipe, log pipe) over a Unix seqpacket socket.

Two kinds, by key:

* a plain launcher (``preload`` None): system Python; its builders exec the runtime
  (provided runtimes, gVisor, a Python function whose environment changes interpreter
  start-up). One serves every account: nothing of it survives the exec.
* a runtime zygote: the function's own interpreter with the runtime client already
  imported; its builders start the client in-process instead of exec'ing. One per
  interpreter *and account*: a forked interpreter keeps its zygote's string-hash secret,
  so two accounts never share one. A spare per interpreter is started ahead, so a new
  account's first sandbox does not wait for an interpreter start either.

Every launcher runs in its instance's ``launchers`` cgroup (joined before it imports or
forks anything) and in a process group of its own: a crash sweep of the instance's
cgroups finds it and all it forked, and the worker's zombie reaper can tell the orphans
a killed launcher leaves from the worker's own children (see instances.py, reaper.py).

The config itself never passes through a launcher (it travels in a pipe the builder
reads after the fork): a zygote's memory holds nothing of any function, so a fork
cannot find another function's environment in what it inherited.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

NSINIT = Path(__file__).with_name("nsinit.py")
PLAIN = ""  # the account of a launcher shared by all (it execs)


@dataclass(frozen=True, slots=True)
class LauncherKey:
    interpreter: str
    preload: str | None = None  # the runtime client's .pyc a zygote imports
    account: str = PLAIN


class Launcher:
    """One ``nsinit --serve`` process and the socket to it."""

    def __init__(self, key: LauncherKey, root: str, join: tuple[str, ...] = ()) -> None:
        """``root``: an empty directory its pre-built sandbox shells mount their root on,
        each in a mount namespace of its own (nsinit.py). ``join``: the ``cgroup.procs``
        files it moves itself into first (its instance's launcher group, so a crash
        sweep finds it and all it forks)."""
        self.key = key
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [key.interpreter, "-u", "-S", str(NSINIT), "--serve", str(theirs.fileno())]
        argv += ["--root", root]
        if key.preload is not None:  # -B: PYTHONDONTWRITEBYTECODE=1, as in every function
            argv[1:1] = ["-B"]
            argv += ["--preload", key.preload]
        for procs in join:
            argv += ["--join", procs]
        try:
            self._proc = subprocess.Popen(
                argv,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                # a group of its own: the worker's reaper tells a launcher's orphans from
                # the worker's own children by it (reaper.py), and a terminal's Ctrl-C
                # reaches the server, which closes its launchers, not them directly
                process_group=0,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours

    def alive(self) -> bool:
        return self._proc.poll() is None

    def send(self, fds: list[int], kind: bytes = b"s") -> None:
        socket.send_fds(self._sock, [kind], fds)

    def hang_up(self) -> None:
        self._sock.close()

    def reaped(self) -> bool:
        return self._proc.poll() is not None

    def close(self) -> None:
        """A launcher ends when its socket closes."""
        self._sock.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)


class Launchers:
    """The host's launchers by key, started on first use and restarted if one dies.

    ``reuse=False`` starts a launcher per sandbox instead (the bench's "launcher off":
    what every start cost before launchers existed). ``root``: see ``Launcher``."""

    def __init__(self, root: str, reuse: bool = True, join: list[str] | None = None) -> None:
        self._root = root
        self._reuse = reuse
        self._join = tuple(join or ())
        self._running: dict[LauncherKey, Launcher] = {}
        self._spares: dict[tuple[str, str], Launcher] = {}
        self._single_use: list[Launcher] = []
        self._lock = threading.Lock()

    def launch(
        self,
        key: LauncherKey,
        config: bytes,
        netns_fd: int,
        status_fd: int,
        log_fd: int,
        control_fd: int | None = None,
    ) -> None:
        """Asks for one sandbox; its builder reads ``config`` and reports on ``status_fd``.
        ``control_fd`` (a snapshot template's) reaches the runtime as its fd 3."""
        fds = [netns_fd, status_fd, log_fd]
        if control_fd is not None:
            fds.append(control_fd)
        self._request(key, b"s", config, fds)

    def mount_copy(
        self, key: LauncherKey, config: bytes, mnt_fd: int, pid_fd: int, status_fd: int
    ) -> None:
        """Asks a builder (host root) to make a restored SnapStart copy's mounts in its
        mount and PID namespaces (copymounts.py); it reports on ``status_fd``."""
        self._request(key, b"m", config, [mnt_fd, pid_fd, status_fd])

    def warm(self, key: LauncherKey) -> None:
        """Starts ``key``'s launcher now if none runs, so that the first request does
        not wait for its interpreter (a SnapStart template's copies need the plain one
        for their mounts; the template itself came from a zygote)."""
        with self._lock:
            if self._reuse:
                self._get(key)

    def _request(self, key: LauncherKey, kind: bytes, config: bytes, fds: list[int]) -> None:
        config_r, config_w = os.pipe()
        try:
            # a config is a few KB (4 KB of environment at most): it fits the pipe
            os.write(config_w, config)
            os.close(config_w)
            config_w = -1
            with self._lock:
                if not self._reuse:
                    self._launch_once(key, [config_r, *fds], kind)
                    return
                self._get(key).send([config_r, *fds], kind)
        finally:
            os.close(config_r)
            if config_w >= 0:
                os.close(config_w)

    def _launch_once(self, key: LauncherKey, fds: list[int], kind: bytes) -> None:
        self._single_use = [done for done in self._single_use if not done.reaped()]
        launcher = Launcher(key, self._root, self._join)
        launcher.send(fds, kind)
        launcher.hang_up()  # it serves this one request and exits
        self._single_use.append(launcher)

    def _get(self, key: LauncherKey) -> Launcher:
        launcher = self._running.get(key)
        if launcher is not None and launcher.alive():
            return launcher
        if launcher is not None:
            launcher.close()
        launcher = self._take_spare(key) or Launcher(key, self._root, self._join)
        self._running[key] = launcher
        if key.preload is not None:
            self._start_spare(key)
        return launcher

    def _take_spare(self, key: LauncherKey) -> Launcher | None:
        if key.preload is None:
            return None
        spare = self._spares.pop((key.interpreter, key.preload), None)
        if spare is None or not spare.alive():
            return None
        spare.key = key
        return spare

    def _start_spare(self, key: LauncherKey) -> None:
        slot = (key.interpreter, key.preload or "")
        if slot not in self._spares:
            self._spares[slot] = Launcher(
                LauncherKey(key.interpreter, key.preload), self._root, self._join
            )

    def close(self) -> None:
        with self._lock:
            for launcher in [*self._running.values(), *self._spares.values(), *self._single_use]:
                launcher.close()
            self._running.clear()
            self._spares.clear()
            self._single_use.clear()

"""The crash supervisor: a small process each server starts, which sweeps the server's
instance the moment the server dies, however it died (kill -9 included).

It holds a pidfd of the server (readable once the server has exited, whatever killed
it; unlike PR_SET_PDEATHSIG it does not depend on which thread started it), runs in a
session of its own (a terminal's Ctrl-C to the server's process group does not reach
it), and does nothing until the server is gone. Then it sweeps the server's crash record
(instances.py): kills every process in the instance's cgroups, frozen ones too, removes
the groups, veths and nftables table. A clean stop removes the record first and ends the
supervisor. It is host code started by the server: no sandbox can reach or change it.

    python -m kindling.worker.sandbox.supervisor --registry DIR --instance ID \\
        --owner PID --owner-start TICKS
"""

from __future__ import annotations

import os
import select
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kindling.worker.sandbox.procstat import live_start_time

if TYPE_CHECKING:
    import subprocess


def start(registry: Path, instance: str, owner: int, owner_start: int) -> subprocess.Popen[bytes]:
    """Starts the supervisor of ``owner`` (the calling server, which started at
    ``owner_start``: a pid alone may be reused by the time the supervisor looks)."""
    argv = [
        sys.executable,
        "-m",
        "kindling.worker.sandbox.supervisor",
        "--registry",
        str(registry),
        "--instance",
        instance,
        "--owner",
        str(owner),
        "--owner-start",
        str(owner_start),
    ]
    import subprocess

    # stderr is the server's (its sweep is logged there); stdout is not kept, so a
    # reader of the server's stdout sees its end when the server ends
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        cwd="/",
        start_new_session=True,
    )


def _wait_for_exit(pid: int, started: int) -> None:
    """Blocks until the process ``pid`` that started at ``started`` has exited (returns
    at once if it has already, or if the pid now names another process)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if live_start_time(pid) != started:  # checked after the open: the pidfd is that process's
            return
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while not poller.poll():
            pass
    finally:
        os.close(pidfd)


def main(argv: list[str]) -> int:
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    owner = int(options["--owner"])
    owner_start = int(options["--owner-start"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _wait_for_exit(owner, owner_start)
    import logging

    from kindling.worker.sandbox.instances import Registry

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    Registry(Path(options["--registry"])).sweep_if_dead(options["--instance"], owner, owner_start)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

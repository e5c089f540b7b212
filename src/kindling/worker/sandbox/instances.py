"""Crash records: what each live kindling instance on this host owns, and the sweep of a
dead one's leftovers.

Every instance (one per data dir) writes a record under ``/run/kindling/instances``
before it makes anything on the host: its server's pid and start time, its cgroup
directories, its nftables table and the prefix of its veth names. A record whose
server is gone (no process with that pid *and* start time) belongs to a dead instance;
sweeping it kills every process in its cgroups (thawing frozen ones), removes the
groups, deletes its veths and its table, then the record. Two sweep it: the server's
own supervisor (supervisor.py) the moment the server dies, and, in case that died too,
every server at start, for all data dirs. A live instance's record is never acted on.

``/run`` is a tmpfs: a reboot, which ends every sandbox, also ends every record.
Records are JSON, one file per instance, read and changed only under ``flock`` on the
file itself, so a supervisor and a starting server never sweep one at the same time,
and a server that takes over a data dir waits for its predecessor's sweep to finish.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kindling.errors import SandboxError
from kindling.limits import RECORD_LOCK_WAIT_S, SWEEP_S
from kindling.worker.sandbox.procstat import live_start_time

log = logging.getLogger(__name__)

REGISTRY = Path("/run/kindling/instances")


#: A live process's start time (ticks after boot), None if gone or a zombie: pid +
#: start time name a process for good; a pid alone may have been reused.
start_time = live_start_time


def pid_namespace() -> int:
    """This process's PID namespace (the inode of /proc/self/ns/pid)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    instance: str
    data_dir: str
    owner_pid: int
    owner_start: int
    cgroup_version: int
    cgroups: dict[str, str] = field(default_factory=dict)  # controller -> base directory
    nft_table: str | None = None
    link_prefix: str | None = None
    #: The PID namespace the pid is in: from another one, pid and start time say nothing
    pid_ns: int = 0

    def alive(self) -> bool:
        """Whether the server that wrote it still runs (or may: a record written in
        another PID namespace, e.g. another container sharing /run, is never judged)."""
        if self.pid_ns and self.pid_ns != pid_namespace():
            return True
        return start_time(self.owner_pid) == self.owner_start

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> InstanceRecord:
        data = json.loads(text)
        return cls(
            instance=str(data["instance"]),
            data_dir=str(data["data_dir"]),
            owner_pid=int(data["owner_pid"]),
            owner_start=int(data["owner_start"]),
            cgroup_version=int(data["cgroup_version"]),
            cgroups={str(k): str(v) for k, v in dict(data.get("cgroups") or {}).items()},
            nft_table=data.get("nft_table"),
            link_prefix=data.get("link_prefix"),
            pid_ns=int(data.get("pid_ns") or 0),
        )


def sweep(record: InstanceRecord) -> bool:
    """Removes everything a dead instance left on the host; True when nothing is left.
    Safe to repeat: what is already gone is skipped."""
    from kindling.worker.sandbox.cgroups import sweep_tree

    bases = {key: Path(path) for key, path in record.cgroups.items()}
    clean = sweep_tree(record.cgroup_version, bases, SWEEP_S)
    if record.link_prefix:
        _delete_links(record.link_prefix)
    if record.nft_table:
        subprocess.run(
            ["nft", "delete", "table", "inet", record.nft_table], capture_output=True, check=False
        )
    return clean


def _delete_links(prefix: str) -> None:
    """The instance's host-side veth ends: its prefix, then the slot number. They usually
    went with their network namespaces already; a namespace something still pins keeps
    its pair, so they are deleted here by name."""
    from kindling.worker.sandbox.rtnl import Rtnl

    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return
    doomed = [n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()]
    if not doomed:
        return
    with Rtnl() as rtnl:
        for name in doomed:
            with contextlib.suppress(OSError):
                rtnl.delete_link(name)


class Registry:
    """The crash records of this host, one file per instance."""

    def __init__(self, directory: Path = REGISTRY) -> None:
        self.directory = directory

    def path(self, instance: str) -> Path:
        return self.directory / f"{instance}.json"

    @contextlib.contextmanager
    def _locked(self, instance: str, wait_s: float = RECORD_LOCK_WAIT_S) -> Iterator[int]:
        """The record's file, open and exclusively locked (made empty if there was none).
        A file unlinked while we waited for its lock is opened again."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.path(instance)
        deadline = time.monotonic() + wait_s
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES):
                            raise
                        if time.monotonic() > deadline:
                            raise SandboxError(
                                f"crash record {path} stayed locked for {wait_s:.0f} s"
                            ) from exc
                        time.sleep(0.05)
                try:
                    same = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    yield fd
                    return
            finally:
                os.close(fd)

    @staticmethod
    def _read(fd: int) -> InstanceRecord | None:
        os.lseek(fd, 0, os.SEEK_SET)
        text = b""
        while chunk := os.read(fd, 65536):
            text += chunk
        if not text.strip():
            return None
        try:
            return InstanceRecord.from_json(text.decode())
        except (ValueError, KeyError, TypeError):
            return None

    def _forget(self, instance: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(instance).unlink()

    def claim(self, record: InstanceRecord) -> None:
        """Records a starting instance, after sweeping what a dead predecessor with the
        same data dir left. Refuses while a live server has the same data dir."""
        with self._locked(record.instance) as fd:
            previous = self._read(fd)
            if previous is not None and previous.alive():
                if previous.owner_pid != record.owner_pid:
                    raise SandboxError(
                        f"another kindling (pid {previous.owner_pid}) serves the data dir "
                        f"{previous.data_dir}"
                    )
            elif previous is not None:
                self._sweep_locked(previous)
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.to_json().encode(), 0)

    def release(self, record: InstanceRecord) -> None:
        """A clean stop: the instance removed everything itself; its record goes."""
        with self._locked(record.instance) as fd:
            current = self._read(fd)
            if current is None or (current.owner_pid, current.owner_start) == (
                record.owner_pid,
                record.owner_start,
            ):
                self._forget(record.instance)

    def sweep_if_dead(self, instance: str, owner_pid: int, owner_start: int) -> bool:
        """What a supervisor does once its server died: sweeps the record if it is still
        that server's (a clean stop removed it; a new server may have taken it over)."""
        with self._locked(instance) as fd:
            record = self._read(fd)
            if record is None:
                self._forget(instance)
                return False
            if (record.owner_pid, record.owner_start) != (owner_pid, owner_start):
                return False
            if record.alive():
                return False
            self._sweep_locked(record)
            return True

    def sweep_dead(self) -> list[str]:
        """Every recorded instance whose server is gone, whatever its data dir, is swept;
        returns their ids. Live instances are left alone."""
        swept = []
        try:
            names = sorted(p.stem for p in self.directory.glob("*.json"))
        except OSError:
            return []
        for instance in names:
            try:
                with self._locked(instance) as fd:
                    record = self._read(fd)
                    if record is None:
                        self._forget(instance)
                    elif not record.alive():
                        self._sweep_locked(record)
                        swept.append(instance)
            except (OSError, SandboxError) as exc:
                log.warning("could not sweep the crashed instance %s: %s", instance, exc)
        return swept

    def _sweep_locked(self, record: InstanceRecord) -> None:
        log.warning(
            "sweeping what the crashed kindling (pid %d, data dir %s) left on this host",
            record.owner_pid,
            record.data_dir,
        )
        if sweep(record):
            self._forget(record.instance)
        else:
            log.warning("instance %s: some cgroups stayed busy; kept its record", record.instance)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Ends a helper process we started (SIGTERM, then SIGKILL) and waits for it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)

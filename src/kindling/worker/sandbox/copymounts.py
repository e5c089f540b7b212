"""The mounts of a restored SnapStart copy, made by the host, not by the copy.

A copy (forkserver.py) is forked by its template, whose code is its function's: init
could have changed anything it runs. So the copy only makes its namespaces and reports;
its /proc (masked, procmask.py), its /tmp (sized, with what init left in the template's
/tmp) and its /dev/shm are mounted from here, by a launcher's builder (host root, see
nsinit.py), before the worker lets the copy go. The template's seccomp program refuses
every mount call, so neither init nor a copy can mount anything of its own: not a
fresh procfs that no masking covers, not one over the mask, and it cannot unmount the
mask either (ADR 0014, ADR 0015).

Host root holds every capability over the copy's namespaces (they descend from the
host's). The builder enters the copy's mount namespace, then its PID namespace, and
forks: a procfs shows the PID namespace of the process that mounts it, so the mounting
is done by the child, a member of the copy's. The copy keeps running meanwhile (a
tampered one does not wait), so everything in the new /tmp is made through descriptors,
never followed through a symlink, and owned by host root (out of the copy's reach:
its capabilities cover only the ids its namespaces map) until it is complete; then it
is handed to the sandbox's ids.

Imports only ``os``, ``stat`` and the sandbox's own modules: it runs in a launcher.
"""

from __future__ import annotations

import os
import stat

from kindling.worker.sandbox import linux, procmask

_FLAGS = linux.MS_NOSUID | linux.MS_NODEV
_CHUNK = 1024 * 1024
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: The status of a copy whose template's /tmp was past a bound: mounted, nothing copied.
NOT_COPIED = "ok, /tmp not copied"


def prepare(cfg: dict[str, object], mnt_fd: int, pid_fd: int, status_fd: int) -> None:
    """Mounts the copy's /proc, /tmp and /dev/shm; writes ``ok`` (or NOT_COPIED) or
    ``error <why>`` (one line) on ``status_fd``. Never returns."""
    status = "error no status"
    try:
        linux.setns(mnt_fd, linux.CLONE_NEWNS)
        linux.setns(pid_fd, linux.CLONE_NEWPID)
        os.close(mnt_fd)
        os.close(pid_fd)
        child = os.fork()
        if child == 0:
            try:
                os.write(status_fd, f"{_mount(cfg)}\n".encode())
            except BaseException as exc:
                os.write(status_fd, f"error {type(exc).__name__}: {exc}\n".encode())
            os._exit(0)
        _pid, code = os.waitpid(child, 0)
        status = "" if code == 0 else f"error the mounting process ended with {code}"
    except BaseException as exc:
        status = f"error {type(exc).__name__}: {exc}"
    if status:
        os.write(status_fd, f"{status}\n".encode())
    os._exit(0)


def _mount(cfg: dict[str, object]) -> str:
    """What to report: ``ok``, or NOT_COPIED."""
    procmask.mount_proc("/proc", int(cfg["memory_mb"]))  # type: ignore[call-overload]
    kept = os.open("/tmp", _DIR_OPEN)  # the template's /tmp: what init left there
    try:
        tmp_mb = int(cfg["tmp_mb"])  # type: ignore[call-overload]
        linux.mount("tmpfs", "/tmp", "tmpfs", _FLAGS, f"size={tmp_mb}m,mode=1777")
        linux.mount("tmpfs", "/dev/shm", "tmpfs", _FLAGS, "size=64m,mode=1777")
        fresh = os.open("/tmp", _DIR_OPEN)
        try:
            limit = int(cfg["tmp_copy_bytes"])  # type: ignore[call-overload]
            entries = int(cfg["tmp_copy_entries"])  # type: ignore[call-overload]
            if _size(kept, entries, int(cfg["tmp_copy_depth"]), limit) is None:  # type: ignore[call-overload]
                return NOT_COPIED
            owner = (int(cfg["uid"]), int(cfg["gid"]))  # type: ignore[call-overload]
            _copy_tree(kept, fresh, [limit], owner)
            return "ok"
        finally:
            os.close(fresh)
    finally:
        os.close(kept)


def _size(top: int, entries: int, depth: int, limit: int) -> int | None:
    """The bytes of the regular files under ``top``, or None past ``entries`` entries,
    ``depth`` levels or ``limit`` bytes (a template's /tmp is copied whole or not at
    all)."""
    total = 0
    count = 0
    stack = [(os.dup(top), 0)]
    try:
        while stack:
            fd, level = stack.pop()
            if level > depth:
                os.close(fd)
                return None
            try:
                for entry in os.scandir(fd):
                    count += 1
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        total += info.st_size
                    elif stat.S_ISDIR(info.st_mode):
                        stack.append((os.open(entry.name, _DIR_OPEN, dir_fd=fd), level + 1))
                    if count > entries or total > limit:
                        return None
            finally:
                os.close(fd)
    finally:
        for fd, _level in stack:
            os.close(fd)
    return total


def _copy_tree(source: int, target: int, budget: list[int], owner: tuple[int, int]) -> None:
    """Copies the directories, regular files and symlinks under ``source`` into
    ``target`` (other kinds are left out), modes kept, owned by ``owner`` once done;
    at most ``budget[0]`` bytes in all."""
    for entry in list(os.scandir(source)):
        name = entry.name
        info = entry.stat(follow_symlinks=False)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            os.mkdir(name, 0o700, dir_fd=target)
            inner_source = os.open(name, _DIR_OPEN, dir_fd=source)
            inner_target = os.open(name, _DIR_OPEN, dir_fd=target)
            try:
                _copy_tree(inner_source, inner_target, budget, owner)
                os.fchown(inner_target, *owner)
                os.fchmod(inner_target, mode)
            finally:
                os.close(inner_source)
                os.close(inner_target)
        elif stat.S_ISREG(info.st_mode):
            _copy_file(source, target, name, budget, owner, mode)
        elif stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=target)
            os.chown(name, *owner, dir_fd=target, follow_symlinks=False)


def _copy_file(
    source: int, target: int, name: str, budget: list[int], owner: tuple[int, int], mode: int
) -> None:
    try:
        reading = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=source)
    except OSError:
        return  # gone, or not a file any more
    try:
        if not stat.S_ISREG(os.fstat(reading).st_mode):
            return
        writing = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=target
        )
        try:
            while budget[0] > 0:
                data = os.read(reading, min(_CHUNK, budget[0]))
                if not data:
                    break
                budget[0] -= len(data)
                view = memoryview(data)
                while view:
                    view = view[os.write(writing, view) :]
            os.fchown(writing, *owner)  # before the mode: a chown clears set-id bits
            os.fchmod(writing, mode)
        finally:
            os.close(writing)
    finally:
        os.close(reading)

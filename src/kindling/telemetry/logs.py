"""Function logs: kept per function, tailed for clients.

A sandbox's output streams through here; nothing holds an invocation's lines until it
ends. Each invocation writes through a ``LogStream`` (``kindling.telemetry.logstream``:
the START/END/REPORT lines, the tail and the per-invocation cap) into its function's
``FunctionLog``. The ``LogStore`` hands the bytes to one writer thread, so a slow disk never stalls
the event loop; it bounds what waits for that thread, and on disk keeps each function's
log as a few rotating segments that expire (all bounds in ``kindling.limits``).

On disk a function's log is ``root/<account>/<region>/<name>/<start>.log``, each segment
named by the offset of its first byte in the function's whole log, so ``read`` and
``kindling logs --follow`` keep one offset across rotations. Deleting a function deletes
its folder, and output still arriving from its sandboxes is dropped, so a new function
of the same name starts with an empty log.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kindling.errors import ValidationError
from kindling.limits import (
    LOG_FUNCTION_BYTES_PER_S,
    LOG_OPEN_FILES,
    LOG_PENDING_BYTES,
    LOG_READ_BYTES,
    LOG_READERS,
    LOG_RETENTION_S,
    LOG_SEGMENT_BYTES,
    LOG_SEGMENTS_KEPT,
    LOG_SWEEP_S,
)
from kindling.telemetry.logstream import dropped_line

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # account, region, function name

#: One component of a log path: what account ids, regions and function names are made
#: of, and never ``.`` or ``..`` (the first character is a letter or a digit).
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SEGMENT = re.compile(r"(\d{1,19})\.log")
#: How long a read waits for the writer to write what was logged before it.
_READ_WAIT_S = 5.0
#: The writer gathers what comes in this long before it writes (unless a read waits, or
#: half the pending bound is reached): one wake-up and one write per function per batch,
#: not one per invocation. Each wake-up takes the GIL from the event loop: at 20 ms the
#: wake-ups cost warm invokes ~6 % of the server's CPU under load. At 100 ms, a burst of
#: 300 cold starts took 5-10 % longer than at 50 ms (measured, not understood; ADR 0045).
_BATCH_S = 0.05


class FunctionLog:
    """Where one sandbox's output goes: its function's log, as long as that function lives.

    Taken when the sandbox is launched; once the function is deleted its writes are
    dropped, even if a new function of the same name exists by then.
    """

    def __init__(self, store: LogStore, key: Key, token: object) -> None:
        self._store = store
        self.key = key
        self._token = token

    def write(self, data: bytes) -> None:
        self._store._append(self.key, self._token, data)


def check_component(value: str, what: str) -> str:
    """A caller's string made into one folder name, never a way out of its parent."""
    if not _COMPONENT.fullmatch(value):
        raise ValidationError(f"{what} {value[:64]!r} cannot name a log")
    return value


class _Segment:
    """The open, current segment of one function's log (writer thread only)."""

    __slots__ = ("fd", "size", "start")

    def __init__(self, fd: int, start: int, size: int) -> None:
        self.fd = fd
        self.start = start
        self.size = size


class LogStore:
    """Every function's log: appends queue for one writer thread; reads wait for it."""

    def __init__(
        self,
        root: Path,
        *,
        segment_bytes: int = LOG_SEGMENT_BYTES,
        segments_kept: int = LOG_SEGMENTS_KEPT,
        retention_s: float = LOG_RETENTION_S,
        pending_bytes: int = LOG_PENDING_BYTES,
        rate_bytes: int = LOG_FUNCTION_BYTES_PER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._root = root
        self._segment_bytes = segment_bytes
        self._segments_kept = segments_kept
        self._retention_s = retention_s
        self._pending_cap = pending_bytes
        self._rate = rate_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # shared with the writer, under the lock
        self._tokens: dict[Key, object] = {}
        self._pending: dict[Key, bytearray] = {}
        self._pending_total = 0
        #: Per function, bytes dropped and why: "behind" (the writer) or "rate".
        self._dropped: dict[Key, collections.Counter[str]] = {}
        #: Per function, a token bucket of bytes it may still log: (bytes, when).
        self._allowance: dict[Key, tuple[float, float]] = {}
        self._deleted: set[Key] = set()
        self._queued = 0  # appends and deletes so far
        self._written = 0  # of those, how many the writer has finished
        self._closing = False
        self._urgent = False  # a read waits for the writer
        self._thread: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(LOG_READERS, thread_name_prefix="kindling-logread")
        # the writer thread's own
        self._open: collections.OrderedDict[Key, _Segment] = collections.OrderedDict()
        self._swept_at = 0.0
        with self._lock:
            self._wake_writer()  # it also expires old segments of functions now quiet

    # --- the event loop's side --------------------------------------------------------

    def open(self, account_id: str, region: str, name: str) -> FunctionLog:
        """A function's log for one sandbox (see ``FunctionLog``)."""
        key = self._key(account_id, region, name)
        with self._lock:
            token = self._tokens.setdefault(key, object())
        return FunctionLog(self, key, token)

    def append(self, account_id: str, region: str, name: str, lines: list[str]) -> None:
        """Platform lines written as they are, to the function's current log."""
        if lines:
            data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
            self.open(account_id, region, name).write(data)

    def delete(self, account_id: str, region: str, name: str) -> None:
        """A deleted function's log goes with it, and its sandboxes' late lines too."""
        key = self._key(account_id, region, name)
        with self._lock:
            self._tokens.pop(key, None)
            self._pending_total -= len(self._pending.pop(key, b""))
            self._dropped.pop(key, None)
            self._allowance.pop(key, None)
            self._deleted.add(key)
            self._queued += 1
            self._wake_writer()

    def keep_only(self, functions: set[Key]) -> None:
        """Deletes the logs of functions not in ``functions`` (those that exist): a
        deletion a crash kept the writer from finishing is finished at the next start."""
        for account in _dirs(self._root):
            for region in _dirs(account):
                for folder in _dirs(region):
                    key = (account.name, region.name, folder.name)
                    if key not in functions and all(map(_COMPONENT.fullmatch, key)):
                        self.delete(*key)

    async def aread(
        self, account_id: str, region: str, name: str, offset: int
    ) -> tuple[bytes, int]:
        """``read`` in the store's own reader threads: many readers waiting on a slow
        disk never take the loop's default executor, which sandbox starts use."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._readers, self.read, account_id, region, name, offset
        )

    def read(self, account_id: str, region: str, name: str, offset: int) -> tuple[bytes, int]:
        """Up to 1 MB of the log from ``offset`` (an offset in the function's whole log),
        and the offset to ask for next. Lines rotated or expired away are skipped; an
        offset past the end gets nothing and the end. Blocks: call it off the loop."""
        key = self._key(account_id, region, name)
        with self._lock:
            target = self._queued
            if self._thread is not None and self._written < target:
                self._urgent = True
                self._changed.notify_all()
                self._changed.wait_for(lambda: self._written >= target, _READ_WAIT_S)
        folder = self._folder(key)
        for _attempt in range(3):  # a segment may rotate away while it is read
            segments = _segments(folder)
            if not segments:
                return b"", 0
            start, path = segments[0]
            for start_at, path_at in segments:
                if start_at <= offset:
                    start, path = start_at, path_at
            try:
                with open(path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    if offset > start + size and (start, path) == segments[-1]:
                        return b"", start + size
                    position = max(0, offset - start)
                    fh.seek(position)
                    data = fh.read(LOG_READ_BYTES)
            except FileNotFoundError:
                continue
            return data, start + position + len(data)
        return b"", offset

    def close(self) -> None:
        """Writes what is queued, then stops the writer."""
        with self._lock:
            self._closing = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._readers.shutdown(wait=True)
        for segment in self._open.values():
            os.close(segment.fd)
        self._open.clear()

    def _key(self, account_id: str, region: str, name: str) -> Key:
        return (
            check_component(account_id, "Account"),
            check_component(region, "Region"),
            check_component(name, "Function name"),
        )

    def _folder(self, key: Key) -> Path:
        return self._root.joinpath(*key)

    def _append(self, key: Key, token: object, data: bytes) -> None:
        with self._lock:
            if self._tokens.get(key) is not token:
                return  # the function was deleted: its sandboxes' late output goes nowhere
            why = ""
            if not self._allow(key, len(data)):
                why = "rate"
            elif self._pending_total + len(data) > self._pending_cap:
                why = "behind"
            if why:
                dropped = self._dropped.get(key)
                if dropped is None:
                    dropped = self._dropped[key] = collections.Counter()
                dropped[why] += len(data)
                self._wake_writer()  # it writes the marker even if nothing else comes
                return
            idle = not self._pending
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = bytearray()
            pending += data
            self._pending_total += len(data)
            self._queued += 1
            if idle:  # one wake-up per batch, not per line: the writer takes all there is
                self._wake_writer()

    def _allow(self, key: Key, size: int) -> bool:
        """Takes ``size`` from the function's allowance: ``rate`` bytes a second, up to
        ``LOG_SEGMENT_BYTES`` saved up."""
        now = self._clock()
        burst = float(max(self._rate, self._segment_bytes))
        left, stamp = self._allowance.get(key, (burst, now))
        left = min(burst, left + max(0.0, now - stamp) * self._rate)
        if left < size:
            self._allowance[key] = (left, now)
            return False
        self._allowance[key] = (left - size, now)
        return True

    def _wake_writer(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(target=self._run, name="kindling-logs", daemon=True)
            self._thread.start()
        self._changed.notify_all()

    # --- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                work = self._changed.wait_for(
                    lambda: bool(self._pending or self._dropped or self._deleted or self._closing),
                    max(0.0, self._swept_at + LOG_SWEEP_S - self._clock()),
                )
                if work:
                    self._changed.wait_for(
                        lambda: bool(
                            self._urgent
                            or self._closing
                            or self._pending_total * 2 >= self._pending_cap
                        ),
                        _BATCH_S,
                    )
                self._urgent = False
                pending, self._pending = self._pending, {}
                self._pending_total = 0
                dropped, self._dropped = self._dropped, {}
                deleted, self._deleted = self._deleted, set()
                done, closing = self._queued, self._closing
            try:
                self._write_batch(pending, dropped, deleted)
                if self._clock() >= self._swept_at + LOG_SWEEP_S:
                    self._swept_at = self._clock()
                    self._sweep()
            except Exception:  # the writer must outlive one bad disk write
                log.exception("writing function logs failed")
            with self._lock:
                self._written = done
                self._changed.notify_all()
                if closing and not self._pending and not self._deleted:
                    return

    def _write_batch(
        self,
        pending: dict[Key, bytearray],
        dropped: dict[Key, collections.Counter[str]],
        deleted: set[Key],
    ) -> None:
        for key in deleted:  # before the batch: what is pending for it came after
            segment = self._open.pop(key, None)
            if segment is not None:
                os.close(segment.fd)
            shutil.rmtree(self._folder(key), ignore_errors=True)
        for key in dropped.keys() - pending.keys():
            pending[key] = bytearray()
        reasons = {
            "behind": f"the log writer was {self._pending_cap} bytes behind",
            "rate": f"a function's log may grow by at most {self._rate} bytes a second",
        }
        for key, data in pending.items():
            for why, count in sorted(dropped.get(key, {}).items()):
                data += dropped_line(count, reasons[why]).encode() + b"\n"
            self._write(key, bytes(data))

    def _write(self, key: Key, data: bytes) -> None:
        view = memoryview(data)
        while view:
            segment = self._segment(key)
            room = self._segment_bytes - segment.size
            if room <= 0:
                segment = self._rotate(key, segment)
                room = self._segment_bytes
            written = os.write(segment.fd, view[:room])
            segment.size += written
            view = view[written:]

    def _segment(self, key: Key) -> _Segment:
        segment = self._open.get(key)
        if segment is not None:
            self._open.move_to_end(key)
            return segment
        folder = self._folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        segments = _segments(folder)
        if segments:
            start, path = segments[-1]
        else:
            start, path = 0, folder / _name(0)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        segment = _Segment(fd, start, os.fstat(fd).st_size)
        self._open[key] = segment
        while len(self._open) > LOG_OPEN_FILES:
            _key, oldest = self._open.popitem(last=False)
            os.close(oldest.fd)
        return segment

    def _rotate(self, key: Key, full: _Segment) -> _Segment:
        os.close(full.fd)
        del self._open[key]
        folder = self._folder(key)
        start = full.start + full.size
        fd = os.open(folder / _name(start), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        segment = self._open[key] = _Segment(fd, start, 0)
        for _start, path in _segments(folder)[: -self._segments_kept]:
            path.unlink(missing_ok=True)
        return segment

    def _sweep(self) -> None:
        """Deletes segments not written for the retention time, and a folder it empties.

        It touches nothing else under the root: only segment files, and the one-file
        logs (``<name>.log``) of kindling before segments."""
        cutoff = self._clock() - self._retention_s
        for account in _dirs(self._root):
            for region in _dirs(account):
                for entry in list(region.iterdir()):
                    with contextlib.suppress(OSError):
                        if entry.is_dir():
                            self._expire(entry, cutoff)
                        elif entry.suffix == ".log" and entry.stat().st_mtime < cutoff:
                            entry.unlink()

    def _expire(self, folder: Path, cutoff: float) -> None:
        key = (folder.parent.parent.name, folder.parent.name, folder.name)
        expired = False
        for _start, path in _segments(folder):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    segment = self._open.get(key)
                    if segment is not None and folder / _name(segment.start) == path:
                        os.close(self._open.pop(key).fd)
                    path.unlink()
                    expired = True
        if expired:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _name(start: int) -> str:
    return f"{start:019d}.log"


def _dirs(path: Path) -> list[Path]:
    return [entry for entry in path.iterdir() if entry.is_dir()] if path.is_dir() else []


def _segments(folder: Path) -> list[tuple[int, Path]]:
    """A function's segments, oldest first, by the offset of their first byte."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        match = _SEGMENT.fullmatch(name)
        if match:
            found.append((int(match.group(1)), folder / name))
    found.sort()
    return found

"""One invocation's log on its way to its function's log: Lambda's START/END/REPORT
lines, the 4 KB tail ``LogType=Tail`` returns, and the per-invocation cap.

Each invocation (and each init, and each stretch between invocations) writes through a
``LogStream``, which keeps only the tail and stops at ``LOG_INVOCATION_BYTES``: what is
cut is counted, and one marker line says how much. It hands its bytes to a ``LogTarget``
(a function's log in ``kindling.telemetry.logs``).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kindling.limits import LOG_INVOCATION_BYTES, LOG_LINE_BYTES, LOG_TAIL_BYTES


class LogTarget(Protocol):
    """Where a stream's bytes go: a function's log (``logs.FunctionLog``)."""

    def write(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Report:
    request_id: str
    duration_ms: float
    memory_mb: int
    max_memory_mb: int
    init_ms: float | None = None
    status: str | None = None  # "timeout", "error" when the platform ended it
    error_type: str | None = None  # e.g. Runtime.OutOfMemory, with status "error"
    #: A start from a snapshot (SnapStart) reports its restore instead of an init.
    restore_ms: float | None = None

    @property
    def billed_ms(self) -> int:
        return max(1, math.ceil(self.duration_ms))

    def line(self) -> str:
        text = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_ms} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_mb} MB\t"
        )
        if self.init_ms is not None:
            text += f"Init Duration: {self.init_ms:.2f} ms\t"
        if self.restore_ms is not None:
            billed = max(1, math.ceil(self.restore_ms))
            text += (
                f"Restore Duration: {self.restore_ms:.2f} ms\t"
                f"Billed Restore Duration: {billed} ms\t"
            )
        if self.status:
            text += f"Status: {self.status}\t"
        if self.error_type:
            text += f"Error Type: {self.error_type}\t"
        return text


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def dropped_line(dropped: int, why: str) -> str:
    """The one line that stands for output that was cut."""
    return f"[kindling] {dropped} bytes of log output dropped: {why}"


class LogStream:
    """One invocation's (or init's, or idle time's) log on its way to the function's log.

    ``output`` takes the function's lines (it is the sandbox's log sink) up to ``cap``
    bytes and hands them on at once; ``system`` takes the platform's own lines, never
    cut, and holds them until the next function line or ``close`` (which every stream
    with platform lines ends with). A ``header`` (START, INIT_START) is written before
    the first line and can be changed until then.

    Held lines are kept as pieces and joined once, when written: a warm invoke's START,
    END and REPORT cost one join, one write and one tail update.
    """

    def __init__(
        self,
        target: LogTarget,
        scope: str,
        cap: int = LOG_INVOCATION_BYTES,
        header: str | None = None,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self._target = target
        self._keep = keep  # which function lines its log level keeps (None: all)
        self._scope = scope
        self._cap = cap
        self.header = header
        self._used = 0
        self._dropped = 0
        self._tail = b""
        #: Lines not yet handed to the log: END and REPORT (and START when the function
        #: printed nothing) go in one write, the function's lines at once.
        self._held: list[bytes] = []

    def output(self, line: str) -> None:
        """A line of the function's. One its log level filters out counts toward the
        cap as a kept one does: reading its level is a JSON parse (~70 MB/s for the
        worst JSON), so an unbounded filtered stream bought a sandbox writing at pipe
        speed fifteen times its own CPU of the server's. Past the cap, lines are
        dropped unread."""
        data = line.encode("utf-8", "replace") + b"\n"
        if self._used + len(data) > self._cap:
            self._dropped += len(data)
            return
        self._used += len(data)
        if self._keep is None or self._keep(line):
            self.begin()
            self._held.append(data)
            self._flush()

    def system(self, line: str | None) -> None:
        """A line of the platform's: the marker for what was dropped goes before it.
        None: a record the function's SystemLogLevel leaves out (``platform_records``).

        Never cut by the cap, but never longer than ``LOG_LINE_BYTES`` either: an error
        line carries the function's own (possibly huge) errorMessage."""
        if line is None:
            return
        self.begin()
        if self._dropped:
            self._held.append(self._marker())
        data = line.encode("utf-8", "replace")
        if len(data) > LOG_LINE_BYTES:
            cut = len(data) - LOG_LINE_BYTES
            data = data[:LOG_LINE_BYTES] + f" [kindling] {cut} bytes cut".encode()
        self._held.append(data + b"\n")

    def begin(self) -> None:
        """Holds the header now (first of all) if no line has taken it yet."""
        if self.header is not None:
            header, self.header = self.header, None
            self._held.append(header.encode("utf-8", "replace") + b"\n")

    def close(self) -> None:
        """Writes the marker if output was dropped since the last platform line, and
        every line still held. A stream whose platform lines were written ends here."""
        if self._dropped:
            self.begin()
            self._held.append(self._marker())
        self._flush()

    def _marker(self) -> bytes:
        dropped, self._dropped = self._dropped, 0
        why = f"{self._scope} may log at most {self._cap} bytes"
        return dropped_line(dropped, why).encode() + b"\n"

    @property
    def tail(self) -> bytes:
        """The last 4 KB written, as ``X-Amz-Log-Result`` carries them (before base64)."""
        return self._tail

    def tail_b64(self) -> str:
        return base64.b64encode(self.tail).decode()

    def _flush(self) -> None:
        held = self._held
        if held:
            data = held[0] if len(held) == 1 else b"".join(held)
            held.clear()
            self._target.write(data)
            tail = self._tail + data[-LOG_TAIL_BYTES:] if self._tail else data
            self._tail = tail[-LOG_TAIL_BYTES:] if len(tail) > LOG_TAIL_BYTES else tail

"""Function logs: Lambda's START/END/REPORT lines, kept per function, tailed for clients.

Each function has one append-only file (its "log group"); ``read`` returns the bytes
after an offset so ``kindling logs --follow`` can poll without missing lines.
"""

from __future__ import annotations

import base64
import math
import os
from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 4096


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


def tail_b64(lines: list[str]) -> str:
    """The last 4 KB of an invocation's log, base64, as X-Amz-Log-Result carries it."""
    data = ("\n".join(lines) + "\n").encode()
    return base64.b64encode(data[-TAIL_BYTES:]).decode()


class LogStore:
    """One append-only file per function under ``root/<account>/<region>/<name>.log``."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._handles: dict[tuple[str, str, str], int] = {}

    def _path(self, account_id: str, region: str, name: str) -> Path:
        return self._root / account_id / region / f"{name}.log"

    def append(self, account_id: str, region: str, name: str, lines: list[str]) -> None:
        if not lines:
            return
        key = (account_id, region, name)
        fd = self._handles.get(key)
        if fd is None:
            path = self._path(*key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._handles[key] = fd
        os.write(fd, ("\n".join(lines) + "\n").encode("utf-8", "replace"))

    def read(self, account_id: str, region: str, name: str, offset: int) -> tuple[bytes, int]:
        path = self._path(account_id, region, name)
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(1 << 20)
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)

    def forget(self, account_id: str, region: str, name: str) -> None:
        fd = self._handles.pop((account_id, region, name), None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self._handles.values():
            os.close(fd)
        self._handles.clear()

"""Reads a sandbox's stdout+stderr pipe into log lines without losing the last ones.

A runtime writes its output, then posts its response. Both arrive at the worker, but
asyncio may see the response first; ``drain`` reads the pipe synchronously at that
moment, so every line written before the response belongs to that invocation.

It holds at most one unfinished line (a longer one is cut into lines of
``LOG_LINE_BYTES``) and hands every line on at once: the sink streams it, never keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from kindling.limits import LOG_DRAIN_BYTES, LOG_LINE_BYTES
from kindling.worker.sandbox.base import LogSink


class LogPipe:
    def __init__(self, fd: int, sink: LogSink) -> None:
        self._fd = fd
        self.sink = sink
        self._partial = b""
        self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self.drain)
        self._closed = False

    def drain(self) -> None:
        """Reads what the pipe holds, up to ``LOG_DRAIN_BYTES`` a call: a sandbox that
        never stops writing gets the rest read on the loop's next turns, not in one."""
        if self._closed:
            return
        budget = LOG_DRAIN_BYTES
        while budget > 0:
            budget -= 65536
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._flush_partial()
                self._stop()
                return
            self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            self.sink(line.decode("utf-8", "replace"))
        while len(self._partial) > LOG_LINE_BYTES:
            line, self._partial = self._partial[:LOG_LINE_BYTES], self._partial[LOG_LINE_BYTES:]
            self.sink(line.decode("utf-8", "replace"))

    def _flush_partial(self) -> None:
        if self._partial:
            self.sink(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def _stop(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def close(self) -> None:
        self.drain()
        self._flush_partial()
        self._stop()

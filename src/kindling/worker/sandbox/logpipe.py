"""Reads a sandbox's stdout+stderr pipe into log lines without losing the last ones.

A runtime writes its output, then posts its response. Both arrive at the worker, but
asyncio may see the response first; ``drain`` reads the pipe synchronously at that
moment, so every line written before the response belongs to that invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from kindling.worker.sandbox.base import LogSink

_MAX_LINE = 256 * 1024


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
        if self._closed:
            return
        while True:
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
        if len(self._partial) > _MAX_LINE:
            self._flush_partial()

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

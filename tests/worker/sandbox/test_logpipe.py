import asyncio
import os

from kindling.limits import LOG_LINE_BYTES
from kindling.worker.sandbox.logpipe import LogPipe


def test_a_line_longer_than_the_bound_is_cut_into_bounded_lines() -> None:
    """The pipe holds at most one unfinished line: a 600 KB one is cut, never kept whole."""

    async def scenario() -> list[str]:
        lines: list[str] = []
        read_fd, write_fd = os.pipe()
        pipe = LogPipe(read_fd, lines.append)
        text = b"x" * (600 * 1024) + b"\nend\n"
        view = memoryview(text)
        while view:  # the pipe's buffer is smaller than the line: the loop drains it
            try:
                written = os.write(write_fd, view[:65536])
            except BlockingIOError:
                written = 0
            view = view[written:]
            pipe.drain()
        os.close(write_fd)
        pipe.close()
        return lines

    lines = asyncio.run(scenario())
    assert lines[-1] == "end"
    assert all(len(line) <= LOG_LINE_BYTES for line in lines)
    assert sum(len(line) for line in lines[:-1]) == 600 * 1024

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


def test_a_sandbox_that_never_stops_writing_does_not_hold_the_loop() -> None:
    """The reader read until the pipe was empty: a sandbox writing faster than the server
    splits lines kept the event loop in one callback for as long as it wrote."""
    import subprocess
    import sys

    flood = (
        "import os, time\n"
        "end = time.monotonic() + 20\n"
        "while time.monotonic() < end:\n"
        "    os.write(1, b'x\\n' * 32768)\n"
        "raise SystemExit(3)\n"
    )

    async def scenario() -> int:
        read_fd, write_fd = os.pipe()
        count = [0]

        def sink(line: str) -> None:
            count[0] += 1

        pipe = LogPipe(read_fd, sink)
        child = subprocess.Popen([sys.executable, "-c", flood], stdout=write_fd)  # noqa: ASYNC220
        os.close(write_fd)
        try:
            while count[0] == 0:  # noqa: ASYNC110 (the flood has begun)
                await asyncio.sleep(0.001)
            for _ in range(20):  # other work on the loop goes on meanwhile
                await asyncio.sleep(0)
        finally:
            child.kill()  # at once, unless the loop was held until the child gave up
            code = child.wait()
            pipe.close()
        return code

    code = asyncio.run(scenario())
    assert code != 3, "the loop ran nothing else while the sandbox wrote"

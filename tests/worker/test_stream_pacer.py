"""AWS's bandwidth cap on streamed responses ("Bandwidth limits for response
streaming": the first 6 MB uncapped, then at most 2 MBps), on a fake clock."""

from __future__ import annotations

import asyncio

from kindling import limits
from kindling.worker.sandbox.runtime_api import StreamPacer

MB = 1024 * 1024


def test_the_first_6_mb_go_at_once_and_the_rest_at_2_mbps() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def scenario() -> None:
        pacer = StreamPacer(clock=lambda: now[0], sleep=sleep)
        for total in range(MB, 6 * MB + 1, MB):
            await pacer.charge(total)
        assert slept == []
        for total in range(7 * MB, 12 * MB + 1, MB):
            await pacer.charge(total)

    asyncio.run(scenario())
    assert limits.STREAM_UNCAPPED_BYTES == 6 * MB
    assert limits.STREAM_CAPPED_BYTES_PER_S == 2 * MB
    # 6 MB past the uncapped burst at 2 MB/s: 3 s in all
    assert abs(sum(slept) - 3.0) < 1e-9

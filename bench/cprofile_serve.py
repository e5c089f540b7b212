"""``kindling serve`` under cProfile, timed in thread CPU time, switched on by signal.

Usage: ``python -m bench.cprofile_serve OUT.pstats serve --port N ...`` (the rest is
kindling's own command line). SIGUSR1 starts profiling, SIGUSR2 stops it and writes
OUT.pstats. Nothing in kindling is changed: this only wraps its console entry point.

cProfile is deterministic: besides CPU time per function it gives calls per invoke.
Its hooks slow every call down, so absolute times are inflated; the shares are what
matter (the bench reports the inflation next to them).
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from types import FrameType


def main() -> None:
    out = sys.argv[1]
    profiler = cProfile.Profile(time.thread_time_ns, 1e-9)

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["kindling", *sys.argv[2:]]
    from kindling.cli import main as kindling_main

    kindling_main()


if __name__ == "__main__":
    main()

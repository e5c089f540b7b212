"""How long an idle sandbox is kept: a fixed window, or one learned per function.

The learned policy follows the hybrid histogram policy of Shahrad et al. ("Serverless
in the Wild", USENIX ATC'20): record each function's idle times (gaps between
invocations) in one-minute bins up to four hours, and keep a sandbox until the end of
the bin that holds the 99th percentile of them, plus 10 %. A function called every 15
minutes keeps its sandbox 17.6 minutes and never starts cold; one called every 2
minutes holds memory for 3.3 minutes instead of 10. Until a function has shown enough
gaps (or when most of them are off the histogram) the fixed window applies.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

BIN_S = 60.0
BINS = 240  # four hours
MIN_SAMPLES = 10
PERCENTILE = 0.99
MARGIN = 1.10


class KeepAlivePolicy(Protocol):
    def observe(self, key: Hashable, now: float) -> None: ...

    def window(self, key: Hashable) -> float: ...


class FixedKeepAlive:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def observe(self, key: Hashable, now: float) -> None:
        return None

    def window(self, key: Hashable) -> float:
        return self.seconds


class HistogramKeepAlive:
    def __init__(self, default_s: float) -> None:
        self._default = default_s
        self._last: dict[Hashable, float] = {}
        self._bins: dict[Hashable, list[int]] = {}
        self._outside: dict[Hashable, int] = {}
        self._windows: dict[Hashable, float] = {}

    def observe(self, key: Hashable, now: float) -> None:
        last = self._last.get(key)
        self._last[key] = now
        if last is None:
            return
        gap = now - last
        index = int(gap // BIN_S)
        if index >= BINS:
            self._outside[key] = self._outside.get(key, 0) + 1
        else:
            self._bins.setdefault(key, [0] * BINS)[index] += 1
        self._windows.pop(key, None)

    def window(self, key: Hashable) -> float:
        found = self._windows.get(key)
        if found is None:
            found = self._learn(key)
            self._windows[key] = found
        return found

    def _learn(self, key: Hashable) -> float:
        bins = self._bins.get(key)
        inside = sum(bins) if bins else 0
        outside = self._outside.get(key, 0)
        if bins is None or inside < MIN_SAMPLES or outside > inside:
            return self._default
        target = PERCENTILE * inside
        seen = 0
        for index, count in enumerate(bins):
            seen += count
            if seen >= target:
                return max(BIN_S, (index + 1) * BIN_S * MARGIN)
        return self._default

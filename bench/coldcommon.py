"""What the cold-start bench's parts share: the hello function, names, scenarios."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import coldtrace

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3.11"
HELLO = """\
import time

IMPORTED_NS = time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def handler(event, context):
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    return {"hello": "world", "imported_ns": IMPORTED_NS, "invoked_ns": now}
"""
ACCOUNT = "000000000000"
REGION = "us-east-1"
FUNCTION = "coldstart-hello"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}"
BACKENDS = ("process", "namespace", "gvisor")
BWRAP_ARGS = (
    *("--ro-bind", "/usr", "/usr"),
    *("--symlink", "usr/lib", "/lib"),
    *("--symlink", "usr/lib64", "/lib64"),
    *("--symlink", "usr/bin", "/bin"),
    *("--proc", "/proc", "--dev", "/dev"),
    *("--unshare-all", "--die-with-parent"),
)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def now() -> int:
    return time.monotonic_ns()


class Skip(Exception):
    """A scenario that cannot run on this machine; the message says why."""


@dataclass
class Scenario:
    """One series of samples; ``run`` takes one sample and returns its figures (ms)."""

    name: str
    kind: str  # "baseline" | "sandbox" | "api"
    run: Callable[[int], Any]  # -> dict[str, float] or an awaitable of one
    metrics: dict[str, list[float]] = field(default_factory=dict)
    traces: list[coldtrace.Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None
    note: str = ""
    orphans: dict[str, int] = field(default_factory=dict)

    def add(self, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            self.metrics.setdefault(key, []).append(value)

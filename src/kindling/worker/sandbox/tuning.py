"""What a worker host does ahead of time to make cold starts cheap; each piece switchable."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ColdStartTuning:
    """The cold-start work done ahead, each switchable (the bench turns them off one by
    one to show what each is worth)."""

    #: Python runtimes start in-process, forked from a zygote, instead of exec'd.
    zygotes: bool = True
    #: One long-lived launcher forks the sandbox builders (else one process per start).
    launcher: bool = True
    #: Network slots kept ready per network mode (0: made on each start).
    slot_pool: int = 8
    #: cgroup2 mount option favordynmods, so joining a cgroup waits for no RCU grace
    #: period (~10 ms on the first join after a pause, measured on v1 and v2 alike).
    favor_dynmods: bool = True

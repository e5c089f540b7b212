"""The keep-alive policies, and a simulation of both on a synthetic trace.

The trace mixes the shapes the Azure Functions study found: timers (periodic), busy
functions (Poisson), and rare ones. The simulation counts cold starts and the time
sandboxes sit idle holding memory, for the fixed 10-minute window and the learned one.
"""

from __future__ import annotations

import json
import random

from kindling.invoke.keepalive import FixedKeepAlive, HistogramKeepAlive, KeepAlivePolicy

DAY = 24 * 3600.0


def _trace(rng: random.Random) -> list[tuple[float, str]]:
    events: list[tuple[float, str]] = []
    shapes = {
        "timer-15min": lambda t: t + 900.0,
        "timer-2min": lambda t: t + 120.0,
        "timer-30min-jitter": lambda t: t + 1800.0 + rng.uniform(-30, 30),
        "busy-poisson-30s": lambda t: t + rng.expovariate(1 / 30.0),
        "rare-poisson-3h": lambda t: t + rng.expovariate(1 / 10800.0),
    }
    for name, step in shapes.items():
        t = rng.uniform(0, 600)
        while t < DAY:
            events.append((t, name))
            t = step(t)
    return sorted(events)


def simulate(policy: KeepAlivePolicy, events: list[tuple[float, str]]) -> dict[str, float]:
    """One sandbox per function (invocations are short); returns cold rate and idle hours."""
    warm_until: dict[str, float] = {}
    last: dict[str, float] = {}
    cold = 0
    idle_s = 0.0
    for now, name in events:
        until = warm_until.get(name)
        if until is None or now > until:
            cold += 1
            if until is not None:
                idle_s += until - last[name]
        else:
            idle_s += now - last[name]
        policy.observe(name, now)
        last[name] = now
        warm_until[name] = now + policy.window(name)
    for name, until in warm_until.items():
        idle_s += min(until, DAY) - last[name]
    return {"cold_start_rate": cold / len(events), "idle_hours": idle_s / 3600.0}


def test_fixed_window_is_fixed() -> None:
    policy = FixedKeepAlive(600.0)
    policy.observe("f", 0.0)
    assert policy.window("f") == 600.0


def test_histogram_learns_a_timer_and_falls_back_without_data() -> None:
    policy = HistogramKeepAlive(600.0)
    assert policy.window("f") == 600.0
    for i in range(20):
        policy.observe("f", i * 900.0)
    assert 900.0 < policy.window("f") <= 1200.0
    assert policy.window("other") == 600.0


def test_learned_policy_beats_fixed_10_minutes_on_the_trace() -> None:
    events = _trace(random.Random(42))
    fixed = simulate(FixedKeepAlive(600.0), events)
    learned = simulate(HistogramKeepAlive(600.0), events)
    print("\nkeep-alive simulation:", json.dumps({"fixed_10min": fixed, "histogram": learned}))
    assert learned["cold_start_rate"] < fixed["cold_start_rate"]
    assert learned["idle_hours"] < fixed["idle_hours"] * 1.5

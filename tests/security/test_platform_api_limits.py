"""A sandbox attacks the server through kindling's API inside it (127.0.0.1:9000, ADR
0035), as it did through its Runtime API: it holds only its own share of connections
and body bytes (limits.SANDBOX_PLATFORM_*), and meanwhile the server stays small and
up, the victim answers and ``/metrics`` scrapes."""

from __future__ import annotations

import threading
import time
from typing import Any

from kindling import limits

from .conftest import Fleet, Victim, check_victim
from .test_runtime_api_limits import ATTACK, _invoke, _server_rss_mb, flood

RUNTIME_API = 'HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)'
assert RUNTIME_API in ATTACK
#: The same attacks, aimed at the platform's API instead of the Runtime API.
PLATFORM_ATTACK = ATTACK.replace(RUNTIME_API, 'HOST, PORT = "127.0.0.1", "9000"')


def test_a_connection_flood_takes_only_its_own_share(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    name = fleet.attacker("platform", backend, PLATFORM_ATTACK, Timeout=120)
    flood(fleet, victim, name, "$LATEST", limits.SANDBOX_PLATFORM_MAX_CONNECTIONS)


def test_unfinished_bodies_cannot_grow_the_server(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    name = fleet.attacker("platform", backend, PLATFORM_ATTACK, Timeout=120)
    _invoke(fleet, name, "$LATEST", {})
    before = _server_rss_mb(fleet)
    seen: list[Any] = []
    event = {"kind": "bodies", "connections": 20, "announce": 60 << 20, "send_mb": 8, "hold": 6}
    attack = threading.Thread(target=lambda: seen.append(_invoke(fleet, name, "$LATEST", event)))
    attack.start()
    try:
        time.sleep(5)
        grown = _server_rss_mb(fleet) - before
        check_victim(fleet, victim)
    finally:
        attack.join()
    budget_mb = limits.SANDBOX_PLATFORM_MAX_BUFFERED_BYTES / (1 << 20)
    assert grown < budget_mb + 64, (grown, seen)  # 160 MB were sent
    assert seen[0]["refused"] >= 1, seen

"""The health endpoint's answers, with checks standing in for a store that answers,
fails, or hangs (the e2e tests drive the real ones: tests/e2e/test_operable.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from kindling import limits
from kindling.api.health import LIVE, PREFIX, READY, HealthEndpoint
from kindling.errors import StoreUnavailableError, UnknownOperationError
from kindling.httpd import Request, Response


def _get(endpoint: HealthEndpoint, path: str, method: str = "GET") -> Response:
    return asyncio.run(endpoint.handle(Request(method, path, "", {}, b"")))


async def _passes() -> None:
    return None


async def _fails() -> None:
    raise StoreUnavailableError("The store is unavailable.")


def test_ready_passes_when_every_check_does() -> None:
    endpoint = HealthEndpoint({"store": _passes, "workers": _passes}, lambda: False)
    for path in (READY, PREFIX):
        answer = _get(endpoint, path)
        assert answer.status == 200
        assert json.loads(answer.body) == {
            "status": "pass",
            "checks": {"store": "pass", "workers": "pass"},
        }


def test_ready_fails_naming_the_check_without_its_error() -> None:
    endpoint = HealthEndpoint({"store": _fails, "workers": _passes}, lambda: False)
    answer = _get(endpoint, READY)
    assert answer.status == 503
    assert json.loads(answer.body) == {
        "status": "fail",
        "checks": {"store": "fail", "workers": "pass"},
    }
    assert b"unavailable" not in answer.body
    assert _get(endpoint, LIVE).status == 200  # liveness does not depend on the store


def test_draining_is_not_ready_but_alive() -> None:
    endpoint = HealthEndpoint({"store": _passes}, lambda: True)
    answer = _get(endpoint, READY)
    assert (answer.status, json.loads(answer.body)) == (503, {"status": "fail", "draining": True})
    assert _get(endpoint, LIVE).status == 200


def test_a_hanging_check_fails_in_bounded_time_and_is_not_started_twice() -> None:
    started = 0
    release = asyncio.Event()

    async def hangs() -> None:
        nonlocal started
        started += 1
        await release.wait()

    async def scenario() -> tuple[int, int, float]:
        endpoint = HealthEndpoint({"store": hangs}, lambda: False)
        loop = asyncio.get_running_loop()
        began = loop.time()
        first = await endpoint.handle(Request("GET", READY, "", {}, b""))
        second = await endpoint.handle(Request("GET", READY, "", {}, b""))
        took = loop.time() - began
        release.set()
        await asyncio.sleep(0)
        return first.status, second.status, took

    first, second, took = asyncio.run(scenario())
    assert (first, second) == (503, 503)
    assert started == 1  # the second probe waited on the first one's check
    assert took >= 2 * limits.HEALTH_CHECK_TIMEOUT_S * 0.9


def test_head_has_no_body_and_other_methods_are_refused() -> None:
    endpoint = HealthEndpoint({"store": _passes}, lambda: False)
    head = _get(endpoint, READY, "HEAD")
    assert (head.status, head.body) == (200, b"")
    with pytest.raises(UnknownOperationError):
        _get(endpoint, READY, "POST")

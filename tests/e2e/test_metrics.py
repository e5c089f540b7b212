"""``GET /metrics`` through the real server: scraped with a plain, unsigned HTTP client as
Prometheus would, parsed with prometheus_client's own parser, and checked against what
the test just did (cold then warm, an error, a throttle, SnapStart restores)."""

from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kindling.runtimes.catalog import find_python

from .support import (
    ACCOUNT,
    METRICS_ON_WORKERS,
    REGION,
    ROLE,
    Deploy,
    Server,
    client_error,
    invoke_json,
    make_zip,
    wait_active,
    wait_for,
)

ECHO = {"app.py": "def handler(event, context):\n    return event\n"}
FAILS = {"app.py": "def handler(event, context):\n    raise ValueError('no')\n"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server) -> tuple[str, Samples]:
    """(Content-Type, every sample by (name, labels)) of one unsigned GET /metrics."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        reply = conn.getresponse()
        body = reply.read().decode()
        assert reply.status == 200, (reply.status, body[:500])
        content_type = reply.getheader("Content-Type", "")
    finally:
        conn.close()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    return content_type, samples


def of(samples: Samples, name: str, function: str, **labels: str) -> dict[frozenset[Any], float]:
    """The samples of one metric for one function, by their remaining labels."""
    mine = {"account": ACCOUNT, "region": REGION, "function": function, **labels}
    found: dict[frozenset[Any], float] = {}
    for (sample, sample_labels), number in samples.items():
        named = dict(sample_labels)
        if sample == name and all(named.get(k) == v for k, v in mine.items()):
            found[frozenset((k, v) for k, v in named.items() if k not in mine)] = number
    return found


def one(samples: Samples, name: str, function: str, **labels: str) -> float:
    found = of(samples, name, function, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


@pytest.mark.single_only(METRICS_ON_WORKERS)
def test_cold_then_warm_with_durations(server: Server, lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    assert invoke_json(lam, name, {"n": 1})[0] == {"n": 1}
    assert invoke_json(lam, name, {"n": 2})[0] == {"n": 2}
    content_type, found = scrape(server)
    assert content_type.startswith("text/plain"), content_type
    latest = {"version": "$LATEST"}
    assert one(found, "kindling_invocations_total", name, **latest, start="cold") == 1
    assert one(found, "kindling_invocations_total", name, **latest, start="warm") == 1
    assert not of(found, "kindling_invocations_total", name, start="restore")
    assert one(found, "kindling_duration_seconds_count", name, **latest) == 2
    assert 0 < one(found, "kindling_duration_seconds_sum", name, **latest) < 10
    assert one(found, "kindling_duration_seconds_bucket", name, **latest, le="+Inf") == 2
    assert one(found, "kindling_init_duration_seconds_count", name, **latest, kind="init") == 1
    assert one(found, "kindling_init_duration_seconds_sum", name, **latest, kind="init") > 0
    assert not of(found, "kindling_errors_total", name)
    assert one(found, "kindling_concurrent_executions", name) == 0  # both have finished
    sandboxes = of(found, "kindling_sandboxes", name, **latest)
    assert sum(sandboxes.values()) == 1, sandboxes  # the one that served both, idle or frozen
    assert {dict(labels)["state"] for labels in sandboxes} <= {"idle", "frozen"}
    assert found[("process_resident_memory_bytes", frozenset())] > 0


@pytest.mark.single_only(METRICS_ON_WORKERS)
def test_errors_count_with_their_outcome(server: Server, lam: Any, deploy: Deploy) -> None:
    name = deploy(FAILS)
    response = lam.invoke(FunctionName=name, Payload=b"{}")
    assert response["FunctionError"] == "Unhandled"
    _, found = scrape(server)
    assert one(found, "kindling_errors_total", name, version="$LATEST", outcome="error") == 1
    assert one(found, "kindling_invocations_total", name, start="cold") == 1  # errors run too


def test_a_throttle_is_counted_with_its_reason(server: Server, lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with client_error("TooManyRequestsException", 429):
        lam.invoke(FunctionName=name, Payload=b"{}")
    _, found = scrape(server)
    reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert one(found, "kindling_throttles_total", name, version="$LATEST", reason=reason) == 1
    assert not of(found, "kindling_invocations_total", name)  # a throttle never ran


@pytest.mark.single_only(METRICS_ON_WORKERS)
def test_deleted_functions_leave_the_scrape(server: Server, lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    invoke_json(lam, name)
    assert of(scrape(server)[1], "kindling_invocations_total", name)
    lam.delete_function(FunctionName=name)

    def left() -> list[str]:
        _, found = scrape(server)
        return [sample for sample, labels in found if dict(labels).get("function") == name]

    assert set(left()) <= {"kindling_sandboxes"}  # its idle sandbox is destroyed in the background
    wait_for(lambda: not left(), timeout=10)


def test_only_get_is_served(server: Server) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("POST", "/metrics", body=b"")
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 404
        assert reply.getheader("x-amzn-ErrorType") == "UnknownOperationException"
    finally:
        conn.close()


@pytest.mark.skipif(
    find_python("3.12") is None, reason="SnapStart needs python3.12, not on this host"
)
@pytest.mark.single_only(METRICS_ON_WORKERS)
def test_snapstart_restores_are_their_own_start_kind(
    server: Server, lam: Any, fn_name: str
) -> None:
    app = "import time\ndef handler(event, context):\n    time.sleep(event['hold'])\n"
    lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": app})},
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    wait_active(lam, fn_name)
    version = lam.publish_version(FunctionName=fn_name)["Version"]
    lam.get_waiter("published_version_active").wait(
        FunctionName=fn_name, Qualifier=version, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    payload = json.dumps({"hold": 1.5}).encode()

    def held(_i: int) -> Any:
        return lam.invoke(FunctionName=fn_name, Qualifier=version, Payload=payload)

    with ThreadPoolExecutor(3) as pool:  # three at once, each held: three sandboxes
        list(pool.map(held, range(3)))
    _, found = scrape(server)
    by_start = of(found, "kindling_invocations_total", fn_name, version=version)
    starts = {dict(labels)["start"]: number for labels, number in by_start.items()}
    assert starts.get("restore", 0) >= 2, starts  # the first may be the template's own init
    assert starts.get("restore", 0) + starts.get("cold", 0) == 3, starts
    restores = one(
        found, "kindling_init_duration_seconds_count", fn_name, version=version, kind="restore"
    )
    assert restores == starts["restore"]

"""The metrics class: what each recording call puts in its own registry, read back the way a
scraper reads it (the text format, parsed by prometheus_client's own parser)."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kindling.telemetry.metrics import Metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
FN = ("000000000000", "us-east-1", "f")
LABELS = {"account": FN[0], "region": FN[1], "function": FN[2], "version": "$LATEST"}


def scrape(metrics: Metrics) -> Samples:
    """Every sample of a scrape, by (name, labels)."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_invocations_by_start_kind_with_durations_and_errors() -> None:
    metrics = Metrics()
    metrics.invoked(*FN, "$LATEST", start="cold", duration_ms=12.0)
    metrics.invoked(*FN, "$LATEST", start="warm", duration_ms=2.0)
    metrics.invoked(*FN, "$LATEST", start="warm", duration_ms=3000.0, error="timeout")
    metrics.invoked(*FN, "1", start="restore", duration_ms=1.0, error="error")
    found = scrape(metrics)
    assert value(found, "kindling_invocations_total", **LABELS, start="cold") == 1
    assert value(found, "kindling_invocations_total", **LABELS, start="warm") == 2
    assert value(found, "kindling_invocations_total", **LABELS, start="restore") is None
    assert value(found, "kindling_invocations_total", **{**LABELS, "version": "1"}, start="restore")
    assert value(found, "kindling_errors_total", **LABELS, outcome="timeout") == 1
    assert value(found, "kindling_errors_total", **{**LABELS, "version": "1"}, outcome="error")
    assert value(found, "kindling_duration_seconds_count", **LABELS) == 3
    assert value(found, "kindling_duration_seconds_sum", **LABELS) == pytest.approx(3.014)
    assert value(found, "kindling_duration_seconds_bucket", **LABELS, le="0.0025") == 1
    assert value(found, "kindling_duration_seconds_bucket", **LABELS, le="0.025") == 2
    assert value(found, "kindling_duration_seconds_bucket", **LABELS, le="+Inf") == 3
    assert not any(name.endswith("_created") for name, _ in found)  # no doubled series


def test_starts_by_kind() -> None:
    metrics = Metrics()
    metrics.started(*FN, "$LATEST", restored=False, duration_ms=20.0)
    metrics.started(*FN, "$LATEST", restored=True, duration_ms=4.0)
    metrics.started(*FN, "$LATEST", restored=True, duration_ms=6.0)
    found = scrape(metrics)
    assert value(found, "kindling_init_duration_seconds_count", **LABELS, kind="init") == 1
    assert value(found, "kindling_init_duration_seconds_count", **LABELS, kind="restore") == 2
    assert value(
        found, "kindling_init_duration_seconds_sum", **LABELS, kind="restore"
    ) == pytest.approx(0.01)


def test_throttles_and_concurrency() -> None:
    metrics = Metrics()
    reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
    metrics.throttled(*FN, "$LATEST", reason)
    metrics.throttled(*FN, "$LATEST", reason)
    metrics.concurrency(*FN, 3, 5)
    metrics.concurrency(*FN, 2, 4)
    found = scrape(metrics)
    assert value(found, "kindling_throttles_total", **LABELS, reason=reason) == 2
    function = {k: v for k, v in LABELS.items() if k != "version"}
    assert value(found, "kindling_concurrent_executions", **function) == 2
    assert value(found, "kindling_account_concurrent_executions", account=FN[0]) == 4


def test_sandboxes_are_read_from_every_worker_when_scraped() -> None:
    metrics = Metrics()
    counts = {(*FN, "$LATEST", "idle"): 2}
    metrics.watch_sandboxes(lambda: counts)
    metrics.watch_sandboxes(lambda: {(*FN, "$LATEST", "idle"): 1, (*FN, "$LATEST", "busy"): 1})
    found = scrape(metrics)
    assert value(found, "kindling_sandboxes", **LABELS, state="idle") == 3
    assert value(found, "kindling_sandboxes", **LABELS, state="busy") == 1
    counts.clear()  # the first worker's sandboxes are gone: read anew, nothing kept
    assert value(scrape(metrics), "kindling_sandboxes", **LABELS, state="idle") == 1


def test_forget_drops_a_version_or_a_whole_function() -> None:
    metrics = Metrics()
    other = ("000000000000", "us-east-1", "g")
    for version in ("$LATEST", "1"):
        metrics.invoked(*FN, version, start="cold", duration_ms=1.0, error="error")
        metrics.started(*FN, version, restored=False, duration_ms=1.0)
        metrics.throttled(*FN, version, "r")
    metrics.invoked(*other, "$LATEST", start="cold", duration_ms=1.0)
    metrics.concurrency(*FN, 0, 0)
    metrics.forget(*FN, "1")
    versions = {dict(labels).get("version") for _, labels in scrape(metrics)}
    assert "1" not in versions and "$LATEST" in versions
    metrics.forget(*FN)
    functions = {dict(labels).get("function") for _, labels in scrape(metrics)}
    assert functions == {None, "g"}  # the process series have no function


def test_registries_are_per_instance() -> None:
    first, second = Metrics(), Metrics()
    first.invoked(*FN, "$LATEST", start="cold", duration_ms=1.0)
    assert value(scrape(second), "kindling_invocations_total", **LABELS, start="cold") is None


def test_a_deleted_functions_series_do_not_come_back() -> None:
    gone: set[tuple[str, str, str, str | None]] = set()
    metrics = Metrics(live=lambda *key: key not in gone and (*key[:3], None) not in gone)
    metrics.invoked(*FN, "1", start="cold", duration_ms=1.0)
    gone.add((*FN, None))  # the function is deleted while an invocation still runs
    metrics.forget(*FN)
    metrics.invoked(*FN, "1", start="warm", duration_ms=1.0, error="error")  # it ends
    metrics.started(*FN, "1", restored=False, duration_ms=1.0)
    metrics.throttled(*FN, "$LATEST", "r")
    metrics.concurrency(*FN, 0, 0)
    functions = {dict(labels).get("function") for _, labels in scrape(metrics)}
    assert functions == {None}
    assert value(scrape(metrics), "kindling_account_concurrent_executions", account=FN[0]) == 0

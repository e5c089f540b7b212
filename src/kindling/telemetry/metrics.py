"""Prometheus metrics: what Lambda reports to CloudWatch per function, served at /metrics.

Lambda's own metrics are Invocations, Errors, Throttles, Duration and
ConcurrentExecutions, and its REPORT lines add Init Duration and Restore Duration. Here
each is a Prometheus series labelled by ``account``, ``region``, ``function`` and
``version`` (the version that ran, Lambda's ExecutedVersion dimension; an alias is
counted under the version it routed to, so aliases add no series):

    kindling_invocations_total{..., start}       start: cold | warm | restore
    kindling_errors_total{..., outcome}          outcome: error | timeout | crash | init_error
    kindling_throttles_total{..., reason}        the 429's Reason (a client got it)
    kindling_async_retries_total{account, region, function, cause}
                                                 an Event invocation tried again later:
                                                 throttled | platform_error | function_error
    kindling_async_events_dropped_total{account, region, reason}
                                                 Lambda's AsyncEventsDropped: not_found |
                                                 max_age | retries_exhausted | recursive_loop
    kindling_recursive_invocations_dropped_total{account, region, function}
                                                 Lambda's RecursiveInvocationsDropped: events
                                                 stopped as a recursive loop (ADR 0032)
    kindling_async_delivery_failures_total{account, region, kind}
                                                 records or events that could not be
                                                 delivered after their retries: kind
                                                 destination (Lambda's
                                                 DestinationDeliveryFailures) | dead_letter
                                                 (Lambda's DeadLetterErrors)
    kindling_duration_seconds{...}               histogram of invocation durations
    kindling_init_duration_seconds{..., kind}    kind: init | restore; each sandbox started
    kindling_concurrent_executions{account, region, function}
    kindling_account_concurrent_executions{account}
    kindling_sandboxes{..., state}               creating | initializing | idle | busy | ...

Counters, histograms and the concurrency gauges are recorded by the component that
knows the fact when it happens (the worker agent: starts, durations, errors; the invoke
service: throttles; the counting service: concurrency; the async queue: its retries and
drops). An Event invocation held back by concurrency is an internal retry, never a
throttle: no client got a 429 for it. Drops are counted per account, not per function:
the most common reason is that the function was deleted, and its series must stay gone.
Sandbox states change in many places inside a worker, so they are read from the workers
when scraped instead of being mirrored.

A deleted function's (or version's) series are removed (``forget``) and must not come
back when an invocation that was running at the deletion ends afterwards: every
recording of a per-function series first asks ``live`` (given by the composition root)
whether that function version still exists, and records nothing for one that does not.

The registry is this object's own, never prometheus_client's global ``REGISTRY``: the
composition root builds one ``Metrics`` and hands it to whoever records, and a component
built without one (in a test) records into a private instance nobody reads.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

#: The starts an invocation can have: a sandbox started for it (``cold``), one from a
#: SnapStart snapshot (``restore``), or one already initialized (``warm``).
StartKind = Literal["cold", "warm", "restore"]

#: (account, region, function, version, state) -> number of sandboxes.
SandboxCounts = Mapping[tuple[str, str, str, str, str], int]

#: Whether (account, region, function, version or None for the function) still exists.
LiveCheck = Callable[[str, str, str, str | None], bool]


def _always(_account: str, _region: str, _function: str, _version: str | None) -> bool:
    return True


FUNCTION_LABELS = ("account", "region", "function")
VERSION_LABELS = (*FUNCTION_LABELS, "version")

#: Lambda bills from 1 ms and allows 900 s: the buckets span both ends.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip
#: A restore takes a few ms, a heavy init seconds; init is cut off at 10 s.
#: Megabytes, from a bare runtime's private pages to Lambda's largest memory size.
MEMORY_BUCKETS = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 10240)  # fmt: skip

INIT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class _SandboxStates:
    """A collector that asks each registered worker for its sandboxes when scraped."""

    NAME = "kindling_sandboxes"
    DOC = "Sandboxes that exist now, by function version and lifecycle state."

    def __init__(self) -> None:
        self.sources: list[Callable[[], SandboxCounts]] = []

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.NAME, self.DOC, labels=[*VERSION_LABELS, "state"])

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        totals: collections.Counter[tuple[str, str, str, str, str]] = collections.Counter()
        for source in self.sources:
            totals.update(source())
        family = self._family()
        for labels, count in sorted(totals.items()):
            family.add_metric(list(labels), count)
        yield family


class Metrics:
    """Every metric kindling serves, in one registry of its own."""

    def __init__(self, live: LiveCheck | None = None) -> None:
        self._ask_live = live or _always
        #: Versions (and functions: version None) ``live`` said exist, until ``forget``:
        #: three records an invocation need not each look the function up.
        self._known_live: set[tuple[str, str, str, str | None]] = set()
        #: The labelled series each record writes to, looked up once: ``labels()`` takes
        #: a lock and checks every value each call. Emptied by ``forget``, which removes
        #: series; at most one entry per series the registry holds anyway.
        self._series: dict[tuple[object, ...], Any] = {}
        #: ``invoked``'s three series per (account, region, function, version, start):
        #: one lookup per invocation, not three (its figures are the warm path's).
        self._invoked: dict[tuple[str, ...], list[Any]] = {}
        # prometheus_client would add a ``*_created`` series beside every counter and
        # histogram series, doubling what a scrape carries for a timestamp Prometheus
        # does not read from the text format. The switch is the library's, process-wide;
        # kindling serves no other registry.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # the server's own CPU, memory, fds
        self._invocations = Counter(
            "kindling_invocations",
            "Invocations that ran (Lambda's Invocations), by how their sandbox started.",
            [*VERSION_LABELS, "start"],
            registry=self.registry,
        )
        self._errors = Counter(
            "kindling_errors",
            "Invocations that ended in a function error, timeout, crash or init failure.",
            [*VERSION_LABELS, "outcome"],
            registry=self.registry,
        )
        self._throttles = Counter(
            "kindling_throttles",
            "Invocation requests refused with 429 TooManyRequestsException, by Reason.",
            [*VERSION_LABELS, "reason"],
            registry=self.registry,
        )
        self._async_retries = Counter(
            "kindling_async_retries",
            "Event invocations the queue tries again later, by cause: throttled (no "
            "concurrency free), platform_error (e.g. a sandbox could not be built), "
            "function_error (one of the event's retries).",
            [*FUNCTION_LABELS, "cause"],
            registry=self.registry,
        )
        self._async_dropped = Counter(
            "kindling_async_events_dropped",
            "Accepted Event invocations dropped without a successful run (Lambda's "
            "AsyncEventsDropped), by reason: not_found (the function is gone), max_age, "
            "retries_exhausted, recursive_loop.",
            ["account", "region", "reason"],
            registry=self.registry,
        )
        self._recursive_dropped = Counter(
            "kindling_recursive_invocations_dropped",
            "Invocations stopped because their chain of invocations looped past 16 hops "
            "and the function's RecursiveLoop is Terminate (Lambda's "
            "RecursiveInvocationsDropped).",
            ["account", "region", "function"],
            registry=self.registry,
        )
        self._delivery_failures = Counter(
            "kindling_async_delivery_failures",
            "Invocation records (kind destination: Lambda's DestinationDeliveryFailures) "
            "and events (kind dead_letter: Lambda's DeadLetterErrors) that could not be "
            "delivered after their retries; each is logged with its content.",
            ["account", "region", "kind"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "kindling_duration_seconds",
            "Time the function spent on each invocation (REPORT's Duration).",
            VERSION_LABELS,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._private_memory = Histogram(
            "kindling_private_memory_megabytes",
            "Per invocation, the peak memory charged to its sandbox alone (its cgroup's), "
            "in MB: what it costs the host beyond the pages it shares with the zygote or "
            "snapshot it was forked from. REPORT's Max Memory Used counts those too, as "
            "Lambda does.",
            VERSION_LABELS,
            buckets=MEMORY_BUCKETS,
            registry=self.registry,
        )
        self._init = Histogram(
            "kindling_init_duration_seconds",
            "Sandbox starts that succeeded: Init Duration (init) or Restore Duration "
            "(restore, from a SnapStart snapshot).",
            [*VERSION_LABELS, "kind"],
            buckets=INIT_BUCKETS,
            registry=self.registry,
        )
        self._concurrent = Gauge(
            "kindling_concurrent_executions",
            "Executions admitted and not yet finished, per function (ConcurrentExecutions).",
            FUNCTION_LABELS,
            registry=self.registry,
        )
        self._account_concurrent = Gauge(
            "kindling_account_concurrent_executions",
            "Executions admitted and not yet finished, per account.",
            ["account"],
            registry=self.registry,
        )
        self._sandboxes = _SandboxStates()
        self.registry.register(self._sandboxes)

    # ------------------------------------------------------------------ recording

    def invoked(
        self,
        account: str,
        region: str,
        function: str,
        version: str,
        *,
        start: StartKind,
        duration_ms: float,
        error: str | None = None,
        private_memory_mb: int = 0,
    ) -> None:
        """One invocation that ran; ``error`` names how it failed, if it did;
        ``private_memory_mb`` its sandbox's own peak memory (0: not known apart)."""
        key = (account, region, function, version, start)
        series = self._invoked.get(key)
        if series is None:  # once per version and start kind, until ``forget``
            if not self._live(account, region, function, version):
                return  # it ended after its function was deleted: no series comes back
            series = self._invoked[key] = [
                self._invocations.labels(*key),
                self._duration.labels(*key[:4]),
                None,  # private memory: a series only once a figure is known
            ]
        series[0].inc()
        series[1].observe(duration_ms / 1000)
        if error is not None:
            self._errors.labels(*key[:4], error).inc()
        if private_memory_mb:
            if series[2] is None:
                series[2] = self._private_memory.labels(*key[:4])
            series[2].observe(private_memory_mb)

    def started(
        self,
        account: str,
        region: str,
        function: str,
        version: str,
        *,
        restored: bool,
        duration_ms: float,
    ) -> None:
        """One sandbox initialized (for an invocation or for provisioned concurrency)."""
        if not self._live(account, region, function, version):
            return
        kind = "restore" if restored else "init"
        self._init.labels(account, region, function, version, kind).observe(duration_ms / 1000)

    def throttled(
        self, account: str, region: str, function: str, version: str, reason: str
    ) -> None:
        if not self._live(account, region, function, version):
            return
        self._throttles.labels(account, region, function, version, reason).inc()

    def async_retried(self, account: str, region: str, function: str, cause: str) -> None:
        if self._live(account, region, function, None):
            self._async_retries.labels(account, region, function, cause).inc()

    def async_dropped(self, account: str, region: str, reason: str) -> None:
        self._async_dropped.labels(account, region, reason).inc()

    def recursion_stopped(self, account: str, region: str, function: str) -> None:
        self._recursive_dropped.labels(account, region, function).inc()

    def delivery_failed(self, account: str, region: str, kind: str) -> None:
        self._delivery_failures.labels(account, region, kind).inc()

    def concurrency(
        self, account: str, region: str, function: str, in_function: int, in_account: int
    ) -> None:
        """The counts after an admission or a release. Set, not added, so a count can
        never drift from the counting service's own."""
        self._series_of(self._account_concurrent, account).set(in_account)
        if self._live(account, region, function, None):
            self._series_of(self._concurrent, account, region, function).set(in_function)

    def _series_of(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = metric.labels(*labels)
        return found

    def watch_sandboxes(self, source: Callable[[], SandboxCounts]) -> None:
        """Adds a worker whose sandboxes ``kindling_sandboxes`` reports when scraped."""
        self._sandboxes.sources.append(source)

    def _live(self, account: str, region: str, function: str, version: str | None) -> bool:
        key = (account, region, function, version)
        if key in self._known_live:
            return True
        if not self._ask_live(account, region, function, version):
            return False
        self._known_live.add(key)
        return True

    def forget(self, account: str, region: str, function: str, version: str | None = None) -> None:
        """Drops the series of a deleted version, or of a whole deleted function, so
        functions that come and go do not grow the scrape forever."""
        self._series.clear()
        self._invoked.clear()
        self._known_live = {
            key
            for key in self._known_live
            if key[:3] != (account, region, function) or (version is not None and key[3] != version)
        }
        where = {"account": account, "region": region, "function": function}
        if version is None:
            self._concurrent.remove_by_labels(where)
            self._async_retries.remove_by_labels(where)
        else:
            where["version"] = version
        for metric in (
            self._invocations,
            self._errors,
            self._throttles,
            self._duration,
            self._private_memory,
            self._init,
        ):
            metric.remove_by_labels(where)

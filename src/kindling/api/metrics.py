"""``GET /metrics``: the Prometheus scrape, and who may read which series (ADR 0010,
ADR 0043).

Series are labelled by account and function, so a scrape open to anyone would tell
every tenant the others' account ids and function names (a function reaches this port
from its sandbox too, ADR 0035). Three views:

- ``Authorization: Bearer <metrics token>`` (``metrics.token`` in the data dir, 0600,
  derived from the server key): every series, for the operator's Prometheus
  (``authorization: {credentials_file: ...}``).
- SigV4-signed (header or presigned query, service ``lambda``) by a principal allowed
  ``cloudwatch:GetMetricData`` (an account's root always is): that account's series
  only, none of the host's.
- Unsigned: the series of the accounts whose keys are public (the dev account while the
  dev key is on: anyone may sign as it anyway) and the host's own (``process_*``); every
  other account's series summed into one with ``account="_others"`` and no function or
  version: totals, no names.

It only serializes: the metrics are recorded by the components that know them, into
the registry handed in here.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from kindling.errors import UnknownKeyError, UnknownOperationError
from kindling.httpd import Request, Response
from kindling.iam.sigv4 import Caller

#: Labels ``{labels} -> labels to show, or None to leave the sample out``.
Keep = Callable[[dict[str, str]], dict[str, str] | None]
OTHERS = "_others"
_NAMES = ("function", "version")


class _View:
    """A registry as one reader may see it: samples filtered and relabelled, samples
    that end up with the same labels summed (counters, histogram buckets and the
    concurrency gauges all add up)."""

    def __init__(self, registry: CollectorRegistry, keep: Keep) -> None:
        self._registry = registry
        self._keep = keep

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for sample in family.samples:
                labels = self._keep(dict(sample.labels))
                if labels is None:
                    continue
                key = (sample.name, tuple(labels.items()))
                sums[key] = sums.get(key, 0.0) + sample.value
            if not sums:
                continue
            shown = Metric(family.name, family.documentation, family.type, family.unit)
            for (name, pairs), value in sums.items():
                shown.add_sample(name, dict(pairs), value)
            yield shown


def _everything(labels: dict[str, str]) -> dict[str, str] | None:
    return labels


class MetricsEndpoint:
    def __init__(
        self,
        registry: CollectorRegistry,
        token: str | None = None,
        public_accounts: frozenset[str] = frozenset(),
        authorize: Callable[[Caller], None] | None = None,
    ) -> None:
        """``token``: the operator's bearer token; ``public_accounts``: accounts whose
        series an unsigned scrape shows; ``authorize``: raises AccessDeniedError unless a
        signed caller may read its account's metrics."""
        self._registry = registry
        self._token = token
        self._public = public_accounts
        self._authorize = authorize

    def _unsigned(self, labels: dict[str, str]) -> dict[str, str] | None:
        account = labels.get("account")
        if account is None or account in self._public:
            return labels
        summed = {**labels, "account": OTHERS}
        for name in _NAMES:
            if name in summed:
                summed[name] = ""
        return summed

    def _keep(self, request: Request, authenticate: Callable[[Request], Caller]) -> Keep:
        raw = request.header("authorization")
        if raw.startswith("Bearer "):
            if self._token is None or not hmac.compare_digest(
                raw.removeprefix("Bearer ").strip().encode(), self._token.encode()
            ):
                raise UnknownKeyError("The security token included in the request is invalid.")
            return _everything
        if raw or "X-Amz-Signature=" in request.query:
            caller = authenticate(request)
            if self._authorize is not None:
                self._authorize(caller)
            account = caller.account_id

            def mine(labels: dict[str, str]) -> dict[str, str] | None:
                return labels if labels.get("account") == account else None

            return mine
        return self._unsigned

    async def scrape(self, request: Request, authenticate: Callable[[Request], Caller]) -> Response:
        if request.method != "GET":
            raise UnknownOperationError(f"Unknown operation {request.method} {request.path}")
        view: Any = _View(self._registry, self._keep(request, authenticate))
        # The classic text format unless the scraper asks for OpenMetrics in Accept.
        encode, content_type = choose_encoder(request.header("accept"))
        return Response(200, [("Content-Type", content_type)], encode(view))

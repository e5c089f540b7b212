"""``GET /metrics``: the Prometheus scrape, unsigned (docs/adr/0010-metrics.md).

Prometheus scrapers do not speak SigV4, so this route is served before authentication,
like the presigned code download. It only serializes: the metrics are recorded by the
components that know them, into the registry handed in here.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from kindling.errors import UnknownOperationError
from kindling.httpd import Request, Response
from kindling.iam.sigv4 import Caller


class MetricsEndpoint:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    async def scrape(self, request: Request, _auth: Callable[[Request], Caller]) -> Response:
        if request.method != "GET":
            raise UnknownOperationError(f"Unknown operation {request.method} {request.path}")
        # The classic text format unless the scraper asks for OpenMetrics in Accept.
        encode, content_type = choose_encoder(request.header("accept"))
        return Response(200, [("Content-Type", content_type)], encode(self._registry))

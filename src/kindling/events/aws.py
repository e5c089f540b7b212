"""botocore clients made from the server process's standard AWS configuration: the
endpoint of each service (``AWS_ENDPOINT_URL_<SERVICE>``, or ``AWS_ENDPOINT_URL`` for
all; AWS itself when none is set) and credentials from the default chain (environment,
shared files, instance roles). Destinations (ADR 0028) and event source pollers (ADR
0034) reach the user's queues, topics and buses through these, so any AWS-compatible
endpoint the operator names serves both, and the same code path serves AWS itself.

One client per (service, region), made on first use from whichever thread asks;
botocore does not retry (the callers do, each with its own policy).
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.config import Config as BotoConfig
from botocore.session import Session, get_session

from kindling.limits import ASYNC_DELIVERY_TIMEOUTS_S


class AwsClients:
    def __init__(
        self,
        session: Session | None = None,
        timeouts_s: tuple[float, float] = ASYNC_DELIVERY_TIMEOUTS_S,
        pool: int = 10,
    ) -> None:
        """``timeouts_s``: connect, then read (longer than any long poll asked for);
        ``pool``: HTTP connections kept per client (one per concurrent call)."""
        self._session = session or get_session()
        self._timeouts = timeouts_s
        self._pool = pool
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            client = self._clients.get((service, region))
            if client is None:
                connect, read = self._timeouts
                client = self._session.create_client(
                    service,
                    region_name=region,
                    config=BotoConfig(
                        connect_timeout=connect,
                        read_timeout=read,
                        retries={"total_max_attempts": 1},
                        max_pool_connections=self._pool,
                    ),
                )
                self._clients[(service, region)] = client
            return client

"""Where a broker event source lives and how to log in to it: the operator's broker
registry (ADR 0041).

On AWS a RabbitMQ mapping names its broker by an Amazon MQ ARN, which Lambda resolves
through Amazon MQ, and its credentials by a Secrets Manager ARN (BASIC_AUTH) holding
``{"username": ..., "password": ...}``. kindling has neither service, so the operator
names both in one JSON file (``Config.brokers_path``: KINDLING_BROKERS_FILE, or
``brokers.json`` in the data dir)::

    {
      "brokers": {
        "arn:aws:mq:us-east-1:000000000000:broker:orders:b-1234": "amqp://mq.internal:5672"
      },
      "secrets": {
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:orders-AbCdEf":
          {"username": "lambda", "password": "..."}
      }
    }

A broker's value is its AMQP URL (``amqps://`` for TLS) without credentials or virtual
host: those come from the mapping (BASIC_AUTH's secret, VIRTUAL_HOST). The file is read
again at every connection, so an edit applies when a poller next reconnects, without a
restart; it holds passwords, so keep it 0600 like the data dir.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from kindling.errors import KindlingError


class BrokerConfigError(KindlingError):
    """The registry does not name a mapping's broker or secret (a LastProcessingResult,
    never an API error: the mapping was valid when it was made)."""


class BrokerDirectory:
    def __init__(self, path: Path) -> None:
        self._path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise BrokerConfigError(
                f"The broker registry {self._path} is unreadable: {exc}"
            ) from None
        return data if isinstance(data, dict) else {}

    def amqp_url(self, broker_arn: str, secret_arn: str | None, vhost: str) -> str:
        """The URL to connect to ``broker_arn``'s ``vhost`` as the secret's user."""
        data = self._read()
        base = (data.get("brokers") or {}).get(broker_arn)
        if isinstance(base, dict):
            base = base.get("url")
        if not isinstance(base, str) or not base:
            raise BrokerConfigError(
                f"Broker {broker_arn} is not in this kindling server's broker registry "
                f"({self._path})."
            )
        parts = urllib.parse.urlsplit(base)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        if secret_arn is not None:
            secret = (data.get("secrets") or {}).get(secret_arn)
            if not isinstance(secret, dict) or "username" not in secret:
                raise BrokerConfigError(
                    f"Secret {secret_arn} is not in this kindling server's broker registry "
                    f"({self._path})."
                )
            user = urllib.parse.quote(str(secret["username"]), safe="")
            password = urllib.parse.quote(str(secret.get("password", "")), safe="")
            netloc = f"{user}:{password}@{netloc}"
        path = "/" + urllib.parse.quote(vhost, safe="")
        return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, ""))

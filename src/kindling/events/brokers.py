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

A secret the file does not name is read from Secrets Manager's API
(``GetSecretValue``), reached like every AWS service kindling calls
(``AWS_ENDPOINT_URL_SECRETS_MANAGER`` or ``AWS_ENDPOINT_URL``, credentials from the
default chain): an operator who runs a Secrets-Manager-compatible store names nothing
twice.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kindling.errors import KindlingError


class BrokerConfigError(KindlingError):
    """The registry does not name a mapping's broker or secret (a LastProcessingResult,
    never an API error: the mapping was valid when it was made)."""


#: Reads a secret's JSON from Secrets Manager's API (blocking; raises on failure).
SecretReader = Callable[[str], dict[str, Any]]


def secrets_manager(clients: Any) -> SecretReader:
    """A SecretReader over ``AwsClients`` (``GetSecretValue``'s SecretString)."""

    def read(arn: str) -> dict[str, Any]:
        region = arn.split(":")[3]
        answer = clients.client("secretsmanager", region).get_secret_value(SecretId=arn)
        value = json.loads(answer.get("SecretString") or "{}")
        return value if isinstance(value, dict) else {}

    return read


class BrokerDirectory:
    def __init__(self, path: Path, read_secret: SecretReader | None = None) -> None:
        """``read_secret``: where a secret the file does not name is looked up."""
        self._path = path
        self._read_secret = read_secret

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
            if secret is None and self._read_secret is not None:
                secret = self._fetch(secret_arn)
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

    def _fetch(self, secret_arn: str) -> dict[str, Any]:
        assert self._read_secret is not None
        try:
            return self._read_secret(secret_arn)
        except Exception as exc:
            error = (getattr(exc, "response", None) or {}).get("Error") or {}
            why = error.get("Code") or type(exc).__name__
            raise BrokerConfigError(
                f"Secret {secret_arn} is not in this kindling server's broker registry "
                f"({self._path}) and Secrets Manager did not give it: {why}."
            ) from None

"""The operator's broker registry (events/brokers.py, ADR 0041): a broker ARN to its
AMQP URL, a secret ARN to its login, the virtual host from the mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kindling.events.brokers import BrokerConfigError, BrokerDirectory

BROKER = "arn:aws:mq:us-east-1:000000000000:broker:orders:b-1"
SECRET = "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq-AbCdEf"


def test_a_url_is_built_from_the_registry_and_the_mapping(tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    directory = BrokerDirectory(path)
    with pytest.raises(BrokerConfigError, match="is not in this kindling server's broker"):
        directory.amqp_url(BROKER, SECRET, "/")  # no file yet
    path.write_text(
        json.dumps(
            {
                "brokers": {BROKER: "amqps://mq.internal:5671"},
                "secrets": {SECRET: {"username": "lambda", "password": "p@ss/word"}},
            }
        )
    )
    assert directory.amqp_url(BROKER, SECRET, "/") == (
        "amqps://lambda:p%40ss%2Fword@mq.internal:5671/%2F"
    )
    assert directory.amqp_url(BROKER, None, "shop") == "amqps://mq.internal:5671/shop"
    with pytest.raises(BrokerConfigError, match=r"Secret .* is not in"):
        directory.amqp_url(BROKER, SECRET + "x", "/")
    path.write_text("{not json")
    with pytest.raises(BrokerConfigError, match="unreadable"):
        directory.amqp_url(BROKER, SECRET, "/")


def test_a_secret_the_file_does_not_name_is_read_from_secrets_manager(tmp_path: Path) -> None:
    path = tmp_path / "brokers.json"
    path.write_text(json.dumps({"brokers": {BROKER: "amqp://127.0.0.1:5672"}}))
    asked: list[str] = []

    def read(arn: str) -> dict[str, str]:
        asked.append(arn)
        if arn != SECRET:
            raise LookupError("ResourceNotFoundException")
        return {"username": "from-api", "password": "pw"}

    directory = BrokerDirectory(path, read)
    assert directory.amqp_url(BROKER, SECRET, "/") == "amqp://from-api:pw@127.0.0.1:5672/%2F"
    with pytest.raises(BrokerConfigError, match="Secrets Manager did not give it: LookupError"):
        directory.amqp_url(BROKER, SECRET + "x", "/")
    assert asked == [SECRET, SECRET + "x"]

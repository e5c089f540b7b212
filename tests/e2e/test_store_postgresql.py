"""``kindling serve --store postgresql://...``: the real server on a real PostgreSQL.

The store is the state: a second server on the same store sees what the first made. A
PostgreSQL that stops makes API calls fail with Lambda's ServiceException, promptly, and
the server serves again by itself once it is back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config as BotoConfig

from tests.engines import Postgres

from .support import (
    ROLE,
    Server,
    client_error,
    function_log,
    invoke_json,
    lambda_client,
    make_zip,
    wait_active,
    wait_for,
)


def _app(value: int) -> dict[str, Any]:
    return {
        "app.py": (
            "def handler(event, context):\n"
            f"    return {{'v': {value}, 'version': context.function_version, 'event': event}}\n"
        )
    }


def _client(server: Server) -> Any:
    """No retries: an error shows as the server gave it; a read timeout bounds a hang."""
    return lambda_client(
        server.endpoint,
        BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def _server(root: Path, name: str, url: str) -> Server:
    return Server(
        data_dir=root / name / "data",
        log_path=root / f"{name}.log",
        extra_args=("--store", url),
    )


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts; each must stop cleanly at its end."""
    started: list[Server] = []
    yield started
    for srv in started:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.stop_cleanly()


def _create(lam: Any, name: str, value: int = 1) -> None:
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(_app(value))},
    )
    wait_active(lam, name)


def test_a_server_on_postgresql_and_a_second_one_sharing_its_store(
    postgres: Postgres, tmp_path: Path, servers: list[Server]
) -> None:
    url = postgres.database()
    first = _server(tmp_path, "first", url)
    servers.append(first)
    first.start()
    lam = _client(first)

    _create(lam, "pg-fn")
    assert invoke_json(lam, "pg-fn", {"n": 1})[0] == {
        "v": 1,
        "version": "$LATEST",
        "event": {"n": 1},
    }
    lam.update_function_code(FunctionName="pg-fn", ZipFile=make_zip(_app(2)))
    lam.get_waiter("function_updated_v2").wait(FunctionName="pg-fn", WaiterConfig={"Delay": 1})
    assert invoke_json(lam, "pg-fn")[0]["v"] == 2
    assert lam.publish_version(FunctionName="pg-fn")["Version"] == "1"
    lam.create_alias(FunctionName="pg-fn", Name="live", FunctionVersion="1")
    payload, response = invoke_json(lam, "pg-fn", Qualifier="live")
    assert (payload["v"], response["ExecutedVersion"]) == (2, "1")
    _create(lam, "pg-gone")
    lam.delete_function(FunctionName="pg-gone")
    with client_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName="pg-gone")

    # a second server with a data dir of its own: the store alone tells it what exists
    second = _server(tmp_path, "second", url)
    servers.append(second)
    second.start()
    other = _client(second)
    names = [f["FunctionName"] for f in other.list_functions()["Functions"]]
    assert names == ["pg-fn"]
    versions = other.list_versions_by_function(FunctionName="pg-fn")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    assert other.get_alias(FunctionName="pg-fn", Name="live")["FunctionVersion"] == "1"
    with client_error("ResourceNotFoundException", 404):
        other.get_function(FunctionName="pg-gone")

    # and what the second one writes, the first one reads
    other.update_function_configuration(FunctionName="pg-fn", Description="from the second")
    assert lam.list_functions()["Functions"][0]["Description"] == "from the second"
    first.stop_cleanly()
    second.stop_cleanly()
    assert not (first.data_dir / "kindling.db").exists()  # the state is in PostgreSQL


def test_while_postgresql_is_down_calls_fail_as_service_exception_and_then_recover(
    tmp_path: Path, servers: list[Server]
) -> None:
    engine = Postgres.create()  # its own: this test stops and starts it
    try:
        engine.start()
        srv = _server(tmp_path, "srv", engine.database())
        servers.append(srv)
        srv.start()
        lam = _client(srv)
        _create(lam, "steady")
        assert invoke_json(lam, "steady")[0]["v"] == 1

        engine.stop()
        for call in (
            lambda: lam.list_functions(),
            lambda: lam.create_function(
                FunctionName="during",
                Runtime="python3.11",
                Handler="app.handler",
                Role=ROLE,
                Code={"ZipFile": make_zip(_app(3))},
            ),
            lambda: lam.invoke(FunctionName="steady", InvocationType="Event", Payload=b"{}"),
        ):
            began = time.monotonic()
            with client_error("ServiceException", 500) as info:
                call()
            took = time.monotonic() - began
            assert took < 30, f"a call took {took:.1f} s while the store was down"
            body = info.value.response["Error"]
            assert body["Message"] == "The AWS Lambda service encountered an internal error."
        assert srv.proc is not None and srv.proc.poll() is None, srv.log_tail()

        engine.start()
        names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
        assert names == ["steady"]
        assert invoke_json(lam, "steady", {"after": True})[0]["event"] == {"after": True}
        lam.invoke(FunctionName="steady", InvocationType="Event", Payload=json.dumps({}).encode())
        # two synchronous runs and the queued one, stored and run after the outage
        wait_for(lambda: function_log(srv.endpoint, "steady").count("REPORT RequestId") == 3, 60)
        _create(lam, "after")
        srv.stop_cleanly()
        assert "store" in srv.log_tail(20000) and "unavailable" in srv.log_tail(20000)
    finally:
        engine.remove()

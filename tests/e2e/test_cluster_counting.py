"""Counting in Redis (ADR 0019) through real servers: two ``kindling serve`` processes
share one Redis with ``--counting`` and so one count of concurrent executions.

Each server here has its own data dir and store (the shared store is another part of
the cluster); the function and its reserved concurrency are created on both, as a
shared store would show them to both.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from tests.engines import RedisServer

from .support import (
    ROLE,
    Server,
    function_log,
    lambda_client,
    make_zip,
    wait_active,
    wait_for,
)

TIMED = {
    "app.py": (
        "import time\n"
        "def handler(e, c):\n"
        "    start = time.time()\n"
        "    time.sleep(e.get('s', 0))\n"
        "    return {'start': start, 'end': time.time()}\n"
    )
}
NAME = "counted"
RESERVED = 3


def _client(endpoint: str) -> Any:
    return lambda_client(
        endpoint,
        BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=120,
            max_pool_connections=32,
        ),
    )


@pytest.fixture
def two_servers(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Server]]:
    servers = [
        Server(
            data_dir=tmp_path / f"data{i}",
            log_path=tmp_path / f"server{i}.log",
            extra_args=("--counting", redis_server.url(db=1)),
        )
        for i in range(2)
    ]
    engine = redis.Redis.from_url(redis_server.url(db=1))
    engine.flushdb()
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.stop_cleanly()
    # servers that stopped cleanly gave back every slot they held (a killed one's
    # slots are left to their leases, so they may still be there)
    if all(server.proc is not None and server.proc.returncode == 0 for server in servers):
        held = {key: engine.zcard(key) for key in engine.keys("kindling:fn:*")}
        assert not any(held.values()), held
    engine.close()


def _deploy(lam: Any) -> None:
    lam.create_function(
        FunctionName=NAME,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(TIMED)},
        Timeout=300,
    )
    wait_active(lam, NAME)
    lam.put_function_concurrency(FunctionName=NAME, ReservedConcurrentExecutions=RESERVED)


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_two_servers_share_one_reserved_concurrency(two_servers: list[Server]) -> None:
    clients = [_client(server.endpoint) for server in two_servers]
    for lam in clients:
        _deploy(lam)
    outcomes: list[tuple[int, str, Any]] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        lam = clients[i % 2]
        try:
            response = lam.invoke(FunctionName=NAME, Payload=b'{"s": 2.0}')
            body = json.loads(response["Payload"].read())
            with lock:
                outcomes.append((i % 2, "ok", (body["start"], body["end"])))
        except ClientError as exc:
            error = (exc.response["Error"]["Code"], exc.response.get("Reason"))
            status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
            with lock:
                outcomes.append((i % 2, "error", (status, *error)))

    callers = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(180)
    assert len(outcomes) == 12, outcomes
    spans = [o[2] for o in outcomes if o[1] == "ok"]
    refusals = {o[2] for o in outcomes if o[1] == "error"}
    assert spans, outcomes
    # the invariant is what ran at once (a caller the loaded machine delayed past the
    # others' ends may be served after them); and the excess was refused, with the reason
    assert _max_overlap(spans) <= RESERVED, spans
    assert refusals == {
        (429, "TooManyRequestsException", "ReservedFunctionConcurrentInvocationLimitExceeded")
    }, outcomes
    # every slot was given back: the whole reservation serves again, on either server
    again: list[str] = []

    def short(i: int) -> None:
        response = clients[i % 2].invoke(FunctionName=NAME, Payload=b'{"s": 0.5}')
        again.append("error" if "FunctionError" in response else "ok")

    threads = [threading.Thread(target=short, args=(i,)) for i in range(RESERVED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert again == ["ok"] * RESERVED


def _concurrent(endpoint: str) -> float:
    """The server's ConcurrentExecutions gauge of the function (the cluster's count)."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("kindling_concurrent_executions{") and f'function="{NAME}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_killed_servers_slots_come_back_to_the_other(two_servers: list[Server]) -> None:
    """kill -9 of a server while it runs invocations: its slots are leases nobody renews,
    so the other server gets the reservation back within one lease (10 s)."""
    clients = [_client(server.endpoint) for server in two_servers]
    for lam in clients:
        _deploy(lam)

    def hold() -> None:
        with contextlib.suppress(ClientError, BotoCoreError):  # the server is killed under it
            clients[0].invoke(FunctionName=NAME, Payload=b'{"s": 300}')

    holders = [threading.Thread(target=hold, daemon=True) for _ in range(RESERVED)]
    for holder in holders:
        holder.start()
    wait_for(lambda: _concurrent(two_servers[0].endpoint) == RESERVED, timeout=60)
    with pytest.raises(ClientError) as info:
        clients[1].invoke(FunctionName=NAME, Payload=b"{}")
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    two_servers[0].kill_hard()

    def served() -> bool:
        try:
            return clients[1].invoke(FunctionName=NAME, Payload=b"{}")["StatusCode"] == 200
        except ClientError as exc:
            assert exc.response.get("Reason") == (
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            ), exc.response
            return False

    wait_for(served, timeout=60, interval=0.5)
    for holder in holders:
        holder.join(30)


def test_redis_down_is_a_service_exception_and_recovery_needs_no_restart(
    tmp_path: Path,
    redis_server: RedisServer,  # not used: it says why, when redis-server is missing
) -> None:
    """While Redis is down a synchronous invoke is Lambda's ServiceException and an Event
    invocation is still accepted (202: it is stored, not counted yet); when Redis is back
    (empty: a restart without persistence) both recover with no restart of kindling,
    and every accepted event runs."""
    engine = RedisServer(tmp_path / "redis")
    engine.start()
    server = Server(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        env={"KINDLING_COUNTING": engine.url()},
    )
    try:
        server.start()
        lam = _client(server.endpoint)
        _deploy(lam)
        assert lam.invoke(FunctionName=NAME, Payload=b"{}")["StatusCode"] == 200
        engine.stop()
        with pytest.raises(ClientError) as info:
            lam.invoke(FunctionName=NAME, Payload=b"{}")
        assert info.value.response["Error"]["Code"] == "ServiceException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        accepted = []
        for _ in range(5):
            response = lam.invoke(FunctionName=NAME, InvocationType="Event", Payload=b"{}")
            assert response["StatusCode"] == 202
            accepted.append(response["ResponseMetadata"]["RequestId"])
        time.sleep(1.5)  # the queue tries them, and backs off
        engine.start()

        def served() -> bool:
            try:
                return lam.invoke(FunctionName=NAME, Payload=b"{}")["StatusCode"] == 200
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "ServiceException", exc.response
                return False

        wait_for(served, timeout=60, interval=0.2)

        def all_ran() -> bool:
            log = function_log(server.endpoint, NAME)
            return all(f"END RequestId: {request_id}" in log for request_id in accepted)

        wait_for(all_ran, timeout=120, interval=0.5)  # a platform fault backs off <= 8 s
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop_cleanly()
        engine.stop()

"""Faults a cluster must survive (issue 20), each under a steady load of synchronous and
Event invokes (tests/e2e/faultload.py): a worker killed with SIGKILL, one of two
control nodes killed with SIGKILL, PostgreSQL stopped and started again, Redis (the
control nodes' counting) killed and started again empty.

After each, with the load stopped:
- every Event invocation that was accepted (202) ran: its id reached the test's
  listener (none lost; duplicates allowed, at least once), and the store's queue
  is empty;
- every call that failed failed as Lambda fails (``ServiceException`` 500 or
  ``TooManyRequestsException`` 429), or could not connect to the node that was killed;
  none took longer than the function's timeout and the platform's slack;
- no concurrency leaked: each live control node counts 0 executions, GetAccountSettings
  reports the account's whole limit, a function with reserved concurrency R runs R at
  once and throttles more;
- no sandbox is left on a surviving worker once its keep-alive has passed (what the
  worker itself reports, not what a control node believes);
- the degraded window (first failure to first success again) is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from kindling.limits import COUNTING_LEASE_TTL_S
from tests.e2e.cluster import Topology, cluster
from tests.e2e.faultload import (
    ANSWER_BOUND_S,
    FUNCTION_TIMEOUT_S,
    HANDLER,
    Load,
    Sink,
    client,
    sink,
)
from tests.e2e.support import ROLE, make_zip, raw_request, wait_active, wait_for
from tests.engines import Postgres, RedisServer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

KEEP_ALIVE_S = 3
#: Every node's environment: a short fixed keep-alive, so orphans show within the test.
NODE_ENV = {"KINDLING_KEEP_ALIVE_S": str(KEEP_ALIVE_S), "KINDLING_KEEP_ALIVE_POLICY": "fixed"}
#: Reserved concurrency of the throttling check.
RESERVED = 2
#: How long the load runs before the fault, and at least after recovery.
STEADY_S = 4.0
#: Lambda's error shapes a call may end with during a fault.
LAMBDA_FAULTS = {("ServiceException", 500), ("TooManyRequestsException", 429)}


@pytest.fixture
def engine() -> Iterator[Postgres]:
    """A PostgreSQL of this test alone: some tests stop and start it."""
    found = Postgres.create()
    try:
        found.start()
        yield found
    finally:
        found.remove()


def _topology(root: Path, url: str, counting: str | None = None) -> Any:
    """Issue 20's test cluster: two control nodes and three workers (counting in
    Redis at ``counting``, if given)."""
    return cluster(
        root,
        url,
        controls=2,
        workers=3,
        control_args=("--counting", counting) if counting else (),
        env=NODE_ENV,
        # the sandboxes reach the test's listener on the host side, and nothing else
        worker_args=("--egress-allow", "{gateway}/32"),
    )


def _deploy(topo: Topology, sink_url: str) -> str:
    """The function under load, created through control node 0; every control node
    serves it (they share its code through the store, ADR 0024)."""
    lam = client(topo.endpoints[0])
    name = "faulty"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Timeout=FUNCTION_TIMEOUT_S,
        Environment={"Variables": {"SINK": sink_url}},
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    wait_active(lam, name)
    return name


def _account_executions(endpoint: str) -> float:
    text = raw_request(endpoint, "GET", "/metrics").body.decode()
    found = re.search(r"^kindling_account_concurrent_executions\{[^}]*\} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _burst(endpoint: str, name: str, count: int) -> list[str]:
    """``count`` synchronous invokes at once (each sleeps 2 s); how each ended."""
    outcomes: list[str] = []
    barrier = threading.Barrier(count)
    lock = threading.Lock()

    def one() -> None:
        lam = client(endpoint)
        barrier.wait()
        try:
            lam.invoke(FunctionName=name, Payload=b'{"sleep": 2}')
            outcome = "ok"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ANSWER_BOUND_S + 60)
    return outcomes


def _queued(engine: Postgres, url: str) -> int:
    """Event invocations still in the store's queue (run, retried, or waiting)."""
    return int(engine.psql("SELECT count(*) FROM async_events", urlsplit(url).path[1:]))


def _check_after(
    topo: Topology,
    load: Load,
    found: Sink,
    name: str,
    fault_at: float,
    dead: set[str],
    what: str,
    engine: Postgres,
    held_s: float = 0.0,
) -> None:
    """``held_s``: how long after the fault a slot may still be held by design (a count
    in Redis: a release that could not reach it ends with its lease)."""
    # every failure is Lambda's, or a connection to a node that is gone; none hung
    for call in load.failures():
        if call.outcome == "no-connection":
            assert call.endpoint in dead and call.ended >= fault_at, (call, topo.logs())
        else:
            assert (call.outcome, call.status) in LAMBDA_FAULTS, (call, topo.logs())
    slowest = max(c.ended - c.started for c in load.calls)
    assert slowest < ANSWER_BOUND_S, f"a call took {slowest:.1f} s"

    # no accepted event lost
    accepted = load.accepted()
    assert accepted, load.summary()
    try:
        wait_for(lambda: accepted <= set(found.seen), timeout=240, interval=0.5)
    except AssertionError:
        missing = accepted - set(found.seen)
        raise AssertionError(
            f"{len(missing)} of {len(accepted)} accepted events never ran\n{topo.logs()}"
        ) from None
    duplicates = sum(1 for i in accepted if found.seen[i] > 1)
    # and none is left in the queue (nor a retry that would take a slot below)
    wait_for(lambda: _queued(engine, topo.store_url) == 0, timeout=240, interval=0.5)

    # no concurrency leaked: with reserved concurrency R, R run at once on each live
    # control node and more are throttled; then each counts 0 executions. (In that
    # order: a count in Redis sheds the slots whose leases ran out at its next
    # admission, and a node's gauges show the counts its last call was answered.)
    live = [c.endpoint for c in topo.controls if topo.alive(c)]
    last_failure = max([fault_at, *(c.ended for c in load.failed(fault_at, dead))])
    time.sleep(max(0.0, last_failure + held_s - time.monotonic()))
    lam = client(live[0])
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=RESERVED)
    try:
        for endpoint in live:
            wait_for(
                lambda e=endpoint: (
                    client(e)
                    .get_function_concurrency(FunctionName=name)
                    .get("ReservedConcurrentExecutions")
                    == RESERVED
                ),
                timeout=30,
            )
            # on each node: each counts on its own, or all of them in Redis
            assert _burst(endpoint, name, RESERVED) == ["ok"] * RESERVED, topo.logs()
            over = _burst(endpoint, name, RESERVED + 2)
            assert "TooManyRequestsException" in over, over
            assert over.count("ok") >= RESERVED - 1, over
    finally:
        lam.delete_function_concurrency(FunctionName=name)

    for endpoint in live:
        try:
            wait_for(lambda e=endpoint: _account_executions(e) == 0, timeout=120, interval=0.5)
        except AssertionError:
            text = raw_request(endpoint, "GET", "/metrics").body.decode()
            gauges = [line for line in text.splitlines() if "concurrent_executions{" in line]
            raise AssertionError(f"{endpoint} still counts executions: {gauges}") from None
        limit = client(endpoint).get_account_settings()["AccountLimit"]
        assert limit["UnreservedConcurrentExecutions"] == limit["ConcurrentExecutions"]

    # no sandbox left on a surviving worker once its keep-alive has passed
    for worker, server in topo.workers.items():
        if topo.alive(server):
            try:
                wait_for(
                    lambda w=worker: topo.worker_capacity(w)["memory_used_mb"] == 0,
                    timeout=KEEP_ALIVE_S + 60,
                    interval=0.5,
                )
            except AssertionError:
                views = [topo.status(i) for i, c in enumerate(topo.controls) if topo.alive(c)]
                raise AssertionError(
                    f"{worker} still holds sandboxes: {topo.worker_capacity(worker)}; "
                    f"control nodes: {views}\n{topo.logs()}"
                ) from None

    window = load.degraded(fault_at, dead)
    shown = "none" if window is None else f"{window[0]:.2f} s .. {window[1]:.2f} s after it"
    print(
        f"\n{what}: degraded window {shown}; slowest call ending after it "
        f"{load.slowest(fault_at):.2f} s; {len(load.calls)} calls "
        f"({load.summary()}); {len(accepted)} events accepted, all ran "
        f"({duplicates} more than once)"
    )


def _steady(load: Load, timeout: float = 180.0) -> None:
    """Until the load has been served for STEADY_S with no failure: from its first
    answer on (the function's first cold start may take long on a loaded machine)."""
    began = time.monotonic()
    wait_for(lambda: any(c.ok and c.started >= began for c in load.calls), timeout=timeout)
    time.sleep(STEADY_S)
    assert not load.failures(), load.summary()


def _recover(load: Load, since: float, dead: set[str], timeout: float = 180.0) -> None:
    """Until the load has been served for STEADY_S with no failure after ``since``."""

    def served() -> bool:
        now = time.monotonic()
        failed = load.failed(since, dead)
        quiet_since = max([since, *(c.ended for c in failed)])
        recent = [c for c in load.calls if c.ok and c.kind == "sync" and c.started > quiet_since]
        return now - quiet_since > STEADY_S and bool(recent)

    wait_for(served, timeout=timeout, interval=0.2)


@dataclass(frozen=True)
class Fault:
    """What a test did to the cluster under load, for the checks after it."""

    #: when it began (time.monotonic)
    at: float
    #: what the printed line calls it
    what: str
    #: the endpoints it killed (calls to them may fail to connect)
    dead: frozenset[str] = frozenset()
    #: for an engine's outage, how long it was down: a call in it met ServiceException
    down_for: float | None = None


def _under_load(
    root: Path,
    url: str,
    engine: Postgres,
    cause: Callable[[Topology, Load], Fault],
    counting: str | None = None,
    held_s: float = 0.0,
) -> None:
    """Issue 20's cluster serving the load steadily, then ``cause`` (which returns once
    the load is served again), then, with the load stopped, the checks of
    ``_check_after`` (``held_s``: see there)."""
    with (
        _topology(root, url, counting) as topo,
        sink(topo.net.gateway) as found,
    ):
        name = _deploy(topo, found.url)
        load = Load(topo.endpoints, name)
        load.start()
        try:
            _steady(load)
            fault = cause(topo, load)
        finally:
            load.stop()
        if fault.down_for is not None:
            end = fault.at + fault.down_for
            during = [c for c in load.calls if fault.at <= c.started <= end]
            assert any(c.outcome == "ServiceException" for c in during), load.summary()
        dead = set(fault.dead)
        _check_after(topo, load, found, name, fault.at, dead, fault.what, engine, held_s)


def _outage(load: Load, stop: Callable[[], None], start: Callable[[], None], what: str) -> Fault:
    """An engine stopped for STEADY_S and started again, then the load served again;
    ``what`` is formatted with how long it was down."""
    fault_at = time.monotonic()
    stop()
    time.sleep(STEADY_S)
    down_for = time.monotonic() - fault_at
    start()
    _recover(load, fault_at + down_for, set())
    return Fault(fault_at, what.format(down_for), down_for=down_for)


def test_a_worker_killed_under_load(postgres: Postgres, tmp_path: Path) -> None:
    def kill_a_worker(topo: Topology, load: Load) -> Fault:
        used = {w: topo.worker_capacity(w)["memory_used_mb"] for w in topo.workers}
        victim = max(used, key=lambda w: used[w])  # the one holding most, by its own word
        assert used[victim] > 0, used
        fault_at = time.monotonic()
        topo.workers[victim].kill_hard()
        _recover(load, fault_at, set())
        return Fault(fault_at, f"worker {victim} killed")

    _under_load(tmp_path, postgres.database(), postgres, kill_a_worker)


def test_one_of_two_control_nodes_killed_under_load(postgres: Postgres, tmp_path: Path) -> None:
    def kill_control_0(topo: Topology, load: Load) -> Fault:
        fault_at = time.monotonic()
        topo.controls[0].kill_hard()  # the one the function was created through
        _recover(load, fault_at, {topo.endpoints[0]})
        return Fault(fault_at, "control node 0 of 2 killed", frozenset({topo.endpoints[0]}))

    _under_load(tmp_path, postgres.database(), postgres, kill_control_0)


def test_postgresql_restarted_under_load(engine: Postgres, tmp_path: Path) -> None:
    def restart_postgresql(_topo: Topology, load: Load) -> Fault:
        return _outage(load, engine.stop, engine.start, "PostgreSQL down {:.1f} s")

    _under_load(tmp_path, engine.database(), engine, restart_postgresql)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone: it is killed and started again."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: `make test` installs it")
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    found = RedisServer(tmp_path / "redis")
    found.start()
    try:
        yield found
    finally:
        found.stop()


def test_redis_restarted_empty_under_load(
    postgres: Postgres, redis: RedisServer, tmp_path: Path
) -> None:
    def restart_redis(_topo: Topology, load: Load) -> Fault:
        # SIGKILL, no persistence: it comes back empty
        return _outage(load, redis.stop, redis.start, "Redis down {:.1f} s, back empty")

    _under_load(
        tmp_path,
        postgres.database(),
        postgres,
        restart_redis,
        counting=redis.url(),
        # a release lost in the outage ends with its lease; and the renewal that finds
        # Redis empty adds back what the node held as it began, releases racing it
        # included: those end one lease after that
        held_s=2 * COUNTING_LEASE_TTL_S,
    )

"""Accepted Event invocations through the real server under faults: a platform fault (a
runtime zygote killed while sandboxes are built) loses none, a throttled backlog waits for
freed concurrency instead of polling and is not counted as client throttles, and an event
of a deleted function is dropped, counted and logged with its request id."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from .support import (
    ROLE,
    ClientFactory,
    Deploy,
    Server,
    function_log,
    make_zip,
    wait_active,
    wait_for,
)
from .test_metrics import Samples, scrape

RUNS = """\
import time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    print("RAN " + context.aws_request_id)
"""


def _zygotes(server_pid: int) -> list[int]:
    """The server's runtime zygotes: its children serving forks (``nsinit.py --serve``)."""
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{server_pid}/task"):
            with contextlib.suppress(OSError):
                for child in Path(f"/proc/{server_pid}/task/{task}/children").read_text().split():
                    with contextlib.suppress(OSError):
                        cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                        if any(part.endswith(b"nsinit.py") for part in cmd) and b"--serve" in cmd:
                            found.append(int(child))
    return found


def _ran(server: Server, name: str) -> set[str]:
    return {
        line.split()[1]
        for line in function_log(server.endpoint, name).splitlines()
        if line.startswith("RAN ")
    }


def _total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, found), value in samples.items()
        if sample == name and all(dict(found).get(k) == v for k, v in labels.items())
    )


def test_events_survive_zygotes_killed_while_sandboxes_are_built(
    private_server: Server, make_client: ClientFactory
) -> None:
    private_server.start()
    lam: Any = make_client(endpoint=private_server.endpoint)
    lam.create_function(
        FunctionName="steady",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": RUNS})},
    )
    wait_active(lam, "steady")
    lam.invoke(FunctionName="steady", Payload=b"{}")  # the account's zygotes start on first use
    assert private_server.proc is not None
    pid = private_server.proc.pid
    wait_for(lambda: _zygotes(pid), timeout=30)
    stop = threading.Event()
    kills: list[int] = []

    def killer() -> None:  # what the finding did: kill -9 of zygotes under load
        while not stop.is_set():
            for zygote in _zygotes(pid):
                with contextlib.suppress(OSError):
                    os.kill(zygote, signal.SIGKILL)
                    kills.append(zygote)
            time.sleep(0.005)

    thread = threading.Thread(target=killer)
    thread.start()
    accepted = []
    try:
        # bursts of events (each sleeps, so a burst needs new sandboxes) until a sandbox
        # start has failed for the killing: the fault is certain to have hit
        while len(accepted) < 400:
            for _ in range(20):
                answer = lam.invoke(
                    FunctionName="steady", InvocationType="Event", Payload=b'{"sleep": 0.3}'
                )
                assert answer["StatusCode"] == 202
                accepted.append(answer["ResponseMetadata"]["RequestId"])
            time.sleep(1)
            if "could not be built" in private_server.log_path.read_text(errors="replace"):
                break
    finally:
        stop.set()
        thread.join()
    assert kills, "no zygote was killed: the fault was not injected"
    log = private_server.log_path.read_text(errors="replace")
    assert "could not be built" in log, "no sandbox start failed: the fault did not hit"
    wait_for(lambda: _ran(private_server, "steady") >= set(accepted), timeout=120, interval=0.5)
    _, found = scrape(private_server)
    assert not _total(found, "kindling_async_events_dropped_total")
    assert _total(found, "kindling_async_retries_total", cause="platform_error") >= 1


def test_a_throttled_backlog_waits_for_freed_slots(
    server: Server, lam: Any, deploy: Deploy
) -> None:
    name = deploy({"app.py": RUNS})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    events = 30
    started = time.monotonic()
    accepted = [
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"sleep": 0.1}')[
            "ResponseMetadata"
        ]["RequestId"]
        for _ in range(events)
    ]
    wait_for(lambda: _ran(server, name) >= set(accepted), timeout=180, interval=0.5)
    elapsed = time.monotonic() - started
    _, found = scrape(server)
    # no client got a 429: none is a throttle; they are the queue's internal retries
    assert not _total(found, "kindling_throttles_total", function=name)
    retried = _total(found, "kindling_async_retries_total", function=name, cause="throttled")
    # each event is refused about once and then woken by a freed slot; its backoff can
    # add one more refusal per doubling of its wait. Polling each second (the bug) costs
    # about one refusal per waiting event per second: ~events**2 / 2 here.
    assert 1 <= retried <= events * (2 + math.log2(1 + elapsed)), (retried, elapsed)


def test_an_event_of_a_deleted_function_is_dropped_counted_and_logged(
    server: Server, lam: Any, deploy: Deploy
) -> None:
    name = deploy({"app.py": RUNS}, Timeout=30)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    where = {"account": "000000000000", "reason": "not_found"}
    before = _total(scrape(server)[1], "kindling_async_events_dropped_total", **where)
    holder = threading.Thread(
        target=lambda: lam.invoke(FunctionName=name, Payload=json.dumps({"sleep": 5}).encode())
    )
    holder.start()  # holds the only slot: the event waits for it
    try:
        wait_for(
            lambda: _total(scrape(server)[1], "kindling_concurrent_executions", function=name),
            timeout=20,
        )
        event = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
        request_id = event["ResponseMetadata"]["RequestId"]
        wait_for(
            lambda: _total(
                scrape(server)[1], "kindling_async_retries_total", function=name, cause="throttled"
            ),
            timeout=20,
        )
        lam.delete_function(FunctionName=name)
    finally:
        holder.join(60)
    wait_for(
        lambda: _total(scrape(server)[1], "kindling_async_events_dropped_total", **where) > before,
        timeout=30,
    )
    wait_for(lambda: request_id in server.log_tail(20000), timeout=10)

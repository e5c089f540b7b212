"""SIGTERM to a worker host drains it, as systemd's stop and the kubelet send it
(deploy/, ADR 0023): the control nodes hear "draining" and place nothing new on it, the
invocation it is running finishes, and then it exits 0; a second signal stops it at once.
"""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.support import ROLE, Server, lambda_client, make_zip, wait_active
from tests.e2e.test_cluster import Cluster, _control, _stop, _worker

HANDLER = b"""
import secrets, time
TOKEN = secrets.token_hex(8)
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"token": TOKEN}
"""


def _deploy(endpoint: str, name: str) -> Any:
    lam = lambda_client(endpoint)
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
        Timeout=60,
    )
    wait_active(lam, name)
    return lam


def _call(lam: Any, name: str, sleep: float, into: list[Any]) -> None:
    try:
        answer = lam.invoke(FunctionName=name, Payload=json.dumps({"sleep": sleep}))
        into.append((answer.get("FunctionError"), json.loads(answer["Payload"].read())))
    except Exception as exc:
        into.append(exc)


@contextmanager
def _one_worker(tmp_path: Path) -> Iterator[tuple[Server, Server, Cluster]]:
    """A control node and one worker host ``w1`` it has heard from: (the control node,
    the worker, the cluster); both stopped after."""
    secret = secrets.token_hex(32)
    control = _control(tmp_path, secret)
    workers: list[Server] = []
    try:
        worker = _worker(tmp_path, "w1", control, secret)
        workers.append(worker)
        hosts = Cluster(control, {"w1": worker}, secret)
        hosts.wait_for({"w1"})
        yield control, worker, hosts
    finally:
        _stop(control, workers)


def test_sigterm_lets_the_running_invocation_finish_then_exits(tmp_path: Path) -> None:
    with _one_worker(tmp_path) as (control, worker, hosts):
        lam = _deploy(control.endpoint, "slow")
        warm: list[Any] = []
        _call(lam, "slow", 0, warm)
        assert warm[0][0] is None, (warm, hosts.logs())
        results: list[Any] = []
        running = threading.Thread(target=_call, args=(lam, "slow", 4, results))
        running.start()
        time.sleep(1.0)  # the invocation has reached the warm sandbox
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not any(w["draining"] for w in hosts.status()):
            assert worker.proc.poll() is None, f"it stopped at once\n{hosts.logs()}"
            assert time.monotonic() < deadline, hosts.status()
            time.sleep(0.1)
        running.join(60)
        assert results and results[0] == (None, {"token": warm[0][1]["token"]}), (
            results,
            hosts.logs(),
        )
        assert worker.proc.wait(30) == 0, worker.log_tail()  # drained, then left
        assert "drained" in worker.log_tail()


def test_a_second_sigterm_stops_a_draining_worker_at_once(tmp_path: Path) -> None:
    with _one_worker(tmp_path) as (control, worker, hosts):
        lam = _deploy(control.endpoint, "slower")
        results: list[Any] = []
        running = threading.Thread(target=_call, args=(lam, "slower", 25, results))
        running.start()
        deadline = time.monotonic() + 30
        while [w["sandboxes"] for w in hosts.status()] != [1]:
            assert time.monotonic() < deadline, hosts.status()
            time.sleep(0.1)
        time.sleep(1.0)
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert worker.proc.poll() is None  # draining: the 25 s invocation still runs
        stopped = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(20) == 0, worker.log_tail()
        assert time.monotonic() - stopped < 15  # not the invocation's 25 s
        running.join(90)
        assert results, "the cut invocation never answered"
        cut = results[0]
        assert isinstance(cut, Exception) or cut[0] is not None, cut  # an error, not a result

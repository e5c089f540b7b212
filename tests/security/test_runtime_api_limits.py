"""A sandbox attacks the server through its own Runtime API (127.0.0.1:9001): it can use
only what it was given (RLIMIT_NOFILE 1024 on every start path, a few connections, 6 MB
per body, a bounded number of body bytes at once, a bounded head), and while it tries,
the server stays small and up, the victim answers and ``/metrics`` scrapes.

Was: 19,990 connections took the server to its descriptor limit, unfinished 31 MB bodies
grew it by 1.2 GB, one 300 MB header stalled its loop for 85 s, and a 20 MB ``/error``
body was handed back to the caller.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from kindling import limits
from kindling.runtimes.catalog import find_python
from tests.e2e.support import ROLE, make_zip, wait_active, wait_for

from .conftest import PRELUDE, Fleet, Victim, check_victim

ATTACK = """
import resource
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)

def connect():
    return socket.create_connection((HOST, int(PORT)), timeout=10)

def closed_by_server(sock):
    sock.setblocking(False)
    try:
        return True if sock.recv(4096) is not None else False  # 503 and EOF, or EOF
    except BlockingIOError:
        return False
    except OSError:
        return True

def flood(event):
    socks, failure = [], None
    try:
        while len(socks) < event["connections"]:
            socks.append(connect())
    except OSError as exc:
        failure = errname(exc.errno) if exc.errno else type(exc).__name__
    time.sleep(1.0)  # the server has seen them all
    open_ = [s for s in socks if not closed_by_server(s)]
    time.sleep(event.get("hold", 0))  # while the test looks at the server
    count = len(socks)
    for s in socks:
        s.close()
    return {"opened": count, "failure": failure, "left_open": len(open_)}

def head(event):
    sock = connect()
    sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\nX-Big: ")
    chunk, sent, error = b"v" * 65536, 0, None
    try:
        while sent < event["bytes"]:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError as exc:
        error = errname(exc.errno) if exc.errno else type(exc).__name__
    try:
        answer = sock.recv(100).decode("latin-1")
    except OSError as exc:
        answer = errname(exc.errno)
    return {"sent": sent, "error": error, "answer": answer}

def bodies(event):
    chunk = b"b" * (1 << 20)
    socks, refused = [], 0
    for _ in range(event["connections"]):
        sock = connect()
        sock.sendall(
            b"POST /2018-06-01/runtime/init/error HTTP/1.1\\r\\nHost: x\\r\\n"
            b"Content-Length: %d\\r\\n\\r\\n" % event["announce"]
        )
        try:
            for _ in range(event["send_mb"]):
                sock.sendall(chunk)
        except OSError:
            pass
        socks.append(sock)
    time.sleep(1.0)
    for sock in socks:
        sock.settimeout(0.2)
        try:
            refused += sock.recv(100).startswith(b"HTTP/1.1 413 ")
        except OSError:
            pass
    time.sleep(event.get("hold", 0))
    for sock in socks:
        sock.close()
    return {"refused": refused}

def own_error(event, context):
    body = b'{"errorMessage": "' + b"e" * event["bytes"] + b'"}'
    sock = connect()
    path = "/2018-06-01/runtime/invocation/%s/error" % context.aws_request_id
    sock.sendall(
        b"POST %s HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: %d\\r\\n\\r\\n"
        % (path.encode(), len(body))
    )
    try:
        sock.sendall(body)
    except OSError:
        pass
    answer = sock.recv(100).decode("latin-1")
    return {"answer": answer}

def handler(event, context):
    kind = event.get("kind")
    if kind == "limits":
        return {"nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE))}
    if kind == "flood":
        return flood(event)
    if kind == "head":
        return head(event)
    if kind == "bodies":
        return bodies(event)
    if kind == "error":
        return own_error(event, context)
    return {"ok": True}
"""

#: How the sandbox is started: from the account's zygote (the default for Python), by
#: exec (an environment variable that changes interpreter start-up turns the zygote
#: off), or as a copy restored from a SnapStart snapshot.
START_PATHS = ("zygote", "exec", "snapstart")


def _deploy(fleet: Fleet, backend: str, path: str) -> tuple[str, str]:
    """The attacker for a start path; (name, qualifier)."""
    if path == "zygote":
        return fleet.attacker("rapi", backend, ATTACK, Timeout=120), "$LATEST"
    if path == "exec":
        env = {"Variables": {"PYTHONHASHSEED": "0"}}
        return fleet.attacker("rapi-exec", backend, ATTACK, Timeout=120, Environment=env), "$LATEST"
    if find_python("3.12") is None:
        pytest.skip("SnapStart needs python3.12, not on this host")
    key = ("rapi-snap", backend)
    name = fleet.deployed.get(key)
    if name is None:
        name = f"sec-rapi-snap-{backend}-{uuid.uuid4().hex[:6]}"
        fleet.lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": PRELUDE + ATTACK})},
            Tags={"kindling:sandbox": backend},
            Timeout=120,
            SnapStart={"ApplyOn": "PublishedVersions"},
        )
        fleet.deployed[key] = name
        wait_active(fleet.lam, name)
        fleet.lam.publish_version(FunctionName=name)
        fleet.lam.get_waiter("published_version_active").wait(
            FunctionName=name, Qualifier="1", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    return name, "1"


def _invoke(fleet: Fleet, name: str, qualifier: str, event: dict[str, Any]) -> Any:
    response = fleet.lam.invoke(
        FunctionName=name, Qualifier=qualifier, Payload=json.dumps(event).encode()
    )
    body = response["Payload"].read()
    assert "FunctionError" not in response, body[:2000]
    return json.loads(body)


def _server_fds(fleet: Fleet) -> int:
    return len(os.listdir(f"/proc/{fleet.server_pid}/fd"))


def _server_rss_mb(fleet: Fleet) -> float:
    for line in Path(f"/proc/{fleet.server_pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _metrics_answer(fleet: Fleet) -> bool:
    with urllib.request.urlopen(fleet.server.endpoint + "/metrics", timeout=60) as response:
        return bool(response.status == 200 and b"# TYPE" in response.read())


@pytest.mark.parametrize("path", START_PATHS)
def test_open_files_are_limited_on_every_start_path(backend: str, path: str, fleet: Fleet) -> None:
    if backend == "gvisor" and path != "zygote":
        pytest.skip("gVisor has one start path: runsc runs the runtime")
    name, qualifier = _deploy(fleet, backend, path)
    seen = _invoke(fleet, name, qualifier, {"kind": "limits"})
    expected = limits.SANDBOX_MAX_OPEN_FILES
    assert seen["nofile"] == [expected, expected]


def flood(fleet: Fleet, victim: Victim, name: str, qualifier: str, cap: int) -> dict[str, Any]:
    """The attacker holds a flood of connections (``kind: flood``) while the victim and
    ``/metrics`` must answer; the server holds at most ``cap`` of them open. Returns the
    attacker's own report."""
    _invoke(fleet, name, qualifier, {})  # warm, so the baseline counts its sandbox
    baseline = _server_fds(fleet)
    seen: list[Any] = []
    event = {"kind": "flood", "connections": 5000, "hold": 8}
    attack = threading.Thread(target=lambda: seen.append(_invoke(fleet, name, qualifier, event)))
    attack.start()
    try:
        time.sleep(4)  # the flood is held now
        during = _server_fds(fleet)
        check_victim(fleet, victim)
        assert _metrics_answer(fleet)
    finally:
        attack.join()
    report: dict[str, Any] = seen[0]
    assert report["left_open"] <= cap, report
    assert during - baseline <= cap + 32, (baseline, during)
    return report


def test_a_connection_flood_takes_only_its_own_share(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    name, _ = _deploy(fleet, backend, "zygote")
    report = flood(fleet, victim, name, "$LATEST", limits.RUNTIME_API_MAX_CONNECTIONS)
    assert report["failure"] == "EMFILE", report  # the sandbox's own limit: 1024 files
    assert report["opened"] < limits.SANDBOX_MAX_OPEN_FILES, report


def test_an_endless_header_is_cut_off(backend: str, victim: Victim, fleet: Fleet) -> None:
    name, _ = _deploy(fleet, backend, "zygote")
    report = _invoke(fleet, name, "$LATEST", {"kind": "head", "bytes": 300 << 20})
    assert report["sent"] < 16 << 20, report  # refused long before 300 MB
    assert report["answer"].startswith("HTTP/1.1 431 ") or report["error"], report
    assert _metrics_answer(fleet)


def test_unfinished_bodies_cannot_grow_the_server(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    name, _ = _deploy(fleet, backend, "zygote")
    _invoke(fleet, name, "$LATEST", {})
    before = _server_rss_mb(fleet)
    peak: list[float] = []
    seen: list[Any] = []
    event = {"kind": "bodies", "connections": 40, "announce": 6 << 20, "send_mb": 5, "hold": 4}
    attack = threading.Thread(target=lambda: seen.append(_invoke(fleet, name, "$LATEST", event)))
    attack.start()
    try:
        while attack.is_alive():
            peak.append(_server_rss_mb(fleet))
            time.sleep(0.2)
        check_victim(fleet, victim)
        assert _metrics_answer(fleet)
    finally:
        attack.join()
    # 40 bodies of 5 MB: the server holds two bodies' worth and refuses the rest
    budget_mb = limits.RUNTIME_API_MAX_BUFFERED_BYTES / (1 << 20)
    assert seen[0]["refused"] >= 40 - int(budget_mb / 5) - 1, seen[0]
    assert max(peak) - before < 100, (before, max(peak))  # not 200 MB


def test_an_oversized_error_does_not_reach_the_caller(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    name, _ = _deploy(fleet, backend, "zygote")
    response = fleet.lam.invoke(
        FunctionName=name, Payload=json.dumps({"kind": "error", "bytes": 20 << 20}).encode()
    )
    body = response["Payload"].read()
    assert len(body) < 4096, len(body)
    assert response.get("FunctionError") == "Unhandled"
    assert json.loads(body)["errorType"] == "Function.ResponseSizeTooLarge"
    wait_for(lambda: _invoke(fleet, name, "$LATEST", {}) == {"ok": True}, timeout=60)

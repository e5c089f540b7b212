"""Break-out attempts through the network: kindling's control plane and the host's own
services, and another sandbox's Runtime API."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Fleet, Victim, check_victim, host_addresses

CONNECT = """
import concurrent.futures, http.client

def connect(target):
    host, port = target
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((host, port))
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return errname(exc.errno)
        return "connected"

def connect_all(targets):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        found = list(pool.map(connect, targets))
    return {f"{host} {port}": seen for (host, port), seen in zip(targets, found)}

def gateway():
    with open("/proc/net/route") as fh:
        for line in fh.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    return None
"""

CONTROL_PLANE = (
    CONNECT
    + """
def handler(event, context):
    targets = [tuple(t) for t in event["targets"]]
    router = gateway()
    if router:  # the host's end of the sandbox's own link is the host too
        targets += [(router, port) for port in event["ports"]]
    return {"gateway": router, "seen": connect_all(targets)}
"""
)


@pytest.fixture(scope="module")
def host_service() -> Iterator[int]:
    """A service of the host's own, on every address: no sandbox may reach it."""
    listener = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    listener.close()


def reachable_from_host(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("network", ["allowed", "none"])
def test_control_plane_and_host_services_are_unreachable(
    backend: str, network: str, victim: Victim, fleet: Fleet, host_service: int
) -> None:
    ports = [fleet.server.port, host_service]
    targets = [
        (address, port)
        for address in host_addresses()
        for port in ports
        if reachable_from_host(address, port)
    ]
    # the control plane listens on every address here, so only the sandbox stops it
    assert {("127.0.0.1", fleet.server.port), ("127.0.0.1", host_service)} <= set(targets)
    assert len({address for address, _ in targets}) >= 2, targets
    name = fleet.attacker(f"reach-{network}", backend, CONTROL_PLANE, network=network)
    result = fleet.run(name, {"targets": targets, "ports": ports})

    seen: dict[str, str] = result["seen"]
    assert "connected" not in seen.values(), seen
    if network == "none":
        assert result["gateway"] is None
    else:
        assert result["gateway"] is not None
    for target, outcome in seen.items():
        address = target.split()[0]
        if address in ("127.0.0.1", "::1"):  # its own loopback, where nothing listens
            expected = "ECONNREFUSED"
        elif network == "none" or ":" in address:  # no route there (no IPv6 outside)
            expected = "ENETUNREACH"
        else:  # routed to the host, whose firewall drops it
            expected = "timeout"
        assert outcome == expected, (target, seen)


RUNTIME_API = (
    CONNECT
    + """
import uuid

def post(path, body):
    conn = http.client.HTTPConnection("127.0.0.1", 9001, timeout=3)
    try:
        conn.request("POST", path, body=body)
        reply = conn.getresponse()
        return [reply.status, json.loads(reply.read() or b"{}").get("errorType")]
    except OSError as exc:
        return errname(exc.errno)
    finally:
        conn.close()

def handler(event, context):
    ids = event["ids"] + [str(uuid.uuid4())]
    forged = {}
    for request_id in ids:
        for verb in ("response", "error"):
            path = f"/2018-06-01/runtime/invocation/{request_id}/{verb}"
            forged[f"{request_id} {verb}"] = post(path, b'{"forged": true}')
    other = event["victim_ip"]
    return {
        "forged": forged,
        "victim": connect_all([(other, 9001), (other, 22)]) if other else {},
        "own id": context.aws_request_id,
    }
"""
)


def test_runtime_api_is_its_own(backend: str, victim: Victim, fleet: Fleet) -> None:
    """127.0.0.1:9001 is the attacker's own Runtime API: responses it forges for the
    victim's request ids are refused, and the victim, busy meanwhile, answers for itself."""
    name = fleet.attacker("runtime-api", backend, RUNTIME_API)
    fleet.run(name, {"ids": [], "victim_ip": None})  # warm: it attacks while the victim is busy
    nonce = uuid.uuid4().hex
    answers: list[Any] = []
    busy = threading.Thread(
        target=lambda: answers.append(fleet.run(victim.name, {"hold": 1.5, "echo": nonce}))
    )
    previous = victim.last["request_id"]
    asked_at = time.time()
    busy.start()
    try:
        seen = fleet.run(name, {"ids": [previous], "victim_ip": victim.last["ip"]})
    finally:
        busy.join()

    assert seen["forged"] == {key: [400, "InvalidRequestID"] for key in seen["forged"]}
    assert len(seen["forged"]) == 4
    assert previous != seen["own id"]
    if victim.last["ip"]:
        assert "connected" not in seen["victim"].values(), seen["victim"]
        assert set(seen["victim"].values()) <= {"timeout", "ECONNREFUSED"}, seen["victim"]
    answer = answers[0]
    assert answer["echo"] == nonce
    check_victim(fleet, victim, answer, asked_at)

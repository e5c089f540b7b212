"""Sandbox networking: the Runtime API inside, the outside through NAT, the host never.

The "outside" is a network namespace this test makes, reached through the host by
routing, with a TCP listener in it; the "host's own service" is a listener on the
host's end of that link. No real network is used. The outside has a private address,
so sandboxes reach it only through the operator's allow-list (ADR 0015; what the
policy lets out is tested in test_egress.py).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kindling.config import parse_egress_allow
from kindling.worker.sandbox.base import InvokeRequest, Outcome, SandboxBackend, SandboxSpec
from kindling.worker.sandbox.host import HostResources
from kindling.worker.sandbox.namespace import NamespaceBackend
from kindling.worker.sandbox.safety import SafeSandbox
from tests.worker.sandbox.conftest import _Tracked, unavailable

PROBE = """
import socket


def probe(host, port):
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return "open"
    except OSError as exc:
        return type(exc).__name__
def handler(event, context):
    return {t: probe(*t.split(":")) for t in event["targets"]}
"""
OUTSIDE = "10.201.77.2"
HOST_SIDE = "10.201.77.1"
OUTSIDE_RANGE = "10.201.77.0/24"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _listen(host: str, port: int, netns: str | None = None) -> subprocess.Popen[bytes]:
    code = (
        "import socket,sys\n"
        "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        f"s.bind(({host!r},{port}));s.listen();print('up',flush=True)\n"
        "while True:\n    c,_=s.accept();c.close()\n"
    )
    prefix = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.Popen([*prefix, "/usr/bin/python3.11", "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    return proc


@pytest.fixture
def outside() -> Iterator[None]:
    if unavailable("namespace"):
        pytest.skip("network tests need the namespace backend")
    name = f"kout{uuid.uuid4().hex[:6]}"
    host_if, peer = f"ko{name[-6:]}", f"kp{name[-6:]}"
    _ip("netns", "add", name)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", name)
        _ip("addr", "add", f"{HOST_SIDE}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{OUTSIDE}/24", "dev", peer)
        _ip("-n", name, "link", "set", peer, "up")
        _ip("-n", name, "route", "add", "default", "via", HOST_SIDE)
        procs.append(_listen(OUTSIDE, 8080, name))
        procs.append(_listen("0.0.0.0", 18081))
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _probe(
    loop: asyncio.AbstractEventLoop,
    backend: SandboxBackend,
    spec: SandboxSpec,
    targets: list[str],
) -> dict[str, str]:
    async def scenario() -> dict[str, str]:
        sandbox = SafeSandbox(await backend.create(spec), spec)
        assert (await sandbox.start()).ok
        request = InvokeRequest(
            str(uuid.uuid4()),
            json.dumps({"targets": targets}).encode(),
            int(time.time() * 1000) + 9000,
            "arn",
        )
        result = await sandbox.invoke(request)
        await sandbox.destroy()
        assert result.outcome is Outcome.SUCCESS, result.payload
        answer: dict[str, str] = json.loads(result.payload)
        return answer

    return loop.run_until_complete(scenario())  # type: ignore[no-any-return]


@pytest.fixture
def allowing_backend(
    tmp_path: Path, runtime_dir: Path, loop: asyncio.AbstractEventLoop
) -> Iterator[SandboxBackend]:
    """The namespace backend of a host whose operator opened the outside's range."""
    host = HostResources.prepare(runtime_dir, egress_allow=parse_egress_allow(OUTSIDE_RANGE))
    backend = _Tracked(NamespaceBackend(host, tmp_path / "data"), host)
    yield backend
    loop.run_until_complete(backend.close())


@pytest.mark.usefixtures("outside")
def test_egress_reaches_outside_but_never_the_host(
    allowing_backend: SandboxBackend,
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    seen = _probe(
        loop,
        allowing_backend,
        make_spec(PROBE, timeout=10),
        [f"{OUTSIDE}:8080", f"{HOST_SIDE}:18081", "127.0.0.1:18081", "127.0.0.1:9001"],
    )
    assert seen[f"{OUTSIDE}:8080"] == "open"
    assert seen[f"{HOST_SIDE}:18081"] != "open"
    assert seen["127.0.0.1:18081"] != "open"  # the sandbox's loopback is its own
    assert seen["127.0.0.1:9001"] == "open"  # its Runtime API


@pytest.mark.usefixtures("outside")
@pytest.mark.parametrize("backend_name", ["namespace"], indirect=True)
def test_network_none_has_only_loopback(
    make_backend: Callable[[], SandboxBackend],
    make_spec: Callable[..., SandboxSpec],
    loop: asyncio.AbstractEventLoop,
) -> None:
    seen = _probe(
        loop,
        make_backend(),
        make_spec(PROBE, timeout=10, network="none"),
        [f"{OUTSIDE}:8080", f"{HOST_SIDE}:18081", "127.0.0.1:9001"],
    )
    assert seen[f"{OUTSIDE}:8080"] != "open"
    assert seen[f"{HOST_SIDE}:18081"] != "open"
    assert seen["127.0.0.1:9001"] == "open"

"""What a function's packets reach, through a real ``kindling serve`` whose host is a
network namespace the test made (tests/netlab.py): its only uplink is an ``ifb`` device,
so whatever the egress policy lets out is counted there and dropped, never sent.

By default a function reaches public destinations only (Lambda outside a VPC): not the
cloud metadata service, RFC 1918, CGNAT, link-local, documentation or reserved ranges,
nor kindling's own unleased addresses; ``--egress-allow`` opens private ranges. A
private nameserver of the host is reachable on port 53 only (ADR 0015).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config as BotoConfig

from kindling.control.models import NETWORK_TAG, SANDBOX_TAG
from tests.e2e.support import (
    KINDLING,
    ROLE,
    Server,
    lambda_client,
    make_zip,
    wait_active,
    wait_for,
)
from tests.netlab import Uplink, run_in_netns, uplink

from .conftest import unavailable

NAMESERVER = "10.99.0.53"

SEND = """
import socket

def handler(event, context):
    for proto, address, port in event["probes"]:
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setblocking(False)
            try:
                if proto == "udp":
                    sock.sendto(b"probe", (address, port))
                else:
                    sock.connect((address, port))
            except OSError:
                pass  # EINPROGRESS: the SYN is out; anything else: nothing was sent
    with open("/etc/resolv.conf") as fh:
        return {"resolv": fh.read()}
"""

PUBLIC = ["1.1.1.1", "8.8.8.8"]
PRIVATE = [
    "169.254.169.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "198.18.0.1",
    "203.0.113.9",
    "240.0.0.1",
]


class NetnsServer(Server):
    """``kindling serve`` run inside the lab's network namespace, with ``resolv``
    as its /etc/resolv.conf (not ``ip netns exec``: it remounts /sys, hiding the
    cgroup file system)."""

    netns: str = ""
    resolv: Path = Path("/etc/resolv.conf")

    def start(self, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.env)
        command = [str(KINDLING), "serve", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir), *self.extra_args]
        inside = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{self.netns}",
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    inside,
                    str(self.resolv),
                    *command,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                run_in_netns(
                    f"/run/netns/{self.netns}",
                    lambda: socket.create_connection(("127.0.0.1", self.port), 0.5).close(),
                )
                return
            time.sleep(0.05)
        self.proc.send_signal(signal.SIGKILL)
        raise AssertionError(f"kindling serve did not start:\n{self.log_tail()}")


@contextlib.contextmanager
def lab_server(tmp_path: Path, *args: str) -> Iterator[tuple[Uplink, NetnsServer, Any]]:
    with uplink() as lab:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text(f"nameserver 127.0.0.53\nnameserver {NAMESERVER}\n")
        server = NetnsServer(tmp_path / "data", tmp_path / "server.log", extra_args=args)
        server.netns, server.resolv = lab.name, resolv
        try:
            server.start()
            lam = lambda_client(
                server.endpoint, BotoConfig(retries={"total_max_attempts": 1}, read_timeout=60)
            )
            yield lab, server, lam
        finally:
            if server.proc is not None:
                server.stop()


def _send(lab: Uplink, lam: Any, backend: str, probes: list[tuple[str, str, int]]) -> Any:
    name = f"egress-{backend}-{uuid.uuid4().hex[:6]}"

    def deploy_and_invoke() -> Any:
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip({"app.py": SEND})},
            Tags={SANDBOX_TAG: backend, NETWORK_TAG: "allowed"},
            Timeout=30,
        )
        wait_active(lam, name)
        lam.invoke(FunctionName=name, Payload=b"{}")  # cold: every probe counted once
        lab.count(probes)
        reply = lam.invoke(FunctionName=name, Payload=json.dumps({"probes": probes}).encode())
        assert "FunctionError" not in reply, reply["Payload"].read()
        return json.loads(reply["Payload"].read())

    return run_in_netns(lab.path, deploy_and_invoke)


@pytest.fixture(params=["namespace", "gvisor"])
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    reason = unavailable(name)
    if reason:
        pytest.skip(f"backend {name} skipped: {reason}")
    return name


def _key(proto: str, address: str, port: int) -> str:
    return f"{proto} {address} {port}"


def test_functions_reach_public_destinations_only(backend: str, tmp_path: Path) -> None:
    with lab_server(tmp_path) as (lab, _server, lam):
        unleased = ["10.128.0.2", "10.200.7.6", "10.255.0.1"]
        probes = [("udp", a, 9) for a in [*PUBLIC, *PRIVATE, *unleased]]
        probes += [("tcp", "169.254.169.254", 80), ("tcp", "1.1.1.1", 443)]
        probes += [("udp", NAMESERVER, 53), ("udp", NAMESERVER, 80)]
        seen = _send(lab, lam, backend, probes)
        left = lab.left()

    assert {a: left[_key("udp", a, 9)] for a in PUBLIC} == {a: 1 for a in PUBLIC}
    assert left[_key("tcp", "1.1.1.1", 443)] >= 1
    blocked = [*PRIVATE, *unleased]
    assert {a: left[_key("udp", a, 9)] for a in blocked} == {a: 0 for a in blocked}
    assert left[_key("tcp", "169.254.169.254", 80)] == 0
    # the host's private nameserver, for DNS only; its loopback one is left out
    assert left[_key("udp", NAMESERVER, 53)] == 1
    assert left[_key("udp", NAMESERVER, 80)] == 0
    assert seen["resolv"] == f"nameserver {NAMESERVER}\n"


def test_allow_list_opens_private_ranges(backend: str, tmp_path: Path) -> None:
    with lab_server(tmp_path, "--egress-allow", "10.0.0.0/8,192.168.1.0/24") as (lab, _s, lam):
        opened = ["10.0.0.1", "10.20.30.40", "192.168.1.1"]
        still = ["192.168.2.1", "172.16.0.1", "169.254.169.254", "100.64.0.1"]
        probes = [("udp", a, 9) for a in [*opened, *still, "1.1.1.1"]]
        _send(lab, lam, backend, probes)
        left = lab.left()

    assert {a: left[_key("udp", a, 9)] for a in opened} == {a: 1 for a in opened}
    assert {a: left[_key("udp", a, 9)] for a in still} == {a: 0 for a in still}
    assert left[_key("udp", "1.1.1.1", 9)] == 1


FORGE = """
import ipaddress, socket, struct

def packet(source, destination, port):
    udp = struct.pack("!HHHH", 40000, port, 13, 0) + b"forge"
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
        socket.inet_aton(source), socket.inet_aton(destination),
    )
    return header + udp

def handler(event, context):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("1.1.1.1", 7000))
        own = ipaddress.IPv4Address(sock.getsockname()[0])
        sock.send(b"genuine")
    forged = {7001: "1.2.3.4", 7002: str(own - 1), 7003: str(own + 4), 7004: "10.0.0.9"}
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except OSError as exc:
        return {"raw": errno.errorcode.get(exc.errno), "forged": forged}
    with raw:
        for port, source in forged.items():
            raw.sendto(packet(source, "1.1.1.1", port), ("1.1.1.1", 0))
    return {"raw": "sent", "forged": forged}
"""


@pytest.mark.parametrize("start", ["zygote", "snapshot"])
def test_forged_sources_never_leave(backend: str, start: str, tmp_path: Path) -> None:
    """Whether or not a sandbox can open a raw socket (a restored copy once could), a
    packet whose source is not its own address never leaves the host."""
    if start == "snapshot" and backend != "namespace":
        pytest.skip("SnapStart copies are forked on the namespace backend only")
    probes = [("udp", "1.1.1.1", port) for port in range(7000, 7005)]
    name = f"forge-{backend}-{uuid.uuid4().hex[:6]}"
    with lab_server(tmp_path) as (lab, _server, lam):

        def deploy_and_invoke() -> Any:
            snap = start == "snapshot"
            lam.create_function(
                FunctionName=name,
                Runtime="python3.12" if snap else "python3.11",
                Handler="app.handler",
                Role=ROLE,
                Code={"ZipFile": make_zip({"app.py": "import errno\n" + FORGE})},
                Tags={SANDBOX_TAG: backend, NETWORK_TAG: "allowed"},
                Timeout=30,
                **({"SnapStart": {"ApplyOn": "PublishedVersions"}} if snap else {}),
            )
            wait_active(lam, name)
            target = name
            if snap:
                version = lam.publish_version(FunctionName=name)["Version"]
                target = f"{name}:{version}"
                wait_for(
                    lambda: (
                        lam.get_function_configuration(FunctionName=name, Qualifier=version)[
                            "State"
                        ]
                        == "Active"
                    ),
                    60,
                )
            lab.count(probes)
            reply = lam.invoke(FunctionName=target, Payload=b"{}")
            assert "FunctionError" not in reply, reply["Payload"].read()
            return json.loads(reply["Payload"].read())

        seen = run_in_netns(lab.path, deploy_and_invoke)
        left = lab.left()

    assert left[_key("udp", "1.1.1.1", 7000)] == 1, (seen, left)  # the genuine one
    forged = {seen["forged"][str(p)]: left[_key("udp", "1.1.1.1", p)] for p in range(7001, 7005)}
    assert forged == {source: 0 for source in forged}, seen

"""The egress policy itself, with the worker's own code (Egress, create_slot) in a network
namespace whose uplink is an ``ifb`` device (tests/netlab.py): nothing leaves the machine.

Packets are sent as root from inside a sandbox's network namespace, which a sandbox
itself cannot do (no CAP_NET_RAW): the policy must hold even against a sandbox that
could, so forged sources are sent raw here.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
import struct
import uuid
from collections.abc import Callable, Iterator

import pytest

from kindling.config import parse_egress_allow
from kindling.worker.sandbox.egress import POOL, Egress, is_public, sandbox_resolv_conf
from kindling.worker.sandbox.netns import NetworkSlot, create_slot
from tests.netlab import Uplink, run_in_netns, uplink
from tests.worker.sandbox.conftest import unavailable

PUBLIC = ["1.1.1.1", "8.8.8.8", "93.184.216.34"]
#: One address in each range a sandbox must not reach by default.
PRIVATE = [
    "169.254.169.254",  # cloud metadata
    "169.254.170.2",  # ECS task metadata
    "10.0.0.1",
    "10.255.255.53",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "100.100.100.200",  # a cloud's metadata service in CGNAT space
    "198.18.0.1",  # benchmarking
    "192.0.2.1",
    "203.0.113.9",
    "0.1.2.3",
    "240.0.0.1",
]


@pytest.fixture
def lab() -> Iterator[Uplink]:
    if unavailable("namespace"):
        pytest.skip("egress tests need root (network namespaces, nftables)")
    with uplink() as made:
        yield made


@pytest.fixture
def make_egress(lab: Uplink) -> Iterator[Callable[..., tuple[Egress, list[NetworkSlot]]]]:
    """An Egress installed in the lab's namespace, and sandbox slots made by the worker's
    own create_slot there; all freed after."""
    made: list[tuple[Egress, list[NetworkSlot]]] = []

    def make(slots: int = 1, **options: object) -> tuple[Egress, list[NetworkSlot]]:
        instance = uuid.uuid4().hex[:12]
        egress = run_in_netns(lab.path, lambda: Egress(instance, **options))  # type: ignore[arg-type]
        made.append((egress, []))
        for _ in range(slots):
            made[-1][1].append(run_in_netns(lab.path, lambda: create_slot(egress, port=9001)))
        return made[-1]

    yield make
    for egress, slots in made:
        for slot in slots:
            run_in_netns(lab.path, functools.partial(slot.close, egress))
        run_in_netns(lab.path, egress.close)


def _udp(address: str, port: int) -> None:
    # e.g. ENETUNREACH: not sent, so not counted
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(b"probe", (address, port))


def _tcp_syn(address: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # EINPROGRESS: the SYN is on its way
            sock.connect((address, port))


def _send_all(slot: NetworkSlot, probes: list[tuple[str, str, int]]) -> None:
    def send() -> None:
        for proto, address, port in probes:
            (_udp if proto == "udp" else _tcp_syn)(address, port)

    run_in_netns(slot.netns_fd, send)


def _key(proto: str, address: str, port: int) -> str:
    return f"{proto} {address} {port}"


def _unleased(egress: Egress) -> list[str]:
    """Addresses of kindling's range no sandbox holds: this instance's free /30s, and
    another instance's /16."""
    base = int(egress.subnet.network_address)
    other = next(net for net in POOL.subnets(new_prefix=16) if net != egress.subnet)
    return [
        str(ipaddress.ip_address(base + 4 * 900 + 2)),
        str(ipaddress.ip_address(base + 4 * 900 + 1)),
        str(other.network_address + 6),
    ]


def test_only_public_destinations_leave_by_default(
    lab: Uplink, make_egress: Callable[..., tuple[Egress, list[NetworkSlot]]]
) -> None:
    egress, (slot,) = make_egress()
    blocked = [*PRIVATE, *_unleased(egress)]
    probes = [("udp", a, 9) for a in [*PUBLIC, *blocked]] + [
        ("tcp", "169.254.169.254", 80),
        ("tcp", "1.1.1.1", 443),
    ]
    lab.count(probes)
    _send_all(slot, probes)

    left = lab.left()
    assert {a: left[_key("udp", a, 9)] for a in PUBLIC} == {a: 1 for a in PUBLIC}
    assert left[_key("tcp", "1.1.1.1", 443)] >= 1
    assert {a: left[_key("udp", a, 9)] for a in blocked} == {a: 0 for a in blocked}
    assert left[_key("tcp", "169.254.169.254", 80)] == 0


def test_allow_list_opens_private_ranges_but_never_the_instances_own(
    lab: Uplink, make_egress: Callable[..., tuple[Egress, list[NetworkSlot]]]
) -> None:
    allow = parse_egress_allow("10.0.0.0/8, 192.168.1.0/24")
    egress, (slot,) = make_egress(allow=allow)
    opened = ["10.0.0.1", "10.255.255.53", "192.168.1.1"]
    still = ["192.168.2.1", "172.16.0.1", "169.254.169.254", "100.64.0.1", *_unleased(egress)[:2]]
    probes = [("udp", a, 9) for a in [*opened, *still, "1.1.1.1"]]
    lab.count(probes)
    _send_all(slot, probes)

    left = lab.left()
    assert {a: left[_key("udp", a, 9)] for a in opened} == {a: 1 for a in opened}
    assert {a: left[_key("udp", a, 9)] for a in still} == {a: 0 for a in still}
    assert left[_key("udp", "1.1.1.1", 9)] == 1


def test_private_nameserver_is_reachable_on_port_53_only(
    lab: Uplink, make_egress: Callable[..., tuple[Egress, list[NetworkSlot]]]
) -> None:
    _egress, (slot,) = make_egress(resolvers=[ipaddress.IPv4Address("10.255.255.53")])
    probes = [
        ("udp", "10.255.255.53", 53),
        ("tcp", "10.255.255.53", 53),
        ("udp", "10.255.255.53", 54),
        ("tcp", "10.255.255.53", 22),
        ("udp", "10.255.255.54", 53),
    ]
    lab.count(probes)
    _send_all(slot, probes)

    left = lab.left()
    assert left[_key("udp", "10.255.255.53", 53)] == 1
    assert left[_key("tcp", "10.255.255.53", 53)] >= 1
    assert left[_key("udp", "10.255.255.53", 54)] == 0
    assert left[_key("tcp", "10.255.255.53", 22)] == 0
    assert left[_key("udp", "10.255.255.54", 53)] == 0


def _raw_udp(source: str, destination: str, port: int) -> bytes:
    """An IPv4/UDP datagram; the kernel fills in the header's length, id and checksum."""
    udp = struct.pack("!HHHH", 40000, port, 8 + 5, 0) + b"forge"
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source),
        socket.inet_aton(destination),
    )
    return header + udp


def test_forged_source_addresses_are_dropped(
    lab: Uplink, make_egress: Callable[..., tuple[Egress, list[NetworkSlot]]]
) -> None:
    egress, (slot, neighbour) = make_egress(slots=2)
    assert slot.lease is not None and neighbour.lease is not None
    own = slot.lease.sandbox_ip
    base = int(ipaddress.IPv4Address(own)) - 2
    sources = {
        7000: own,  # the genuine one: must leave, or the others prove nothing
        7001: "1.2.3.4",  # a public address
        7002: neighbour.lease.sandbox_ip,  # another sandbox of this instance
        7003: slot.lease.host_ip,  # the host's end of its own link
        7004: str(ipaddress.IPv4Address(base + 3)),  # its /30's broadcast
        7005: _unleased(egress)[0],  # an unleased address of kindling's range
        7006: "10.0.0.9",  # a private address the host might trust
    }
    probes = [("udp", "1.1.1.1", port) for port in sources]
    lab.count(probes)

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
            for port, source in sources.items():
                raw.sendto(_raw_udp(source, "1.1.1.1", port), ("1.1.1.1", 0))

    run_in_netns(slot.netns_fd, send)

    left = lab.left()
    assert left[_key("udp", "1.1.1.1", 7000)] == 1
    forged = {sources[p]: left[_key("udp", "1.1.1.1", p)] for p in sources if p != 7000}
    assert forged == {source: 0 for source in forged}


def test_ipv6_from_a_sandbox_is_dropped(
    lab: Uplink, make_egress: Callable[..., tuple[Egress, list[NetworkSlot]]]
) -> None:
    """A sandbox has no IPv6 route; a link-local packet to its host end must not be
    accepted either (the host's input chain), nor forwarded."""
    _egress, (slot,) = make_egress()
    host_if = slot.lease.host_if if slot.lease else ""
    found: dict[str, str] = {}

    def send() -> None:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            for address in ("2606:4700:4700::1111", "fd00::1"):
                try:
                    sock.sendto(b"x", (address, 9))
                    found[address] = "sent"
                except OSError as exc:
                    found[address] = os.strerror(exc.errno or 0)

    run_in_netns(slot.netns_fd, send)
    assert host_if
    assert "sent" not in found.values(), found


def test_sandbox_resolv_conf_keeps_reachable_nameservers() -> None:
    host = "search corp\nnameserver 127.0.0.53\nnameserver ::1\noptions edns0\n"
    upstream = "nameserver 10.0.0.2\nnameserver 2001:db8::1\nnameserver 1.1.1.1\n"
    text, servers = sandbox_resolv_conf(host, upstream)
    assert servers == [ipaddress.IPv4Address("10.0.0.2"), ipaddress.IPv4Address("1.1.1.1")]
    assert "127.0.0.53" not in text and "2001:db8" not in text
    assert "nameserver 10.0.0.2\n" in text

    text, servers = sandbox_resolv_conf("nameserver 8.8.8.8\noptions ndots:2\n", upstream)
    assert servers == [ipaddress.IPv4Address("8.8.8.8")]
    assert text == "nameserver 8.8.8.8\noptions ndots:2\n"

    text, servers = sandbox_resolv_conf("nameserver 127.0.0.11\n", None)
    assert (text, servers) == ("", [])


def test_denied_ranges_cover_every_special_purpose_block() -> None:
    for address in PRIVATE:
        assert not is_public(ipaddress.IPv4Address(address)), address
    for address in PUBLIC:
        assert is_public(ipaddress.IPv4Address(address)), address


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("10.0.0.0/33", "egress allow-list"),
        ("10.0.0.1/8", "host bits"),
        ("fd00::/8", "IPv6"),
        ("nonsense", "egress allow-list"),
    ],
)
def test_allow_list_refuses_what_it_cannot_mean(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_egress_allow(text)

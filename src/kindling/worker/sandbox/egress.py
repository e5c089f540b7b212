"""Outbound network for sandboxes: a veth pair per sandbox, NAT to public destinations.

Each sandbox that may go out gets ``eth0`` (a /30 of its instance's /16) with a default
route to its host end; the host masquerades that traffic. One nftables table, installed
at start, is the egress policy (ADR 0015):

- nothing a sandbox sends reaches the host itself (the control plane, other local
  services, every address of the host) or another sandbox, of this instance or another;
- by default only public destinations: like a Lambda function outside a VPC, a sandbox
  never reaches private (RFC 1918), CGNAT, link-local (a cloud host's metadata service at
  169.254.169.254), loopback, multicast, documentation, benchmarking or reserved
  addresses, nor its instance's own /16, leased or not. An operator's allow-list
  (``kindling serve --egress-allow``) opens private ranges; the instance's /16 and every
  sandbox link never open;
- DNS: the host's nameservers that sit in a denied range are reachable on port 53 only;
- IPv4 only: a sandbox has no IPv6 address or route, and every IPv6 packet from its
  link is dropped;
- no spoofing: a packet whose source is not the sandbox's own address is dropped before
  routing (reverse-path lookup on its link, plus the address's place in its /30).

Sandboxes whose function says ``network: none`` get no veth at all: only their loopback
and the Runtime API.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from kindling.errors import SandboxError
from kindling.worker.sandbox.rtnl import Rtnl

log = logging.getLogger(__name__)

#: Instances share nothing: each takes its own /16 of 10.128.0.0/9, its own interface
#: prefix and its own nftables table, all derived from its instance id.
POOL = ipaddress.IPv4Network("10.128.0.0/9")
ALL_SANDBOX_LINKS = "kv"

#: Where a sandbox never goes unless the operator's allow-list opens it: every IPv4
#: special-purpose block of IANA's registry (RFC 6890) that is not the public internet.
DENIED = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # RFC 1918 private
        "100.64.0.0/10",  # RFC 6598 CGNAT (also some clouds' internal services)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254), VPC DNS
        "172.16.0.0/12",  # RFC 1918 private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1 documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # RFC 1918 private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2 documentation
        "203.0.113.0/24",  # TEST-NET-3 documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
    )
)
DNS_PORT = 53

RULES = """
table inet {table} {{
    set allowed {{
        type ipv4_addr; flags interval;{allowed}
    }}
    set denied {{
        type ipv4_addr; flags interval; elements = {{ {denied} }}
    }}
    set resolvers {{
        type ipv4_addr;{resolvers}
    }}
    chain prerouting {{
        type filter hook prerouting priority -300; policy accept;
        iifname "{prefix}*" meta nfproto ipv6 drop
        iifname "{prefix}*" ip saddr & 0.0.0.3 != 0.0.0.2 drop
        iifname "{prefix}*" fib saddr . iif oif missing drop
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{prefix}*" ct state established,related accept
        iifname "{prefix}*" drop
    }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{prefix}*" oifname "{all}*" drop
        ip daddr {subnet} ct state established,related accept
        oifname "{prefix}*" drop
        iifname "{prefix}*" ip daddr {subnet} drop
        iifname "{prefix}*" ip daddr @resolvers meta l4proto {{ tcp, udp }} th dport {dns} accept
        iifname "{prefix}*" ip daddr @allowed accept
        iifname "{prefix}*" ip daddr @denied drop
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {subnet} oifname != "{prefix}*" masquerade
    }}
}}
"""


#: Where systemd-resolved lists its upstream servers when /etc/resolv.conf names only its
#: stub (127.0.0.53), which a sandbox's own loopback cannot reach (Docker reads it too).
RESOLVED_UPSTREAMS = "/run/systemd/resolve/resolv.conf"


def sandbox_resolv_conf(
    host: str, upstream: str | None = None
) -> tuple[str, list[ipaddress.IPv4Address]]:
    """The resolv.conf sandboxes get, and its nameservers.

    The host's, less what a sandbox cannot reach: loopback nameservers (a sandbox's
    loopback is its own) and IPv6 ones (sandboxes have no IPv6). When nothing is left,
    ``upstream`` (systemd-resolved's upstream list) is used instead. Options and search
    domains are kept."""

    def usable(text: str) -> tuple[list[str], list[ipaddress.IPv4Address]]:
        kept: list[str] = []
        servers: list[ipaddress.IPv4Address] = []
        for line in text.splitlines():
            fields = line.split()
            if fields[:1] == ["nameserver"]:
                try:
                    address = ipaddress.ip_address(fields[1] if len(fields) > 1 else "")
                except ValueError:
                    continue
                if address.version != 4 or address.is_loopback or address.is_unspecified:
                    continue
                servers.append(ipaddress.IPv4Address(address))
            kept.append(line)
        return kept, servers

    lines, servers = usable(host)
    if not servers and upstream:
        lines, servers = usable(upstream)
    return "".join(f"{line}\n" for line in lines), servers


def table_name(instance: str) -> str:
    """The instance's nftables table (family ``inet``)."""
    return f"kindling_{instance}"


def link_prefix(instance: str) -> str:
    """What the names of the instance's host-side veth ends start with (then a number)."""
    return f"{ALL_SANDBOX_LINKS}{instance[:4]}"


def _subnet_for(instance: str) -> ipaddress.IPv4Network:
    subnets: list[ipaddress.IPv4Network] = list(POOL.subnets(new_prefix=16))
    used = _routed_networks()
    start = int(instance, 16) % len(subnets)
    for offset in range(len(subnets)):
        candidate = subnets[(start + offset) % len(subnets)]
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise SandboxError("no free /16 in 10.128.0.0/9 for sandbox networks")


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes, from /proc (callable on an event loop, unlike pyroute2)."""
    found: list[ipaddress.IPv4Network] = []
    with open("/proc/net/route") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            dest = int(fields[1], 16).to_bytes(4, "little")
            mask = int(fields[7], 16).to_bytes(4, "little")
            if any(mask):
                prefix = bin(int.from_bytes(mask, "big")).count("1")
                found.append(ipaddress.IPv4Network((bytes(dest), prefix), strict=False))
    return found


@dataclass(frozen=True, slots=True)
class Lease:
    index: int
    host_if: str
    host_ip: str
    sandbox_ip: str


def _elements(items: Sequence[object]) -> str:
    return f" elements = {{ {', '.join(str(i) for i in items)} }};" if items else ""


def is_public(address: ipaddress.IPv4Address) -> bool:
    """Whether a sandbox reaches ``address`` without an allow-list."""
    return not any(address in net for net in DENIED)


class Egress:
    """Installs this instance's rules once; leases /30 subnets and makes veth pairs.

    ``allow``: private ranges the operator opens (never this instance's /16 nor a sandbox);
    ``resolvers``: nameservers sandboxes use that sit in a denied range, reachable on port
    53 only."""

    def __init__(
        self,
        instance: str,
        allow: Sequence[ipaddress.IPv4Network] = (),
        resolvers: Sequence[ipaddress.IPv4Address] = (),
    ) -> None:
        self.subnet = _subnet_for(instance)
        self.prefix = link_prefix(instance)
        self.table = table_name(instance)
        self.allow = tuple(allow)
        self.resolvers = tuple(r for r in resolvers if not is_public(r))
        self._free = list(range(self.subnet.num_addresses // 4 - 1, 0, -1))
        self._lock = threading.Lock()
        self._install()

    def _install(self) -> None:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as fh:
            fh.write("1")
        self.close()
        rules = RULES.format(
            table=self.table,
            prefix=self.prefix,
            all=ALL_SANDBOX_LINKS,
            subnet=self.subnet,
            allowed=_elements(list(ipaddress.collapse_addresses(self.allow))),
            denied=", ".join(str(net) for net in DENIED),
            resolvers=_elements(sorted(set(self.resolvers))),
            dns=DNS_PORT,
        )
        done = subprocess.run(["nft", "-f", "-"], input=rules.encode(), capture_output=True)
        if done.returncode != 0:
            raise SandboxError(f"could not install the egress rules: {done.stderr.decode()}")

    def lease(self) -> Lease:
        with self._lock:
            if not self._free:
                raise SandboxError("no free sandbox network addresses")
            index = self._free.pop()
        base = int(self.subnet.network_address) + index * 4
        return Lease(
            index,
            f"{self.prefix}{index}",
            str(ipaddress.ip_address(base + 1)),
            str(ipaddress.ip_address(base + 2)),
        )

    def attach(self, lease: Lease, netns_fd: int) -> None:
        """Host side of the pair; runs in the host network namespace."""
        with Rtnl() as rtnl:
            index = rtnl.add_veth(lease.host_if, "eth0", netns_fd)
            rtnl.add_address(index, lease.host_ip, 30)
            rtnl.link_up(index)

    @staticmethod
    def configure_inside(lease: Lease) -> None:
        """Sandbox side; runs in a thread that has entered the sandbox's namespace."""
        with Rtnl() as rtnl:
            index = socket.if_nametoindex("eth0")
            rtnl.add_address(index, lease.sandbox_ip, 30)
            rtnl.link_up(index)
            rtnl.add_default_route(lease.host_ip)

    def release(self, lease: Lease) -> None:
        with contextlib.suppress(OSError), Rtnl() as rtnl:
            rtnl.delete_link(lease.host_if)
        with self._lock:
            self._free.append(lease.index)

    def close(self) -> None:
        subprocess.run(
            ["nft", "delete", "table", "inet", self.table], capture_output=True, check=False
        )

"""Outbound network for sandboxes: a veth pair per sandbox, NAT to what the host reaches.

Each sandbox that may go out gets ``eth0`` (a /30 of its instance's /16) with a default route to its
host end; the host masquerades that traffic. One nftables table, installed at start,
refuses everything a sandbox sends to the host itself (the control plane, other local
services) and from one sandbox to another. Sandboxes whose function says
``network: none`` get no veth at all: only their loopback and the Runtime API.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import subprocess
import threading
from dataclasses import dataclass

from kindling.errors import SandboxError
from kindling.worker.sandbox.rtnl import Rtnl

log = logging.getLogger(__name__)

#: Instances share nothing: each takes its own /16 of 10.128.0.0/9, its own interface
#: prefix and its own nftables table, all derived from its instance id.
POOL = ipaddress.IPv4Network("10.128.0.0/9")
ALL_SANDBOX_LINKS = "kv"
RULES = """
table inet {table} {{
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
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {subnet} oifname != "{prefix}*" masquerade
    }}
}}
"""


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


class Egress:
    """Installs this instance's rules once; leases /30 subnets and makes veth pairs."""

    def __init__(self, instance: str) -> None:
        self.subnet = _subnet_for(instance)
        self.prefix = link_prefix(instance)
        self.table = table_name(instance)
        self._free = list(range(self.subnet.num_addresses // 4 - 1, 0, -1))
        self._lock = threading.Lock()
        self._install()

    def _install(self) -> None:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as fh:
            fh.write("1")
        self.close()
        rules = RULES.format(
            table=self.table, prefix=self.prefix, all=ALL_SANDBOX_LINKS, subnet=self.subnet
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

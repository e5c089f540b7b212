"""Outbound network for sandboxes: a veth pair per sandbox, NAT to what the host reaches.

Each sandbox that may go out gets ``eth0`` (10.200.x.y/30) with a default route to its
host end; the host masquerades that traffic. One nftables table, installed at start,
refuses everything a sandbox sends to the host itself (the control plane, other local
services) and from one sandbox to another. Sandboxes whose function says
``network: none`` get no veth at all: only their loopback and the Runtime API.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import subprocess
import threading
from dataclasses import dataclass

from pyroute2 import IPRoute

from kindling.errors import SandboxError

log = logging.getLogger(__name__)

SUBNET = ipaddress.ip_network("10.200.0.0/16")
HOST_PREFIX = "kv"
TABLE = "kindling"
RULES = f"""
table inet {TABLE} {{
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{HOST_PREFIX}*" ct state established,related accept
        iifname "{HOST_PREFIX}*" drop
    }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{HOST_PREFIX}*" oifname "{HOST_PREFIX}*" drop
        ip daddr {SUBNET} ct state established,related accept
        oifname "{HOST_PREFIX}*" drop
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {SUBNET} oifname != "{HOST_PREFIX}*" masquerade
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Lease:
    index: int
    host_if: str
    host_ip: str
    sandbox_ip: str


class Egress:
    """Installs the host's rules once; leases /30 subnets and makes veth pairs."""

    def __init__(self) -> None:
        self._free = list(range(SUBNET.num_addresses // 4 - 1, 0, -1))
        self._lock = threading.Lock()
        self._install()

    @staticmethod
    def _install() -> None:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as fh:
            fh.write("1")
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True, check=False)
        done = subprocess.run(["nft", "-f", "-"], input=RULES.encode(), capture_output=True)
        if done.returncode != 0:
            raise SandboxError(f"could not install the egress rules: {done.stderr.decode()}")

    def lease(self) -> Lease:
        with self._lock:
            if not self._free:
                raise SandboxError("no free sandbox network addresses")
            index = self._free.pop()
        base = int(SUBNET.network_address) + index * 4
        return Lease(
            index,
            f"{HOST_PREFIX}{index}",
            str(ipaddress.ip_address(base + 1)),
            str(ipaddress.ip_address(base + 2)),
        )

    def attach(self, lease: Lease, netns_fd: int) -> None:
        """Host side of the pair; runs in the host network namespace."""
        with IPRoute() as ipr:
            ipr.link(
                "add",
                ifname=lease.host_if,
                kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": netns_fd},
            )
            index = ipr.link_lookup(ifname=lease.host_if)[0]
            ipr.addr("add", index=index, address=lease.host_ip, prefixlen=30)
            ipr.link("set", index=index, state="up")

    @staticmethod
    def configure_inside(lease: Lease) -> None:
        """Sandbox side; runs in a thread that has entered the sandbox's namespace."""
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=index, address=lease.sandbox_ip, prefixlen=30)
            ipr.link("set", index=index, state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=lease.host_ip)

    def release(self, lease: Lease) -> None:
        with contextlib.suppress(Exception), IPRoute() as ipr:
            found = ipr.link_lookup(ifname=lease.host_if)
            if found:
                ipr.link("del", index=found[0])
        with self._lock:
            self._free.append(lease.index)

    def close(self) -> None:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True, check=False)

"""Hosts on this machine: a network namespace per host, each with its own address.

A cluster's workers (tests/e2e/cluster.py, ``python -m bench cluster``) run each in a
network namespace of its own with its own address, as separate hosts would: the
namespaces hang on a bridge in the host's namespace, whose address (the gateway) is
where control nodes listen, and where the test or the bench reaches them and the
workers. Nothing of it is reachable beyond this machine: the bridge has no uplink and
the namespaces no route but their /24.

Run a process in a host with ``nsenter --net=/run/netns/<name> --`` rather than ``ip
netns exec``, which remounts /sys and so hides the cgroup hierarchy a worker needs for
its sandboxes.

The /24 (in 172.30.0.0/16) and every interface name are derived from a seed (the
topology's directory) and the process, and a /24 already in use on the host is skipped,
so concurrent runs (other worktrees, a bench next to a test) do not collide.
``HostNet.remove`` takes it all down; a kill -9'd process's namespace goes with it.

Shared by tests and bench (bench never imports tests); needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import subprocess
from dataclasses import dataclass, field

#: Where topologies take their /24 from: private, and outside the sandboxes' 10.128/9.
POOL = ipaddress.IPv4Network("172.30.0.0/16")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _used_on_host() -> str:
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True)
    addresses = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True)
    return (routes.stdout + addresses.stdout).decode()


@dataclass
class HostNet:
    """A bridge in the host's namespace and one namespace per worker host on it."""

    tag: str
    subnet: ipaddress.IPv4Network
    namespaces: list[str] = field(default_factory=list)
    #: The host-side ends of the veth pairs.
    links: list[str] = field(default_factory=list)
    #: Starts every interface and namespace name: "kt" for tests, "kb" for the bench.
    prefix: str = "kt"

    @classmethod
    def create(cls, seed: str, prefix: str = "kt") -> HostNet:
        """A bridge with the gateway address on a free /24; ``prefix`` (two letters,
        never "kv": a sandbox's) tells whose it is in ``ip link``."""
        digest = hashlib.sha256(f"{seed}:{os.getpid()}".encode()).hexdigest()
        subnets = list(POOL.subnets(new_prefix=24))
        used = _used_on_host()
        start = int(digest[:8], 16)
        for offset in range(len(subnets)):
            subnet = subnets[(start + offset) % len(subnets)]
            taken = str(subnet.network_address).rsplit(".", 1)[0] + "."
            if taken not in used:
                break
        else:
            raise RuntimeError(f"no free /24 left in {POOL}")
        net = cls(digest[:6], subnet, prefix=prefix)
        _ip("link", "add", net.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
            _ip("link", "set", net.bridge, "up")
        except BaseException:
            net.remove()
            raise
        return net

    @property
    def bridge(self) -> str:
        return f"{self.prefix}b{self.tag}"  # never "kv...": a sandbox's (tests/hostcheck.py)

    @property
    def gateway(self) -> str:
        """The host side: where control nodes listen and the test's listeners too."""
        return str(self.subnet.network_address + 1)

    def add_host(self, index: int) -> tuple[str, str]:
        """A namespace with its own address on the bridge: (its name, its address).
        ``index`` from 1 (the gateway is .1, host ``index`` is .1 + ``index``)."""
        name = f"kindling-{self.prefix}{self.tag}-h{index}"
        address = str(self.subnet.network_address + 1 + index)
        outside, inside = f"{self.prefix}{self.tag}h{index}", f"{self.prefix}{self.tag}p{index}"
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        self.links.append(outside)
        _ip("link", "set", inside, "netns", name)
        _ip("link", "set", outside, "master", self.bridge, "up")
        _ip("-n", name, "link", "set", inside, "name", "eth0")
        _ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        return name, address

    @staticmethod
    def wrap(namespace: str) -> tuple[str, ...]:
        """The command prefix that runs a process in the host ``namespace``."""
        return ("nsenter", f"--net=/run/netns/{namespace}", "--")

    def remove(self) -> None:
        """Every veth pair, every namespace, then the bridge. The pairs go first and by
        name: a namespace's own teardown in the kernel may come later (it is queued
        behind every other namespace being destroyed on the host)."""
        for link in self.links:
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", link)
        self.links.clear()
        for name in self.namespaces:
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", name)
        self.namespaces.clear()
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", self.bridge)

"""A real cluster on this machine, for tests: PostgreSQL, N control nodes, M workers.

Each control node is a ``kindling serve --role control`` process with a data dir of its
own, all on one PostgreSQL store. Each worker is a ``kindling serve --role worker`` in a
network namespace of its own with its own address, as a separate host would be: the
namespaces hang on a bridge in the host's namespace, whose address is where the
control nodes listen (workers reach them there, and so does the test). Nothing of it
is reachable beyond this machine: the bridge has no uplink and the namespaces no route
but their /24.

Workers run under ``nsenter --net`` rather than ``ip netns exec``, which remounts /sys
and so hides the cgroup hierarchy a worker needs for its sandboxes.

The /24 (in 172.30.0.0/16) and every interface name are derived from the topology's
own directory and the test process, and a /24 already in use on the host is skipped,
so concurrent runs (other worktrees) do not collide. ``Topology.close`` removes it all,
processes first, on any failure too; a kill -9'd worker's namespace goes with it.

Counting in Redis is not on main yet: ``cluster(..., control_args=("--counting", url))``
is where it goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kindling.iam import cluster as cluster_auth
from kindling.worker import wire
from tests.e2e.support import KINDLING, Server, free_port

#: Where topologies take their /24 from: private, and outside the sandboxes' 10.128/9.
POOL = ipaddress.IPv4Network("172.30.0.0/16")
#: What a worker listens on, inside its own namespace.
WORKER_PORT = 9100


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

    @classmethod
    def create(cls, seed: str) -> HostNet:
        digest = hashlib.sha256(f"{seed}:{os.getpid()}".encode()).hexdigest()
        subnets = list(POOL.subnets(new_prefix=24))
        used = _used_on_host()
        start = int(digest[:8], 16)
        for offset in range(len(subnets)):
            subnet = subnets[(start + offset) % len(subnets)]
            prefix = str(subnet.network_address).rsplit(".", 1)[0] + "."
            if prefix not in used:
                break
        else:
            raise RuntimeError(f"no free /24 left in {POOL}")
        net = cls(digest[:6], subnet)
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
        return f"ktb{self.tag}"  # never "kv...": that is a sandbox's (tests/hostcheck.py)

    @property
    def gateway(self) -> str:
        """The host side: where control nodes listen and the test's listeners too."""
        return str(self.subnet.network_address + 1)

    def add_host(self, index: int) -> tuple[str, str]:
        """A namespace with its own address on the bridge: (its name, its address)."""
        name = f"kindling-t{self.tag}-h{index}"
        address = str(self.subnet.network_address + 1 + index)
        outside, inside = f"kt{self.tag}h{index}", f"kt{self.tag}p{index}"
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


@dataclass
class Topology:
    """A running cluster: its control nodes (what clients talk to) and its workers."""

    secret: str
    store_url: str
    net: HostNet
    controls: list[Server] = field(default_factory=list)
    workers: dict[str, Server] = field(default_factory=dict)

    @property
    def endpoints(self) -> list[str]:
        return [c.endpoint for c in self.controls]

    def status(self, control: int = 0) -> list[dict[str, Any]]:
        """``kindling cluster status --json`` of one control node."""
        out = subprocess.run(
            [str(KINDLING), "cluster", "status", "--json", "--endpoint", self.endpoints[control]],
            env={"KINDLING_CLUSTER_SECRET": self.secret, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        found: list[dict[str, Any]] = json.loads(out.stdout)
        return found

    def wait_for(self, names: set[str], timeout: float = 60.0) -> None:
        """Until every live control node lists exactly ``names`` as its workers."""
        deadline = time.monotonic() + timeout
        for index, control in enumerate(self.controls):
            if control.proc is None or control.proc.poll() is not None:
                continue
            while {w["worker_id"] for w in self.status(index)} != names:
                assert time.monotonic() < deadline, (
                    f"control {index} never saw workers {names}: {self.status(index)}\n"
                    f"{self.logs()}"
                )
                time.sleep(0.1)

    def worker_capacity(self, name: str) -> dict[str, Any]:
        """What a worker itself says it holds (its signed ``GET /v1/capacity``): the
        truth on that host, whatever any control node believes."""
        server = self.workers[name]
        key = cluster_auth.check_secret(self.secret)
        request = urllib.request.Request(
            server.endpoint + wire.CAPACITY,
            headers={cluster_auth.HEADER: cluster_auth.sign(key, "GET", wire.CAPACITY, b"")},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            found: dict[str, Any] = json.loads(answer.read())
        return found

    def alive(self, server: Server) -> bool:
        return server.proc is not None and server.proc.poll() is None

    def logs(self, size: int = 3000) -> str:
        named = [(f"control{i}", c) for i, c in enumerate(self.controls)]
        return "\n".join(
            f"--- {name}:\n{server.log_tail(size)}"
            for name, server in [*named, *self.workers.items()]
        )

    def close(self) -> None:
        """Stops every process (workers first: they hold the sandboxes), then the net.
        Asserts each live one stopped cleanly, after everything is gone."""
        problems: list[str] = []
        for server in [*self.workers.values(), *self.controls]:
            if not self.alive(server):
                continue
            try:
                server.stop_cleanly()
            except AssertionError as exc:
                problems.append(str(exc))
        self.net.remove()
        assert not problems, "\n".join(problems)


@contextlib.contextmanager
def cluster(
    root: Path,
    store_url: str,
    *,
    controls: int = 1,
    workers: int = 2,
    env: dict[str, str] | None = None,
    control_args: Sequence[str] = (),
    worker_args: Sequence[str] = (),
) -> Iterator[Topology]:
    """Starts a topology under ``root`` and removes it afterwards, even on failure.

    ``env`` goes to every node (e.g. ``KINDLING_KEEP_ALIVE_S``); ``control_args`` to the
    control nodes (``("--counting", redis_url)`` once there is one); ``worker_args`` to
    the workers, where ``{gateway}`` is the host side's address (e.g. ``("--egress-allow",
    "{gateway}/32")`` lets sandboxes reach a listener of the test there).
    """
    secret = secrets.token_hex(32)
    common = {"KINDLING_CLUSTER_SECRET": secret, **(env or {})}
    net = HostNet.create(str(root))
    topology = Topology(secret, store_url, net)
    try:
        for index in range(controls):
            control = Server(
                root / f"control{index}",
                root / f"control{index}.log",
                port=free_port(),
                host=net.gateway,
                extra_args=("--role", "control", "--store", store_url, *control_args),
                env=common,
            )
            topology.controls.append(control)
            control.start(timeout=60)
        for index in range(1, workers + 1):
            namespace, address = net.add_host(index)
            name = f"w{index}"
            worker = Server(
                root / name,
                root / f"{name}.log",
                port=WORKER_PORT,
                host=address,
                wrap=("nsenter", f"--net=/run/netns/{namespace}", "--"),
                extra_args=(
                    "--role",
                    "worker",
                    "--control",
                    ",".join(topology.endpoints),
                    "--advertise",
                    f"http://{address}:{WORKER_PORT}",
                    "--worker-id",
                    name,
                    *(a.format(gateway=net.gateway) for a in worker_args),
                ),
                env=common,
            )
            topology.workers[name] = worker
            worker.start(timeout=60)
        topology.wait_for(set(topology.workers))
        yield topology
    finally:
        topology.close()

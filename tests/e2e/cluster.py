"""A real cluster on this machine, for tests: PostgreSQL, N control nodes, M workers.

Each control node is a ``kindling serve --role control`` process with a data dir of its
own, all on one PostgreSQL store. Each worker is a ``kindling serve --role worker`` in a
network namespace of its own with its own address, as a separate host would be
(bench/hostnet.py, shared with ``python -m bench cluster``): the namespaces hang on a
bridge in the host's namespace, whose address is where the control nodes listen
(workers reach them there, and so does the test). ``Topology.close`` removes it all,
processes first, on any failure too.

Control nodes count in Redis with ``cluster(..., control_args=("--counting", url))``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.hostnet import HostNet

from kindling.iam import cluster as cluster_auth
from kindling.worker import wire
from tests.e2e.support import KINDLING, Server, free_port

#: What a worker listens on, inside its own namespace.
WORKER_PORT = 9100


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
        key = cluster_auth.worker_key(cluster_auth.check_secret(self.secret), name)
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


def worker_token(secret: str, worker_id: str) -> str:
    """``kindling cluster token <worker_id>``, as an operator runs it."""
    out = subprocess.run(
        [str(KINDLING), "cluster", "token", worker_id],
        env={"KINDLING_CLUSTER_SECRET": secret, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


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
    control nodes (``("--counting", redis_url)``); ``worker_args`` to
    the workers, where ``{gateway}`` is the host side's address (e.g. ``("--egress-allow",
    "{gateway}/32")`` lets sandboxes reach a listener of the test there).
    """
    secret = secrets.token_hex(32)
    common = {
        "KINDLING_CLUSTER_SECRET": secret,
        # control nodes share one server key, as docs/cluster.md says (ADR 0036)
        "KINDLING_SERVER_KEY_FILE": str(root / "server.key"),
        **(env or {}),
    }
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
                wrap=HostNet.wrap(namespace),
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
                # each worker holds only its own token, as docs/cluster.md advises (ADR 0044)
                env={**common, "KINDLING_CLUSTER_SECRET": worker_token(secret, name)},
            )
            topology.workers[name] = worker
            worker.start(timeout=60)
        topology.wait_for(set(topology.workers))
        yield topology
    finally:
        topology.close()

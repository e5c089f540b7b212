"""Code across a cluster (ADR 0024): two control nodes on one PostgreSQL, each with a
data dir of its own, and one worker that names both. Code uploaded through one node runs
when invoked through the other, an update through either reaches every node, and a
deleted function's code leaves the store and the worker.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kindling.limits import CLUSTER_HEARTBEAT_S, CODE_SHARED_PIN_S
from tests.e2e.support import (
    ROLE,
    Server,
    free_port,
    lambda_client,
    make_zip,
    wait_active,
    wait_for,
)
from tests.engines import Postgres


def _app(value: int) -> dict[str, str]:
    return {"app.py": f"def handler(event, context):\n    return {{'v': {value}}}\n"}


def _digest(config: dict[str, Any]) -> str:
    return base64.b64decode(config["CodeSha256"]).hex()


@dataclass
class Hosts:
    a: Server
    b: Server
    worker: Server
    postgres: Postgres
    database: str

    def rows(self) -> set[str]:
        out = self.postgres.psql("SELECT digest FROM code_zips", self.database)
        return set(out.split())

    def worker_trees(self) -> set[str]:
        trees = self.worker.data_dir / "code" / "trees"
        return {p.name for p in trees.iterdir()} if trees.is_dir() else set()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}:\n{server.log_tail(3000)}"
            for name, server in (("a", self.a), ("b", self.b), ("worker", self.worker))
        )


@pytest.fixture
def hosts(tmp_path: Path, postgres: Postgres) -> Iterator[Hosts]:
    url = postgres.database()
    database = url.split("/")[3].split("?")[0]
    env = {"KINDLING_CLUSTER_SECRET": secrets.token_hex(32)}
    started: list[Server] = []

    def control(name: str) -> Server:
        server = Server(
            tmp_path / name,
            tmp_path / f"{name}.log",
            extra_args=("--role", "control", "--store", url),
            env=env,
        )
        server.start()
        started.append(server)
        return server

    try:
        a, b = control("a"), control("b")
        port = free_port()
        worker = Server(
            tmp_path / "w",
            tmp_path / "w.log",
            port=port,
            extra_args=(
                "--role",
                "worker",
                # B first: the worker fetches code from the node that never had it
                "--control",
                f"{b.endpoint},{a.endpoint}",
                "--advertise",
                f"http://127.0.0.1:{port}",
                "--worker-id",
                "w",
            ),
            env=env,
        )
        worker.start()
        started.append(worker)
        yield Hosts(a, b, worker, postgres, database)
    finally:
        for server in reversed(started):
            if server.proc is not None and server.proc.poll() is None:
                server.stop_cleanly()


def test_code_uploaded_through_one_control_node_runs_through_another_and_goes_with_it(
    hosts: Hosts,
) -> None:
    a, b = lambda_client(hosts.a.endpoint), lambda_client(hosts.b.endpoint)

    def invoke(lam: Any) -> Any:
        def answered() -> Any:  # until this control node has heard the worker
            response = lam.invoke(FunctionName="shared", Payload=b"{}")
            body = response["Payload"].read()
            assert "FunctionError" not in response, (body, hosts.logs())
            return json.loads(body)

        try:
            return answered()
        except lam.exceptions.TooManyRequestsException:
            return wait_for(answered, timeout=30)

    created = a.create_function(
        FunctionName="shared",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip(_app(1))},
    )
    first = _digest(created)
    wait_active(a, "shared")
    assert hosts.rows() == {first}  # stored where B reads it

    assert invoke(b) == {"v": 1}  # B built the spec, the worker fetched the code from B
    assert first in hosts.worker_trees()
    assert (hosts.b.data_dir / "code" / "trees" / first).is_dir()  # and B keeps it

    updated = b.update_function_code(FunctionName="shared", ZipFile=make_zip(_app(2)))
    second = _digest(updated)
    wait_active(b, "shared")
    assert invoke(a) == {"v": 2}, hosts.logs()  # A never had this zip
    assert {first, second} <= hosts.rows()
    assert second in hosts.worker_trees()

    a.delete_function(FunctionName="shared")
    # the rows go once no create could still be recording them (the pin)...
    wait_for(lambda: not hosts.rows() & {first, second}, timeout=CODE_SHARED_PIN_S + 30)
    # ...and the worker drops its trees at its next heartbeat
    wait_for(
        lambda: not hosts.worker_trees() & {first, second},
        timeout=CLUSTER_HEARTBEAT_S * 10 + 10,
    )
    assert not (hosts.worker.data_dir / "code" / "zips" / f"{second}.zip").exists()

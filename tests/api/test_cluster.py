"""The control node's cluster endpoint (api/cluster.py): a heartbeat that lists the code a
worker keeps idle is answered with the digests the control plane no longer keeps."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterable

from kindling.api.cluster import ClusterApi
from kindling.errors import StoreUnavailableError
from kindling.httpd import Request, Response
from kindling.iam import cluster
from kindling.iam.sigv4 import Caller
from kindling.invoke.assignment import Assignment
from kindling.invoke.placement import Placement
from kindling.invoke.registry import WorkerRegistry
from kindling.limits import CLUSTER_HEARTBEAT_DIGESTS

KEY = secrets.token_bytes(32)
KEPT, GONE = "a" * 64, "b" * 64


def _capacity() -> dict[str, object]:
    return {
        "worker_id": "w",
        "memory_mb": 1024,
        "memory_used_mb": 0,
        "cpus": 2.0,
        "cpu_used": 0.0,
        "accounts": [],
    }


def _heartbeat(api: ClusterApi, code: object) -> Response:
    doc: dict[str, object] = {"url": "http://127.0.0.1:1", "boot": "b1", "capacity": _capacity()}
    if code is not None:
        doc["code"] = code
    body = json.dumps(doc).encode()
    path = "/_kindling/cluster/heartbeat"
    headers = {cluster.HEADER.lower(): cluster.sign(KEY, "POST", path, body)}
    request = Request("POST", path, "", headers, body)

    def no_sigv4(_request: Request) -> Caller:
        raise AssertionError("the cluster endpoint never asks for SigV4")

    return asyncio.run(api.handle(request, no_sigv4))


def _api(known: object) -> ClusterApi:
    placement = Placement([])
    registry = WorkerRegistry(placement, Assignment(placement, 60.0), KEY)

    def code_known(digests: list[str]) -> Iterable[str]:
        if isinstance(known, Exception):
            raise known
        assert isinstance(known, set)
        return known & set(digests)

    def code_zip(_digest: str) -> bytes:
        raise FileNotFoundError

    return ClusterApi(KEY, registry, code_zip, code_known)


def test_a_heartbeat_learns_which_code_the_control_plane_no_longer_keeps() -> None:
    answer = _heartbeat(_api({KEPT}), [KEPT, GONE])
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["code_gone"] == [GONE]


def test_a_heartbeat_without_code_is_answered_as_before() -> None:
    answer = _heartbeat(_api({KEPT}), None)
    assert answer.status == 200
    assert "code_gone" not in json.loads(answer.body)


def test_a_store_that_is_down_renews_the_lease_and_deletes_nothing() -> None:
    answer = _heartbeat(_api(StoreUnavailableError("down")), [KEPT, GONE])
    assert answer.status == 200
    assert "code_gone" not in json.loads(answer.body)


def test_a_malformed_code_list_is_refused() -> None:
    for bad in (["../../etc"], "x", [KEPT] * (CLUSTER_HEARTBEAT_DIGESTS + 1), [KEPT.upper()]):
        answer = _heartbeat(_api({KEPT}), bad)
        assert answer.status == 400, bad

"""The control node's cluster endpoint (api/cluster.py): a heartbeat that lists the code a
worker keeps idle is answered with the digests the control plane no longer keeps; a
worker speaks only for itself, with its own key (ADR 0044)."""

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


def _capacity(worker_id: str = "w") -> dict[str, object]:
    return {
        "worker_id": worker_id,
        "memory_mb": 1024,
        "memory_used_mb": 0,
        "cpus": 2.0,
        "cpu_used": 0.0,
        "accounts": [],
    }


def _heartbeat(
    api: ClusterApi,
    code: object,
    announced: str = "w",
    signer: str | None = "w",
    key: bytes | None = None,
) -> Response:
    doc: dict[str, object] = {
        "url": "http://127.0.0.1:1",
        "boot": "b1",
        "capacity": _capacity(announced),
    }
    if code is not None:
        doc["code"] = code
    body = json.dumps(doc).encode()
    if key is None:
        key = KEY if signer is None else cluster.worker_key(KEY, signer)
    return _call(api, "POST", "/_kindling/cluster/heartbeat", body, key, signer)


def _call(
    api: ClusterApi, method: str, path: str, body: bytes, key: bytes, signer: str | None
) -> Response:
    headers = {cluster.HEADER.lower(): cluster.sign(key, method, path, body, worker=signer)}
    request = Request(method, path, "", headers, body)

    def no_sigv4(_request: Request) -> Caller:
        raise AssertionError("the cluster endpoint never asks for SigV4")

    return asyncio.run(api.handle(request, no_sigv4))


def _api(known: object, registry: WorkerRegistry | None = None) -> ClusterApi:
    placement = Placement([])
    registry = registry or WorkerRegistry(placement, Assignment(placement, 60.0), KEY)

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


def _registry() -> WorkerRegistry:
    placement = Placement([])
    return WorkerRegistry(placement, Assignment(placement, 60.0), KEY)


def test_a_worker_cannot_announce_another_worker() -> None:
    registry = _registry()
    api = _api({KEPT}, registry)
    assert _heartbeat(api, None, announced="w2", signer="w2").status == 200
    answer = _heartbeat(api, None, announced="w2", signer="w1")
    assert answer.status == 403, answer.body
    assert b"may not announce worker w2" in answer.body
    assert [wid for wid, _ in registry.members()] == ["w2"]
    assert registry.status()[0]["url"] == "http://127.0.0.1:1"


def test_a_signature_naming_another_worker_does_not_verify() -> None:
    """w1 holds only its own key: naming w2 in the header does not make it w2's."""
    answer = _heartbeat(
        _api({KEPT}), None, announced="w2", signer="w2", key=cluster.worker_key(KEY, "w1")
    )
    assert answer.status == 401


def test_only_the_secret_reads_the_cluster_status() -> None:
    api = _api({KEPT})
    path = "/_kindling/cluster/status"
    assert _call(api, "GET", path, b"", KEY, None).status == 200
    as_worker = _call(api, "GET", path, b"", cluster.worker_key(KEY, "w1"), "w1")
    assert as_worker.status == 403, as_worker.body


def test_the_secret_alone_neither_heartbeats_nor_fetches_code() -> None:
    """An operator's signature (no worker named) is for status only."""
    api = _api({KEPT})
    assert _heartbeat(api, None, signer=None).status == 403
    assert _call(api, "GET", f"/_kindling/cluster/code/{KEPT}", b"", KEY, None).status == 403


def test_a_malformed_worker_id_is_unauthorized() -> None:
    api = _api({KEPT})
    headers = {cluster.HEADER.lower(): f"t=1,w=../x,s={'0' * 64}"}
    request = Request("GET", "/_kindling/cluster/status", "", headers, b"")

    def no_sigv4(_request: Request) -> Caller:
        raise AssertionError

    assert asyncio.run(api.handle(request, no_sigv4)).status == 401

"""Worker tokens (iam/cluster.py, ADR 0044): a worker's own key, bound to its id."""

from __future__ import annotations

import secrets

import pytest

from kindling.errors import AuthError
from kindling.iam import cluster

SECRET = secrets.token_hex(32)


def test_a_token_carries_the_key_the_control_plane_derives() -> None:
    token = cluster.worker_token(SECRET.encode(), "w1")
    cred = cluster.worker_credential(token, "")
    assert cred.worker_id == "w1"
    assert cred.key == cluster.worker_key(SECRET.encode(), "w1")
    assert cluster.worker_credential(token, "w1") == cred
    assert SECRET not in token


def test_the_secret_itself_still_makes_a_worker_credential() -> None:
    cred = cluster.worker_credential(SECRET, "w2")
    assert cred.key == cluster.worker_key(SECRET.encode(), "w2")


def test_workers_keys_differ_and_differ_from_the_secret() -> None:
    a, b = (cluster.worker_key(SECRET.encode(), w) for w in ("w1", "w2"))
    assert len({a, b, SECRET.encode()}) == 3


def test_a_token_is_for_its_own_worker_only() -> None:
    token = cluster.worker_token(SECRET.encode(), "w1")
    with pytest.raises(ValueError, match="worker w1's, not w2's"):
        cluster.worker_credential(token, "w2")


@pytest.mark.parametrize(
    "bad",
    [
        "kindling-worker:w1",
        "kindling-worker:w1:zz" + "0" * 62,
        "kindling-worker:w1:abcd",
        "kindling-worker:../x:" + "0" * 64,
        "kindling-worker:w1:" + "0" * 64 + ":extra",
    ],
)
def test_a_malformed_token_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        cluster.worker_credential(bad, "")


@pytest.mark.parametrize("worker_id", ["", "a,b", "w=1", "a:b", "x" * 65])
def test_a_worker_id_a_signature_cannot_carry_makes_no_token(worker_id: str) -> None:
    with pytest.raises(ValueError):
        cluster.worker_token(SECRET.encode(), worker_id)


def test_a_worker_signature_names_its_worker_and_verifies_with_its_key() -> None:
    key = cluster.worker_key(SECRET.encode(), "w1")
    header = cluster.sign(key, "POST", "/p", b"body", worker="w1")
    assert cluster.signer(header) == "w1"
    cluster.verify(key, "POST", "/p", b"body", header)
    with pytest.raises(AuthError):
        cluster.verify(cluster.worker_key(SECRET.encode(), "w2"), "POST", "/p", b"body", header)
    assert cluster.signer(cluster.sign(SECRET.encode(), "GET", "/p", b"")) is None

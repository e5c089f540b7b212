"""SigV4 in the presigned-query form, as botocore's ``SigV4QueryAuth`` (the signer of
``generate_presigned_url``) makes it (ADR 0043)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kindling.errors import SignatureError, UnknownKeyError
from kindling.iam.accounts import KeyRing
from kindling.iam.sigv4 import SigV4Verifier

PATH = "/2015-03-31/functions/hello"


def _presigned(
    expires: int = 60, secret: str = "test", key: str = "test", query: str = "Qualifier=1"
) -> dict[str, Any]:
    request = AWSRequest(method="GET", url=f"http://127.0.0.1:9000{PATH}?{query}")
    SigV4QueryAuth(Credentials(key, secret), "lambda", "eu-west-2", expires).add_auth(request)
    url = urlsplit(request.url)
    return {
        "method": "GET",
        "path": url.path,
        "query": url.query,
        "headers": {"host": "127.0.0.1:9000", "user-agent": "not signed"},
        "body": b"",
    }


def _verify(request: dict[str, Any], now: datetime | None = None) -> Any:
    return SigV4Verifier(KeyRing.dev()).verify(**request, now=now)


def test_accepts_a_url_presigned_by_botocore() -> None:
    request = _presigned()
    assert "X-Amz-Signature=" in request["query"] and "Qualifier=1" in request["query"]
    caller = _verify(request)
    assert (caller.account_id, caller.region) == ("000000000000", "eu-west-2")


def test_a_url_is_refused_once_its_expiry_has_passed() -> None:
    request = _presigned(expires=60)
    _verify(request, datetime.now(UTC) + timedelta(seconds=50))  # still valid
    with pytest.raises(SignatureError, match=r"^Signature expired: \d{8}T\d{6}Z is now earlier"):
        _verify(request, datetime.now(UTC) + timedelta(seconds=70))
    # valid far beyond the 15 minutes of the header form, as long as X-Amz-Expires says
    _verify(_presigned(expires=7200), datetime.now(UTC) + timedelta(hours=1))


def test_a_url_dated_in_the_future_is_refused() -> None:
    with pytest.raises(SignatureError, match="Signature not yet current"):
        _verify(_presigned(), datetime.now(UTC) - timedelta(minutes=20))


def test_tampered_and_wrongly_keyed_urls_are_refused() -> None:
    request = _presigned()
    request["query"] = request["query"].replace("Qualifier=1", "Qualifier=2")
    with pytest.raises(SignatureError, match="does not match"):
        _verify(request)
    with pytest.raises(SignatureError, match="does not match"):
        _verify(_presigned(secret="other"))
    with pytest.raises(UnknownKeyError):
        _verify(_presigned(key="AKIDUNKNOWN"))
    longer = _presigned()
    longer["query"] = longer["query"].replace("X-Amz-Expires=60", "X-Amz-Expires=6000")
    with pytest.raises(SignatureError, match="does not match"):  # expiry is signed
        _verify(longer)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("X-Amz-Expires=60", "X-Amz-Expires=604801"), "must be less than a week"),
        (("X-Amz-Expires=60", "X-Amz-Expires=soon"), "should be a number"),
        (("X-Amz-Date=", "X-Amz-Nothing="), "requires the X-Amz-Algorithm"),
        (("%2Flambda%2F", "%2Fiam%2F"), "correct service: 'lambda'"),
    ],
)
def test_malformed_presigned_parameters_are_refused(edit: tuple[str, str], message: str) -> None:
    request = _presigned()
    request["query"] = request["query"].replace(*edit)
    with pytest.raises(SignatureError, match=message):
        _verify(request)

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kindling.errors import MissingAuthError, SignatureError, UnknownKeyError
from kindling.iam import sigv4
from kindling.iam.accounts import KeyRing
from kindling.iam.sigv4 import SigV4Verifier

PATH = (
    "/2015-03-31/functions/"
    "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello/invocations"
)


def _signed(
    secret: str = "test",
    key: str = "test",
    body: bytes = b'{"a":1}',
    query: str = "Qualifier=%24LATEST",
    region: str = "eu-west-2",
    service: str = "lambda",
) -> dict[str, object]:
    request = AWSRequest(
        method="POST",
        url=f"http://127.0.0.1:9000{PATH}?{query}",
        data=body,
        headers={"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"},
    )
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:9000"
    headers["user-agent"] = "something the client did not sign"
    return {"method": "POST", "path": PATH, "query": query, "headers": headers, "body": body}


def test_accepts_a_request_signed_by_botocore() -> None:
    caller = SigV4Verifier(KeyRing.dev()).verify(**_signed())  # type: ignore[arg-type]
    assert caller.account_id == "000000000000"
    assert caller.region == "eu-west-2"


def test_refuses_a_wrong_secret() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        SigV4Verifier(KeyRing.dev()).verify(**_signed(secret="nope"))  # type: ignore[arg-type]


def test_refuses_a_tampered_body() -> None:
    request = _signed()
    request["body"] = b'{"a":2}'
    with pytest.raises(SignatureError):
        SigV4Verifier(KeyRing.dev()).verify(**request)  # type: ignore[arg-type]


def test_refuses_a_tampered_signed_header() -> None:
    request = _signed()
    headers = request["headers"]
    assert isinstance(headers, dict)
    headers["x-amz-invocation-type"] = "RequestResponse"
    with pytest.raises(SignatureError):
        SigV4Verifier(KeyRing.dev()).verify(**request)  # type: ignore[arg-type]


def test_refuses_a_tampered_query() -> None:
    request = _signed()
    request["query"] = "Qualifier=other"
    with pytest.raises(SignatureError):
        SigV4Verifier(KeyRing.dev()).verify(**request)  # type: ignore[arg-type]


def test_unknown_key_and_missing_auth() -> None:
    with pytest.raises(UnknownKeyError):
        SigV4Verifier(KeyRing.dev()).verify(**_signed(key="AKIDUNKNOWN"))  # type: ignore[arg-type]
    request = _signed()
    headers = request["headers"]
    assert isinstance(headers, dict)
    del headers["authorization"]
    with pytest.raises(MissingAuthError):
        SigV4Verifier(KeyRing.dev()).verify(**request)  # type: ignore[arg-type]


def test_refuses_an_old_signature() -> None:
    later = datetime.now(UTC) + timedelta(minutes=20)
    with pytest.raises(SignatureError, match="expired"):
        SigV4Verifier(KeyRing.dev()).verify(**_signed(), now=later)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "query", "extra"),
    [
        ("/2015-03-31/functions/", "MaxItems=2&Marker=abc%3D%3D", {}),
        (
            "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A0%3Afunction%3Af",
            "tagKeys=a&tagKeys=b",
            {},
        ),
        ("/2015-03-31/functions/f%20x/./code", "", {"X-Amz-Client-Context": "a,  b   c"}),
        ("/2015-03-31/functions/caf%C3%A9", "Qualifier=%24LATEST", {"X-Custom": " padded "}),
    ],
)
def test_canonical_form_matches_botocore(path: str, query: str, extra: dict[str, str]) -> None:
    url = f"http://127.0.0.1:9000{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method="GET", url=url, data=b"", headers=extra)
    SigV4Auth(Credentials("test", "test"), "lambda", "us-east-1").add_auth(request)
    headers = {k.lower(): v.strip() for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:9000"
    caller = SigV4Verifier(KeyRing.dev()).verify("GET", path, query, headers, b"")
    assert caller.region == "us-east-1"


@pytest.mark.parametrize("service", ["s3", "iam", "sts", "lambdax", ""])
def test_refuses_a_signature_scoped_to_another_service(service: str) -> None:
    """A valid signature for another service is not one for Lambda (AWS: 403
    InvalidSignatureException "Credential should be scoped to correct service")."""
    with pytest.raises(SignatureError, match="correct service: 'lambda'"):
        SigV4Verifier(KeyRing.dev()).verify(**_signed(service=service))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "region",
    ["..", "../../etc", "us-east-1/..", "a/b", "US-EAST-1", "-x", "x-", "a--b", "", "a" * 33],
)
def test_refuses_a_region_that_is_not_a_region_name(region: str) -> None:
    """The region names the folders of an account's data: "..", "/" or anything but
    lowercase words joined by single dashes is refused before it reaches a path."""
    with pytest.raises(SignatureError, match=r"valid region|requires 'Credential'"):
        SigV4Verifier(KeyRing.dev()).verify(**_signed(region=region))  # type: ignore[arg-type]


@pytest.mark.parametrize("region", ["us-east-1", "us-gov-west-1", "ap-southeast-4", "local"])
def test_accepts_region_names(region: str) -> None:
    caller = SigV4Verifier(KeyRing.dev()).verify(**_signed(region=region))  # type: ignore[arg-type]
    assert caller.region == region


def test_a_kept_signing_key_never_lets_a_wrong_secret_through() -> None:
    """The verifier keeps derived signing keys; one kept for the right secret must not
    answer for a request signed with another secret of the same scope."""
    verifier = SigV4Verifier(KeyRing.dev())
    verifier.verify(**_signed())  # type: ignore[arg-type]
    verifier.verify(**_signed())  # type: ignore[arg-type]  # from the kept key
    with pytest.raises(SignatureError, match="does not match"):
        verifier.verify(**_signed(secret="nope"))  # type: ignore[arg-type]


def test_kept_signing_keys_are_bounded_however_many_regions_a_caller_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sigv4, "SIGNING_KEYS_KEPT", 8)
    verifier = SigV4Verifier(KeyRing.dev())
    for n in range(30):
        caller = verifier.verify(**_signed(region=f"xx-test-{n}"))  # type: ignore[arg-type]
        assert caller.region == f"xx-test-{n}"
        assert len(verifier._signing) <= 8

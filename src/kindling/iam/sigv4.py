"""SigV4 verification. botocore computes the canonical request; we only choose the headers.

A client lists the headers it signed in ``SignedHeaders``; the server must sign exactly
those, whatever else arrived on the wire. Everything else (path double-encoding, query
canonicalization, key derivation) is botocore's own code, so it cannot drift from the
signer that boto3 and the AWS CLI use.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from kindling.errors import MissingAuthError, SignatureError, UnknownKeyError
from kindling.iam.accounts import KeyRing

#: Lambda refuses requests whose X-Amz-Date is further than this from its clock.
MAX_SKEW_S = 15 * 60
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_UNSIGNED = {"UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who signed a request, and for which region."""

    account_id: str
    access_key_id: str
    region: str


@dataclass(frozen=True, slots=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def _parse_authorization(value: str) -> _Authorization:
    algorithm, _, rest = value.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise SignatureError(f"Unsupported signature algorithm: {algorithm}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, _, val = part.strip().partition("=")
        fields[key] = val
    try:
        key_id, date, region, service, terminal = fields["Credential"].split("/")
        signed = tuple(fields["SignedHeaders"].split(";"))
        signature = fields["Signature"]
    except (KeyError, ValueError) as exc:
        raise SignatureError(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
            f"parameters. Authorization={value}"
        ) from exc
    if terminal != "aws4_request":
        raise SignatureError("Credential should be scoped with a valid terminator: 'aws4_request'")
    return _Authorization(key_id, date, region, service, signed, signature)


class _Verifier(SigV4Auth):  # type: ignore[misc]
    """botocore's signer, told which headers the client signed."""

    def __init__(
        self, secret: str, key_id: str, service: str, region: str, signed: tuple[str, ...]
    ):
        super().__init__(Credentials(key_id, secret), service, region)
        self._signed = signed

    def headers_to_sign(self, request: Any) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name in self._signed:
            if name in request.headers:
                chosen[name] = request.headers[name]
        return chosen


class SigV4Verifier:
    """Checks that a request was signed by a known key; returns the caller."""

    def __init__(self, keys: KeyRing, service: str = "lambda") -> None:
        self._keys = keys
        self._service = service

    def verify(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        now: datetime | None = None,
    ) -> Caller:
        raw = headers.get("authorization")
        if not raw:
            if "X-Amz-Signature=" in query:
                raise SignatureError("Presigned URLs are not supported by this endpoint")
            raise MissingAuthError("Missing Authentication Token")
        auth = _parse_authorization(raw)
        key = self._keys.find(auth.access_key_id)
        if key is None:
            raise UnknownKeyError("The security token included in the request is invalid.")
        amz_date = headers.get("x-amz-date", "")
        self._check_clock(amz_date, auth.date, now)
        declared = headers.get("x-amz-content-sha256")
        if (
            declared is not None
            and declared not in _UNSIGNED
            and declared != hashlib.sha256(body).hexdigest()
        ):
            raise SignatureError(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        request = AWSRequest(method=method, url=f"http://signed{path}", data=body)
        if query:
            request.url += "?" + query
        for name in auth.signed_headers:
            if name in headers:
                request.headers[name] = headers[name]
        request.context["timestamp"] = amz_date
        verifier = _Verifier(
            key.secret_access_key, key.access_key_id, auth.service, auth.region, auth.signed_headers
        )
        canonical = verifier.canonical_request(request)
        string_to_sign = verifier.string_to_sign(request, canonical)
        expected = verifier.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, auth.signature):
            raise SignatureError(_MISMATCH)
        return Caller(key.account_id, key.access_key_id, auth.region)

    @staticmethod
    def _check_clock(amz_date: str, scope_date: str, now: datetime | None) -> None:
        try:
            stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError as exc:
            raise SignatureError(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header."
            ) from exc
        if amz_date[:8] != scope_date:
            raise SignatureError(
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        current = now or datetime.now(UTC)
        if abs((current - stamp).total_seconds()) > MAX_SKEW_S:
            raise SignatureError(
                f"Signature expired: {amz_date} is now earlier than "
                f"{current.strftime('%Y%m%dT%H%M%SZ')} - {MAX_SKEW_S // 60} min."
            )

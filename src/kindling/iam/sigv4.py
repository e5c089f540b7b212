"""SigV4 verification of every API request.

The canonical request is rebuilt from exactly what the client says it signed
(``SignedHeaders``), with botocore's own path normalization, so it matches the
signer in boto3 and the AWS CLI byte for byte (tests sign with botocore and verify
here). It is built directly from the parsed request rather than through botocore's
``AWSRequest``: that object's preparation was a sixth of the front end's time per
invoke. Signing keys are derived once per (key, day, region, service), the last 256 of
them kept.

The presigned-query form (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature`` and, for a session,
``X-Amz-Security-Token`` in the query string, as botocore's ``generate_presigned_url``
makes it) is verified the same way: the canonical query holds every parameter but the
signature, the payload hash is the body's (botocore signs it over http), and the
request is refused once ``X-Amz-Date`` + ``X-Amz-Expires`` has passed rather than
outside the clock-skew window (ADR 0043).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol
from urllib.parse import quote, unquote

from botocore.utils import normalize_url_path

from kindling.errors import MissingAuthError, SignatureError, UnknownKeyError
from kindling.iam.accounts import AccessKey
from kindling.iam.sessions import Session

#: Lambda refuses requests whose X-Amz-Date is further than this from its clock.
MAX_SKEW_S = 15 * 60
#: Derived signing keys the verifier keeps (one per secret, day, region and service);
#: past this many it starts again, so rotating regions cannot grow it.
SIGNING_KEYS_KEPT = 1024
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
#: A region names a folder and an ARN: letters, digits and single dashes (us-east-1,
#: us-gov-west-1, eu-central-2, or a local name such as "local"), never "." or "/".
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_REGION_LENGTH = 32
_UNSIGNED = {"UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
#: SigV4's bound on a presigned request's life: "The minimum value you can set is 1, and
#: the maximum is 604800 (seven days)" (AWS, "Authenticating Requests: Using Query
#: Parameters"), because a signing key is valid for seven days.
MAX_PRESIGNED_EXPIRES_S = 604800
_PRESIGNED_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Keys(Protocol):
    """Where the verifier finds a key's secret and account (``kindling.iam.accounts``)."""

    def find(self, access_key_id: str, token: str | None = None) -> AccessKey | None: ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who signed a request, and for which region."""

    account_id: str
    access_key_id: str
    region: str
    #: The IAM user who signed ("" for the account's root or a role session).
    user_name: str = ""
    #: The assumed-role session that signed, if one did.
    session: Session | None = None

    @property
    def arn(self) -> str:
        """The caller's ARN as GetCallerIdentity and AccessDenied messages give it."""
        if self.session is not None:
            return self.session.arn
        if self.user_name:
            return f"arn:aws:iam::{self.account_id}:user/{self.user_name}"
        return f"arn:aws:iam::{self.account_id}:root"

    @property
    def is_root(self) -> bool:
        return self.session is None and not self.user_name


@dataclass(frozen=True, slots=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: str
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
        credential = fields["Credential"]
        signed = fields["SignedHeaders"]
        signature = fields["Signature"]
        key_id, date, region, service, terminal = credential.split("/")
    except (KeyError, ValueError) as exc:
        raise SignatureError(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
            f"parameters. Authorization={value}"
        ) from exc
    return _scoped(key_id, date, region, service, terminal, signed, signature)


def _scoped(
    key_id: str,
    date: str,
    region: str,
    service: str,
    terminal: str,
    signed: str,
    signature: str,
) -> _Authorization:
    if terminal != "aws4_request":
        raise SignatureError("Credential should be scoped with a valid terminator: 'aws4_request'")
    if len(region) > MAX_REGION_LENGTH or not _REGION.fullmatch(region):
        raise SignatureError("Credential should be scoped to a valid region. ")
    return _Authorization(key_id, date, region, service, signed, signature)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


@lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, region.encode(), hashlib.sha256).digest()
    key = hmac.new(key, service.encode(), hashlib.sha256).digest()
    return hmac.new(key, b"aws4_request", hashlib.sha256).digest()


def canonical_query(query: str) -> str:
    """botocore's canonical form of an already-encoded query string: pairs sorted."""
    if not query:
        return ""
    pairs = [(k, v) for k, _, v in (p.partition("=") for p in query.split("&"))]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    signed_headers: str,
    payload_hash: str,
) -> str:
    names = signed_headers.split(";")
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in names
    )
    return "\n".join(
        [
            method.upper(),
            quote(normalize_url_path(path), safe="/~"),
            canonical_query(query),
            canonical_headers,
            signed_headers,
            payload_hash,
        ]
    )


class SigV4Verifier:
    """Checks that a request was signed by a known key; returns the caller."""

    def __init__(self, keys: Keys, service: str = "lambda") -> None:
        self._keys = keys
        #: The service a credential scope must name: a signature for another service
        #: (or a scope of "s3", say) is not a signature for this API.
        self._service = service
        #: Signing keys derived (four HMACs each) per secret and credential scope: a
        #: client signs every request of a day with the same one. Only scopes whose key,
        #: date and service passed the checks get here; bounded all the same.
        self._signing: dict[tuple[str, str, str, str], bytes] = {}

    def _signing_key(self, secret: str, date: str, region: str, service: str) -> bytes:
        scope = (secret, date, region, service)
        found = self._signing.get(scope)
        if found is None:
            if len(self._signing) >= SIGNING_KEYS_KEPT:
                self._signing.clear()
            found = self._signing[scope] = signing_key(secret, date, region, service)
        return found

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
                return self._verify_presigned(method, path, query, headers, body, now)
            raise MissingAuthError("Missing Authentication Token")
        auth = _parse_authorization(raw)
        self._check_service(auth)
        key = self._keys.find(auth.access_key_id, headers.get("x-amz-security-token"))
        if key is None:
            raise UnknownKeyError("The security token included in the request is invalid.")
        amz_date = headers.get("x-amz-date", "")
        self._check_clock(amz_date, auth.date, now)
        return self._check_signature(
            auth,
            key,
            amz_date,
            method,
            path,
            query,
            headers,
            body,
            headers.get("x-amz-content-sha256"),
        )

    def _check_service(self, auth: _Authorization) -> None:
        if auth.service != self._service:
            raise SignatureError(
                f"Credential should be scoped to correct service: '{self._service}'. "
            )

    def _verify_presigned(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        now: datetime | None,
    ) -> Caller:
        """The presigned-query form: the same signature, its parameters in the query."""
        params: dict[str, str] = {}
        unsigned: list[str] = []
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if name == "X-Amz-Signature":
                params[name] = value
            else:
                unsigned.append(pair)
                if name.startswith("X-Amz-"):
                    params[name] = unquote(value)
        missing = [name for name in _PRESIGNED_REQUIRED if not params.get(name)]
        if missing:
            raise SignatureError(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                "X-Amz-Expires parameters."
            )
        if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
            raise SignatureError(f"Unsupported signature algorithm: {params['X-Amz-Algorithm']}")
        parts = params["X-Amz-Credential"].split("/")
        if len(parts) != 5:
            raise SignatureError(
                "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
                'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
            )
        key_id, date, region, service, terminal = parts
        signed, signature = params["X-Amz-SignedHeaders"], params["X-Amz-Signature"]
        auth = _scoped(key_id, date, region, service, terminal, signed, signature)
        self._check_service(auth)
        expires_text = params["X-Amz-Expires"]
        if not expires_text.isdigit():
            raise SignatureError("X-Amz-Expires should be a number")
        expires = int(expires_text)
        if not 1 <= expires <= MAX_PRESIGNED_EXPIRES_S:
            raise SignatureError(
                "X-Amz-Expires must be less than a week (in seconds); that is, the given "
                f"X-Amz-Expires must be less than {MAX_PRESIGNED_EXPIRES_S} seconds"
            )
        key = self._keys.find(auth.access_key_id, params.get("X-Amz-Security-Token"))
        if key is None:
            raise UnknownKeyError("The security token included in the request is invalid.")
        amz_date = params["X-Amz-Date"]
        stamp = self._parse_date(amz_date, auth.date)
        current = now or datetime.now(UTC)
        age = (current - stamp).total_seconds()
        if age > expires:
            raise SignatureError(
                f"Signature expired: {amz_date} is now earlier than "
                f"{_stamp(current - timedelta(seconds=expires))} "
                f"({_stamp(current)} - {expires} sec.)"
            )
        if -age > MAX_SKEW_S:
            raise SignatureError(
                f"Signature not yet current: {amz_date} is still later than "
                f"{_stamp(current + timedelta(seconds=MAX_SKEW_S))} "
                f"({_stamp(current)} + {MAX_SKEW_S // 60} min.)"
            )
        return self._check_signature(
            auth,
            key,
            amz_date,
            method,
            path,
            "&".join(unsigned),
            headers,
            body,
            params.get("X-Amz-Content-Sha256"),
        )

    def _check_signature(
        self,
        auth: _Authorization,
        key: AccessKey,
        amz_date: str,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        declared: str | None,
    ) -> Caller:
        actual = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        if declared is not None and declared not in _UNSIGNED and declared != actual:
            raise SignatureError(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        payload_hash = declared if declared is not None else actual
        canonical = canonical_request(
            method, path, query, headers, auth.signed_headers, payload_hash
        )
        scope = f"{auth.date}/{auth.region}/{auth.service}/aws4_request"
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                amz_date,
                scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        k_signing = self._signing_key(key.secret_access_key, auth.date, auth.region, auth.service)
        expected = hmac.new(k_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, auth.signature):
            raise SignatureError(_MISMATCH)
        return Caller(key.account_id, key.access_key_id, auth.region, key.user_name, key.session)

    @classmethod
    def _check_clock(cls, amz_date: str, scope_date: str, now: datetime | None) -> None:
        stamp = cls._parse_date(amz_date, scope_date)
        current = now or datetime.now(UTC)
        if abs((current - stamp).total_seconds()) > MAX_SKEW_S:
            raise SignatureError(
                f"Signature expired: {amz_date} is now earlier than "
                f"{current.strftime('%Y%m%dT%H%M%SZ')} - {MAX_SKEW_S // 60} min."
            )

    @staticmethod
    def _parse_date(amz_date: str, scope_date: str) -> datetime:
        try:  # by hand: strptime costs more than the rest of the check
            if len(amz_date) != 16 or amz_date[8] != "T" or amz_date[15] != "Z":
                raise ValueError(amz_date)
            stamp = datetime(
                int(amz_date[0:4]),
                int(amz_date[4:6]),
                int(amz_date[6:8]),
                int(amz_date[9:11]),
                int(amz_date[11:13]),
                int(amz_date[13:15]),
                tzinfo=UTC,
            )
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
        return stamp

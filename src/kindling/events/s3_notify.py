"""Bucket notifications from S3-compatible stores (MinIO, Ceph RGW): which bucket's
events go to which function, and the delivery of one webhook POST (ADR 0042).

A configuration belongs to an account and region, as the function it names. It is the
kindling side of what ``PutBucketNotificationConfiguration``'s
``LambdaFunctionConfigurations`` are on AWS: an ``Id`` (the events'
``configurationId``), the bucket, the function (a qualifier allowed), the event types
(``s3:ObjectCreated:*``; none: every event the store sends) and a key prefix and
suffix. The store side (MinIO's ``notify_webhook`` target and ``mc event add``) points
the bucket's events at ``/_kindling/s3-notify/<ConfigId>`` with the configuration's
token.

As on AWS, the function's resource policy must let ``s3.amazonaws.com`` invoke it for
that bucket (``AddPermission`` with ``Principal`` ``s3.amazonaws.com`` and
``SourceArn`` ``arn:aws:s3:::BUCKET``): checked when the configuration is made (S3's
"Unable to validate the following destination configurations") and again at each
delivery, so removing the permission stops the events.

The token is made here, shown once, and kept only as its SHA-256: the store holding
configurations cannot give a token away. A delivery is an Event invocation on the
durable async queue, committed before the store is answered 200, so an event a store
was told was taken survives a kill -9; a store that got no answer sends again (S3's
own "at least once").
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, String, Table, Text, select

from kindling import limits
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef, function_arn
from kindling.control.naming import parse_function_name
from kindling.control.policies import PolicyService
from kindling.errors import (
    AccessDeniedError,
    AuthError,
    ConflictError,
    NotFoundError,
    TooLargeError,
    ValidationError,
)
from kindling.events.s3_records import Filter, check_event_type, lambda_record, parse_body
from kindling.iam.policy import Principal, Request, evaluate
from kindling.store import Store, metadata

s3_notifications = Table(
    "s3_notifications",
    metadata,
    Column("config_id", String(32), primary_key=True),
    Column("account_id", String(12), nullable=False),
    Column("region", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    Column("bucket", String(255), nullable=False),
    Column("record", Text, nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("created", Float, nullable=False),
)

#: A bucket name as S3 allows it ("Bucket naming rules"); MinIO's and Ceph's fit in it.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]$")
_NAME = re.compile(r"^[\w.\-]{1,255}$")
_S3 = Principal("s3.amazonaws.com", "", service="s3.amazonaws.com")
#: Starts an Event invocation: (function, payload, request id).
Deliver = Callable[[FunctionRef, bytes, str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class S3Notification:
    config_id: str
    account_id: str
    region: str
    name: str
    bucket: str
    function_name: str
    qualifier: str | None
    filter: Filter
    created: float

    @property
    def function(self) -> FunctionRef:
        return FunctionRef(self.account_id, self.region, self.function_name, self.qualifier)

    def to_api(self, endpoint: str = "") -> dict[str, Any]:
        return {
            "ConfigId": self.config_id,
            "Id": self.name,
            "Bucket": self.bucket,
            "FunctionArn": function_arn(
                self.account_id, self.region, self.function_name, self.qualifier
            ),
            "Events": list(self.filter.events),
            "Prefix": self.filter.prefix,
            "Suffix": self.filter.suffix,
            "WebhookUrl": f"{endpoint}/_kindling/s3-notify/{self.config_id}",
            "Created": self.created,
        }

    def record(self) -> str:
        return json.dumps(
            {
                "function_name": self.function_name,
                "qualifier": self.qualifier,
                "events": list(self.filter.events),
                "prefix": self.filter.prefix,
                "suffix": self.filter.suffix,
            }
        )


def _from_row(row: Any) -> S3Notification:
    data = json.loads(row.record)
    return S3Notification(
        config_id=row.config_id,
        account_id=row.account_id,
        region=row.region,
        name=row.name,
        bucket=row.bucket,
        function_name=data["function_name"],
        qualifier=data["qualifier"],
        filter=Filter(tuple(data["events"]), data["prefix"], data["suffix"]),
        created=float(row.created),
    )


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class S3NotificationStore:
    """The statements on ``s3_notifications``; only this class runs them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def insert(self, config: S3Notification, token_sha256: str) -> None:
        with self._store.begin() as conn:
            conn.execute(
                s3_notifications.insert().values(
                    config_id=config.config_id,
                    account_id=config.account_id,
                    region=config.region,
                    name=config.name,
                    bucket=config.bucket,
                    record=config.record(),
                    token_sha256=token_sha256,
                    created=config.created,
                )
            )

    def get(self, config_id: str) -> tuple[S3Notification, str] | None:
        """The configuration and its token's digest."""
        with self._store.begin() as conn:
            row = conn.execute(
                select(s3_notifications).where(s3_notifications.c.config_id == config_id)
            ).first()
        return None if row is None else (_from_row(row), row.token_sha256)

    def of_account(self, account_id: str, region: str) -> list[S3Notification]:
        t = s3_notifications.c
        query = (
            select(s3_notifications)
            .where((t.account_id == account_id) & (t.region == region))
            .order_by(t.bucket, t.name)
        )
        with self._store.begin() as conn:
            return [_from_row(r) for r in conn.execute(query).all()]

    def delete(self, config_id: str) -> None:
        with self._store.begin() as conn:
            conn.execute(s3_notifications.delete().where(s3_notifications.c.config_id == config_id))


def _string(params: dict[str, Any], key: str, default: str = "") -> str:
    value = params.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string.")
    return value


class S3Notifications:
    def __init__(
        self,
        store: S3NotificationStore,
        functions: FunctionService,
        policies: PolicyService,
        deliver: Deliver,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._functions = functions
        self._policies = policies
        self._deliver = deliver
        self._clock = clock

    # ------------------------------------------------------------ configuration

    def create(
        self, account_id: str, region: str, params: dict[str, Any]
    ) -> tuple[S3Notification, str]:
        """A new configuration and its token (shown this once)."""
        bucket = _string(params, "Bucket")
        if not _BUCKET.match(bucket):
            raise ValidationError(f"The bucket name {bucket[:64]!r} is not valid.")
        function = _string(params, "FunctionName")
        if not function:
            raise ValidationError("FunctionName is required.")
        ref = parse_function_name(function, account_id, region)
        if (ref.account_id, ref.region) != (account_id, region):
            raise ValidationError(
                "The function must be in the configuration's own account and region."
            )
        # ResourceNotFound when it is not there; a qualifier is resolved at each delivery
        self._functions.get(dataclasses.replace(ref, qualifier=None))
        events = params.get("Events") or []
        if not isinstance(events, list) or len(events) > limits.S3_NOTIFY_MAX_EVENT_TYPES:
            raise ValidationError(
                f"Events must be a list of at most {limits.S3_NOTIFY_MAX_EVENT_TYPES} event types."
            )
        prefix, suffix = _string(params, "Prefix"), _string(params, "Suffix")
        if len(prefix) > 1024 or len(suffix) > 1024:
            raise ValidationError("Prefix and Suffix are at most 1024 characters each.")
        config_id = uuid.uuid4().hex
        name = _string(params, "Id") or config_id
        if not _NAME.match(name):
            raise ValidationError(f"The Id {name[:64]!r} is not valid.")
        if any(c.name == name for c in self._store.of_account(account_id, region)):
            raise ConflictError(f"A notification configuration with Id {name} already exists.")
        config = S3Notification(
            config_id=config_id,
            account_id=account_id,
            region=region,
            name=name,
            bucket=bucket,
            function_name=ref.name,
            qualifier=ref.qualifier,
            filter=Filter(tuple(check_event_type(e) for e in events), prefix, suffix),
            created=self._clock(),
        )
        if not self._s3_may_invoke(config):
            raise ValidationError(
                "Unable to validate the following destination configurations: the function's "
                "resource policy does not let s3.amazonaws.com invoke it for bucket "
                f"{bucket}. Run: aws lambda add-permission --function-name {ref.name} "
                "--statement-id s3 --action lambda:InvokeFunction --principal s3.amazonaws.com "
                f"--source-arn arn:aws:s3:::{bucket} --source-account {account_id}"
            )
        token = secrets.token_urlsafe(32)
        self._store.insert(config, token_digest(token))
        return config, token

    def listed(self, account_id: str, region: str) -> list[S3Notification]:
        return self._store.of_account(account_id, region)

    def get(self, account_id: str, region: str, config_id: str) -> S3Notification:
        found = self._store.get(config_id)
        if found is None or (found[0].account_id, found[0].region) != (account_id, region):
            raise NotFoundError(f"No S3 notification configuration {config_id[:64]}.")
        return found[0]

    def delete(self, account_id: str, region: str, config_id: str) -> S3Notification:
        config = self.get(account_id, region, config_id)
        self._store.delete(config.config_id)
        return config

    # ------------------------------------------------------------------ delivery

    def _s3_may_invoke(self, config: S3Notification) -> bool:
        """AWS's check: the resource policy of the function (or qualifier) allows
        ``s3.amazonaws.com`` ``lambda:InvokeFunction`` from this bucket."""
        policy = self._policies.resource_policy(config.function)
        if policy is None:
            return False
        request = Request(
            _S3,
            "lambda:InvokeFunction",
            function_arn(config.account_id, config.region, config.function_name, config.qualifier),
            config.account_id,
            {
                "aws:SourceArn": f"arn:aws:s3:::{config.bucket}",
                "aws:SourceAccount": config.account_id,
            },
        )
        return evaluate(request, (), [policy]).allowed

    def authenticate(self, config_id: str, authorization: str | None) -> S3Notification:
        """The configuration a webhook POST names, if its token is the one it carries:
        ``Authorization: Bearer TOKEN`` (MinIO's ``auth_token``) or HTTP Basic auth with
        the token as password (a sender that only puts credentials in the URL)."""
        found = self._store.get(config_id) if len(config_id) <= 64 else None
        if found is None:
            raise NotFoundError(f"No S3 notification configuration {config_id[:64]}.")
        config, digest = found
        token = _token(authorization)
        if token is None:
            raise AuthError(
                "Missing credentials: send the configuration's token as "
                "'Authorization: Bearer <token>' (MinIO: notify_webhook auth_token)."
            )
        if not hmac.compare_digest(token_digest(token), digest):
            raise AuthError("The token does not match this notification configuration.")
        return config

    async def deliver(self, config: S3Notification, body: bytes) -> tuple[int, str | None]:
        """Invokes the function with the body's records (those the configuration's
        filter passes) as one Event invocation, committed before this returns: (how
        many records went, the invocation's request id or None)."""
        if len(body) > limits.S3_NOTIFY_MAX_BODY_BYTES:
            raise TooLargeError(
                f"The notification is {len(body)} bytes; at most "
                f"{limits.S3_NOTIFY_MAX_BODY_BYTES} are taken."
            )
        records = parse_body(body)
        for record in records:
            bucket = record["s3"]["bucket"]["name"]
            if bucket != config.bucket:
                raise ValidationError(
                    f"This configuration takes events of bucket {config.bucket}, not {bucket}."
                )
        chosen = [lambda_record(r, config.region, config.name) for r in records]
        chosen = [r for r in chosen if config.filter.passes(r)]
        if not chosen:
            return 0, None
        if not self._s3_may_invoke(config):
            raise AccessDeniedError(
                "The function's resource policy no longer lets s3.amazonaws.com invoke it "
                f"for bucket {config.bucket}."
            )
        request_id = str(uuid.uuid4())
        payload = json.dumps({"Records": chosen}).encode()
        await self._deliver(config.function, payload, request_id)
        return len(chosen), request_id


def _token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None

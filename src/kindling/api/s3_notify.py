"""Object-storage notifications over HTTP (ADR 0042): the webhook S3-compatible stores
post to, and the signed API that configures it.

    POST|HEAD /_kindling/s3-notify/<ConfigId>   the store's webhook; the configuration's
                                                token as ``Authorization: Bearer``
    POST      /_kindling/s3-notifications       SigV4: a new configuration (JSON) ->
                                                it, its WebhookUrl and its Token, once
    GET       /_kindling/s3-notifications       SigV4: the account's configurations
    GET|DELETE /_kindling/s3-notifications/<ConfigId>

Answers are JSON; a refusal is ``{"Type": ..., "Message": ...}`` with the status that
says who must act: 400 the body, 401 the token, 403 the permission, 404 the
configuration, 413 the size, 503 the store. Nothing is invoked unless the answer is 200.

Each webhook POST is counted on ``/metrics`` as
``kindling_s3_notifications_total{outcome}``: ``invoked``, ``filtered`` (no record passed
the configuration's filter) or the refusal's ``Type``.

Who may configure: the account's root, or an IAM identity allowed
``s3:PutBucketNotification`` (create, delete) or ``s3:GetBucketNotification`` (read) on
``arn:aws:s3:::BUCKET``, the actions that guard the same setting on AWS.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from kindling.errors import (
    AccessDeniedError,
    AuthError,
    ConflictError,
    KindlingError,
    NotFoundError,
    ServiceError,
    TooLargeError,
    ValidationError,
)
from kindling.events.s3_notify import S3Notifications
from kindling.httpd import Request, Response
from kindling.iam.authorizer import Authorizer
from kindling.iam.sigv4 import Caller

log = logging.getLogger(__name__)

WEBHOOK = "/_kindling/s3-notify/"
CONFIGS = "/_kindling/s3-notifications"

_STATUS: tuple[tuple[type[KindlingError], int, str], ...] = (
    (AccessDeniedError, 403, "AccessDeniedException"),
    (AuthError, 401, "UnauthorizedException"),
    (NotFoundError, 404, "ResourceNotFoundException"),
    (ConflictError, 409, "ResourceConflictException"),
    (TooLargeError, 413, "RequestTooLargeException"),
    (ValidationError, 400, "ValidationException"),
    (ServiceError, 503, "ServiceException"),
)


def _json(status: int, doc: object, *headers: tuple[str, str]) -> Response:
    return Response(
        status, [("Content-Type", "application/json"), *headers], json.dumps(doc).encode()
    )


def _kind(exc: KindlingError) -> tuple[int, str]:
    for kind, status, name in _STATUS:
        if isinstance(exc, kind):
            return status, name
    return 500, "ServiceException"


def _refusal(exc: KindlingError) -> Response:
    status, name = _kind(exc)
    extra = [("WWW-Authenticate", "Bearer")] if status == 401 else []
    return _json(status, {"Type": name, "Message": exc.message}, *extra)


class S3NotifyApi:
    def __init__(
        self,
        notifications: S3Notifications,
        authorizer: Authorizer,
        endpoint: str,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._counted = Counter(
            "kindling_s3_notifications",
            "Bucket notification webhooks received, by outcome: invoked, filtered (no record "
            "passed the configuration's filter) or the refusal (UnauthorizedException, ...).",
            ["outcome"],
            registry=registry or CollectorRegistry(),
        )
        self._notifications = notifications
        self._authorizer = authorizer
        self._endpoint = endpoint.rstrip("/")

    async def webhook(self, request: Request, _sigv4: Callable[[Request], Caller]) -> Response:
        config_id = request.path.removeprefix(WEBHOOK)
        try:
            if request.method not in ("POST", "HEAD"):
                return _json(
                    405,
                    {"Type": "MethodNotAllowed", "Message": "POST the store's events here."},
                    ("Allow", "POST, HEAD"),
                )
            config = self._notifications.authenticate(config_id, request.header("authorization"))
            if request.method == "HEAD":  # MinIO's liveness check: answered, never invoked
                return Response(200, [], b"")
            count, request_id = await self._notifications.deliver(config, request.body)
        except KindlingError as exc:
            log.info("s3 notification to %s refused: %s", config_id[:64], exc.message)
            self._counted.labels(_kind(exc)[1]).inc()
            return _refusal(exc)
        self._counted.labels("invoked" if count else "filtered").inc()
        return _json(200, {"Records": count, "RequestId": request_id})

    async def configs(self, request: Request, sigv4: Callable[[Request], Caller]) -> Response:
        try:
            caller = sigv4(request)
            config_id = request.path.removeprefix(CONFIGS).strip("/")
            return self._route(caller, request.method, config_id, request.body)
        except KindlingError as exc:
            return _refusal(exc)

    def _allow(self, caller: Caller, action: str, bucket: str | None) -> None:
        resource = f"arn:aws:s3:::{bucket}" if bucket else "*"
        self._authorizer.check(caller, action, resource)

    def _route(self, caller: Caller, method: str, config_id: str, body: bytes) -> Response:
        account, region = caller.account_id, caller.region
        notes = self._notifications
        if not config_id and method == "POST":
            params = _params(body)
            bucket = params.get("Bucket")
            named = bucket if isinstance(bucket, str) else None
            self._allow(caller, "s3:PutBucketNotification", named)
            config, token = notes.create(account, region, params)
            return _json(200, {**config.to_api(self._endpoint), "Token": token})
        if not config_id and method == "GET":
            self._allow(caller, "s3:GetBucketNotification", None)
            listed = [c.to_api(self._endpoint) for c in notes.listed(account, region)]
            return _json(200, {"Configurations": listed})
        if config_id and method == "GET":
            config = notes.get(account, region, config_id)
            self._allow(caller, "s3:GetBucketNotification", config.bucket)
            return _json(200, config.to_api(self._endpoint))
        if config_id and method == "DELETE":
            config = notes.get(account, region, config_id)
            self._allow(caller, "s3:PutBucketNotification", config.bucket)
            notes.delete(account, region, config_id)
            return _json(200, config.to_api(self._endpoint))
        return _json(405, {"Type": "MethodNotAllowed", "Message": f"{method} is not served here."})


def _params(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise ValidationError("The body is not JSON.") from None
    if not isinstance(doc, dict):
        raise ValidationError("The body must be a JSON object.")
    return doc

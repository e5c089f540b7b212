"""The AWS services other than Lambda that the one port serves, told apart by the
service a request was signed for (ADR 0033).

Every SDK request names its service in SigV4's credential scope
(``Credential=AKID/date/region/<service>/aws4_request``): ``events`` for EventBridge,
``scheduler`` for EventBridge Scheduler, ``lambda`` for Lambda. The front end reads that
name before anything else (``signed_service``) and hands the request to the service's
``ServiceEndpoint``; the signature is then verified for that service, so a signature
made for one service is never taken by another. A JSON 1.1 service (EventBridge) names
its operation in ``X-Amz-Target`` (``AWSEvents.PutRule``), whose prefix must be the
model's ``targetPrefix``; a REST-JSON one (Scheduler) by method and path, routed by its
model as Lambda's is. Input is parsed and validated by the service's botocore model,
output shaped by it, and errors rendered by the service's own table in
``kindling.api.errors``: parse, authenticate, call a component, serialize.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session

from kindling.api import audit
from kindling.api.errors import ErrorMapper
from kindling.api.model import Router
from kindling.api.wire import parse_input, serialize_output
from kindling.errors import KindlingError, UnknownOperationError
from kindling.httpd import Request, Response
from kindling.iam.sigv4 import Caller, SigV4Verifier

log = logging.getLogger(__name__)

Operation = Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]
_JSON_11 = "application/x-amz-json-1.1"


#: The protocols whose errors are XML (botocore's query, EC2 and REST-XML parsers).
XML_PROTOCOLS = frozenset({"query", "ec2", "rest-xml"})


class ServiceProtocols:
    """Whether a service kindling does not serve speaks XML, so that the error naming
    it is one its client can parse (``render_unserved``).

    Looked up in botocore's model of the service by its signing name, in a thread (a
    large model takes a tenth of a second to read); only the protocol is kept, and only
    for names botocore knows, so that what an unauthenticated caller puts in its
    credential scope can grow nothing without bound. A name botocore does not know
    (CloudWatch signs as ``monitoring``) is judged by the request's Content-Type: a
    form is the query protocol."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._names: frozenset[str] | None = None

    async def speaks_xml(self, service: str, content_type: str) -> bool:
        protocol = self._known.get(service)
        if protocol is None:
            protocol = await asyncio.to_thread(self._protocol, service)
        if protocol:
            return protocol in XML_PROTOCOLS
        return "x-www-form-urlencoded" in content_type or "xml" in content_type

    def _protocol(self, service: str) -> str:
        from botocore.loaders import Loader

        if self._names is None:
            self._names = frozenset(Loader().list_available_services("service-2"))
        if service not in self._names:
            return ""
        # a loader of its own: the session's would keep the whole model cached
        metadata = Loader().load_service_model(service, "service-2").get("metadata", {})
        protocol = str(metadata.get("protocol", ""))
        self._known[service] = protocol
        return protocol


def load_model(service: str) -> Any:
    """A service's ``ServiceModel`` from the pinned botocore."""
    return botocore.session.get_session().get_service_model(service)


def signed_service(headers: dict[str, str], query: str = "") -> str | None:
    """The service named by the credential scope, of the Authorization header or of a
    presigned URL's ``X-Amz-Credential``, if any; the signature itself is checked
    later, by the verifier of that service."""
    raw = headers.get("authorization")
    if not raw:
        if "X-Amz-Credential=" not in query:
            return None
        rest = query.split("X-Amz-Credential=", 1)[1].split("&", 1)[0]
        scope = unquote(rest).split("/")
        return scope[3] if len(scope) == 5 else None
    _, _, rest = raw.partition("Credential=")
    scope = rest.split(",", 1)[0].strip().split("/")
    return scope[3] if len(scope) == 5 else None


class ServiceEndpoint:
    """One service's API: its model, its verifier, its operations, its errors."""

    def __init__(
        self,
        model: Any,
        verifier: SigV4Verifier,
        operations: dict[str, Operation],
        errors: ErrorMapper,
        authorize: Callable[[Caller, str, dict[str, Any]], None] | None = None,
        audit_sink: audit.AuditSink | None = None,
    ) -> None:
        """``authorize``: raises AccessDeniedError unless the caller may call the named
        operation with these parameters (ADR 0036, 0043); ``audit_sink`` records every
        call (ADR 0043)."""
        self._authorize = authorize
        self._audit = audit_sink
        self._service = str(model.metadata.get("signingName") or model.service_name)
        self._model = model
        self._verifier = verifier
        self._operations = operations
        self._errors = errors
        self._json = model.metadata.get("protocol") == "json"
        self._prefix = f"{model.metadata.get('targetPrefix', '')}."
        self._router = None if self._json else Router(model)
        self._op_models = {name: model.operation_model(name) for name in operations}

    async def handle(self, request: Request) -> Response:
        seen: dict[str, Any] = {}
        response = await self._serve(request, seen)
        audit.record_seen(self._audit, request, self._service, seen, response)
        return response

    async def _serve(self, request: Request, seen: dict[str, Any]) -> Response:
        """The call; ``seen`` learns its caller, operation and parameters as they are
        known, for the audit log."""
        request_id = str(uuid.uuid4())
        try:
            caller = self._verifier.verify(
                request.method, request.path, request.query, request.headers, request.body
            )
            seen["caller"] = caller
            request.account = caller.account_id  # for the access log
            path_params: dict[str, str] = {}
            query: dict[str, list[str]] = {}
            if self._json:
                name = self._target(request)
            else:
                assert self._router is not None
                query = parse_qs(request.query, keep_blank_values=True) if request.query else {}
                name, path_params = self._router.match(request.method, request.path, query)
            operation = self._operations.get(name)
            if operation is None:
                raise UnknownOperationError(
                    f"The operation {name} is not supported by kindling yet"
                )
            seen["name"], seen["params"] = name, path_params
            model = self._op_models[name]
            params = parse_input(model, path_params, query, request.headers, request.body)
            seen["params"] = params
            if self._authorize is not None:
                self._authorize(caller, name, params)
            result = await operation(caller, params)
            status, headers, body = serialize_output(model, result)
            if self._json:
                headers = [(k, _JSON_11 if k == "Content-Type" else v) for k, v in headers]
            headers.append(("x-amzn-RequestId", request_id))
            return Response(status, headers, body)
        except KindlingError as exc:
            return self._errors.render(exc, request_id)
        except Exception as exc:  # logged here; the caller is told nothing inside
            log.exception("unexpected failure on %s %s", request.method, request.path)
            return self._errors.render(exc, request_id)

    def _target(self, request: Request) -> str:
        target = request.headers.get("x-amz-target", "")
        if request.method != "POST" or not target.startswith(self._prefix):
            raise UnknownOperationError(
                f"Unknown operation: X-Amz-Target {target!r} (expected {self._prefix}<Operation>)"
            )
        return target[len(self._prefix) :]

"""The front end: one request in, one Lambda-shaped response out.

Order of work: unsigned paths of their own (``/metrics``) and internal paths (signed
code downloads, logs) -> the service signed for (EventBridge and its Scheduler go to
their own ``ServiceEndpoint``, ADR 0033) -> SigV4 -> route by the service model ->
parse and validate input by the model -> the operation's handler (a call into a
component) -> serialize by the model. Any exception becomes an AWS error in
``ErrorMapper``, the only place that knows status codes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs

from kindling import limits
from kindling.api import audit
from kindling.api.errors import ErrorMapper, render_unserved
from kindling.api.function_urls import FunctionUrlEndpoint, url_target
from kindling.api.model import Router
from kindling.api.refused import check_refused
from kindling.api.services import ServiceProtocols, signed_service
from kindling.api.unsupported import UNSUPPORTED
from kindling.api.unsupported import refusal as unsupported_refusal
from kindling.api.wire import parse_input, serialize_output
from kindling.errors import KindlingError, RequestEntityTooLargeError, UnknownOperationError
from kindling.httpd import Request, Response, ServerLimits
from kindling.iam.sigv4 import Caller, SigV4Verifier

log = logging.getLogger(__name__)

Operation = Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


class ServiceHandler(Protocol):
    """What serves one other AWS service on the port (``ServiceEndpoint``, or the
    query protocol's ``QueryEndpoint`` for IAM and STS)."""

    async def handle(self, request: Request) -> Response: ...


Authorize = Callable[[Caller, str, dict[str, Any]], Caller]
RawRoute = Callable[[Request, Callable[[Request], Caller]], Awaitable[Response]]

#: What the front end's HTTP server lets one caller make it hold: ServerLimits'
#: defaults are the front end's figures in kindling/limits.py.
FRONTEND_LIMITS = ServerLimits()


class Frontend:
    def __init__(
        self,
        service_model: Any,
        verifier: SigV4Verifier,
        operations: dict[str, Operation],
        raw_routes: Mapping[str, RawRoute],
        public_routes: Mapping[str, RawRoute] | None = None,
        function_urls: FunctionUrlEndpoint | None = None,
        services: Mapping[str, ServiceHandler] | None = None,
        authorize: Authorize | None = None,
        audit_sink: audit.AuditSink | None = None,
    ) -> None:
        """``raw_routes`` serve ``/_kindling/<prefix>/...`` and authenticate themselves if
        they need to; ``public_routes`` serve one exact path each, e.g. ``/metrics``,
        which no Lambda operation's path can be (they all start with a date);
        ``function_urls`` serve requests to a function URL (by host name or under
        ``/_url/``), signed only where the URL's AuthType asks for it; ``services`` serve the
        requests signed for another AWS service than Lambda, by its signing name
        (``kindling.api.services``); one signed for a service not among them gets an
        error naming it. ``audit_sink`` records every control-plane call (ADR 0043):
        not the invokes, whose path pays nothing for it."""
        self._audit = audit_sink
        self._function_urls = function_urls
        self._model = service_model
        self._router = Router(service_model)
        self._verifier = verifier
        self._errors = ErrorMapper(service_model)
        self._operations = operations
        self._raw = raw_routes
        self._public = dict(public_routes or {})
        self._op_models = {name: service_model.operation_model(name) for name in operations}
        self._services = dict(services or {})
        #: Every Lambda call's authorization (ADR 0036): the caller the operation runs as.
        self._authorize = authorize
        self._served = ["lambda", *self._services]
        self._protocols = ServiceProtocols()

    def authenticate(self, request: Request) -> Caller:
        caller = self._verifier.verify(
            request.method, request.path, request.query, request.headers, request.body
        )
        request.account = caller.account_id
        return caller

    async def handle(self, request: Request) -> Response:
        try:
            if self._function_urls is not None:
                target = url_target(request)
                if target is not None:
                    return await self._function_urls.serve(
                        request, target, lambda: self.authenticate(request)
                    )
            public = self._public.get(request.path)
            if public is not None:
                return await public(request, self.authenticate)
            if request.path.startswith("/_kindling/"):
                prefix = request.path.split("/", 3)[2]
                raw = self._raw.get(prefix)
                if raw is None:
                    raise UnknownOperationError(f"Unknown path {request.path}")
                return await raw(request, self.authenticate)
            service = signed_service(request.headers, request.query)
            if service is not None and service != "lambda":
                endpoint = self._services.get(service)
                if endpoint is None:
                    content_type = request.header("content-type")
                    xml = await self._protocols.speaks_xml(service, content_type)
                    return render_unserved(service, self._served, str(uuid.uuid4()), xml)
                return await endpoint.handle(request)
            caller = self.authenticate(request)
            query = parse_qs(request.query, keep_blank_values=True) if request.query else {}
            name, path_params = self._router.match(request.method, request.path, query)
            if self._audit is not None and name not in audit.DATA_EVENTS:
                return await self._audited(request, caller, name, path_params, query)
            return await self._call(request, caller, name, path_params, query)
        except KindlingError as exc:
            return self._errors.render(exc, str(uuid.uuid4()))
        except Exception as exc:
            log.exception("unexpected failure on %s %s", request.method, request.path)
            return self._errors.render(exc, str(uuid.uuid4()))

    async def _call(
        self,
        request: Request,
        caller: Caller,
        name: str,
        path_params: dict[str, str],
        query: dict[str, list[str]],
    ) -> Response:
        if name in UNSUPPORTED:  # named and explained, whatever the request holds
            raise unsupported_refusal(name)
        operation = self._operations.get(name)
        if operation is None:
            raise UnknownOperationError(f"The operation {name} is not supported by kindling yet")
        model = self._op_models[name]
        params = parse_input(model, path_params, query, request.headers, request.body)
        trace = request.headers.get("x-amzn-trace-id")
        if trace is not None:  # the caller's chain of invocations (ADR 0032)
            params["_TraceHeader"] = trace
        if self._authorize is not None:
            caller = self._authorize(caller, name, params)
        check_refused(name, params)  # a field kindling lacks is named, never ignored
        result = await operation(caller, params)
        streamed = result.get("_Response")
        if isinstance(streamed, Response):  # an event stream, written as it comes
            return streamed
        status, headers, body = serialize_output(model, result)
        request_id = result.get("_RequestId") or str(uuid.uuid4())
        headers.append(("x-amzn-RequestId", request_id))
        return Response(status, headers, body)

    async def _audited(
        self,
        request: Request,
        caller: Caller,
        name: str,
        path_params: dict[str, str],
        query: dict[str, list[str]],
    ) -> Response:
        """``_call``, and its record in the audit log however it ended."""
        try:
            response = await self._call(request, caller, name, path_params, query)
        except KindlingError as exc:
            response = self._errors.render(exc, str(uuid.uuid4()))
        except Exception as exc:
            log.exception("unexpected failure on %s %s", request.method, request.path)
            response = self._errors.render(exc, str(uuid.uuid4()))
        assert self._audit is not None
        names = {**query, **path_params}
        audit.record(self._audit, request, "lambda", caller, name, names, response)
        return response

    def refuse(self, exc: KindlingError) -> Response:
        """The AWS error for a request refused before it reaches any handler (the server
        is shutting down)."""
        return self._errors.render(exc, str(uuid.uuid4()))

    def too_large(self, request: Request, size: int) -> Response:
        """The answer to a body over the front end's limit, before it is read: AWS's
        RequestEntityTooLargeException naming the operation the path routes to."""
        message = f"Request must be smaller than {limits.FRONTEND_MAX_BODY_BYTES} bytes"
        query = parse_qs(request.query, keep_blank_values=True) if request.query else {}
        try:
            name, _ = self._router.match(request.method, request.path, query)
        except UnknownOperationError:
            name = None
        if name is not None:
            message += f" for the {name} operation"
        return self._errors.render(RequestEntityTooLargeError(message), str(uuid.uuid4()))

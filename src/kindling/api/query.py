"""AWS's *query* protocol (IAM, STS): form-encoded input, XML output, XML errors.

A request is ``Action=<Operation>&Version=<api version>&...`` in a form-encoded POST
body (or the query string of a GET), its members flattened as botocore's
``QuerySerializer`` flattens them (``Tags.member.1.Key``, ``Attributes.entry.1.key``):
``parse_form`` walks the operation's input shape to rebuild the nested dict, then
botocore's ``ParamValidator`` judges it. ``serialize`` writes the output shape as
``<OpResponse><OpResult>...</OpResult><ResponseMetadata>`` the way botocore's
``QueryParser`` reads it (lists as ``<member>`` elements, timestamps ISO 8601), and
``render_error`` the ``<ErrorResponse>`` shape it reads for errors (ADR 0036).
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from botocore.validate import ParamValidator

from kindling.api import audit
from kindling.api.errors import ErrorMapper
from kindling.errors import KindlingError, UnknownOperationError, ValidationError
from kindling.httpd import Request, Response
from kindling.iam.sigv4 import Caller, SigV4Verifier

log = logging.getLogger(__name__)
_validator = ParamValidator()
#: A list in a form names its members by index from 1; a bound on how many are read.
MAX_FORM_LIST = 1000


def _member_name(name: str, shape: Any) -> str:
    return str(shape.serialization.get("name", name))


def _scalar(shape: Any, value: str, key: str) -> Any:
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(value)
        if kind in ("float", "double"):
            return float(value)
        if kind == "boolean":
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
        if kind == "timestamp":
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        if kind == "blob":
            return base64.b64decode(value)
    except ValueError:
        raise ValidationError(f"Invalid value {value!r} for parameter {key}") from None
    return value


def _parse(shape: Any, form: dict[str, str], prefix: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            key = f"{prefix}{_member_name(name, member)}"
            value = _parse(member, form, key)
            if value is not None:
                out[name] = value
        return out or None
    if kind == "list":
        flat = shape.serialization.get("flattened", False)
        member_key = "" if flat else ".member"
        items: list[Any] = []
        if form.get(prefix) == "" and not flat:
            return []  # botocore sends an empty list as "Name="
        for index in range(1, MAX_FORM_LIST + 1):
            value = _parse(shape.member, form, f"{prefix}{member_key}.{index}")
            if value is None:
                break
            items.append(value)
        return items or None
    if kind == "map":
        entries: dict[str, Any] = {}
        for index in range(1, MAX_FORM_LIST + 1):
            base = f"{prefix}.entry.{index}"
            k = form.get(f"{base}.key")
            if k is None:
                break
            entries[k] = _parse(shape.value, form, f"{base}.value")
        return entries or None
    raw = form.get(prefix)
    return None if raw is None else _scalar(shape, raw, prefix)


def parse_form(operation: Any, form: dict[str, str]) -> dict[str, Any]:
    """The operation's input from a flat form, validated against its input shape."""
    shape = operation.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    for name, member in shape.members.items():
        value = _parse(member, form, _member_name(name, member))
        if value is not None:
            params[name] = value
    report = _validator.validate(params, shape)
    if report.has_errors():
        raise ValidationError(report.generate_report().replace("\n", " "))
    return params


def _timestamp(value: Any) -> str:
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _xml(shape: Any, value: Any, out: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                _element(_member_name(name, member), member, value[name], out)
    elif kind == "list":
        member_name = shape.member.serialization.get("name", "member")
        for item in value:
            _element(member_name, shape.member, item, out)
    elif kind == "map":
        for k, v in value.items():
            out.append(f"<entry><key>{escape(str(k))}</key>")
            _element("value", shape.value, v, out)
            out.append("</entry>")
    elif kind == "boolean":
        out.append("true" if value else "false")
    elif kind == "timestamp":
        out.append(_timestamp(value))
    elif kind == "blob":
        out.append(base64.b64encode(value).decode())
    else:
        out.append(escape(str(value)))


def _element(name: str, shape: Any, value: Any, out: list[str]) -> None:
    if shape.type_name == "list" and shape.serialization.get("flattened"):
        for item in value:
            _element(name, shape.member, item, out)
        return
    out.append(f"<{name}>")
    _xml(shape, value, out)
    out.append(f"</{name}>")


def serialize(operation: Any, namespace: str, result: dict[str, Any], request_id: str) -> bytes:
    name = operation.name
    out = [f'<{name}Response xmlns="{namespace}">']
    shape = operation.output_shape
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{name}Result")
        out.append(f"<{wrapper}>")
        _xml(shape, result, out)
        out.append(f"</{wrapper}>")
    out.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>")
    out.append(f"</{name}Response>")
    return "".join(out).encode()


def render_error(
    errors: ErrorMapper, namespace: str, exc: BaseException, request_id: str
) -> Response:
    code, status = errors.code_for(exc)
    if status >= 500:
        log.error("request %s answered %s: %s: %s", request_id, code, type(exc).__name__, exc)
        message = "An internal error occurred."
    else:
        message = exc.message if isinstance(exc, KindlingError) else str(exc)
    kind = "Sender" if status < 500 else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    return Response(status, headers, body.encode())


Operation = Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


class QueryEndpoint:
    """One query-protocol service (IAM, STS) on the shared port: SigV4 for its signing
    name, ``Action`` routed to an operation, input and output by its botocore model."""

    def __init__(
        self,
        model: Any,
        verifier: SigV4Verifier,
        operations: dict[str, Operation],
        errors: ErrorMapper,
        audit_sink: audit.AuditSink | None = None,
    ) -> None:
        """``audit_sink`` records every call (ADR 0043)."""
        self._audit = audit_sink
        self._service = str(model.metadata.get("signingName") or model.service_name)
        self._verifier = verifier
        self._operations = operations
        self._errors = errors
        self._namespace = str(model.metadata.get("xmlNamespace", ""))
        self._op_models = {name: model.operation_model(name) for name in operations}

    async def handle(self, request: Request) -> Response:
        seen: dict[str, Any] = {}
        response = await self._serve(request, seen)
        audit.record_seen(self._audit, request, self._service, seen, response)
        return response

    async def _serve(self, request: Request, seen: dict[str, Any]) -> Response:
        """The call; ``seen`` learns its caller, operation, naming parameters and error
        code as they are known, for the audit log."""
        request_id = str(uuid.uuid4())
        try:
            caller = self._verifier.verify(
                request.method, request.path, request.query, request.headers, request.body
            )
            seen["caller"] = caller
            request.account = caller.account_id  # for the access log
            # the query string's members, then the body's (a presigned URL has only the
            # former, an SDK's POST only the latter)
            form = dict(parse_qsl(request.query, keep_blank_values=True))
            if request.method == "POST":
                form.update(parse_qsl(request.body.decode(), keep_blank_values=True))
            name = form.get("Action", "")
            operation = self._operations.get(name)
            if operation is None:
                raise UnknownOperationError(
                    f"Could not find operation {name} for version "
                    f"{form.get('Version', '')} (kindling does not serve it)"
                )
            seen["name"], seen["params"] = name, form
            model = self._op_models[name]
            result = await operation(caller, parse_form(model, form))
            body = serialize(model, self._namespace, result, request_id)
            return Response(
                200, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body
            )
        except KindlingError as exc:
            seen["code"] = self._errors.code_for(exc)[0]
            return render_error(self._errors, self._namespace, exc, request_id)
        except Exception as exc:
            log.exception("unexpected failure on %s %s", request.method, request.path)
            seen["code"] = self._errors.code_for(exc)[0]
            return render_error(self._errors, self._namespace, exc, request_id)

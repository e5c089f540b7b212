"""Turns HTTP into operation input and operation output into HTTP, by the service model.

Input: path, query and header members by their ``location``; the rest from a JSON body
(or the raw body for a blob payload), then checked by botocore's own ParamValidator so
types, required members and unknown members are judged as the SDK judges them. Where a
body is a raw blob (Invoke), the verdict depends only on the path, query and header
values, so inputs already judged valid are remembered (``FRONTEND_VALIDATED_INPUTS`` of
them) and a warm invoke does not walk the model again.
Output: header and status-code members go to the head, a blob payload goes raw, the
rest is JSON, filtered to the members the output shape declares.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from botocore.validate import ParamValidator

from kindling import limits
from kindling.api.constraints import check_constraints
from kindling.errors import RequestContentError, ValidationError

_JSON = "application/json"
_validator = ParamValidator()


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where each input member of one operation is found on the wire."""

    uri: tuple[tuple[str, str, Any], ...]  # (member name, wire name, shape)
    query: tuple[tuple[str, str, Any], ...]
    header: tuple[tuple[str, str, Any], ...]  # wire names in lower case
    body: tuple[str, ...]  # members read from a JSON body
    payload: str | None  # the member that is the whole body, if any


@lru_cache(maxsize=256)
def _plan(shape: Any) -> _Plan:
    uri, query, header, body = [], [], [], []
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            uri.append((name, wire_name, member))
        elif location == "querystring":
            query.append((name, wire_name, member))
        elif location == "header":
            header.append((name, wire_name.lower(), member))
        else:
            body.append(name)
    return _Plan(tuple(uri), tuple(query), tuple(header), tuple(body), _payload_member(shape))


class _Judged:
    """Inputs already found valid, oldest forgotten first (bounded: see limits)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()

    def __contains__(self, key: tuple[Any, ...]) -> bool:
        return key in self._seen

    def add(self, key: tuple[Any, ...]) -> None:
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)


_judged = _Judged(limits.FRONTEND_VALIDATED_INPUTS)


def _scalar(shape: Any, raw: str, name: str) -> Any:
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(raw)
        if kind in ("float", "double"):
            return float(raw)
    except ValueError as exc:
        raise ValidationError(f"Invalid value for {name}: {raw!r} is not a number") from exc
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise ValidationError(f"Invalid value for {name}: {raw!r} is not a boolean")
        return raw.lower() == "true"
    return raw


def _payload_member(shape: Any) -> str | None:
    payload = shape.serialization.get("payload")
    return str(payload) if payload else None


def parse_input(
    operation: Any,
    path_params: dict[str, str],
    query: dict[str, list[str]],
    headers: dict[str, str],
    body: bytes,
) -> dict[str, Any]:
    """Builds the operation's input dict, validated against its input shape."""
    shape = operation.input_shape
    if shape is None:
        return {}
    plan = _plan(shape)
    params: dict[str, Any] = {}
    for name, wire_name, member in plan.uri:
        if wire_name in path_params:
            params[name] = _scalar(member, path_params[wire_name], name)
    for name, wire_name, member in plan.query:
        values = query.get(wire_name)
        if values:
            if member.type_name == "list":
                params[name] = list(values)
            else:
                params[name] = _scalar(member, values[-1], name)
    for name, wire_name, member in plan.header:
        value = headers.get(wire_name)
        if value is not None:
            params[name] = _scalar(member, value, name)
    payload = plan.payload
    if payload is not None:
        # A raw blob body is always bytes: the verdict depends only on whether there is
        # one and on the other members, so each such input is judged once.
        key = (operation.name, bool(body), *((k, _hashable(v)) for k, v in params.items()))
        if body:
            params[payload] = body
        if key not in _judged:
            _judge(params, shape)
            _judged.add(key)
        return params
    if plan.body and body.strip():
        params.update(_parse_json_body(body))
    _judge(params, shape)
    decoded: dict[str, Any] = _decode_blobs(params, shape)
    return decoded


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _judge(params: dict[str, Any], shape: Any) -> None:
    check_constraints(params, shape)
    report = _validator.validate(params, shape)
    if report.has_errors():
        raise RequestContentError(_describe(report.generate_report()))


def _parse_json_body(body: bytes) -> dict[str, Any]:
    try:
        document: Any = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise RequestContentError(f"Could not parse request body into json: {exc}") from exc
    except RecursionError as exc:  # nested deeper than the parser can go (~1,000 levels)
        raise RequestContentError(
            "Could not parse request body into json: nesting is too deep"
        ) from exc
    if not isinstance(document, dict):
        raise RequestContentError("Could not parse request body into json: expected an object")
    return document


def _describe(report: str) -> str:
    lines = [line.strip() for line in report.splitlines() if line.strip()]
    return "; ".join(lines) or "Invalid request"


def _decode_blobs(value: Any, shape: Any) -> Any:
    """JSON carries blobs as base64 text; the model says which members are blobs."""
    kind = shape.type_name
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise RequestContentError("Could not decode base64 blob in request") from exc
    if kind == "structure" and isinstance(value, dict):
        return {
            k: _decode_blobs(v, shape.members[k]) if k in shape.members else v
            for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [_decode_blobs(v, shape.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _decode_blobs(v, shape.value) for k, v in value.items()}
    return value


def _shape_filter(value: Any, shape: Any) -> Any:
    """Keeps only what the shape declares; drops Nones; encodes blobs as base64 text."""
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for k, v in value.items():
            member = shape.members.get(k)
            if member is not None and v is not None:
                out[k] = _shape_filter(v, member)
        return out
    if kind == "list":
        return [_shape_filter(v, shape.member) for v in value]
    if kind == "map":
        return {k: _shape_filter(v, shape.value) for k, v in value.items()}
    if kind == "blob" and isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return value


def serialize_output(
    operation: Any, result: dict[str, Any]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Returns (status, headers, body) for an operation's result dict."""
    status = int(operation.http.get("responseCode", 200))
    shape = operation.output_shape
    if shape is None:
        return status, [], b""
    headers: list[tuple[str, str]] = []
    json_body: dict[str, Any] = {}
    payload_name = _payload_member(shape)
    raw: bytes | None = None
    for name, member in shape.members.items():
        if name not in result or result[name] is None:
            continue
        value = result[name]
        location = member.serialization.get("location")
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            headers.append((member.serialization.get("name", name), str(value)))
        elif name == payload_name:
            raw = bytes(value) if member.type_name == "blob" else json.dumps(value).encode()
        else:
            json_body[name] = _shape_filter(value, member)
    if raw is not None:
        headers.append(("Content-Type", _JSON))
        return status, headers, raw
    headers.append(("Content-Type", _JSON))
    return status, headers, json.dumps(json_body, separators=(",", ":")).encode()

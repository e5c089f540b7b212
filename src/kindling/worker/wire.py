"""The worker interface on the wire: what ``worker.server`` and ``worker.remote`` agree on.

Small values travel as JSON; an invocation's payload (up to 6 MB, often binary-safe
JSON the worker need not read) travels as the raw body both ways, with the rest of the
request and the result in ``X-Kindling-*`` headers, so neither side encodes or parses a
payload. A spec names its runtime and its code by content digest, never by a path: the
worker resolves both on its own host (its interpreters, its code cache).

    POST   /v1/sandboxes                     {"spec": ..., "request_id": ...} -> Launched
    POST   /v1/sandboxes/<id>/invocations    raw payload -> raw result (410: gone)
    DELETE /v1/sandboxes/<id>                -> 204
    GET    /v1/capacity                      -> WorkerCapacity
    GET    /v1/logs/<account>/<region>/<function>?offset=N -> log bytes
                                             (X-Kindling-Next-Offset: where to ask next)
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, fields
from typing import Any

from kindling.worker.capacity import WorkerCapacity
from kindling.worker.interface import Execution, Launched
from kindling.worker.sandbox.base import (
    InitResult,
    InvokeRequest,
    InvokeResult,
    Outcome,
    SandboxSpec,
)

SANDBOXES = "/v1/sandboxes"
CAPACITY = "/v1/capacity"
LOGS = "/v1/logs"
NEXT_OFFSET = "X-Kindling-Next-Offset"
#: A sandbox id as the worker makes them (uuid4 hex); anything else is not one.
ID_CHARS = frozenset("0123456789abcdef")

_SPEC_FIELDS = tuple(
    f.name for f in fields(SandboxSpec) if f.name not in ("launch", "code_dir", "layer_dirs")
)


def spec_to_json(spec: SandboxSpec) -> dict[str, Any]:
    out = {name: getattr(spec, name) for name in _SPEC_FIELDS}
    out["runtime"] = spec.launch.runtime
    return out


def spec_fields(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The runtime name and every other field of a spec sent as JSON; the worker adds
    ``launch``, ``code_dir`` and ``layer_dirs`` from its own host. Raises ValueError on
    a bad shape."""
    runtime = doc.get("runtime")
    if not isinstance(runtime, str):
        raise ValueError("spec.runtime must be a string")
    values = {name: doc[name] for name in _SPEC_FIELDS if name in doc}
    for required in ("sandbox_id", "account_id", "function_name", "code_digest"):
        if not isinstance(values.get(required), str):
            raise ValueError(f"spec.{required} must be a string")
    if not isinstance(values.get("environment", {}), dict):
        raise ValueError("spec.environment must be an object")
    layers = values.get("layer_digests", [])
    if not isinstance(layers, list | tuple) or not all(isinstance(d, str) for d in layers):
        raise ValueError("spec.layer_digests must be a list of strings")
    values["layer_digests"] = tuple(layers)
    return runtime, values


def _result_to_json(result: InvokeResult) -> dict[str, Any]:
    return {
        "outcome": result.outcome.value,
        "payload": base64.b64encode(result.payload).decode(),
        "duration_ms": result.duration_ms,
        "error_type": result.error_type,
    }


def _result_from_json(doc: dict[str, Any]) -> InvokeResult:
    return InvokeResult(
        Outcome(doc["outcome"]),
        base64.b64decode(doc["payload"]),
        float(doc["duration_ms"]),
        doc.get("error_type"),
    )


def init_to_json(init: InitResult) -> dict[str, Any]:
    return {
        "ok": init.ok,
        "duration_ms": init.duration_ms,
        "restored": init.restored,
        "error": None if init.error is None else _result_to_json(init.error),
    }


def init_from_json(doc: dict[str, Any]) -> InitResult:
    error = doc.get("error")
    return InitResult(
        bool(doc["ok"]),
        float(doc["duration_ms"]),
        None if error is None else _result_from_json(error),
        bool(doc.get("restored", False)),
    )


def _execution_to_json(execution: Execution) -> dict[str, Any]:
    return {
        "result": _result_to_json(execution.result),
        "log_tail": base64.b64encode(execution.log_tail).decode(),
        "reusable": execution.reusable,
    }


def launched_to_json(launched: Launched) -> bytes:
    return json.dumps(
        {
            "sandbox_id": launched.sandbox_id,
            "init": init_to_json(launched.init),
            "failure": None if launched.failure is None else _execution_to_json(launched.failure),
        }
    ).encode()


def launched_from_json(body: bytes) -> Launched:
    doc = json.loads(body)
    failure = doc.get("failure")
    return Launched(
        str(doc["sandbox_id"]),
        init_from_json(doc["init"]),
        None
        if failure is None
        else Execution(
            _result_from_json(failure["result"]),
            base64.b64decode(failure["log_tail"]),
            bool(failure["reusable"]),
        ),
    )


def request_headers(request: InvokeRequest, init: InitResult | None) -> list[tuple[str, str]]:
    headers = [
        ("X-Kindling-Request-Id", request.request_id),
        ("X-Kindling-Deadline-Ms", str(request.deadline_ms)),
        ("X-Kindling-Invoked-Arn", request.invoked_arn),
    ]
    if request.client_context is not None:
        headers.append(("X-Kindling-Client-Context", request.client_context))
    if request.trace_id is not None:
        headers.append(("X-Kindling-Trace-Id", request.trace_id))
    if init is not None:
        headers.append(("X-Kindling-Init", json.dumps(init_to_json(init))))
    return headers


def request_from(headers: dict[str, str], body: bytes) -> tuple[InvokeRequest, InitResult | None]:
    """Raises ValueError (or KeyError) on a malformed request."""
    deadline = headers["x-kindling-deadline-ms"]
    if not deadline.isdigit():
        raise ValueError("bad deadline")
    init = headers.get("x-kindling-init")
    return (
        InvokeRequest(
            headers["x-kindling-request-id"],
            body,
            int(deadline),
            headers["x-kindling-invoked-arn"],
            headers.get("x-kindling-client-context"),
            headers.get("x-kindling-trace-id"),
        ),
        None if init is None else init_from_json(json.loads(init)),
    )


def execution_headers(execution: Execution) -> list[tuple[str, str]]:
    result = execution.result
    headers = [
        ("X-Kindling-Outcome", result.outcome.value),
        ("X-Kindling-Duration-Ms", repr(result.duration_ms)),
        ("X-Kindling-Reusable", "1" if execution.reusable else "0"),
        ("X-Kindling-Log-Tail", base64.b64encode(execution.log_tail).decode()),
    ]
    if result.error_type is not None:
        headers.append(("X-Kindling-Error-Type", result.error_type))
    return headers


def execution_from(headers: dict[str, str], body: bytes) -> Execution:
    return Execution(
        InvokeResult(
            Outcome(headers["x-kindling-outcome"]),
            body,
            float(headers["x-kindling-duration-ms"]),
            headers.get("x-kindling-error-type"),
        ),
        base64.b64decode(headers.get("x-kindling-log-tail", "")),
        headers.get("x-kindling-reusable") == "1",
    )


def capacity_to_json(capacity: WorkerCapacity) -> bytes:
    doc = asdict(capacity)
    doc["accounts"] = sorted(capacity.accounts)
    return json.dumps(doc).encode()


def capacity_from_json(body: bytes) -> WorkerCapacity:
    doc = json.loads(body)
    return WorkerCapacity(
        str(doc["worker_id"]),
        int(doc["memory_mb"]),
        int(doc["memory_used_mb"]),
        float(doc["cpus"]),
        float(doc["cpu_used"]),
        frozenset(doc.get("accounts", ())),
    )

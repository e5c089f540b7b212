"""What the front end tells the audit log of a call (ADR 0043): one ``AuditRecord`` per
control-plane call that was authenticated, made from the caller, the operation, the
name of the resource it named and the answer, never from the request's body.

Invokes (Lambda's ``Invoke``, ``InvokeWithResponseStream``, ``InvokeAsync``, and
function URLs, which do not come through here) are data events: CloudTrail records them
only in a trail that asks for data events, off by default ("Logging data events"), and
they are the warm path, whose cost is the product. They are not recorded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from kindling.api import service_resources
from kindling.httpd import Request, Response
from kindling.iam.sigv4 import Caller
from kindling.telemetry.audit import AuditRecord

#: Lambda's data-plane operations, never audited.
DATA_EVENTS = frozenset({"Invoke", "InvokeWithResponseStream", "InvokeAsync"})


class AuditSink(Protocol):
    def record(self, entry: AuditRecord) -> None: ...


def _resource(service: str, operation: str, caller: Caller, params: Mapping[str, Any]) -> str:
    """The ARN (or name) of what a call named, from the names in its path or form only."""
    region, account = caller.region, caller.account_id

    def given(key: str) -> str:
        value = params.get(key)
        if isinstance(value, list):  # a query string's values
            value = value[0] if value else None
        return value if isinstance(value, str) else ""

    if service == "lambda":
        name = given("FunctionName")
        if name:
            if not name.startswith("arn:"):
                name = f"arn:aws:lambda:{region}:{account}:function:{name}"
            qualifier = given("Qualifier")
            return f"{name}:{qualifier}" if qualifier and name.count(":") == 6 else name
        if given("UUID"):
            return f"arn:aws:lambda:{region}:{account}:event-source-mapping:{given('UUID')}"
        if given("LayerName"):
            layer = given("LayerName")
            if not layer.startswith("arn:"):
                layer = f"arn:aws:lambda:{region}:{account}:layer:{layer}"
            return layer
        return given("Resource") or given("CodeSigningConfigArn") or given("Arn")
    if service == "iam":
        for key, kind in (("RoleName", "role"), ("UserName", "user"), ("GroupName", "group")):
            if given(key):
                return f"arn:aws:iam::{account}:{kind}/{given(key)}"
        return given("PolicyArn")
    if service == "sts":
        return given("RoleArn")
    if service in ("events", "scheduler"):
        found = service_resources.resources(service, operation, params, region, account)
        return ",".join(found) if found != ["*"] else ""
    return ""


def _header(response: Response, name: str) -> str | None:
    lowered = name.lower()
    for key, value in response.headers:
        if key.lower() == lowered:
            return value
    return None


def record(
    sink: AuditSink,
    request: Request,
    service: str,
    caller: Caller,
    operation: str,
    names: Mapping[str, Any],
    response: Response,
    error_code: str | None = None,
) -> None:
    """``names``: the call's path parameters and query (Lambda's REST), or the few
    naming members of its parsed input; nothing else of it is read."""
    request_id = _header(response, "x-amzn-RequestId") or str(uuid.uuid4())
    if error_code is None and response.status >= 400:
        error_code = _header(response, "x-amzn-ErrorType")
    sink.record(
        AuditRecord(
            request_id=request_id,
            at=time.time(),
            account_id=caller.account_id,
            principal_arn=caller.arn,
            access_key_id=caller.access_key_id,
            service=service,
            operation=operation,
            resource=_resource(service, operation, caller, names),
            status=response.status,
            error_code=error_code,
            source_ip=request.peer[0] if request.peer else "",
        )
    )


def record_seen(
    sink: AuditSink | None,
    request: Request,
    service: str,
    seen: Mapping[str, Any],
    response: Response,
) -> None:
    """Records a call of a service endpoint from what it learnt while serving it
    (``seen``: ``caller``, ``name``, ``params`` and ``code`` as they became known);
    nothing when there is no sink or the call never got as far as naming its
    operation (a bad signature, an unknown operation: the access log has those)."""
    if sink is not None and "name" in seen:
        record(
            sink,
            request,
            service,
            seen["caller"],
            seen["name"],
            seen.get("params", {}),
            response,
            seen.get("code"),
        )

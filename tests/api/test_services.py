"""The services beside Lambda on the one port (ADR 0033): the signing service read from
the credential scope, requests signed by botocore for ``events`` routed by X-Amz-Target
and verified for that service only, and each service's error shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kindling.api.errors import (
    EVENTS_CODES,
    EVENTS_INTERNAL,
    SCHEDULER_CODES,
    SCHEDULER_INTERNAL,
    ErrorMapper,
)
from kindling.api.services import ServiceEndpoint, load_model, signed_service
from kindling.errors import ConflictError, NotFoundError
from kindling.httpd import Request
from kindling.iam.accounts import KeyRing
from kindling.iam.sigv4 import Caller, SigV4Verifier

EVENTS = load_model("events")


def signed(service: str, target: str, body: dict[str, Any]) -> Request:
    raw = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:9000/",
        data=raw,
        headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
    )
    SigV4Auth(Credentials("test", "test"), service, "us-east-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:9000"
    return Request("POST", "/", "", headers, raw)


def endpoint() -> ServiceEndpoint:
    async def describe_rule(caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        if params["Name"] == "nope":
            raise NotFoundError("Rule nope does not exist on EventBus default.")
        return {"Name": params["Name"], "State": "ENABLED", "NotInTheModel": 1}

    return ServiceEndpoint(
        EVENTS,
        SigV4Verifier(KeyRing.dev(), "events"),
        {"DescribeRule": describe_rule},
        ErrorMapper(EVENTS, EVENTS_CODES, EVENTS_INTERNAL),
    )


def test_the_signing_service_is_read_from_the_credential_scope() -> None:
    request = signed("events", "AWSEvents.DescribeRule", {"Name": "r"})
    assert signed_service(request.headers) == "events"
    assert signed_service({}) is None
    assert signed_service({"authorization": "AWS4-HMAC-SHA256 nonsense"}) is None


def test_an_events_request_is_routed_by_its_target_and_shaped_by_the_model() -> None:
    response = asyncio.run(
        endpoint().handle(signed("events", "AWSEvents.DescribeRule", {"Name": "r"}))
    )
    assert response.status == 200
    assert dict(response.headers)["Content-Type"] == "application/x-amz-json-1.1"
    assert json.loads(response.body) == {"Name": "r", "State": "ENABLED"}


def test_events_errors_carry_type_and_message_with_400() -> None:
    response = asyncio.run(
        endpoint().handle(signed("events", "AWSEvents.DescribeRule", {"Name": "nope"}))
    )
    assert response.status == 400
    body = json.loads(response.body)
    assert body == {
        "__type": "ResourceNotFoundException",
        "message": "Rule nope does not exist on EventBus default.",
    }
    unknown = asyncio.run(endpoint().handle(signed("events", "AWSEvents.PutPartnerEvents", {})))
    assert json.loads(unknown.body)["__type"] == "UnknownOperationException"
    invalid = asyncio.run(endpoint().handle(signed("events", "AWSEvents.DescribeRule", {})))
    assert json.loads(invalid.body)["__type"] == "ValidationException"


def test_a_signature_for_another_service_is_refused() -> None:
    response = asyncio.run(
        endpoint().handle(signed("lambda", "AWSEvents.DescribeRule", {"Name": "r"}))
    )
    assert response.status == 403
    assert json.loads(response.body)["__type"] == "InvalidSignatureException"


def test_scheduler_errors_use_its_models_status_codes() -> None:
    model = load_model("scheduler")
    mapper = ErrorMapper(model, SCHEDULER_CODES, SCHEDULER_INTERNAL)
    assert mapper.code_for(NotFoundError("x")) == ("ResourceNotFoundException", 404)
    assert mapper.code_for(ConflictError("x")) == ("ConflictException", 409)
    body = json.loads(mapper.render(ConflictError("Schedule s already exists."), "r").body)
    assert body == {"Message": "Schedule s already exists."}
    shapes = {s.name: s.metadata["error"]["httpStatusCode"] for s in model.error_shapes}
    for _, code, status in SCHEDULER_CODES:
        if code in shapes:
            assert shapes[code] == status, code

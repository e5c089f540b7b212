import base64
import json

import pytest

from kindling import limits
from kindling.api import wire
from kindling.api.model import load_service_model
from kindling.api.wire import parse_input, serialize_output
from kindling.errors import ConstraintError, RequestContentError, ValidationError

MODEL = load_service_model()


def _create(body: object) -> dict[str, object]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_input(MODEL.operation_model("CreateFunction"), {}, {}, {}, raw)


GOOD = {
    "FunctionName": "f",
    "Runtime": "python3.11",
    "Role": "arn:aws:iam::000000000000:role/x",
    "Handler": "app.handler",
    "Code": {"ZipFile": base64.b64encode(b"PK zip").decode()},
}


def test_json_body_is_parsed_and_blobs_decoded() -> None:
    params = _create(GOOD)
    assert params["FunctionName"] == "f"
    assert params["Code"] == {"ZipFile": b"PK zip"}


def test_malformed_json_is_invalid_request_content() -> None:
    with pytest.raises(RequestContentError, match="Could not parse request body"):
        _create(b"{not json")


def test_unknown_member_is_refused() -> None:
    with pytest.raises(RequestContentError, match="Unknown parameter"):
        _create({**GOOD, "Bogus": 1})


def test_wrong_type_is_refused() -> None:
    with pytest.raises(RequestContentError, match="MemorySize"):
        _create({**GOOD, "MemorySize": "abc"})


def test_model_constraints_speak_like_lambda() -> None:
    with pytest.raises(ConstraintError) as info:
        _create({**GOOD, "MemorySize": 100, "Runtime": "python9"})
    message = info.value.message
    assert message.startswith("2 validation errors detected: ")
    assert "Value '100' at 'memorySize' failed to satisfy constraint" in message
    assert (
        "at 'runtime' failed to satisfy constraint: Member must satisfy enum value set" in message
    )


def test_headers_query_and_payload_of_invoke() -> None:
    params = parse_input(
        MODEL.operation_model("Invoke"),
        {"FunctionName": "f"},
        {"Qualifier": ["$LATEST"]},
        {"x-amz-invocation-type": "Event", "x-amz-log-type": "Tail"},
        b'{"a": 1}',
    )
    assert params == {
        "FunctionName": "f",
        "Qualifier": "$LATEST",
        "InvocationType": "Event",
        "LogType": "Tail",
        "Payload": b'{"a": 1}',
    }


def test_querystring_integers_are_typed() -> None:
    op = MODEL.operation_model("ListFunctions")
    assert parse_input(op, {}, {"MaxItems": ["5"]}, {}, b"")["MaxItems"] == 5
    with pytest.raises(ValidationError):
        parse_input(op, {}, {"MaxItems": ["five"]}, {}, b"")


def test_invoke_output_goes_to_status_headers_and_raw_body() -> None:
    status, headers, body = serialize_output(
        MODEL.operation_model("Invoke"),
        {"StatusCode": 200, "Payload": b'{"x":1}', "FunctionError": "Unhandled", "Bogus": 1},
    )
    assert status == 200
    assert ("X-Amz-Function-Error", "Unhandled") in headers
    assert body == b'{"x":1}'


def test_output_is_filtered_to_the_shape() -> None:
    status, _headers, body = serialize_output(
        MODEL.operation_model("GetAccountSettings"),
        {"AccountLimit": {"ConcurrentExecutions": 5, "Nope": 1}, "Extra": True},
    )
    assert status == 200
    assert json.loads(body) == {"AccountLimit": {"ConcurrentExecutions": 5}}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 2000,  # the fuzzer's 4 KB body: was a RecursionError and a 500
        b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}",  # valid JSON, too deep to parse
        b'{"Environment": {"Variables": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
    ],
)
def test_deeply_nested_json_is_invalid_request_content(body: bytes) -> None:
    with pytest.raises(RequestContentError, match="Could not parse request body into json"):
        _create(body)


def test_a_remembered_verdict_never_lets_a_different_invoke_input_through() -> None:
    """Invoke inputs judged valid are remembered; each other input is still judged."""
    invoke = MODEL.operation_model("Invoke")
    for _ in range(2):  # the second round is served from what was remembered
        params = parse_input(invoke, {"FunctionName": "f"}, {}, {}, b"{}")
        assert params == {"FunctionName": "f", "Payload": b"{}"}
    with pytest.raises(ConstraintError, match="invocationType"):
        parse_input(
            invoke, {"FunctionName": "f"}, {}, {"x-amz-invocation-type": "Sometimes"}, b"{}"
        )
    with pytest.raises(ConstraintError, match="functionName"):
        parse_input(invoke, {"FunctionName": "f" * 300}, {}, {}, b"{}")
    asynchronous = MODEL.operation_model("InvokeAsync")
    assert parse_input(asynchronous, {"FunctionName": "f"}, {}, {}, b"{}")["InvokeArgs"] == b"{}"
    with pytest.raises(RequestContentError, match="InvokeArgs"):  # required: no body, no pass
        parse_input(asynchronous, {"FunctionName": "f"}, {}, {}, b"")


def test_what_is_remembered_is_bounded() -> None:
    invoke = MODEL.operation_model("Invoke")
    for i in range(limits.FRONTEND_VALIDATED_INPUTS + 50):
        parse_input(invoke, {"FunctionName": f"fn-{i}"}, {}, {}, b"{}")
    assert len(wire._judged._seen) == limits.FRONTEND_VALIDATED_INPUTS

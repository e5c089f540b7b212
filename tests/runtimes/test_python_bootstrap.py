"""The Python runtime client (src/kindling/runtimes/python/bootstrap.py), run for real.

Each test starts a small fake Runtime API server in-process, writes a function into a
temporary task root, starts bootstrap.py under a real interpreter of each managed Python
version found on this host, and checks what the client posts and prints.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.runtimes.conftest import JSON, FakeRuntimeApi, Function

# --------------------------------------------------------------------------- invocations


CONTEXT_APP = """
import os

def handler(event, context):
    cc = context.client_context
    return {
        "event": event,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "identity": [context.identity.cognito_identity_id,
                     context.identity.cognito_identity_pool_id],
        "client_context": None if cc is None else {
            "custom": cc.custom, "env": cc.env,
            "installation_id": cc.client and cc.client.installation_id,
        },
        "w3c": context.w3c(),
        "tenant_id": context.tenant_id,
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
    }
"""


def test_success_passes_event_and_lambda_context(function: Function) -> None:
    function.write({"app.py": CONTEXT_APP})
    function.start()
    client_context = {
        "client": {"installation_id": "inst-1", "app_title": "t"},
        "custom": {"k": "v"},
        "env": {"platform": "x"},
        "w3c": {"traceparent": "00-abc-def-01", "other": "dropped"},
    }
    identity = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    request_id, posted = function.invoke(
        {"n": 1, "s": "é"},
        {
            "Lambda-Runtime-Trace-Id": "Root=1-abc;Parent=def;Sampled=1",
            "Lambda-Runtime-Client-Context": json.dumps(client_context),
            "Lambda-Runtime-Cognito-Identity": json.dumps(identity),
        },
    )
    assert posted.kind == "response"
    assert posted.headers["content-type"] == "application/json"
    result = posted.json()
    remaining = result.pop("remaining")
    assert isinstance(remaining, int)
    assert 0 < remaining <= 30_000
    assert result == {
        "event": {"n": 1, "s": "é"},
        "function_name": "my-function",
        "function_version": "$LATEST",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:my-function",
        "memory_limit_in_mb": "256",
        "aws_request_id": request_id,
        "log_group_name": "/aws/lambda/my-function",
        "log_stream_name": "2025/01/01/[$LATEST]abc",
        "identity": ["id-1", "pool-1"],
        "client_context": {
            "custom": {"k": "v"},
            "env": {"platform": "x"},
            "installation_id": "inst-1",
        },
        "w3c": {"traceparent": "00-abc-def-01"},
        "tenant_id": None,
        "trace_id": "Root=1-abc;Parent=def;Sampled=1",
    }


def test_context_without_optional_headers(function: Function) -> None:
    function.write({"app.py": CONTEXT_APP})
    function.start()
    function.invoke({}, {"Lambda-Runtime-Trace-Id": "Root=1-first"})
    _, posted = function.invoke({}, {"Lambda-Runtime-Aws-Tenant-Id": "tenant-7"})
    result = posted.json()
    assert result["identity"] == [None, None]
    assert result["client_context"] is None
    assert result["trace_id"] is None  # removed when the next event carries no trace id
    assert result["tenant_id"] == "tenant-7"


def test_module_state_persists_on_one_keep_alive_connection(function: Function) -> None:
    function.write(
        {
            "app.py": (
                "import os\nCOUNT = 0\nPID = os.getpid()\n\n"
                "def handler(event, context):\n"
                "    global COUNT\n    COUNT += 1\n"
                "    return {'count': COUNT, 'pid': PID}\n"
            )
        }
    )
    function.start()
    _, first = function.invoke({})
    _, second = function.invoke({})
    assert first.json()["count"] == 1
    assert second.json() == {"count": 2, "pid": first.json()["pid"]}
    assert first.client == second.client
    assert set(function.api.next_clients) == {first.client}


@pytest.mark.parametrize("close", ["announced", "silent"])
def test_reconnects_when_the_api_closes_the_connection(function: Function, close: str) -> None:
    function.write({"app.py": "def handler(event, context):\n    return event\n"})
    function.start()
    _, first = function.invoke({"i": 1}, close=close)
    _, second = function.invoke({"i": 2})
    assert (first.json(), second.json()) == ({"i": 1}, {"i": 2})
    next_clients = function.api.next_clients
    assert next_clients[0] != first.client  # the first connection was closed after the event
    assert next_clients[1] == first.client == second.client


def test_chunked_event_body(function: Function) -> None:
    function.write({"app.py": "def handler(event, context):\n    return event\n"})
    function.start()
    event = {"text": "x" * 100, "list": list(range(20))}
    _, posted = function.invoke(event, chunked=True)
    assert posted.json() == event


def test_nested_module_handler(function: Function) -> None:
    function.write(
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": "def fn(event, context):\n    return {'from': __name__}\n",
        }
    )
    function.start("pkg.mod.fn")
    _, posted = function.invoke({})
    assert posted.json() == {"from": "pkg.mod"}


@pytest.mark.parametrize(
    ("expression", "body", "content_type"),
    [
        ("None", b"null", JSON),
        ("'plain string'", b'"plain string"', JSON),
        ("{'d': D('1.5'), 'i': D('7'), 'n': D('NaN')}", b'{"d": 1.5, "i": 7, "n": NaN}', JSON),
        ("b'\\x00raw'", b"\x00raw", "application/unknown"),
    ],
)
def test_result_marshalling(
    function: Function, expression: str, body: bytes, content_type: str
) -> None:
    app = f"from decimal import Decimal as D\n\ndef handler(e, c):\n    return {expression}\n"
    function.write({"app.py": app})
    function.start()
    _, posted = function.invoke({})
    assert posted.kind == "response"
    assert posted.body == body
    assert posted.headers["content-type"] == content_type


def test_non_ascii_result_follows_lambda_per_version(function: Function) -> None:
    function.write({"app.py": "def handler(event, context):\n    return 'é'\n"})
    function.start()
    _, posted = function.invoke({})
    version = subprocess.run(
        [function.interpreter, "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    expected = '"é"'.encode() if version == "True" else b'"\\u00e9"'
    assert posted.body == expected


# --------------------------------------------------------------------------- errors


ERROR_APP = """\
def helper():
    raise ValueError("boom")

def handler(event, context):
    print("before the error")
    helper()
"""


def test_handler_exception_posts_lambda_error(function: Function) -> None:
    function.write({"app.py": ERROR_APP})
    function.start()
    request_id, posted = function.invoke({})
    app = function.task_root / "app.py"
    assert posted.kind == "error"
    assert posted.headers["lambda-runtime-function-error-type"] == "Unhandled"
    assert posted.json() == {
        "errorMessage": "boom",
        "errorType": "ValueError",
        "requestId": request_id,
        "stackTrace": [
            f'  File "{app}", line 6, in handler\n    helper()\n',
            f'  File "{app}", line 2, in helper\n    raise ValueError("boom")\n',
        ],
    }
    cause = json.loads(posted.headers["lambda-runtime-function-xray-error-cause"])
    assert cause["exceptions"][0]["type"] == "ValueError"
    assert cause["paths"] == [str(app)]
    assert (
        "before the error\n"
        "[ERROR] ValueError: boom\n"
        "Traceback (most recent call last):\n"
        f'  File "{app}", line 6, in handler\n'
        "    helper()\n"
        f'  File "{app}", line 2, in helper\n'
        '    raise ValueError("boom")\n'
    ) in function.stdout


def test_runs_from_precompiled_bytecode(function: Function) -> None:
    function.write(
        {
            "app.py": "import sys\n\ndef handler(event, context):\n"
            "    if event.get('fail'):\n        raise ValueError('boom')\n"
            "    return sys.path\n"
        }
    )
    function.start(pyc=True)
    _, ok = function.invoke({})
    _, failed = function.invoke({"fail": True})
    assert ok.json()[0] == str(function.task_root)
    assert not any(path.endswith("compiled") for path in ok.json())
    assert failed.json()["stackTrace"] == [
        f'  File "{function.task_root / "app.py"}", line 5, in handler\n'
        "    raise ValueError('boom')\n"
    ]


def test_runtime_keeps_serving_after_an_error(function: Function) -> None:
    function.write(
        {
            "app.py": "def handler(event, context):\n    if event.get('fail'):\n"
            "        raise KeyError('k')\n    return 'ok'\n"
        }
    )
    function.start()
    _, failed = function.invoke({"fail": True})
    _, ok = function.invoke({})
    assert (failed.kind, failed.json()["errorType"], failed.json()["errorMessage"]) == (
        "error",
        "KeyError",
        "'k'",
    )
    assert (ok.kind, ok.body) == ("response", b'"ok"')


def test_marshal_error(function: Function) -> None:
    function.write({"app.py": "def handler(event, context):\n    return {'s': {1, 2}}\n"})
    function.start()
    request_id, posted = function.invoke({})
    assert posted.kind == "error"
    assert posted.json() == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError",
        "requestId": request_id,
        "stackTrace": [],
    }
    assert (
        "[ERROR] Runtime.MarshalError: Unable to marshal response: "
        "Object of type set is not JSON serializable\nTraceback (most recent call last):\n"
    ) in function.stdout


INIT_ERRORS = [
    pytest.param(
        "app",
        {"app.py": "def handler(e, c):\n    return 1\n"},
        "Runtime.MalformedHandlerName",
        "Bad handler 'app': not enough values to unpack (expected 2, got 1)",
        id="malformed-handler",
    ),
    pytest.param(
        "app.handler",
        {},
        "Runtime.ImportModuleError",
        "Unable to import module 'app': No module named 'app'",
        id="import-module",
    ),
    pytest.param(
        "app.handler",
        {"app.py": "import json\n\nx = = 1\n"},
        "Runtime.UserCodeSyntaxError",
        "Syntax error in module 'app': invalid syntax (app.py, line 3)",
        id="syntax",
    ),
    pytest.param(
        "app.handler",
        {"app.py": "def other(e, c):\n    return 1\n"},
        "Runtime.HandlerNotFound",
        "Handler 'handler' missing on module 'app'",
        id="handler-not-found",
    ),
    pytest.param(
        "app.handler",
        {"app.py": "X = 1\nraise RuntimeError('init failed')\n"},
        "RuntimeError",
        "init failed",
        id="exception-at-import",
    ),
]


@pytest.mark.parametrize(("handler", "files", "error_type", "message"), INIT_ERRORS)
def test_init_errors(
    function: Function, handler: str, files: dict[str, str], error_type: str, message: str
) -> None:
    function.write(files)
    function.start(handler)
    posted = function.api.take()
    assert function.wait() == 1
    assert posted.kind == "init_error"
    assert posted.headers["lambda-runtime-function-error-type"] == error_type
    error = posted.json()
    assert (error["errorType"], error["errorMessage"], error["requestId"]) == (
        error_type,
        message,
        "",
    )
    assert f"[ERROR] {error_type}: {message}\nTraceback (most recent call last):\n" in (
        function.stdout
    )
    assert "LAMBDA_WARNING: Unhandled exception." in function.stdout
    app = function.task_root / "app.py"
    if error_type == "Runtime.UserCodeSyntaxError":
        assert error["stackTrace"] == [f'  File "{app}" Line 3\n    x = = 1\n']
    elif error_type == "RuntimeError":
        assert error["stackTrace"][-1] == (
            f"  File \"{app}\", line 2, in <module>\n    raise RuntimeError('init failed')\n"
        )
        assert not any("bootstrap.py" in frame for frame in error["stackTrace"])
    else:
        assert error["stackTrace"] == []


def test_exits_nonzero_when_the_runtime_api_is_unreachable(
    interpreter: str, tmp_path: Path
) -> None:
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the client connects
    fn = Function(interpreter, tmp_path, FakeRuntimeApi(), port)
    fn.write({"app.py": "def handler(e, c):\n    return 1\n"})
    try:
        fn.start()
        assert fn.wait() != 0
    finally:
        fn.stop()
    assert "Runtime API at 127.0.0.1:" in fn.stderr


# --------------------------------------------------------------------------- output

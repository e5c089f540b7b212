"""Reserved concurrency through boto3: settings, the unreserved minimum, 429 throttling."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .support import ROLE, Deploy, Server, assert_shape, client_error, make_zip, wait_active

SLOW = {
    "app.py": "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 0))\n    return 'ok'\n"
}


def test_reserved_concurrency_settings(lam: Any, deploy: Deploy) -> None:
    name = deploy(SLOW)
    before = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert_shape("PutFunctionConcurrency", put)
    assert put["ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 5}
    settings = lam.get_account_settings()["AccountLimit"]
    assert settings["UnreservedConcurrentExecutions"] == before - 5
    with client_error("InvalidParameterValueException", 400) as info:
        lam.put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=settings["ConcurrentExecutions"]
        )
    assert "minimum value of [100]" in info.value.response["Error"]["Message"]
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    with client_error("ResourceNotFoundException", 404):
        lam.put_function_concurrency(FunctionName=name + "-no", ReservedConcurrentExecutions=1)


def test_zero_reserved_throttles_everything(lam: Any, deploy: Deploy) -> None:
    name = deploy(SLOW)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with client_error("TooManyRequestsException", 429) as info:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    lam.delete_function_concurrency(FunctionName=name)
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


def test_a_reservation_of_one_serves_one_at_a_time(lam: Any, deploy: Deploy) -> None:
    name = deploy(SLOW)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    outcomes: list[str] = []

    def call() -> None:
        try:
            lam.invoke(FunctionName=name, Payload=b'{"s": 1.0}')
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    slow = threading.Thread(target=call)
    slow.start()
    time.sleep(0.3)  # the slow invocation is admitted at once and holds the slot for 1 s
    with client_error("TooManyRequestsException", 429) as info:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    slow.join()
    assert outcomes == ["ok"]
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200  # free again


def test_the_account_limit_throttles_with_its_reason(
    private_server: Server, make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINDLING_ACCOUNT_CONCURRENCY", "1")
    private_server.start()
    lam = make_client(endpoint=private_server.endpoint)
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1
    lam.create_function(
        FunctionName="limited",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(SLOW)},
    )
    wait_active(lam, "limited")
    outcomes: list[str] = []

    def call() -> None:
        lam.invoke(FunctionName="limited", Payload=b'{"s": 1.0}')
        outcomes.append("ok")

    slow = threading.Thread(target=call)
    slow.start()
    time.sleep(0.3)
    with client_error("TooManyRequestsException", 429) as info:
        lam.invoke(FunctionName="limited", Payload=b"{}")
    assert info.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"
    slow.join()
    assert outcomes == ["ok"]

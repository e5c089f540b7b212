"""Provisioned concurrency against the account's pools, through boto3 (ADR 0027).

AWS documents (https://docs.aws.amazon.com/lambda/latest/dg/provisioned-concurrency.html,
"Configuring provisioned concurrency"): "Configuring provisioned concurrency for a
function has an impact on the concurrency pool available to other functions [...] even
if function-a doesn't use all 100 units", "the provisioned concurrency cannot exceed the
reserved concurrency", and "The maximum provisioned concurrency you can assign to a
specific function version is the function's reserved concurrency minus the provisioned
concurrency on other function versions". And
(https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html): "If the
amount of provisioned concurrency on a function's versions and aliases adds up to the
function's reserved concurrency, all invocations run on provisioned concurrency. This
configuration also has the effect of throttling the unpublished version of the function
($LATEST)". GetAccountSettings' ``UnreservedConcurrentExecutions`` is what is left for
the functions without a reservation
(https://docs.aws.amazon.com/lambda/latest/api/API_GetAccountSettings.html).
"""

from __future__ import annotations

from typing import Any

from .support import Deploy, client_error, wait_for

APP = {"app.py": "def handler(event, context):\n    return 'ok'\n"}


def _unreserved(lam: Any) -> int:
    return int(lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"])


def test_provisioned_concurrency_is_counted_in_the_account_pools(lam: Any, deploy: Deploy) -> None:
    name = deploy(APP)
    lam.publish_version(FunctionName=name)
    lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"VERSION": "2"}}
    )
    wait_for(
        lambda: (
            lam.get_function_configuration(FunctionName=name)["LastUpdateStatus"] == "Successful"
        )
    )
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    before = _unreserved(lam)

    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    assert _unreserved(lam) == before - 2  # taken out of the pool, used or not

    with client_error("InvalidParameterValueException", 400):  # below what is provisioned
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    assert _unreserved(lam) == before - 3  # the provisioned 2 are inside the reservation

    with client_error("InvalidParameterValueException", 400):  # 3 reserved - 2 on version 1
        lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="2", ProvisionedConcurrentExecutions=2
        )
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="2", ProvisionedConcurrentExecutions=1
    )
    # the whole reservation is provisioned: $LATEST has none of it
    with client_error("TooManyRequestsException", 429) as info:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")["StatusCode"] == 200

    lam.delete_function_concurrency(FunctionName=name)
    assert _unreserved(lam) == before - 3  # the 3 provisioned leave the pool again
    for qualifier in ("1", "2"):
        lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
    assert _unreserved(lam) == before
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200

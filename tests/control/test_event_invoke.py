"""Asynchronous invocation configs on the real store (SQLite and PostgreSQL).

AWS API reference pages the behaviour follows:
- https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionEventInvokeConfig.html
  (Put replaces: "If you exclude any settings, they are removed")
- https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionEventInvokeConfig.html
  (Update changes only what it names)
- https://docs.aws.amazon.com/lambda/latest/api/API_FunctionEventInvokeConfig.html
  (MaximumRetryAttempts 0-2, MaximumEventAgeInSeconds 60-21600, LastModified in Unix
  seconds, FunctionArn qualified)
- https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html
  (defaults: two retries, six hours)
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kindling.control.aliases import AliasService
from kindling.control.codestore import CodeStore
from kindling.control.event_invoke import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_RETRIES,
    AsyncPolicy,
    EventInvokeConfigService,
    EventInvokeStore,
)
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore
from kindling.control.versions import VersionService
from kindling.errors import NotFoundError, ValidationError
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_functions import ACCOUNT, REGION, _params, run

F = FunctionRef(ACCOUNT, REGION, "f")
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures"


@pytest.fixture
def parts(tmp_path: Path, store_url: str) -> tuple[FunctionService, EventInvokeConfigService]:
    store = Store(store_url)
    functions_store = FunctionStore(store)
    functions = FunctionService(functions_store, CodeStore(tmp_path / "code"), RuntimeCatalog())
    for name in ("f", "audit"):
        run(functions.create(ACCOUNT, REGION, FunctionRef(ACCOUNT, REGION, name), _params()))
    functions.recover()
    VersionService(functions, functions_store).publish(F)
    aliases = AliasService(functions, functions_store, random.Random(1))
    aliases.create(F, {"Name": "live", "FunctionVersion": "1"})
    return functions, EventInvokeConfigService(functions, aliases, EventInvokeStore(store))


def test_put_replaces_and_update_merges(
    parts: tuple[FunctionService, EventInvokeConfigService],
) -> None:
    _functions, configs = parts
    put = configs.put(
        F,
        {
            "MaximumRetryAttempts": 1,
            "DestinationConfig": {"OnFailure": {"Destination": QUEUE}},
        },
    )
    assert put.to_api() == {
        "LastModified": put.last_modified,
        "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f:$LATEST",
        "MaximumRetryAttempts": 1,
        "DestinationConfig": {"OnSuccess": {}, "OnFailure": {"Destination": QUEUE}},
    }
    updated = configs.update(F, {"MaximumEventAgeInSeconds": 600})
    assert (updated.max_retries, updated.max_age_s, updated.on_failure) == (1, 600, QUEUE)
    audit = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit"
    swapped = configs.update(F, {"DestinationConfig": {"OnSuccess": {"Destination": audit}}})
    assert (swapped.on_success, swapped.on_failure, swapped.max_age_s) == (audit, None, 600)
    updated = configs.update(F, {"DestinationConfig": {"OnFailure": {"Destination": QUEUE}}})
    assert updated.last_modified >= put.last_modified
    replaced = configs.put(F, {"MaximumEventAgeInSeconds": 60})
    assert (replaced.max_retries, replaced.on_failure) == (None, None)  # Put removes the rest
    assert configs.get(F).to_api() == replaced.to_api()


def test_each_qualifier_has_its_own_config_and_the_list_pages(
    parts: tuple[FunctionService, EventInvokeConfigService],
) -> None:
    _functions, configs = parts
    for qualifier in ("1", "live", None):
        configs.put(FunctionRef(ACCOUNT, REGION, "f", qualifier), {"MaximumRetryAttempts": 0})
    configs.update(FunctionRef(ACCOUNT, REGION, "f", "live"), {"MaximumRetryAttempts": 2})
    assert configs.get(FunctionRef(ACCOUNT, REGION, "f", "1")).max_retries == 0
    assert configs.get(FunctionRef(ACCOUNT, REGION, "f", "live")).max_retries == 2
    first, marker = configs.page(F, None, 2)
    assert marker is not None
    rest, end = configs.page(F, marker, 2)
    assert end is None
    arns = [c.to_api()["FunctionArn"].rsplit(":", 1)[1] for c in [*first, *rest]]
    assert arns == ["$LATEST", "1", "live"]


def test_missing_things_answer_as_lambda_does(
    parts: tuple[FunctionService, EventInvokeConfigService],
) -> None:
    _functions, configs = parts
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f:$LATEST"
    with pytest.raises(NotFoundError, match=rf"The function {arn.replace('$', '.')} doesn't"):
        configs.get(F)
    with pytest.raises(NotFoundError, match="doesn't have an EventInvokeConfig"):
        configs.delete(F)
    with pytest.raises(NotFoundError, match="doesn't have an EventInvokeConfig"):
        configs.update(F, {"MaximumRetryAttempts": 1})
    with pytest.raises(NotFoundError, match=r"The function doesn.t exist\."):
        configs.put(FunctionRef(ACCOUNT, REGION, "nope"), {"MaximumRetryAttempts": 1})
    with pytest.raises(NotFoundError, match=r"The function doesn.t exist\."):
        configs.put(FunctionRef(ACCOUNT, REGION, "f", "7"), {"MaximumRetryAttempts": 1})
    with pytest.raises(NotFoundError, match=r"The function doesn.t exist\."):
        configs.put(FunctionRef(ACCOUNT, REGION, "f", "gone"), {"MaximumRetryAttempts": 1})
    with pytest.raises(ValidationError, match="at least one of error handling or destination"):
        configs.put(F, {})


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:nope", "The destination ARN .* is invalid"),
        (f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f", "destination for itself"),
        (f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q", r"DestinationConfig\(onSuccess=null, onFailure="),
        (f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t", "The provided destination config"),
        ("not-an-arn", "The provided destination config"),
        ("arn:aws:s3:::bucket", "not supported by this kindling server"),
    ],
)
def test_bad_destinations_are_refused(
    parts: tuple[FunctionService, EventInvokeConfigService], destination: str, message: str
) -> None:
    _functions, configs = parts
    with pytest.raises(ValidationError, match=message):
        configs.put(F, {"DestinationConfig": {"OnFailure": {"Destination": destination}}})


def test_the_policy_has_lambdas_defaults_and_follows_the_invoked_qualifier(
    parts: tuple[FunctionService, EventInvokeConfigService],
) -> None:
    functions, configs = parts
    audit = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit"
    assert configs.policy(F) == AsyncPolicy(DEFAULT_RETRIES, DEFAULT_MAX_AGE_S)
    assert (DEFAULT_RETRIES, DEFAULT_MAX_AGE_S) == (2, 21600)
    configs.put(
        FunctionRef(ACCOUNT, REGION, "f", "live"),
        {"MaximumRetryAttempts": 0, "DestinationConfig": {"OnSuccess": {"Destination": audit}}},
    )
    assert configs.policy(FunctionRef(ACCOUNT, REGION, "f", "live")) == AsyncPolicy(
        0, DEFAULT_MAX_AGE_S, on_success=audit
    )
    assert configs.policy(F).on_success is None  # $LATEST has none of its own
    functions.update_configuration(F, {"DeadLetterConfig": {"TargetArn": QUEUE}})
    assert configs.policy(F).dead_letter == QUEUE
    configs.forget_function(F)
    with pytest.raises(NotFoundError):
        configs.get(FunctionRef(ACCOUNT, REGION, "f", "live"))


def test_dead_letter_targets_are_sqs_or_sns_of_the_region(
    parts: tuple[FunctionService, EventInvokeConfigService],
) -> None:
    functions, _configs = parts
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:t"
    assert functions.update_configuration(F, {"DeadLetterConfig": {"TargetArn": topic}}).to_api()[
        "DeadLetterConfig"
    ] == {"TargetArn": topic}
    for bad in (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit",
        f"arn:aws:sqs:eu-west-1:{ACCOUNT}:q",
    ):
        with pytest.raises(ValidationError, match="The provided target arn"):
            functions.update_configuration(F, {"DeadLetterConfig": {"TargetArn": bad}})
    cleared = functions.update_configuration(F, {"DeadLetterConfig": {}})
    assert "DeadLetterConfig" not in cleared.to_api()

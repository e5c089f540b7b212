"""EventBridge's list operations page as the API reference says, on the real store:
``Limit`` caps a page and ``NextToken`` brings the next (API_ListEventBuses,
API_ListTargetsByRule, API_ListRuleNamesByTarget, API_ListRules). The AWS CLI's
``--limit``/``--page-size`` send ``Limit`` and follow the token
(tests/e2e/test_awscli_events.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from kindling.api.eventbridge import EventBridgeApi
from kindling.control.models import FunctionRef
from kindling.errors import ValidationError
from kindling.events.bridge import EventBridge
from kindling.events.rule_store import RuleStore
from kindling.iam.sigv4 import Caller
from kindling.store import Store

A, R = "000000000000", "us-east-1"
CALLER = Caller(account_id=A, access_key_id="test", region=R)


async def _deliver(ref: FunctionRef, payload: bytes) -> None:
    """No rule here fires: the tests only list."""


@pytest.fixture
def api(store_url: str) -> Iterator[EventBridgeApi]:
    store = Store(store_url)
    yield EventBridgeApi(EventBridge(RuleStore(store), _deliver))
    store.close()


def call(api: EventBridgeApi, operation: str, **params: Any) -> dict[str, Any]:
    result: dict[str, Any] = asyncio.run(api.operations()[operation](CALLER, params))
    return result


def pages(api: EventBridgeApi, operation: str, key: str, **params: Any) -> list[list[Any]]:
    """Every page of a list operation, following NextToken."""
    out, token = [], None
    while True:
        page = call(api, operation, **params, **({"NextToken": token} if token else {}))
        out.append(page[key])
        token = page.get("NextToken")
        if token is None:
            return out


def test_list_event_buses_pages_by_limit(api: EventBridgeApi) -> None:
    for name in ("b-1", "b-2", "b-3"):
        call(api, "CreateEventBus", Name=name)
    got = pages(api, "ListEventBuses", "EventBuses", Limit=2)
    assert [[b["Name"] for b in page] for page in got] == [["b-1", "b-2"], ["b-3", "default"]]
    got = pages(api, "ListEventBuses", "EventBuses", NamePrefix="b-", Limit=1)
    assert [[b["Name"] for b in page] for page in got] == [["b-1"], ["b-2"], ["b-3"]]
    assert len(pages(api, "ListEventBuses", "EventBuses")) == 1  # no Limit: one page
    with pytest.raises(ValidationError):
        call(api, "ListEventBuses", NextToken="not a token")


def test_list_targets_by_rule_pages_by_limit(api: EventBridgeApi) -> None:
    call(api, "PutRule", Name="r", EventPattern='{"source": ["x"]}')
    fn = f"arn:aws:lambda:{R}:{A}:function:f"
    call(api, "PutTargets", Rule="r", Targets=[{"Id": i, "Arn": fn} for i in ("1", "2", "3")])
    got = pages(api, "ListTargetsByRule", "Targets", Rule="r", Limit=2)
    assert [[t["Id"] for t in page] for page in got] == [["1", "2"], ["3"]]
    assert pages(api, "ListTargetsByRule", "Targets", Rule="r") == [
        [{"Id": i, "Arn": fn} for i in ("1", "2", "3")]
    ]
    with pytest.raises(ValidationError):
        call(api, "ListTargetsByRule", Rule="r", NextToken="{}")


def test_list_rule_names_by_target_pages_by_limit(api: EventBridgeApi) -> None:
    fn = f"arn:aws:lambda:{R}:{A}:function:f"
    for name in ("r-1", "r-2", "r-3"):
        call(api, "PutRule", Name=name, EventPattern='{"source": ["x"]}')
        call(api, "PutTargets", Rule=name, Targets=[{"Id": "1", "Arn": fn}])
    got = pages(api, "ListRuleNamesByTarget", "RuleNames", TargetArn=fn, Limit=2)
    assert got == [["r-1", "r-2"], ["r-3"]]

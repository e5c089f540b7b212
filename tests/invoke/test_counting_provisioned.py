"""Provisioned concurrency in the counting service, in process and in Redis (ADR 0027).

What AWS documents, and what these tests hold both counters to:

- "Configuring provisioned concurrency for a function has an impact on the concurrency
  pool available to other functions. For instance, if you configure 100 units of
  provisioned concurrency for function-a, other functions in your account must share the
  remaining 900 units of concurrency. This is true even if function-a doesn't use all
  100 units." and "You can configure up to the Unreserved account concurrency in your
  account, minus 100."
  (https://docs.aws.amazon.com/lambda/latest/dg/provisioned-concurrency.html,
  "Configuring provisioned concurrency")
- "It's possible to allocate both reserved concurrency and provisioned concurrency for
  the same function. In such cases, the provisioned concurrency cannot exceed the
  reserved concurrency. [...] The maximum provisioned concurrency you can assign to a
  specific function version is the function's reserved concurrency minus the
  provisioned concurrency on other function versions." (same page)
- "Provisioned concurrency counts towards a function's reserved concurrency and Regional
  quotas. If the amount of provisioned concurrency on a function's versions and aliases
  adds up to the function's reserved concurrency, all invocations run on provisioned
  concurrency. This configuration also has the effect of throttling the unpublished
  version of the function ($LATEST)"
  (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)
- GetAccountSettings' ``UnreservedConcurrentExecutions`` is that unreserved pool
  (https://docs.aws.amazon.com/lambda/latest/api/API_AccountLimit.html).

The Redis runs use two counters standing for two control nodes, on the session's real
``redis-server`` (tests/engines.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from kindling.control.aliases import AliasService
from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.models import LATEST, FunctionRef
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.control.versions import VersionService
from kindling.errors import ThrottledError, ValidationError
from kindling.invoke.counting import Counting
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_functions import ACCOUNT, REGION, _params, run

from .test_counting import ACCOUNT_WIDE, RESERVED, kind, nodes, redis_url

__all__ = ["kind", "redis_url"]  # fixtures, used by name


@dataclass
class Account:
    """Functions "a" and "b" of one account, and its concurrency settings."""

    settings: ConcurrencySettings
    functions: FunctionService
    store: FunctionStore
    configs: ProvisionedStore

    def provision(self, name: str, qualifier: str, requested: int) -> None:
        """Stores a config as PutProvisionedConcurrencyConfig does, checked as it is."""
        ref = FunctionRef(ACCOUNT, REGION, name, qualifier)
        self.settings.check_provisioned(ref, requested)
        self.configs.put(ref, requested, "2026-01-01T00:00:00.000+0000")
        self.settings.refresh((ACCOUNT, REGION, name))


def _account(tmp_path: Path, account_limit: int) -> Account:
    engine = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store = FunctionStore(engine)
    functions = FunctionService(store, CodeStore(tmp_path / "code"), RuntimeCatalog())
    for name in ("a", "b"):
        run(functions.create(ACCOUNT, REGION, FunctionRef(ACCOUNT, REGION, name), _params()))
    configs = ProvisionedStore(engine)
    settings = ConcurrencySettings(functions, store, account_limit, configs)
    return Account(settings, functions, store, configs)


async def _hold(
    stack: contextlib.AsyncExitStack, counter: Counting, name: str, version: str = LATEST
) -> None:
    await stack.enter_async_context(counter.admit(ACCOUNT, REGION, name, version))


async def _refused(counter: Counting, name: str, version: str = LATEST) -> str:
    with pytest.raises(ThrottledError) as info:
        async with counter.admit(ACCOUNT, REGION, name, version):
            pass
    return info.value.reason


def test_provisioned_concurrency_of_an_unreserved_function_leaves_the_unreserved_pool(
    tmp_path: Path, kind: str, redis_url: str
) -> None:
    account = _account(tmp_path, 103)
    settings = account.settings
    account.provision("a", "1", 3)
    assert settings.unreserved(ACCOUNT) == 100  # GetAccountSettings' figure

    async def scenario() -> None:
        async with nodes(kind, settings, redis_url) as (one, two):
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(100):  # other functions share what is left: 100
                    await _hold(stack, one, "b")
                assert await _refused(two, "b") == ACCOUNT_WIDE
                for i in range(3):  # version 1 has its 3 whatever the pool holds
                    await _hold(stack, (one, two)[i % 2], "a", "1")
                assert await _refused(two, "a", "1") == ACCOUNT_WIDE  # spill-over: the pool
                assert await _refused(one, "a") == ACCOUNT_WIDE  # $LATEST has none of them
                assert await two.in_use(ACCOUNT) == 103
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(3):
                    await _hold(stack, one, "a", "1")
                await _hold(stack, two, "a", "1")  # beyond its 3: from the pool
                for _ in range(99):
                    await _hold(stack, one, "b")
                assert await _refused(two, "b") == ACCOUNT_WIDE
            assert await one.in_use(ACCOUNT) == 0

    asyncio.run(scenario())


def test_provisioned_concurrency_within_a_reservation_throttles_latest(
    tmp_path: Path, kind: str, redis_url: str
) -> None:
    account = _account(tmp_path, 1000)
    settings = account.settings
    settings.put(FunctionRef(ACCOUNT, REGION, "a"), 5)
    account.provision("a", "1", 2)
    account.provision("a", "2", 1)
    assert settings.unreserved(ACCOUNT) == 995  # inside the reservation: not taken twice

    async def scenario() -> None:
        async with nodes(kind, settings, redis_url) as (one, two):
            async with contextlib.AsyncExitStack() as stack:
                await _hold(stack, one, "a")
                await _hold(stack, two, "a")  # the reservation's 5 less the 3 provisioned
                assert await _refused(one, "a") == RESERVED
                for i in range(2):
                    await _hold(stack, (one, two)[i % 2], "a", "1")
                await _hold(stack, one, "a", "2")
                assert await _refused(two, "a", "2") == RESERVED
                assert await two.in_use(ACCOUNT) == 5
            # provisioned adds up to the reservation: every invocation of $LATEST refused
            settings.put(FunctionRef(ACCOUNT, REGION, "a"), 3)
            assert await _refused(two, "a") == RESERVED
            async with contextlib.AsyncExitStack() as stack:
                await _hold(stack, one, "a", "1")
                await _hold(stack, two, "a", "1")
                assert await _refused(one, "a", "1") == RESERVED

    asyncio.run(scenario())


def test_a_release_of_a_provisioned_slot_is_not_of_the_unreserved_pool(
    tmp_path: Path, kind: str, redis_url: str
) -> None:
    account = _account(tmp_path, 1000)
    settings = account.settings
    account.provision("a", "1", 1)

    async def scenario() -> None:
        async with nodes(kind, settings, redis_url, count=1) as (counter,):
            freed: list[tuple[tuple[str, str, str], bool]] = []
            counter.on_freed(lambda function, unreserved: freed.append((function, unreserved)))
            async with contextlib.AsyncExitStack() as stack:
                await _hold(stack, counter, "a", "1")
                async with counter.admit(ACCOUNT, REGION, "a", "1"):  # spill-over
                    pass
            await asyncio.sleep(0.2)
            assert freed == [((ACCOUNT, REGION, "a"), True), ((ACCOUNT, REGION, "a"), False)]

    asyncio.run(scenario())


def test_what_a_config_may_ask_for(tmp_path: Path) -> None:
    account = _account(tmp_path, 1000)
    settings = account.settings
    with pytest.raises(ValidationError, match="unreserved"):
        settings.check_provisioned(FunctionRef(ACCOUNT, REGION, "a", "1"), 901)
    account.provision("a", "1", 900)
    account.provision("a", "1", 900)  # replacing a config does not count it twice
    assert settings.unreserved(ACCOUNT) == 100
    with pytest.raises(ValidationError, match="unreserved"):
        settings.check_provisioned(FunctionRef(ACCOUNT, REGION, "b", "1"), 1)
    with pytest.raises(ValidationError, match="minimum value of \\[100\\]"):
        settings.put(FunctionRef(ACCOUNT, REGION, "b"), 1)  # the pool is at its minimum
    # a reservation takes the function's provisioned concurrency inside it
    settings.put(FunctionRef(ACCOUNT, REGION, "a"), 900)
    assert settings.unreserved(ACCOUNT) == 100
    with pytest.raises(ValidationError, match="less than"):
        settings.put(FunctionRef(ACCOUNT, REGION, "a"), 899)  # below what is provisioned
    account.provision("a", "1", 6)
    settings.put(FunctionRef(ACCOUNT, REGION, "a"), 10)
    with pytest.raises(ValidationError, match="reserved"):
        settings.check_provisioned(FunctionRef(ACCOUNT, REGION, "a", "2"), 5)  # 6 + 5 > 10
    account.provision("a", "2", 4)
    assert settings.provisioned_total(ACCOUNT, REGION, "a") == 10
    settings.delete(FunctionRef(ACCOUNT, REGION, "a"))  # back to the pool: 10 leave it
    assert settings.unreserved(ACCOUNT) == 990


def test_an_alias_config_counts_for_the_version_it_points_to(tmp_path: Path) -> None:
    account = _account(tmp_path, 1000)
    settings = account.settings
    versions = VersionService(account.functions, account.store)
    aliases = AliasService(account.functions, account.store)
    ref = FunctionRef(ACCOUNT, REGION, "a")
    versions.publish(ref, with_write=True)
    aliases.create(ref, {"Name": "live", "FunctionVersion": "1"})
    account.provision("a", "live", 7)
    assert settings.provisioned(ACCOUNT, REGION, "a", "1") == 7
    assert settings.provisioned(ACCOUNT, REGION, "a", LATEST) == 0
    assert settings.unreserved(ACCOUNT) == 993
    account.configs.delete(FunctionRef(ACCOUNT, REGION, "a", "live"))
    settings.refresh((ACCOUNT, REGION, "a"))
    assert settings.unreserved(ACCOUNT) == 1000

"""An account's concurrency pools: reserved per function, provisioned per version, and
the unreserved rest. Read from the store, cached for the invoke path.

AWS's accounting (ADR 0027): a function's reserved concurrency is its own pool, which
the provisioned concurrency of its versions is part of; provisioned concurrency of a
function without a reservation is taken out of the account's unreserved pool whether it
is used or not. So the unreserved pool (GetAccountSettings'
``UnreservedConcurrentExecutions``, and what the counters admit unreserved invocations
against) is the account limit less every reservation and less the provisioned
concurrency of unreserved functions, and Lambda never lets it drop below 100.

An alias's config counts for the version the alias points to when the account's pools
are read: that is the version its sandboxes were provisioned for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from kindling import limits
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef, is_alias_name
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.errors import NotFoundError, ValidationError

UNRESERVED_MINIMUM = limits.UNRESERVED_CONCURRENCY_MIN


@dataclass
class _Pools:
    """One account's, as the store had them when read."""

    reserved: dict[tuple[str, str], int]  # (region, name) -> reserved
    #: (region, name, version) -> provisioned, aliases' configs counted for their version
    provisioned: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: (region, name, qualifier) -> provisioned, as the configs are stored
    configs: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: (region, name) -> provisioned, over all the function's versions
    by_function: Counter[tuple[str, str]] = field(default_factory=Counter)
    unreserved: int = 0


class ConcurrencySettings:
    def __init__(
        self,
        functions: FunctionService,
        store: FunctionStore,
        account_limit: int,
        provisioned: ProvisionedStore,
    ) -> None:
        self._functions = functions
        self._store = store
        self._provisioned = provisioned
        self.account_limit = account_limit
        self._by_account: dict[str, _Pools] = {}

    def _account(self, account_id: str) -> _Pools:
        found = self._by_account.get(account_id)
        if found is None:
            found = self._read(account_id)
            self._by_account[account_id] = found
        return found

    def _read(self, account_id: str) -> _Pools:
        pools = _Pools(self._store.all_reserved(account_id))
        for ref, requested in self._provisioned.account(account_id):
            qualifier = str(ref.qualifier)
            pools.configs[(ref.region, ref.name, qualifier)] = requested
            if is_alias_name(qualifier):
                try:
                    qualifier = self._functions.get(ref).version
                except NotFoundError:  # the alias went with its config: nothing to count
                    continue
            pools.provisioned[(ref.region, ref.name, qualifier)] += requested
            pools.by_function[(ref.region, ref.name)] += requested
        carved = sum(n for f, n in pools.by_function.items() if f not in pools.reserved)
        pools.unreserved = self.account_limit - sum(pools.reserved.values()) - carved
        return pools

    def reserved(self, account_id: str, region: str, name: str) -> int | None:
        return self._account(account_id).reserved.get((region, name))

    def reserved_total(self, account_id: str) -> int:
        return sum(self._account(account_id).reserved.values())

    def provisioned(self, account_id: str, region: str, name: str, version: str) -> int:
        """The provisioned concurrency of one version (its own and its aliases')."""
        return self._account(account_id).provisioned.get((region, name, version), 0)

    def provisioned_total(self, account_id: str, region: str, name: str) -> int:
        """The provisioned concurrency of all the function's versions."""
        return self._account(account_id).by_function.get((region, name), 0)

    def unreserved(self, account_id: str) -> int:
        """The pool that functions without a reservation share, less what is provisioned
        for them."""
        return self._account(account_id).unreserved

    def check_provisioned(self, ref: FunctionRef, requested: int) -> None:
        """Whether the version or alias ``ref`` may have ``requested`` provisioned
        concurrency, its config (if any) replaced: within the function's reservation less
        its other configs, or within the unreserved pool less its minimum of 100."""
        pools = self._account(ref.account_id)
        current = pools.configs.get((ref.region, ref.name, str(ref.qualifier)), 0)
        reserved = pools.reserved.get((ref.region, ref.name))
        if reserved is not None:
            room = reserved - (pools.by_function[(ref.region, ref.name)] - current)
            kind = "reserved"
        else:
            room = pools.unreserved + current - UNRESERVED_MINIMUM
            kind = "unreserved"
        if requested > room:
            raise ValidationError(
                f"Requested Provisioned Concurrency should not be greater than the {kind} "
                f"concurrency available for the function ({max(room, 0)})."
            )

    def put(self, ref: FunctionRef, value: int) -> int:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        if ref.qualifier:
            raise ValidationError("Reserved concurrency is set on the function, not a version")
        pools = self._account(ref.account_id)
        provisioned = pools.by_function[(ref.region, ref.name)]
        if value < provisioned:
            raise ValidationError(
                f"Specified ReservedConcurrentExecutions for function is less than the "
                f"function's provisioned concurrency [{provisioned}]."
            )
        current = pools.reserved.get((ref.region, ref.name))
        # reserving takes the function's provisioned concurrency out of the pool into it
        freed = current if current is not None else provisioned
        if pools.unreserved + freed - value < UNRESERVED_MINIMUM:
            raise ValidationError(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MINIMUM}]."
            )
        self._store.set_reserved(ref.account_id, ref.region, ref.name, value)
        self._by_account.pop(ref.account_id, None)
        return value

    def get(self, ref: FunctionRef) -> int | None:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        return self.reserved(ref.account_id, ref.region, ref.name)

    def delete(self, ref: FunctionRef) -> None:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        self._store.set_reserved(ref.account_id, ref.region, ref.name, None)
        self._by_account.pop(ref.account_id, None)

    def forget_function(self, ref: FunctionRef) -> None:
        self._by_account.pop(ref.account_id, None)

    def refresh(self, function: tuple[str, str, str] | None) -> None:
        """Forgets the cached pools of ``function``'s account (None: of all), to be read
        again: another control node may have changed them, or this one a provisioned
        config or an alias."""
        if function is None:
            self._by_account.clear()
        else:
            self._by_account.pop(function[0], None)

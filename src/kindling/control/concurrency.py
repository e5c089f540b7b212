"""Reserved concurrency per function: stored with the function, cached for the invoke path.

Reserving takes capacity out of the account's unreserved pool, which Lambda never lets
drop below 100.
"""

from __future__ import annotations

from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore
from kindling.errors import ValidationError

UNRESERVED_MINIMUM = 100


class ConcurrencySettings:
    def __init__(
        self, functions: FunctionService, store: FunctionStore, account_limit: int
    ) -> None:
        self._functions = functions
        self._store = store
        self.account_limit = account_limit
        self._by_account: dict[str, dict[tuple[str, str], int]] = {}

    def _account(self, account_id: str) -> dict[tuple[str, str], int]:
        found = self._by_account.get(account_id)
        if found is None:
            found = self._store.all_reserved(account_id)
            self._by_account[account_id] = found
        return found

    def reserved(self, account_id: str, region: str, name: str) -> int | None:
        return self._account(account_id).get((region, name))

    def reserved_total(self, account_id: str) -> int:
        return sum(self._account(account_id).values())

    def unreserved(self, account_id: str) -> int:
        return self.account_limit - self.reserved_total(account_id)

    def put(self, ref: FunctionRef, value: int) -> int:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        if ref.qualifier:
            raise ValidationError("Reserved concurrency is set on the function, not a version")
        others = self.reserved_total(ref.account_id) - (
            self.reserved(ref.account_id, ref.region, ref.name) or 0
        )
        if self.account_limit - others - value < UNRESERVED_MINIMUM:
            raise ValidationError(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{UNRESERVED_MINIMUM}]."
            )
        self._store.set_reserved(ref.account_id, ref.region, ref.name, value)
        self._account(ref.account_id)[(ref.region, ref.name)] = value
        return value

    def get(self, ref: FunctionRef) -> int | None:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        return self.reserved(ref.account_id, ref.region, ref.name)

    def delete(self, ref: FunctionRef) -> None:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        self._store.set_reserved(ref.account_id, ref.region, ref.name, None)
        self._account(ref.account_id).pop((ref.region, ref.name), None)

    def forget_function(self, ref: FunctionRef) -> None:
        self._account(ref.account_id).pop((ref.region, ref.name), None)

    def refresh(self, function: tuple[str, str, str] | None) -> None:
        """Forgets the cached reservations of ``function``'s account (None: of all), to be
        read again: another control node may have changed them."""
        if function is None:
            self._by_account.clear()
        else:
            self._by_account.pop(function[0], None)

"""The counting service: concurrent executions, enforced before any work is done.

Lambda counts an execution from admission until its sandbox is released. A function
with reserved concurrency draws only on its reservation; every other function shares
what the account has left unreserved. Over either limit the caller gets 429 with the
Reason naming the limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from kindling.control.concurrency import ConcurrencySettings
from kindling.errors import ThrottledError

FunctionKey = tuple[str, str, str]  # account, region, name


class ConcurrencyCounter:
    def __init__(self, settings: ConcurrencySettings) -> None:
        self._settings = settings
        self._per_function: Counter[FunctionKey] = Counter()
        self._unreserved: Counter[str] = Counter()

    @property
    def account_limit(self) -> int:
        return self._settings.account_limit

    def in_use(self, account_id: str) -> int:
        return sum(n for key, n in self._per_function.items() if key[0] == account_id)

    @contextmanager
    def admit(self, account_id: str, region: str, name: str) -> Iterator[None]:
        key = (account_id, region, name)
        reserved = self._settings.reserved(account_id, region, name)
        if reserved is not None:
            if self._per_function[key] >= reserved:
                raise ThrottledError(
                    "Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded"
                )
            pool = None
        else:
            if self._unreserved[account_id] >= self._settings.unreserved(account_id):
                raise ThrottledError("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
            pool = account_id
        self._per_function[key] += 1
        if pool is not None:
            self._unreserved[pool] += 1
        try:
            yield
        finally:
            self._per_function[key] -= 1
            if not self._per_function[key]:
                del self._per_function[key]
            if pool is not None:
                self._unreserved[pool] -= 1

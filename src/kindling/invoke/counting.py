"""The counting service: concurrent executions per account, enforced before any work.

Lambda counts an execution from the moment it is admitted until its sandbox is
released; over the limit, the caller gets 429 with a Reason saying which limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from kindling.errors import ThrottledError


class ConcurrencyCounter:
    def __init__(self, account_limit: int) -> None:
        self.account_limit = account_limit
        self._in_use: Counter[str] = Counter()

    def in_use(self, account_id: str) -> int:
        return self._in_use[account_id]

    @contextmanager
    def admit(self, account_id: str) -> Iterator[None]:
        if self._in_use[account_id] >= self.account_limit:
            raise ThrottledError("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
        self._in_use[account_id] += 1
        try:
            yield
        finally:
            self._in_use[account_id] -= 1

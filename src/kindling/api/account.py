"""GetAccountSettings: the account's limits and what it uses of them."""

from __future__ import annotations

from typing import Any

from kindling.control.codestore import MAX_UNZIPPED_BYTES
from kindling.control.functions import FunctionService
from kindling.iam.sigv4 import Caller
from kindling.invoke.counting import ConcurrencyCounter

TOTAL_CODE_SIZE = 80 * 1024**3
ZIPPED_LIMIT = 50 * 1024 * 1024


class AccountApi:
    def __init__(self, functions: FunctionService, counter: ConcurrencyCounter) -> None:
        self._functions = functions
        self._counter = counter

    def operations(self) -> dict[str, Any]:
        return {"GetAccountSettings": self.settings}

    async def settings(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        count, total = self._functions.account_usage(caller.account_id)
        limit = self._counter.account_limit
        return {
            "AccountLimit": {
                "TotalCodeSize": TOTAL_CODE_SIZE,
                "CodeSizeUnzipped": MAX_UNZIPPED_BYTES,
                "CodeSizeZipped": ZIPPED_LIMIT,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": limit,
            },
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": count},
        }

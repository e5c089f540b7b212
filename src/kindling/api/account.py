"""GetAccountSettings: the account's limits and what it uses of them."""

from __future__ import annotations

from typing import Any

from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.layers import LayerService
from kindling.iam.sigv4 import Caller
from kindling.limits import ACCOUNT_CODE_STORAGE_BYTES, CODE_UNZIPPED_BYTES, CODE_ZIPPED_BYTES


class AccountApi:
    def __init__(
        self,
        functions: FunctionService,
        concurrency: ConcurrencySettings,
        layers: LayerService | None = None,
    ) -> None:
        self._functions = functions
        self._concurrency = concurrency
        self._layers = layers

    def operations(self) -> dict[str, Any]:
        return {"GetAccountSettings": self.settings}

    async def settings(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        count, total = self._functions.account_usage(caller.account_id)
        if self._layers is not None:  # "used by deployment packages and layer archives"
            total += self._layers.account_code_size(caller.account_id)
        limit = self._concurrency.account_limit
        return {
            "AccountLimit": {
                "TotalCodeSize": ACCOUNT_CODE_STORAGE_BYTES,
                "CodeSizeUnzipped": CODE_UNZIPPED_BYTES,
                "CodeSizeZipped": CODE_ZIPPED_BYTES,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": self._concurrency.unreserved(caller.account_id),
            },
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": count},
        }

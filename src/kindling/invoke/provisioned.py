"""Provisioned concurrency: initialized sandboxes kept ready for a version or alias.

A config is stored (it survives restarts) and answered ``IN_PROGRESS`` at once; a
background task starts the sandboxes (``AWS_LAMBDA_INITIALIZATION_TYPE`` is
``provisioned-concurrency`` in them) and the status turns ``READY``, or ``FAILED`` with
the reason. Invocations use them first (they are in the same warm pool, never reaped)
and spill over to on-demand sandboxes beyond them. What a config may ask for, and how
its concurrency is counted (inside the function's reservation, or out of the account's
unreserved pool), is control/concurrency.py's (ADR 0027).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from typing import Any

from kindling.control import snapstart
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.models import LATEST, FunctionRef, now_timestamp
from kindling.control.store import ProvisionedStore
from kindling.errors import KindlingError, ProvisionedConfigNotFoundError, ValidationError
from kindling.invoke.assignment import Assignment
from kindling.invoke.service import InvokeService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProvisionedConfig:
    ref: FunctionRef  # qualifier: a version number or an alias
    requested: int
    allocated: int = 0
    status: str = "IN_PROGRESS"
    reason: str | None = None
    last_modified: str = ""

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "RequestedProvisionedConcurrentExecutions": self.requested,
            "AvailableProvisionedConcurrentExecutions": self.allocated,
            "AllocatedProvisionedConcurrentExecutions": self.allocated,
            "Status": self.status,
            "LastModified": self.last_modified,
        }
        if self.reason:
            out["StatusReason"] = self.reason
        return out


class ProvisionedConcurrency:
    def __init__(
        self,
        store: ProvisionedStore,
        functions: FunctionService,
        concurrency: ConcurrencySettings,
        invoker: InvokeService,
        assignment: Assignment,
    ) -> None:
        self._store = store
        self._functions = functions
        self._concurrency = concurrency
        self._invoker = invoker
        self._assignment = assignment
        self._configs: dict[tuple[str, str, str, str], ProvisionedConfig] = {}
        self._tasks: dict[tuple[str, str, str, str], asyncio.Task[None]] = {}

    @staticmethod
    def _key(ref: FunctionRef) -> tuple[str, str, str, str]:
        return ref.account_id, ref.region, ref.name, ref.qualifier or ""

    def put(self, ref: FunctionRef, requested: int) -> ProvisionedConfig:
        if not ref.qualifier or ref.qualifier == LATEST:
            raise ValidationError(
                "Provisioned Concurrency Configs cannot be applied to unpublished function "
                "versions."
            )
        snapstart.check_provisioned(self._functions.get(ref))  # it exists; no SnapStart
        self._concurrency.check_provisioned(ref, requested)
        config = ProvisionedConfig(ref, requested, last_modified=now_timestamp())
        self._save(config)
        self._apply(config)
        return self._configs[self._key(ref)]

    def get(self, ref: FunctionRef) -> ProvisionedConfig:
        found = self._configs.get(self._key(ref))
        if found is None:
            self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
            raise ProvisionedConfigNotFoundError(
                f"No Provisioned Concurrency Config found for this function: {ref.arn}"
                + (f":{ref.qualifier}" if ref.qualifier else "")
            )
        return found

    def list(self, ref: FunctionRef) -> list[ProvisionedConfig]:
        self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name))
        return [c for k, c in sorted(self._configs.items()) if k[:3] == self._key(ref)[:3]]

    async def delete(self, ref: FunctionRef) -> None:
        config = self.get(ref)
        key = self._key(ref)
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        del self._configs[key]
        self._store.delete(ref)
        self._concurrency.refresh(self._function(ref))  # its pools are counted again
        await self._release(config)

    def forget_function(self, ref: FunctionRef) -> None:
        """The function was deleted (its stored configs with it): stop provisioning it.

        Its sandboxes are the assignment's to destroy. A start still in flight is left to
        finish, not cancelled (a cancelled start could leave its sandbox half made): its
        sandboxes are destroyed as they are released, their version being gone."""
        for key in [k for k in self._configs if k[:3] == self._key(ref)[:3]]:
            del self._configs[key]
        self._store.delete_function(ref)

    def recover(self) -> None:
        """Provisions again every stored config (a restart loses the sandboxes)."""
        for ref, requested, last_modified in self._store.all():
            self._apply(ProvisionedConfig(ref, requested, last_modified=last_modified))

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # internals
    def _save(self, config: ProvisionedConfig) -> None:
        self._store.put(config.ref, config.requested, config.last_modified)
        self._concurrency.refresh(self._function(config.ref))  # its pools are counted again

    @staticmethod
    def _function(ref: FunctionRef) -> tuple[str, str, str]:
        return ref.account_id, ref.region, ref.name

    def reapply(self) -> None:
        """Tops every config up again (a worker holding some of them was lost)."""
        for config in list(self._configs.values()):
            self._apply(config)

    def _apply(self, config: ProvisionedConfig) -> None:
        key = self._key(config.ref)
        self._configs[key] = config
        previous = self._tasks.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._tasks[key] = asyncio.get_running_loop().create_task(self._provision(config))

    async def _provision(self, config: ProvisionedConfig) -> None:
        key = self._key(config.ref)
        try:
            version = self._functions.get(config.ref)
            allocated = await self._assignment.provision(
                self._invoker.version_key(version),
                lambda: self._invoker.spec_for(version, "provisioned-concurrency"),
                config.requested,
            )
            ready = allocated >= config.requested
            done = replace(
                config,
                allocated=allocated,
                status="READY" if ready else "FAILED",
                reason=None if ready else "Some sandboxes failed to initialize.",
            )
        except KindlingError as exc:
            done = replace(config, status="FAILED", reason=exc.message)
        if self._configs.get(key) is config:
            self._configs[key] = done

    async def _release(self, config: ProvisionedConfig) -> None:
        with contextlib.suppress(KindlingError):
            version = self._functions.get(config.ref)
            await self._assignment.provision(
                self._invoker.version_key(version),
                lambda: self._invoker.spec_for(version, "provisioned-concurrency"),
                0,
            )

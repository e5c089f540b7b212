"""Runtime versions: which build of a runtime a function runs on, and its update mode.

AWS names each build of a managed runtime with an ARN
(``arn:aws:lambda:REGION::runtime:DIGEST``) and lets a function follow new builds
automatically, on its next update, or stay on one (``UpdateRuntimeOn`` Auto,
FunctionUpdate, Manual). A kindling host has exactly one build of each runtime: the
interpreter it starts and kindling's runtime client (``RuntimeCatalog.build``). So the
version a function reports is computed when read (it is what a new sandbox would
start), and Manual may pin only that build (ADR 0029).
"""

from __future__ import annotations

from typing import Any

from kindling.control.functions import FunctionService
from kindling.control.models import FunctionConfig, FunctionRef, runtime_version_arn
from kindling.errors import ValidationError
from kindling.runtimes.catalog import RuntimeCatalog


class RuntimeVersions:
    def __init__(self, functions: FunctionService, runtimes: RuntimeCatalog) -> None:
        self._functions = functions
        self._runtimes = runtimes

    def describe(self, config: FunctionConfig) -> dict[str, Any]:
        """The FunctionConfiguration of a version with the runtime version it runs on
        here (``RuntimeVersionConfig``), or the error that keeps it from running."""
        out = config.to_api()
        try:
            build = self._runtimes.build(config.runtime)
        except ValidationError as exc:
            out["RuntimeVersionConfig"] = {
                "Error": {"ErrorCode": "RuntimeUnavailable", "Message": exc.message}
            }
        else:
            out["RuntimeVersionConfig"] = {
                "RuntimeVersionArn": runtime_version_arn(config.region, build)
            }
        return out

    def put(self, ref: FunctionRef, update_on: str, version_arn: str | None) -> FunctionConfig:
        """PutRuntimeManagementConfig on $LATEST; Manual may name only this host's build."""
        if update_on == "Manual" and not version_arn:
            raise ValidationError("RuntimeVersionArn is required when UpdateRuntimeOn is Manual")
        if update_on != "Manual" and version_arn:
            raise ValidationError(
                "RuntimeVersionArn can be specified only when UpdateRuntimeOn is Manual, "
                f"not {update_on}"
            )
        if version_arn:
            runtime = self._functions.get(FunctionRef(ref.account_id, ref.region, ref.name)).runtime
            here = runtime_version_arn(ref.region, self._runtimes.build(runtime))
            if version_arn != here:
                raise ValidationError(
                    f"The runtime version {version_arn} is not available on this kindling "
                    f"host: its one version of {runtime} is {here}"
                )
        return self._functions.change(
            ref, runtime_update_on=update_on, runtime_version_arn=version_arn
        )

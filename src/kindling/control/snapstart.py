"""SnapStart's rules on the control plane: which functions may turn it on, which versions
start from a snapshot.

AWS takes the snapshot when a version is published, so only published versions report
``OptimizationStatus: On`` and run from snapshots; ``$LATEST`` never does on AWS. A
development host may opt ``$LATEST`` in (``KINDLING_SNAPSTART_LATEST``) so a function can
be tried without publishing after every edit. The limits below are the ones AWS
documents and that exist on this host (see docs/adr/0008-snapstart-api.md).
"""

from __future__ import annotations

from typing import Any

from kindling.control.models import LATEST, FunctionConfig, SnapStartApplyOn
from kindling.errors import ValidationError

#: AWS: "Python 3.12 and later" (and Java, .NET, which this host does not run); OS-only
#: runtimes (provided.*) and earlier Pythons are refused.
SUPPORTED_RUNTIMES = frozenset({"python3.12", "python3.13"})
#: AWS: SnapStart does not support ephemeral storage greater than 512 MB.
MAX_EPHEMERAL_MB = 512

NOT_READY_MESSAGE = (
    "Lambda is initializing your function. It will be ready to invoke once your function "
    "state becomes ACTIVE."
)


def requested(params: dict[str, Any], current: SnapStartApplyOn) -> SnapStartApplyOn:
    """The ApplyOn a Create/UpdateFunctionConfiguration asks for (the model checked the
    enum already), or ``current`` when the request does not mention SnapStart."""
    snapstart = params.get("SnapStart")
    if snapstart is None or "ApplyOn" not in snapstart:
        return current
    return SnapStartApplyOn(snapstart["ApplyOn"])


def check_function(runtime: str, apply_on: SnapStartApplyOn, ephemeral_mb: int) -> None:
    """Refuses a function configuration AWS would refuse with SnapStart on.

    Given the configuration that would result, so turning SnapStart on, changing the
    runtime and growing ``/tmp`` are each judged against the others.
    """
    if apply_on is not SnapStartApplyOn.PUBLISHED_VERSIONS:
        return
    if runtime not in SUPPORTED_RUNTIMES:
        # AWS's own wording.
        raise ValidationError(f"{runtime} is not supported for SnapStart enabled functions.")
    if ephemeral_mb > MAX_EPHEMERAL_MB:
        raise ValidationError(
            f"EphemeralStorage size greater than {MAX_EPHEMERAL_MB} MB is not supported for "
            "SnapStart enabled functions."
        )


def check_provisioned(config: FunctionConfig) -> None:
    """AWS: SnapStart does not support provisioned concurrency (on the same version)."""
    if config.snapstart_optimized:
        raise ValidationError(
            "Provisioned Concurrency is not supported for SnapStart enabled functions: "
            f"version {config.version} of {config.name} has SnapStart OptimizationStatus On."
        )


def runs_from_snapshot(config: FunctionConfig, on_latest: bool) -> bool:
    """Whether sandboxes of this version start from a snapshot.

    A published version does when it was published with SnapStart on; ``$LATEST`` only
    when the development switch ``on_latest`` is set and ApplyOn is PublishedVersions.
    """
    if config.version == LATEST:
        return on_latest and config.snapstart_apply_on is SnapStartApplyOn.PUBLISHED_VERSIONS
    return config.snapstart_optimized

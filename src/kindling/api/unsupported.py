"""The operations of Lambda's model that kindling answers with a clear refusal.

Every operation of botocore's Lambda model is either served by one of api/'s modules or
listed here with the reason it is not, refused by the front end whatever the request
holds (docs/usage.md, "Operations of the Lambda API",
lists both; tests/conformance/test_operations.py walks the model against a real server).
A refusal is ``InvalidParameterValueException`` naming the operation and why, instead of
the bare "unknown operation" of an operation nobody has looked at, so a tool that calls
it (Terraform, the console of another vendor) stops with a sentence a user can act on.
"""

from __future__ import annotations

from kindling.errors import ValidationError

_CAPACITY = (
    "capacity providers place functions on EC2 capacity of the account (Lambda Managed "
    "Instances), which a kindling server does not have; its functions run on its own workers"
)
_SCALING = (
    "function scaling configs size Lambda Managed Instances capacity, which a kindling "
    "server does not have; its functions run on its own workers"
)
_DURABLE = "durable executions (checkpointed, resumable functions) are not run by kindling"
_RESOURCE_POLICY = (
    "whole-document resource policies (the 2026-07-09 API) are not kept; a function's "
    "resource-based policy is managed statement by statement with AddPermission, "
    "RemovePermission and GetPolicy, which kindling serves"
)

#: Operation -> why kindling refuses it.
UNSUPPORTED: dict[str, str] = {
    "GetFunctionScalingConfig": _SCALING,
    "PutFunctionScalingConfig": _SCALING,
    "CreateCapacityProvider": _CAPACITY,
    "GetCapacityProvider": _CAPACITY,
    "UpdateCapacityProvider": _CAPACITY,
    "DeleteCapacityProvider": _CAPACITY,
    "ListCapacityProviders": _CAPACITY,
    "ListFunctionVersionsByCapacityProvider": _CAPACITY,
    "CheckpointDurableExecution": _DURABLE,
    "DeleteDurableExecution": _DURABLE,
    "GetDurableExecution": _DURABLE,
    "GetDurableExecutionHistory": _DURABLE,
    "GetDurableExecutionState": _DURABLE,
    "ListDurableExecutionsByFunction": _DURABLE,
    "PauseDurableExecution": _DURABLE,
    "ResumeDurableExecution": _DURABLE,
    "SendDurableExecutionCallbackFailure": _DURABLE,
    "SendDurableExecutionCallbackHeartbeat": _DURABLE,
    "SendDurableExecutionCallbackSuccess": _DURABLE,
    "StopDurableExecution": _DURABLE,
    "GetResourcePolicy": _RESOURCE_POLICY,
    "PutResourcePolicy": _RESOURCE_POLICY,
    "DeleteResourcePolicy": _RESOURCE_POLICY,
}


def refusal(operation: str) -> ValidationError:
    """The error an operation of UNSUPPORTED is answered with."""
    return ValidationError(f"{operation} is not supported by kindling: {UNSUPPORTED[operation]}.")

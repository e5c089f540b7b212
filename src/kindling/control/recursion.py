"""Recursion control: each function's RecursiveLoop setting, and the hop count that
travels with a chain of invocations (ADR 0032).

AWS ("Use Lambda recursive loop detection to prevent infinite loops"): Lambda tracks
the chain of requests that led to an invocation in the X-Ray trace header it gives the
function (its ``Lineage`` field; the AWS SDKs send the header on from inside a
function) and, once a function has been invoked about 16 times in one chain, stops the
next invocation unless the function's RecursiveLoop is ``Allow`` (the default is
``Terminate``). Here the chain is counted in hops: every Event invocation and every
destination record is one hop more than the invocation that caused it; a synchronous
invocation carries its caller's count on unchanged. The count reaches a function as
``Lineage=<8 hex>:<hops>`` in ``_X_AMZN_TRACE_ID``, and comes back in the
``X-Amzn-Trace-Id`` header botocore adds to the calls a function makes.
"""

from __future__ import annotations

import re
import zlib

from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore
from kindling.errors import NotFoundError, ValidationError

#: Invocations of one chain before the next is stopped. AWS: "approximately 16".
MAX_HOPS = 16
TERMINATE = "Terminate"
ALLOW = "Allow"
_LINEAGE = re.compile(r"Lineage=(?:[0-9a-fA-F]{1,16}:)?(\d{1,9})")


def hops_from_trace(header: str | None) -> int | None:
    """The hop count a trace header carries (the largest, if several), or None."""
    if not header:
        return None
    found = [int(m.group(1)) for m in _LINEAGE.finditer(header)]
    return max(found) if found else None


def lineage(function_arn: str, hops: int) -> str:
    """The Lineage field of the trace header an invocation at ``hops`` gets."""
    return f"Lineage={zlib.crc32(function_arn.encode()):08x}:{hops}"


class RecursionConfigs:
    def __init__(self, functions: FunctionService, store: FunctionStore) -> None:
        self._functions = functions
        self._store = store

    def _unqualified(self, ref: FunctionRef) -> FunctionRef:
        if ref.qualifier is not None:
            raise ValidationError(
                "The recursion configuration is set on the function, not on a version or "
                "alias: remove the qualifier"
            )
        self._functions.get(ref)  # ResourceNotFoundException if there is none
        return ref

    def get(self, ref: FunctionRef) -> str:
        ref = self._unqualified(ref)
        value = self._store.recursive_loop(ref.account_id, ref.region, ref.name)
        if value is None:
            raise NotFoundError(f"Function not found: {ref.arn}")
        return value

    def put(self, ref: FunctionRef, value: str) -> str:
        if value not in (ALLOW, TERMINATE):
            raise ValidationError(
                f"1 validation error detected: Value '{value}' at 'recursiveLoop' failed to "
                "satisfy constraint: Member must satisfy enum value set: [Terminate, Allow]"
            )
        ref = self._unqualified(ref)
        self._store.set_recursive_loop(ref.account_id, ref.region, ref.name, value)
        return value

    def allows(self, ref: FunctionRef) -> bool:
        """Whether ``ref``'s function may run past MAX_HOPS (False if it is gone)."""
        value = self._store.recursive_loop(ref.account_id, ref.region, ref.name)
        return value == ALLOW

"""A function's log in cluster mode: each worker keeps the lines of the sandboxes it ran.

``read`` gathers them from the workers the control node knows, in worker order, asking
no further worker once ``LOG_READ_BYTES`` came back (one worker's answer is never cut:
its offset covers all of it), behind one cursor: ``w1=120,w2=0`` (each worker's own byte
offset, as its log store counts them). A worker not in the cursor is read from its
start; one that does not answer keeps its offset and is asked again next time. The lines
of one worker stay in order; lines of different workers are not merged by time, and a
worker that is gone takes its lines with it (docs/cluster.md).
"""

from __future__ import annotations

import logging

from kindling.errors import SandboxError, ValidationError
from kindling.invoke.registry import WorkerRegistry
from kindling.limits import LOG_MAX_OFFSET, LOG_READ_BYTES

log = logging.getLogger(__name__)

#: Longest cursor accepted: a worker id (a hostname, <= 64) and an offset per worker.
MAX_CURSOR = 64 * 1024


def parse_cursor(text: str) -> dict[str, int]:
    """``""`` or ``"0"`` (a first read, as a single node's clients start) is the start."""
    if text in ("", "0"):
        return {}
    if len(text) > MAX_CURSOR:
        raise ValidationError("offset is too long")
    found: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        worker_id, _, offset = part.rpartition("=")
        if (
            not worker_id
            or not offset.isascii()
            or not offset.isdigit()
            or len(offset) > 19
            or int(offset) > LOG_MAX_OFFSET
        ):
            raise ValidationError(f"offset {part[:64]!r} is not worker=bytes")
        found[worker_id] = int(offset)
    return found


class ClusterLogs:
    def __init__(self, registry: WorkerRegistry) -> None:
        self._registry = registry

    async def read(self, account_id: str, region: str, name: str, cursor: str) -> tuple[bytes, str]:
        offsets = parse_cursor(cursor)
        chunks: list[bytes] = []
        budget = LOG_READ_BYTES
        for worker_id, worker in self._registry.members():
            offset = offsets.get(worker_id, 0)
            if budget > 0:
                try:
                    data, offset = await worker.read_log(account_id, region, name, offset)
                except SandboxError as exc:
                    log.warning("the log on worker %s could not be read: %s", worker_id, exc)
                else:
                    budget -= len(data)
                    chunks.append(data)
            offsets[worker_id] = offset
        return b"".join(chunks), ",".join(f"{w}={o}" for w, o in sorted(offsets.items()))

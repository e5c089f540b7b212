"""Tumbling windows of a stream mapping: TumblingWindowInSeconds (ADR 0042).

As AWS documents it ("Using Lambda with Kinesis Data Streams" / "... DynamoDB Streams",
section "Time windows"):

- a record belongs to the window its arrival time falls in ("Lambda determines tumbling
  window boundaries based on the time when records were inserted into the stream");
  windows are TumblingWindowInSeconds long, aligned to the epoch (AWS's example
  window is 07:04:00-07:06:00 for 120 s);
- the records of a window come in batches, each an invocation whose event carries
  ``window`` (``start``, ``end``), ``state`` (what the previous invocation of the
  window returned; ``{}`` at first), ``shardId``, ``eventSourceARN``,
  ``isFinalInvokeForWindow`` and ``isWindowTerminatedEarly``; the function must answer
  ``{"state": ...}`` or the invocation counts as failed (and is retried as the
  mapping's retry policy says, its state unchanged);
- at the end of the window one more invocation, ``isFinalInvokeForWindow`` true and no
  records, gets the final state; it is retried until it succeeds ("suspends further
  processing until a successful invocation"), then the window's records are
  checkpointed and the state dropped;
- a state over 1 MB ends the window early: the final invocation says
  ``isWindowTerminatedEarly``, and the same window goes on with a fresh state;
- a shard that ends closes its window; its children start their own.

kindling closes a window when a record of a later window is read, or, once the reader
has caught up with the shard, when the window's end has passed. The checkpoint moves
only when a window closes, so a kill -9 replays the open window from its start with a
fresh state (AWS: "Lambda will process each record at least once").
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

#: AWS: "Your state can be a maximum of 1 MB per shard."
MAX_STATE_BYTES = 1024 * 1024


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bounds(arrival: float, size_s: int) -> tuple[float, float]:
    start = math.floor(arrival / size_s) * size_s
    return float(start), float(start + size_s)


@dataclass
class Window:
    start: float
    end: float
    state: Any = field(default_factory=dict)
    #: The last record read into this window (the checkpoint when it closes).
    last_sequence: str | None = None
    #: Whether any batch of it reached the function (then a final invocation is due).
    invoked: bool = False

    def fields(
        self, shard_id: str, source_arn: str, final: bool = False, early: bool = False
    ) -> dict[str, Any]:
        return {
            "window": {"start": _iso(self.start), "end": _iso(self.end)},
            "state": self.state,
            "shardId": shard_id,
            "eventSourceARN": source_arn,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": early,
        }

    def accept(self, answer: bytes) -> bool:
        """Takes the state an invocation answered; False when it answered none (AWS:
        "If the response does not contain a state property, Lambda considers this a
        failed invocation")."""
        try:
            doc = json.loads(answer or b"null")
        except (ValueError, RecursionError):
            return False
        if not isinstance(doc, dict) or "state" not in doc:
            return False
        self.state = doc["state"] if doc["state"] is not None else {}
        self.invoked = True
        return True

    def too_big(self) -> bool:
        return len(json.dumps(self.state).encode()) > MAX_STATE_BYTES

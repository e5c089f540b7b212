"""The settings of a stream event source mapping (Kinesis, DynamoDB Streams; ADR 0034),
checked as AWS checks them.

AWS pages: API reference CreateEventSourceMapping (StartingPosition required for
streams; MaximumRetryAttempts -1 (infinite) to 10,000, default -1;
MaximumRecordAgeInSeconds -1 (infinite) or 60 to 604,800, default -1;
BisectBatchOnFunctionError; DestinationConfig.OnFailure an SQS queue or SNS topic;
ParallelizationFactor 1-10; TumblingWindowInSeconds 0-900), developer guide "Lambda
parameters for Amazon Kinesis Data Streams event source mappings" (BatchSize default
100, max 10,000), "Retain discarded batch records for a Kinesis Data Streams event
source" (OnFailure only) and "Time windows" (ADR 0042).

kindling does not combine ParallelizationFactor above 1 with a tumbling window: a
window's state is one per shard (AWS: "up to 1 MB per shard"), and concurrent batches
of one shard would each carry a different one. The combination is refused, never
run half-right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kindling.errors import ValidationError

KINESIS_DEFAULT_BATCH = 100
STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
#: What kindling does not do yet for streams: refused, never stored and ignored.
_NOT_YET = ("ScalingConfig",)
MAX_PARALLELIZATION = 10
MAX_TUMBLING_WINDOW_S = 900


@dataclass(frozen=True, slots=True)
class StreamSettings:
    starting_position: str
    starting_timestamp: float | None = None
    max_retries: int = -1
    max_age_s: int = -1
    bisect: bool = False
    on_failure: str | None = None
    #: Concurrent batches per shard (ParallelizationFactor).
    parallelization: int = 1
    #: TumblingWindowInSeconds: 0 for none.
    tumbling_s: int = 0

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "StartingPosition": self.starting_position,
            "MaximumRetryAttempts": self.max_retries,
            "MaximumRecordAgeInSeconds": self.max_age_s,
            "BisectBatchOnFunctionError": self.bisect,
            "ParallelizationFactor": self.parallelization,
            "TumblingWindowInSeconds": self.tumbling_s,
            "DestinationConfig": {
                "OnSuccess": {},
                "OnFailure": {"Destination": self.on_failure} if self.on_failure else {},
            },
        }
        if self.starting_timestamp is not None:
            out["StartingPositionTimestamp"] = self.starting_timestamp
        return out

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any] | None) -> StreamSettings | None:
        return None if data is None else cls(**data)


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def check_common(params: dict[str, Any]) -> None:
    for name in _NOT_YET:
        if params.get(name):
            raise ValidationError(
                f"{name} of a stream event source mapping is not supported by this kindling "
                "server yet. kindling refuses settings it would not honour instead of "
                "ignoring them."
            )
    factor = params.get("ParallelizationFactor")
    if factor is not None and not 1 <= int(factor) <= MAX_PARALLELIZATION:
        raise ValidationError(
            f"1 validation error detected: Value '{factor}' at 'parallelizationFactor' failed "
            f"to satisfy constraint: Member must have value less than or equal to "
            f"{MAX_PARALLELIZATION}"
        )
    window = params.get("TumblingWindowInSeconds")
    if window is not None and not 0 <= int(window) <= MAX_TUMBLING_WINDOW_S:
        raise ValidationError(
            f"1 validation error detected: Value '{window}' at 'tumblingWindowInSeconds' "
            "failed to satisfy constraint: Member must have value less than or equal to "
            f"{MAX_TUMBLING_WINDOW_S}"
        )
    age = params.get("MaximumRecordAgeInSeconds")
    if age is not None and int(age) != -1 and not 60 <= int(age) <= 604800:
        raise ValidationError(
            f"1 validation error detected: Value '{age}' at 'maximumRecordAgeInSeconds' failed "
            "to satisfy constraint: Member must have value greater than or equal to 60"
        )
    destination = params.get("DestinationConfig") or {}
    if (destination.get("OnSuccess") or {}).get("Destination"):
        raise ValidationError(
            "Unsupported DestinationConfig parameter for given event source mapping type."
        )
    target = (destination.get("OnFailure") or {}).get("Destination")
    if target and not target.startswith(("arn:aws:sqs:", "arn:aws:sns:")):
        raise ValidationError(f"The destination ARN {target} is invalid.")


def create(params: dict[str, Any], source: str) -> StreamSettings:
    check_common(params)
    position = params.get("StartingPosition")
    if not position:
        raise ValidationError(
            "1 validation error detected: Value null at 'startingPosition' failed to satisfy "
            "constraint: Member must not be null."
        )
    if position not in STARTING_POSITIONS:
        raise ValidationError(f"Unsupported starting position {position}")
    if position == "AT_TIMESTAMP" and source.split(":", 3)[2] == "dynamodb":
        raise ValidationError(f"Unsupported starting position for arn type: {source}")
    stamp = _timestamp(params.get("StartingPositionTimestamp"))
    if position == "AT_TIMESTAMP" and stamp is None:
        raise ValidationError("StartingPositionTimestamp is required for AT_TIMESTAMP")
    on_failure = ((params.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    retries, age = params.get("MaximumRetryAttempts"), params.get("MaximumRecordAgeInSeconds")
    factor, window = params.get("ParallelizationFactor"), params.get("TumblingWindowInSeconds")
    return _checked(
        StreamSettings(
            starting_position=position,
            starting_timestamp=stamp,
            max_retries=-1 if retries is None else int(retries),
            max_age_s=-1 if age is None else int(age),
            bisect=bool(params.get("BisectBatchOnFunctionError") or False),
            on_failure=on_failure or None,
            parallelization=1 if factor is None else int(factor),
            tumbling_s=0 if window is None else int(window),
        )
    )


def _checked(settings: StreamSettings) -> StreamSettings:
    if settings.parallelization > 1 and settings.tumbling_s > 0:
        raise ValidationError(
            "kindling does not combine ParallelizationFactor above 1 with "
            "TumblingWindowInSeconds: a tumbling window keeps one state per shard. "
            "kindling refuses settings it would not honour instead of ignoring them."
        )
    return settings


def update(current: StreamSettings, params: dict[str, Any]) -> StreamSettings:
    check_common(params)
    changes: dict[str, Any] = {}
    if params.get("MaximumRetryAttempts") is not None:
        changes["max_retries"] = int(params["MaximumRetryAttempts"])
    if params.get("MaximumRecordAgeInSeconds") is not None:
        changes["max_age_s"] = int(params["MaximumRecordAgeInSeconds"])
    if params.get("BisectBatchOnFunctionError") is not None:
        changes["bisect"] = bool(params["BisectBatchOnFunctionError"])
    if params.get("DestinationConfig") is not None:
        target = (params["DestinationConfig"].get("OnFailure") or {}).get("Destination")
        changes["on_failure"] = target or None
    if params.get("ParallelizationFactor") is not None:
        changes["parallelization"] = int(params["ParallelizationFactor"])
    if params.get("TumblingWindowInSeconds") is not None:
        changes["tumbling_s"] = int(params["TumblingWindowInSeconds"])
    return _checked(StreamSettings(**{**asdict(current), **changes}))

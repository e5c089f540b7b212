"""Which settings each kind of event source mapping takes, and SQS's own bounds
(ADR 0034; streams' settings are ``stream_settings``, brokers' ``broker_settings``).

AWS pages: developer guide "Lambda parameters for Amazon SQS event source mappings"
(BatchSize default 10, up to 10,000; above 10 a batching window is needed; FIFO queues
take at most 10 and no window). A setting of another source type is refused as AWS
refuses it ("Unsupported <name> parameter for given event source mapping type.",
LocalStack's AWS-recorded wording); a setting kindling would not honour is refused in
so many words rather than stored and ignored (ADR 0017).
"""

from __future__ import annotations

from typing import Any

from kindling.errors import ValidationError

#: Lambda's defaults and bounds for SQS (services-sqs-parameters).
SQS_DEFAULT_BATCH = 10
SQS_MAX_BATCH = 10_000
SQS_FIFO_MAX_BATCH = 10
SQS_BATCH_WITHOUT_WINDOW = 10

#: The stream settings (Kinesis, DynamoDB Streams): of the settings of other source
#: types, those a Kinesis mapping takes.
_STREAM = (
    "StartingPosition",
    "StartingPositionTimestamp",
    "ParallelizationFactor",
    "DestinationConfig",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "TumblingWindowInSeconds",
)
#: Settings of other source types: AWS refuses them on an SQS mapping.
_NOT_FOR_SQS = (
    *_STREAM,
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
)
#: Settings kindling would not honour yet: refused, never stored and ignored.
_NOT_HONOURED = ("KMSKeyArn", "MetricsConfig", "LoggingConfig", "ProvisionedPollerConfig", "Tags")


def check_settings(params: dict[str, Any], kind: str = "sqs") -> None:
    for name in _NOT_FOR_SQS:
        if kind in ("rabbitmq", "kafka"):
            break  # broker_settings checks a broker's
        if kind != "sqs" and name in _STREAM:
            continue
        if params.get(name) is not None:
            raise ValidationError(
                f"Unsupported {name} parameter for given event source mapping type."
            )
    for name in _NOT_HONOURED:
        if params.get(name):
            raise ValidationError(
                f"{name} of an event source mapping is not supported by this kindling server "
                "yet. kindling refuses settings it would not honour instead of ignoring them."
            )


def check_batch(batch_size: int, window_s: int, fifo: bool) -> None:
    if fifo and batch_size > SQS_FIFO_MAX_BATCH:
        raise ValidationError("Batch size must not exceed 10 for FIFO queues")
    if fifo and window_s > 0:
        raise ValidationError("Batching window is not supported for FIFO queues")
    if batch_size > SQS_BATCH_WITHOUT_WINDOW and window_s == 0:
        raise ValidationError(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
            "greater than 10"
        )

"""EventBridge Scheduler through the real server with ``boto3.client("scheduler")``:
schedules and groups, AWS's errors (REST-JSON, the model's status codes), and a one-time
``at()`` schedule invoking a function with its context attributes filled in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .support import ACCOUNT, REGION, AwsCli, Deploy, Server, WireShapeRecorder, wait_for
from .test_eventbridge import PRINTS, client, got

ROLE = f"arn:aws:iam::{ACCOUNT}:role/scheduler"


def target(name: str, **more: Any) -> dict[str, Any]:
    return {"Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}", "RoleArn": ROLE, **more}


def test_schedules_and_groups_speak_aws(server: Server, wire_shapes: WireShapeRecorder) -> None:
    scheduler = client(server, "scheduler", wire_shapes)
    arn = scheduler.create_schedule(
        Name="e2e-nightly",
        ScheduleExpression="cron(0 3 * * ? *)",
        ScheduleExpressionTimezone="Europe/Paris",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
        Target=target(
            "report", RetryPolicy={"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600}
        ),
    )["ScheduleArn"]
    try:
        assert arn == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/e2e-nightly"
        got_back = scheduler.get_schedule(Name="e2e-nightly")
        assert got_back["ScheduleExpressionTimezone"] == "Europe/Paris"
        assert got_back["Target"]["RetryPolicy"] == {
            "MaximumRetryAttempts": 3,
            "MaximumEventAgeInSeconds": 600,
        }
        assert got_back["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
        assert isinstance(got_back["CreationDate"], datetime)
        names = [s["Name"] for s in scheduler.list_schedules(NamePrefix="e2e-")["Schedules"]]
        assert names == ["e2e-nightly"]
        with pytest.raises(ClientError) as caught:
            scheduler.create_schedule(
                Name="e2e-nightly",
                ScheduleExpression="rate(1 hour)",
                FlexibleTimeWindow={"Mode": "OFF"},
                Target=target("x"),
            )
        assert caught.value.response["Error"]["Code"] == "ConflictException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
        with pytest.raises(ClientError) as caught:
            scheduler.get_schedule(Name="e2e-missing")
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        with pytest.raises(ClientError) as caught:
            scheduler.create_schedule(
                Name="e2e-bad",
                ScheduleExpression="rate(1 hours)",
                FlexibleTimeWindow={"Mode": "OFF"},
                Target=target("x"),
            )
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        scheduler.update_schedule(
            Name="e2e-nightly",
            ScheduleExpression="rate(2 hours)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target=target("report"),
            State="DISABLED",
        )
        assert scheduler.get_schedule(Name="e2e-nightly")["State"] == "DISABLED"
        groups = [g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]]
        assert "default" in groups
    finally:
        scheduler.delete_schedule(Name="e2e-nightly")


def test_a_one_time_schedule_invokes_its_function(
    server: Server, deploy: Deploy, wire_shapes: WireShapeRecorder
) -> None:
    name = deploy({"app.py": PRINTS})
    scheduler = client(server, "scheduler", wire_shapes)
    at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    arn = scheduler.create_schedule(
        Name=f"once-{name[-8:]}",
        ScheduleExpression=f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target=target(
            name,
            Input='{"schedule": "<aws.scheduler.schedule-arn>", '
            '"at": "<aws.scheduler.scheduled-time>"}',
        ),
    )["ScheduleArn"]
    received = wait_for(lambda: got(server, name), timeout=90, interval=0.25)
    assert received == [{"schedule": arn, "at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}]

    def deleted() -> bool:  # after completion, as ActionAfterCompletion asked
        try:
            scheduler.get_schedule(Name=f"once-{name[-8:]}")
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "ResourceNotFoundException"
        return False

    assert wait_for(deleted, timeout=30)


def test_the_aws_cli_manages_schedules(aws: AwsCli) -> None:
    arn = aws.json(
        "create-schedule",
        "--name",
        "e2e-cli",
        "--schedule-expression",
        "rate(5 minutes)",
        "--flexible-time-window",
        "Mode=OFF",
        "--target",
        f"Arn=arn:aws:lambda:{REGION}:{ACCOUNT}:function:report,RoleArn={ROLE}",
        service="scheduler",
    )["ScheduleArn"]
    assert arn.endswith(":schedule/default/e2e-cli")
    got_back = aws.json("get-schedule", "--name", "e2e-cli", service="scheduler")
    assert got_back["ScheduleExpression"] == "rate(5 minutes)"
    missing = aws.run("get-schedule", "--name", "e2e-nope", service="scheduler")
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr
    aws.json("delete-schedule", "--name", "e2e-cli", service="scheduler")


def test_tags_on_a_schedule_group_are_refused_not_dropped(
    server: Server, wire_shapes: WireShapeRecorder
) -> None:
    """Scheduler tagging is not served: a group made with tags would lose them silently,
    so the request is refused by name and no group is made."""
    scheduler = client(server, "scheduler", wire_shapes)
    with pytest.raises(ClientError) as caught:
        scheduler.create_schedule_group(Name="e2e-tagged", Tags=[{"Key": "a", "Value": "b"}])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "Tags" in caught.value.response["Error"]["Message"]
    names = [g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]]
    assert "e2e-tagged" not in names

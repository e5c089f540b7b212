"""Every operation kindling serves for ``scheduler``, and Lambda's event source mapping
operations, driven through the AWS CLI exactly as a user types it, each answer checked
for its content, and the CLI's error output for bad input (the helpers, and why the CLI
and not only boto3: test_awscli_events.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from kindling.api.event_sources import EventSourcesApi

from .support import ACCOUNT, REGION, AwsCli, Deploy
from .test_awscli_events import Driven, epoch, fn_arn
from .test_eventbridge import PRINTS

SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/scheduler"


# --------------------------------------------------------------------------- scheduler


def test_every_scheduler_operation_through_the_aws_cli(aws: AwsCli) -> None:
    cli = Driven(aws, "scheduler")
    suffix = uuid.uuid4().hex[:8]
    group = f"cli-group-{suffix}"
    group_arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{group}"
    before = datetime.now(UTC).timestamp()

    assert cli("create-schedule-group", "--name", group) == {"ScheduleGroupArn": group_arn}
    try:
        got_group = cli("get-schedule-group", "--name", group)
        assert got_group["Name"] == group and got_group["Arn"] == group_arn
        assert got_group["State"] == "ACTIVE"
        assert epoch(got_group["CreationDate"]) >= before - 5
        listed = cli("list-schedule-groups", "--name-prefix", group)
        assert [(g["Name"], g["Arn"]) for g in listed["ScheduleGroups"]] == [(group, group_arn)]
        everything = cli("list-schedule-groups", "--page-size", "1")
        assert {"default", group} <= {g["Name"] for g in everything["ScheduleGroups"]}
        assert "NextToken" not in everything

        target = {
            "Arn": fn_arn("report"),
            "RoleArn": SCHEDULER_ROLE,
            "Input": '{"from": "cli"}',
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600},
        }
        arns = {}
        for schedule in ("nightly", "hourly", "weekly"):
            out = cli(
                "create-schedule",
                "--name",
                schedule,
                "--group-name",
                group,
                "--schedule-expression",
                "cron(0 3 * * ? *)",
                "--schedule-expression-timezone",
                "Europe/Paris",
                "--flexible-time-window",
                "Mode=FLEXIBLE,MaximumWindowInMinutes=15",
                "--start-date",
                "2030-01-01T00:00:00Z",
                "--end-date",
                "2031-06-30T12:30:00Z",
                "--description",
                f"{schedule} of the CLI test",
                "--target",
                json.dumps(target),
            )
            arns[schedule] = out["ScheduleArn"]
            assert out == {
                "ScheduleArn": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{schedule}"
            }
        got_back = cli("get-schedule", "--name", "nightly", "--group-name", group)
        assert got_back["Arn"] == arns["nightly"] and got_back["GroupName"] == group
        assert got_back["ScheduleExpression"] == "cron(0 3 * * ? *)"
        assert got_back["ScheduleExpressionTimezone"] == "Europe/Paris"
        assert got_back["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
        assert epoch(got_back["StartDate"]) == datetime(2030, 1, 1, tzinfo=UTC).timestamp()
        assert epoch(got_back["EndDate"]) == datetime(2031, 6, 30, 12, 30, tzinfo=UTC).timestamp()
        assert got_back["Target"] == target
        assert got_back["State"] == "ENABLED"
        assert got_back["Description"] == "nightly of the CLI test"
        assert epoch(got_back["CreationDate"]) >= before - 5

        out = cli(
            "update-schedule",
            "--name",
            "hourly",
            "--group-name",
            group,
            "--schedule-expression",
            "rate(1 hour)",
            "--flexible-time-window",
            "Mode=OFF",
            "--target",
            f"Arn={fn_arn('report')},RoleArn={SCHEDULER_ROLE}",
            "--state",
            "DISABLED",
        )
        assert out == {"ScheduleArn": arns["hourly"]}
        updated = cli("get-schedule", "--name", "hourly", "--group-name", group)
        assert updated["ScheduleExpression"] == "rate(1 hour)"
        assert updated["State"] == "DISABLED"
        assert updated["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert updated["Target"] == {"Arn": fn_arn("report"), "RoleArn": SCHEDULER_ROLE}
        assert "StartDate" not in updated and "Description" not in updated  # replaced whole

        paged = cli("list-schedules", "--group-name", group, "--page-size", "1")
        summaries = {s["Name"]: s for s in paged["Schedules"]}
        assert sorted(summaries) == ["hourly", "nightly", "weekly"]
        assert summaries["hourly"]["State"] == "DISABLED"
        assert summaries["nightly"]["Arn"] == arns["nightly"]
        assert summaries["nightly"]["GroupName"] == group
        assert summaries["nightly"]["Target"] == {"Arn": fn_arn("report")}
        enabled = cli("list-schedules", "--group-name", group, "--state", "ENABLED")
        assert sorted(s["Name"] for s in enabled["Schedules"]) == ["nightly", "weekly"]
        prefixed = cli("list-schedules", "--group-name", group, "--name-prefix", "week")
        assert [s["Name"] for s in prefixed["Schedules"]] == ["weekly"]
        first = cli("list-schedules", "--group-name", group, "--max-items", "2")
        rest = cli(
            "list-schedules",
            "--group-name",
            group,
            "--max-items",
            "2",
            "--starting-token",
            first["NextToken"],
        )
        assert len(first["Schedules"]) == 2 and len(rest["Schedules"]) == 1
        assert {s["Name"] for s in first["Schedules"] + rest["Schedules"]} == set(summaries)

        # --no-paginate hands the server's own pages and tokens through
        page = cli("list-schedules", "--group-name", group, "--no-paginate", "--max-results", "2")
        assert len(page["Schedules"]) == 2 and page["NextToken"]
        page = cli(
            "list-schedules",
            "--group-name",
            group,
            "--no-paginate",
            "--next-token",
            page["NextToken"],
        )
        assert len(page["Schedules"]) == 1 and "NextToken" not in page
        page = cli("list-schedule-groups", "--no-paginate", "--max-results", "1")
        assert len(page["ScheduleGroups"]) == 1 and page["NextToken"]

        for schedule in ("nightly", "hourly"):
            assert cli("delete-schedule", "--name", schedule, "--group-name", group) is None
        assert [s["Name"] for s in cli("list-schedules", "--group-name", group)["Schedules"]] == [
            "weekly"
        ]
        # deleting a group deletes the schedules still in it (API_DeleteScheduleGroup)
        assert cli("delete-schedule-group", "--name", group) is None
        everywhere = cli("list-schedules")["Schedules"]
        assert arns["weekly"] not in [s["Arn"] for s in everywhere]
    finally:
        for schedule in ("nightly", "hourly", "weekly"):
            aws.run(
                "delete-schedule", "--name", schedule, "--group-name", group, service="scheduler"
            )
        aws.run("delete-schedule-group", "--name", group, service="scheduler")
    gone = cli.fails("get-schedule-group", "--name", group)
    assert "ResourceNotFoundException" in gone.stderr

    cli.assert_drove_all()


def test_the_aws_cli_reports_scheduler_errors(aws: AwsCli) -> None:
    cli = Driven(aws, "scheduler")
    missing = cli.fails("get-schedule", "--name", "cli-never-made")
    assert missing.stderr.strip() == (
        "An error occurred (ResourceNotFoundException) when calling the GetSchedule "
        "operation: Schedule cli-never-made does not exist."
    )
    bad = cli.fails(
        "create-schedule",
        "--name",
        "cli-bad",
        "--schedule-expression",
        "rate(1 hours)",
        "--flexible-time-window",
        "Mode=OFF",
        "--target",
        f"Arn={fn_arn('report')},RoleArn={SCHEDULER_ROLE}",
    )
    assert "(ValidationException) when calling the CreateSchedule operation" in bad.stderr
    again = cli.fails("create-schedule-group", "--name", "default")
    assert "(ConflictException) when calling the CreateScheduleGroup operation" in again.stderr
    nogroup = cli.fails("get-schedule", "--name", "x", "--group-name", "cli-no-such-group")
    assert "(ResourceNotFoundException) when calling the GetSchedule operation" in nogroup.stderr


# --------------------------------------------------------------------------- mappings


def test_every_event_source_mapping_operation_pages_through_the_aws_cli(
    aws: AwsCli, deploy: Deploy
) -> None:
    """Lambda's event source mapping operations through ``aws lambda``, with the CLI
    paging ListEventSourceMappings by ``Marker``/``NextMarker`` (``--page-size`` sends
    ``MaxItems``; with ``--no-paginate``, ``--max-items`` does)."""
    cli = Driven(aws, "lambda", served=set(EventSourcesApi(None).operations()))
    name = deploy({"app.py": PRINTS})
    suffix = uuid.uuid4().hex[:8]
    queues = [f"arn:aws:sqs:{REGION}:{ACCOUNT}:cli-{suffix}-{n}" for n in range(3)]
    made = []
    try:
        for queue in queues:
            out = cli(
                "create-event-source-mapping",
                "--function-name",
                name,
                "--event-source-arn",
                queue,
                "--batch-size",
                "7",
                "--no-enabled",
            )
            made.append(out["UUID"])
            assert out["EventSourceArn"] == queue and out["BatchSize"] == 7
            assert out["FunctionArn"] == fn_arn(name)
        got_one = cli("get-event-source-mapping", "--uuid", made[0])
        assert got_one["UUID"] == made[0] and got_one["EventSourceArn"] == queues[0]
        paged = cli("list-event-source-mappings", "--function-name", name, "--page-size", "1")
        assert sorted(m["UUID"] for m in paged["EventSourceMappings"]) == sorted(made)
        page = cli(
            "list-event-source-mappings",
            "--function-name",
            name,
            "--no-paginate",
            "--max-items",
            "2",
        )
        assert len(page["EventSourceMappings"]) == 2 and page["NextMarker"]
        rest = cli(
            "list-event-source-mappings",
            "--function-name",
            name,
            "--no-paginate",
            "--marker",
            page["NextMarker"],
        )
        assert len(rest["EventSourceMappings"]) == 1 and "NextMarker" not in rest
        both = page["EventSourceMappings"] + rest["EventSourceMappings"]
        assert sorted(m["UUID"] for m in both) == sorted(made)
        updated = cli("update-event-source-mapping", "--uuid", made[1], "--batch-size", "3")
        assert updated["UUID"] == made[1] and updated["BatchSize"] == 3
        for mapping in made:
            assert cli("delete-event-source-mapping", "--uuid", mapping)["UUID"] == mapping
    finally:
        for mapping in made:
            aws.run("delete-event-source-mapping", "--uuid", mapping)
    cli.assert_drove_all()

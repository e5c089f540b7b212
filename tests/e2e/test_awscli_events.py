"""Every operation kindling serves for ``events``, driven through the AWS CLI exactly as
a user types it (``aws --endpoint-url URL events list-rules ...``), each answer checked
for its content, and the CLI's error output for bad input; ``scheduler`` and Lambda's
event source mappings likewise in test_awscli_scheduler.py, with the helpers here.

The CLI builds requests from its own argument parsing (shorthand, JSON, timestamps as
typed, ``--tag-keys a b``) and pages through list operations by itself
(``--page-size``, ``--max-items``), so it reaches paths boto3 tests do not. Each service's
walk-through records the operations it ran and must have run every one the server
serves: an operation served without a CLI case here makes the walk-through fail.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime
from typing import Any

from botocore.session import get_session

from kindling.api.eventbridge import EventBridgeApi
from kindling.api.scheduler import SchedulerApi

from .support import ACCOUNT, REGION, AwsCli, Deploy, Server, wait_for
from .test_eventbridge import PRINTS, got

#: The AWS CLI's exit status for an error the service returned: 255 in v1, 254 in v2.
SERVICE_ERROR_STATUS = (254, 255)


def _served(service: str) -> set[str]:
    """The operations the server's table holds for ``service`` (the names only: no
    component is called)."""
    api: Any = EventBridgeApi if service == "events" else SchedulerApi
    return set(api(None).operations())


class Driven:
    """``aws SERVICE COMMAND ...`` through the CLI, remembering which model operation
    each command is (the CLI names operation ``ListRules`` ``list-rules``)."""

    def __init__(self, aws: AwsCli, service: str, served: set[str] | None = None) -> None:
        """``served``: the operations to drive, by default all the service's table."""
        self.aws = aws
        self.service = service
        self.served = served if served is not None else _served(service)
        model = get_session().get_service_model(service)
        self._operations = {_command(op): op for op in model.operation_names}
        self.ran: set[str] = set()

    def _record(self, command: str) -> None:
        self.ran.add(self._operations[command])

    def __call__(self, command: str, *args: str) -> Any:
        self._record(command)
        return self.aws.json(command, *args, service=self.service)

    def assert_drove_all(self) -> None:
        """Every operation the server serves for the service was run through the CLI."""
        missing = sorted(self.served - self.ran)
        assert not missing, f"served but never driven through `aws {self.service}`: {missing}"

    def fails(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        self._record(command)
        done = self.aws.run(command, *args, service=self.service)
        assert done.returncode in SERVICE_ERROR_STATUS, (done.returncode, done.stderr)
        assert done.stdout == ""
        return done


def _command(operation: str) -> str:
    from botocore import xform_name

    return str(xform_name(operation, "-"))


def epoch(value: Any) -> float:
    """A timestamp as the CLI prints it (v1: as the wire gave it, epoch seconds for the
    JSON protocols; v2: ISO 8601)."""
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def fn_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


# --------------------------------------------------------------------------- events


def test_every_eventbridge_operation_through_the_aws_cli(
    server: Server, aws: AwsCli, deploy: Deploy
) -> None:
    cli = Driven(aws, "events")
    name = deploy({"app.py": PRINTS})
    target = fn_arn(name)
    suffix = uuid.uuid4().hex[:8]
    bus = f"cli-bus-{suffix}"
    bus_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"

    # buses
    made = cli(
        "create-event-bus",
        "--name",
        bus,
        "--description",
        "orders of the CLI test",
        "--tags",
        "Key=team,Value=shop",
    )
    assert made == {"EventBusArn": bus_arn}
    try:
        described = cli("describe-event-bus", "--name", bus)
        assert described["Name"] == bus and described["Arn"] == bus_arn
        assert described["Description"] == "orders of the CLI test"
        default = cli("describe-event-bus")
        assert default["Name"] == "default"
        assert default["Arn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
        listed = cli("list-event-buses", "--name-prefix", f"cli-bus-{suffix}")
        assert [(b["Name"], b["Arn"]) for b in listed["EventBuses"]] == [(bus, bus_arn)]
        everything = cli("list-event-buses")
        assert {"default", bus} <= {b["Name"] for b in everything["EventBuses"]}
        names = [b["Name"] for b in everything["EventBuses"]]
        assert names == sorted(names)
        page = cli("list-event-buses", "--limit", "1")
        assert [b["Name"] for b in page["EventBuses"]] == names[:1] and page["NextToken"]
        page = cli("list-event-buses", "--limit", "100", "--next-token", page["NextToken"])
        assert [b["Name"] for b in page["EventBuses"]] == names[1:]

        # tags
        assert cli("list-tags-for-resource", "--resource-arn", bus_arn) == {
            "Tags": [{"Key": "team", "Value": "shop"}]
        }
        cli("tag-resource", "--resource-arn", bus_arn, "--tags", "Key=stage,Value=test")
        assert cli("list-tags-for-resource", "--resource-arn", bus_arn)["Tags"] == [
            {"Key": "stage", "Value": "test"},
            {"Key": "team", "Value": "shop"},
        ]
        cli("untag-resource", "--resource-arn", bus_arn, "--tag-keys", "team", "stage")
        assert cli("list-tags-for-resource", "--resource-arn", bus_arn) == {"Tags": []}

        # rules
        pattern = {"source": ["shop"], "detail": {"total": [{"numeric": [">", 10]}]}}
        rule_arns = {}
        for rule in ("orders-a", "orders-b", "orders-c"):
            out = cli(
                "put-rule",
                "--name",
                rule,
                "--event-bus-name",
                bus,
                "--event-pattern",
                json.dumps(pattern),
                "--description",
                f"rule {rule}",
                "--tags",
                f"Key=rule,Value={rule}",
            )
            rule_arns[rule] = out["RuleArn"]
            assert out["RuleArn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/{rule}"
        clock = f"clock-{suffix}"
        out = cli(
            "put-rule",
            "--name",
            clock,
            "--schedule-expression",
            "rate(7 days)",
            "--state",
            "DISABLED",
        )
        assert out["RuleArn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{clock}"
        try:
            described = cli("describe-rule", "--name", "orders-a", "--event-bus-name", bus)
            assert json.loads(described["EventPattern"]) == pattern
            assert described["State"] == "ENABLED" and described["EventBusName"] == bus
            assert described["Arn"] == rule_arns["orders-a"]
            assert described["Description"] == "rule orders-a"
            assert described["CreatedBy"] == ACCOUNT
            # a bus is named by its ARN as well as by its name
            by_arn = cli("describe-rule", "--name", "orders-a", "--event-bus-name", bus_arn)
            assert by_arn == described
            tags = cli("list-tags-for-resource", "--resource-arn", rule_arns["orders-b"])
            assert tags == {"Tags": [{"Key": "rule", "Value": "orders-b"}]}
            described = cli("describe-rule", "--name", clock)
            assert described["ScheduleExpression"] == "rate(7 days)"
            assert described["State"] == "DISABLED" and described["EventBusName"] == "default"

            # the CLI pages through ListRules by itself, one rule a request
            paged = cli("list-rules", "--event-bus-name", bus, "--page-size", "1")
            assert [r["Name"] for r in paged["Rules"]] == ["orders-a", "orders-b", "orders-c"]
            assert "NextToken" not in paged
            first = cli("list-rules", "--event-bus-name", bus, "--max-items", "2")
            assert [r["Name"] for r in first["Rules"]] == ["orders-a", "orders-b"]
            rest = cli(
                "list-rules",
                "--event-bus-name",
                bus,
                "--max-items",
                "2",
                "--starting-token",
                first["NextToken"],
            )
            assert [r["Name"] for r in rest["Rules"]] == ["orders-c"]
            # and --no-paginate hands the server's own page and token through
            page = cli("list-rules", "--event-bus-name", bus, "--no-paginate", "--limit", "2")
            assert [r["Name"] for r in page["Rules"]] == ["orders-a", "orders-b"]
            page = cli(
                "list-rules",
                "--event-bus-name",
                bus,
                "--no-paginate",
                "--next-token",
                page["NextToken"],
            )
            assert [r["Name"] for r in page["Rules"]] == ["orders-c"] and "NextToken" not in page
            prefixed = cli("list-rules", "--event-bus-name", bus, "--name-prefix", "orders-b")
            assert [(r["Name"], r["Arn"]) for r in prefixed["Rules"]] == [
                ("orders-b", rule_arns["orders-b"])
            ]

            cli("disable-rule", "--name", "orders-b", "--event-bus-name", bus)
            assert (
                cli("describe-rule", "--name", "orders-b", "--event-bus-name", bus)["State"]
                == "DISABLED"
            )
            cli("enable-rule", "--name", clock)
            assert cli("describe-rule", "--name", clock)["State"] == "ENABLED"
            cli("disable-rule", "--name", clock)

            # targets
            targets = [
                {"Id": "whole", "Arn": target},
                {
                    "Id": "shaped",
                    "Arn": target,
                    "InputTransformer": {
                        "InputPathsMap": {"total": "$.detail.total"},
                        "InputTemplate": '{"total": <total>, "via": "cli"}',
                    },
                },
            ]
            out = cli(
                "put-targets",
                "--rule",
                "orders-a",
                "--event-bus-name",
                bus,
                "--targets",
                json.dumps(targets),
            )
            assert out == {"FailedEntryCount": 0, "FailedEntries": []}
            out = cli(
                "put-targets",
                "--rule",
                "orders-c",
                "--event-bus-name",
                bus,
                "--targets",
                f"Id=only,Arn={target}",
            )
            assert out["FailedEntryCount"] == 0
            listed_targets = cli(
                "list-targets-by-rule", "--rule", "orders-a", "--event-bus-name", bus
            )
            assert sorted(listed_targets["Targets"], key=lambda t: t["Id"]) == sorted(
                targets, key=lambda t: str(t["Id"])
            )
            page = cli(
                "list-targets-by-rule",
                "--rule",
                "orders-a",
                "--event-bus-name",
                bus,
                "--no-paginate",
                "--limit",
                "1",
            )
            assert len(page["Targets"]) == 1 and page["NextToken"]
            page = cli(
                "list-targets-by-rule",
                "--rule",
                "orders-a",
                "--event-bus-name",
                bus,
                "--no-paginate",
                "--next-token",
                page["NextToken"],
            )
            assert len(page["Targets"]) == 1 and "NextToken" not in page
            by_target = cli(
                "list-rule-names-by-target", "--target-arn", target, "--event-bus-name", bus
            )
            assert by_target["RuleNames"] == ["orders-a", "orders-c"]
            one_a_page = cli(
                "list-rule-names-by-target",
                "--target-arn",
                target,
                "--event-bus-name",
                bus,
                "--page-size",
                "1",
            )
            assert one_a_page["RuleNames"] == ["orders-a", "orders-c"]
            page = cli(
                "list-rule-names-by-target",
                "--target-arn",
                target,
                "--event-bus-name",
                bus,
                "--no-paginate",
                "--limit",
                "1",
            )
            assert page["RuleNames"] == ["orders-a"] and page["NextToken"]

            # events (TestEventPattern's event has the fields AWS makes mandatory)
            event = {
                "id": "1",
                "source": "shop",
                "detail-type": "order",
                "account": ACCOUNT,
                "region": REGION,
                "time": "2026-01-01T00:00:00Z",
                "resources": [],
                "detail": {"total": 42},
            }
            matched = cli(
                "test-event-pattern",
                "--event-pattern",
                json.dumps(pattern),
                "--event",
                json.dumps(event),
            )
            assert matched == {"Result": True}
            unmatched = cli(
                "test-event-pattern",
                "--event-pattern",
                json.dumps(pattern),
                "--event",
                json.dumps({**event, "detail": {"total": 3}}),
            )
            assert unmatched == {"Result": False}
            entries = [
                {
                    "Source": "shop",
                    "DetailType": "order",
                    "Detail": json.dumps({"total": 42}),
                    "EventBusName": bus,
                    "Time": "2026-01-02T03:04:05Z",
                    "Resources": ["arn:aws:s3:::cli-bucket"],
                },
                {"Source": "shop", "DetailType": "order", "Detail": "not json"},
            ]
            put = cli("put-events", "--entries", json.dumps(entries))
            assert put["FailedEntryCount"] == 1
            assert uuid.UUID(put["Entries"][0]["EventId"])
            assert put["Entries"][1]["ErrorCode"] == "MalformedDetail"
            # orders-a gives it whole and shaped, orders-c whole; orders-b is disabled
            received = wait_for(lambda: (g := got(server, name)) and len(g) >= 3 and g, timeout=60)
            wholes = [e for e in received if "detail-type" in e]
            assert len(wholes) == 2 and wholes[0] == wholes[1]
            assert wholes[0]["id"] == put["Entries"][0]["EventId"]
            assert wholes[0]["detail"] == {"total": 42} and wholes[0]["source"] == "shop"
            assert wholes[0]["resources"] == ["arn:aws:s3:::cli-bucket"]
            assert wholes[0]["time"] == "2026-01-02T03:04:05Z"
            assert wholes[0]["account"] == ACCOUNT
            assert {"total": 42, "via": "cli"} in received
            assert len(received) == 3

            out = cli(
                "remove-targets",
                "--rule",
                "orders-a",
                "--event-bus-name",
                bus,
                "--ids",
                "whole",
                "shaped",
            )
            assert out == {"FailedEntryCount": 0, "FailedEntries": []}
            assert (
                cli("list-targets-by-rule", "--rule", "orders-a", "--event-bus-name", bus)[
                    "Targets"
                ]
                == []
            )
            cli("remove-targets", "--rule", "orders-c", "--event-bus-name", bus, "--ids", "only")
            for rule in ("orders-a", "orders-b", "orders-c"):
                assert cli("delete-rule", "--name", rule, "--event-bus-name", bus) is None
            assert cli("list-rules", "--event-bus-name", bus) == {"Rules": []}
        finally:
            aws.run("delete-rule", "--name", clock, service="events")
        assert cli("delete-event-bus", "--name", bus) is None
    finally:
        aws.run("delete-event-bus", "--name", bus, service="events")
    gone = cli.fails("describe-event-bus", "--name", bus)
    assert "ResourceNotFoundException" in gone.stderr

    cli.assert_drove_all()


def test_the_aws_cli_reports_eventbridge_errors(aws: AwsCli) -> None:
    cli = Driven(aws, "events")
    missing = cli.fails("describe-rule", "--name", "cli-never-made")
    assert missing.stderr.strip() == (
        "An error occurred (ResourceNotFoundException) when calling the DescribeRule "
        "operation: Rule cli-never-made does not exist on EventBus default."
    )
    bad = cli.fails("put-rule", "--name", "cli-bad", "--event-pattern", '{"source": "shop"}')
    assert "(InvalidEventPatternException) when calling the PutRule operation" in bad.stderr
    bad = cli.fails("put-rule", "--name", "cli-bad", "--schedule-expression", "rate(1 hours)")
    assert "(ValidationException) when calling the PutRule operation" in bad.stderr
    again = cli.fails("create-event-bus", "--name", "default")
    assert "(ResourceAlreadyExistsException) when calling the CreateEventBus" in again.stderr

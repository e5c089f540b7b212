"""EventBridge across a kill -9 of the server: events PutEvents accepted reach their
target after the restart (the async queue holds them), buses, rules and targets are
still there, and a one-time schedule whose tick passed while the server was down fires
late, with its own tick (ADR 0033: missed fires within 24 hours fire late)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .support import ACCOUNT, REGION, ROLE, ClientFactory, Server, make_zip, wait_active, wait_for
from .test_eventbridge import client, got

SLOW = """\
import json
import time


def handler(event, context):
    time.sleep(event.get("sleep", 0) if isinstance(event, dict) else 0)
    print("GOT " + json.dumps(event, sort_keys=True))
"""


def test_accepted_events_rules_and_missed_ticks_survive_a_kill_9(
    private_server: Server, make_client: ClientFactory
) -> None:
    private_server.start()
    lam: Any = make_client(endpoint=private_server.endpoint)
    lam.create_function(
        FunctionName="slow",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SLOW})},
    )
    wait_active(lam, "slow")
    lam.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=1)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:slow"
    events = client(private_server, "events")
    events.create_event_bus(Name="orders")
    events.put_rule(Name="all", EventBusName="orders", EventPattern='{"source": ["shop"]}')
    events.put_targets(
        Rule="all",
        EventBusName="orders",
        Targets=[{"Id": "1", "Arn": arn, "InputPath": "$.detail"}],
    )
    scheduler = client(private_server, "scheduler")
    tick = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    scheduler.create_schedule(
        Name="while-down",
        ScheduleExpression=f"at({tick.strftime('%Y-%m-%dT%H:%M:%S')})",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": arn,
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/s",
            "Input": '{"tick": "<aws.scheduler.scheduled-time>"}',
        },
    )
    sent = events.put_events(
        Entries=[
            {
                "Source": "shop",
                "DetailType": "order",
                "EventBusName": "orders",
                "Detail": json.dumps({"n": n, "sleep": 1}),
            }
            for n in range(5)
        ]
    )
    assert sent["FailedEntryCount"] == 0
    private_server.kill_hard()  # one at a time, a second each: most had not run
    time.sleep(max(0.0, tick.timestamp() - time.time()) + 2)  # the tick passes while down
    private_server.start()

    events = client(private_server, "events")
    assert events.describe_rule(Name="all", EventBusName="orders")["State"] == "ENABLED"
    assert (
        events.list_targets_by_rule(Rule="all", EventBusName="orders")["Targets"][0]["Arn"] == arn
    )

    def all_ran() -> list[Any] | None:
        received = got(private_server, "slow")
        orders = {e["n"] for e in received if "n" in e}
        ticks = [e["tick"] for e in received if "tick" in e]
        return received if orders == set(range(5)) and ticks else None

    received = wait_for(all_ran, timeout=120, interval=0.5)
    ticks = [e["tick"] for e in received if "tick" in e]
    assert ticks == [tick.strftime("%Y-%m-%dT%H:%M:%SZ")]  # late, once, with its own time

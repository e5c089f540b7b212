"""Target input as the EventBridge user guide documents it ("Amazon EventBridge input
transformation", eb-transform-target-input.html: its examples use this EC2 event)."""

from __future__ import annotations

import json

import pytest

from kindling.errors import ValidationError
from kindling.events.transform import check_target_input, target_input

EVENT = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2015-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-0123456789", "state": "RUNNING", "tags": [1, 2]},
}
RULE = {"arn": "arn:aws:events:us-east-1:123456789012:rule/r", "name": "r"}
PATHS = {"instance": "$.detail.instance-id", "state": "$.detail.state"}


def run(target: dict[str, object]) -> str:
    check_target_input(target)
    return target_input(target, EVENT, RULE).decode()


def test_no_input_sends_the_whole_event() -> None:
    assert json.loads(run({"Id": "1"})) == EVENT


def test_input_is_sent_as_given() -> None:
    assert run({"Id": "1", "Input": '{"fixed": true}'}) == '{"fixed": true}'


def test_input_path_selects_part_of_the_event() -> None:
    assert json.loads(run({"Id": "1", "InputPath": "$.detail"})) == EVENT["detail"]
    assert json.loads(run({"Id": "1", "InputPath": "$.resources[0]"})) == EVENT["resources"][0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # the guide's JSON template with variables outside strings: values as JSON
        (
            '{"instance": <instance>, "state": <state>}',
            {"instance": "i-0123456789", "state": "RUNNING"},
        ),
        # and inside a string: the value's text
        (
            '{"myInstance": <instance>, "myStatus": "<instance> is in state \\"<state>\\""}',
            {"myInstance": "i-0123456789", "myStatus": 'i-0123456789 is in state "RUNNING"'},
        ),
        # a string template
        ('"<instance> is in state <state>"', "i-0123456789 is in state RUNNING"),
        # the predefined variables
        (
            '{"rule": <aws.events.rule-name>, "arn": "<aws.events.rule-arn>"}',
            {"rule": "r", "arn": RULE["arn"]},
        ),
    ],
)
def test_input_transformer_fills_the_template(template: str, expected: object) -> None:
    out = run({"Id": "1", "InputTransformer": {"InputPathsMap": PATHS, "InputTemplate": template}})
    assert json.loads(out) == expected


def test_a_plain_text_template_gets_plain_values() -> None:
    out = run(
        {
            "Id": "1",
            "InputTransformer": {"InputPathsMap": PATHS, "InputTemplate": "<instance> is <state>"},
        }
    )
    assert out == "i-0123456789 is RUNNING"


def test_a_path_that_names_nothing_is_null() -> None:
    out = run(
        {
            "Id": "1",
            "InputTransformer": {
                "InputPathsMap": {"x": "$.detail.nope"},
                "InputTemplate": '{"x": <x>}',
            },
        }
    )
    assert json.loads(out) == {"x": None}


@pytest.mark.parametrize(
    "target",
    [
        {"Id": "1", "Input": "{}", "InputPath": "$.detail"},
        {"Id": "1", "Input": "not json"},
        {"Id": "1", "InputPath": "detail"},
        {
            "Id": "1",
            "InputTransformer": {"InputPathsMap": {"AWS.x": "$.a"}, "InputTemplate": "<x>"},
        },
    ],
)
def test_bad_target_inputs_are_refused(target: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        check_target_input(target)

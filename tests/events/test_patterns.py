"""EventBridge's pattern language, case by case from AWS's documented examples.

Each table row names the page and section of the EventBridge user guide it comes from:
- OPS: "Comparison operators for use in event patterns in Amazon EventBridge"
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html)
- NULLS: "Matching events on null values and empty strings in Amazon EventBridge"
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-null-values.html)
- ARRAYS: "Arrays in Amazon EventBridge event patterns"
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html)
- PATTERNS: "Creating Amazon EventBridge event patterns"
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html)
"""

from __future__ import annotations

from typing import Any

import pytest

from kindling.errors import InvalidEventPatternError
from kindling.events.patterns import compile_pattern

#: PATTERNS: the example EC2 state-change event the guide matches its patterns against.
EC2 = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"},
}
#: NULLS: the guide's event with an empty string and a null.
AUTOSCALING = {
    "version": "0",
    "detail-type": "EC2 Instance Launch Successful",
    "source": "aws.autoscaling",
    "resources": [],
    "detail": {"eventVersion": "", "responseElements": None},
}
#: ARRAYS: an event whose resources list has three ARNs.
ARRAYS = {
    "resources": [
        "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
        "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
        "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f",
    ]
}

CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # PATTERNS: literal matching, keys ANDed, values ORed
    ("PATTERNS source", {"source": ["aws.ec2"]}, EC2, True),
    ("PATTERNS source miss", {"source": ["aws.s3"]}, EC2, False),
    ("PATTERNS values ORed", {"detail": {"state": ["running", "terminated"]}}, EC2, True),
    (
        "PATTERNS keys ANDed",
        {"source": ["aws.ec2"], "detail": {"state": ["running"]}},
        EC2,
        False,
    ),
    ("PATTERNS case-sensitive", {"source": ["AWS.EC2"]}, EC2, False),
    ("PATTERNS absent field", {"detail": {"nope": ["x"]}}, EC2, False),
    # ARRAYS: a leaf matches when any element of the event's array does
    (
        "ARRAYS any element",
        {"resources": ["arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f", "x"]},
        ARRAYS,
        True,
    ),
    ("ARRAYS no element", {"resources": ["arn:aws:ec2:us-east-1:1:instance/i"]}, ARRAYS, False),
    ("ARRAYS empty is no value", {"resources": [{"exists": True}]}, AUTOSCALING, False),
    # NULLS: empty string and null are values, and not interchangeable
    ("NULLS empty string", {"detail": {"eventVersion": [""]}}, AUTOSCALING, True),
    ("NULLS null", {"detail": {"responseElements": [None]}}, AUTOSCALING, True),
    ("NULLS null is not empty", {"detail": {"responseElements": [""]}}, AUTOSCALING, False),
    ("NULLS empty is not null", {"detail": {"eventVersion": [None]}}, AUTOSCALING, False),
    # OPS: prefix, and prefix ignoring case
    ("OPS prefix", {"time": [{"prefix": "2017-12-22"}]}, EC2, True),
    ("OPS prefix miss", {"region": [{"prefix": "us-east"}]}, EC2, False),
    (
        "OPS prefix ignore case",
        {"detail": {"state": [{"prefix": {"equals-ignore-case": "TERM"}}]}},
        EC2,
        True,
    ),
    # OPS: suffix, and suffix ignoring case
    ("OPS suffix", {"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.png"}, True),
    (
        "OPS suffix is exact case",
        {"FileName": [{"suffix": ".png"}]},
        {"FileName": "cat.PNG"},
        False,
    ),
    (
        "OPS suffix ignore case",
        {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]},
        {"FileName": "cat.PNG"},
        True,
    ),
    # OPS: equals-ignore-case
    (
        "OPS equals-ignore-case",
        {"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]},
        EC2,
        True,
    ),
    # OPS: anything-but, with strings, numbers, lists, prefix, suffix, case, wildcard
    ("OPS anything-but string", {"detail": {"state": [{"anything-but": "running"}]}}, EC2, True),
    ("OPS anything-but same", {"detail": {"state": [{"anything-but": "terminated"}]}}, EC2, False),
    (
        "OPS anything-but list",
        {"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}},
        EC2,
        False,
    ),
    ("OPS anything-but number", {"x-limit": [{"anything-but": 123}]}, {"x-limit": 124}, True),
    (
        "OPS anything-but number same",
        {"x-limit": [{"anything-but": 123}]},
        {"x-limit": 123.0},
        False,
    ),
    ("OPS anything-but absent field", {"state": [{"anything-but": "x"}]}, {}, False),
    (
        "OPS anything-but prefix",
        {"Region": [{"anything-but": {"prefix": "us-"}}]},
        {"Region": "eu-west-1"},
        True,
    ),
    (
        "OPS anything-but prefix hit",
        {"Region": [{"anything-but": {"prefix": "us-"}}]},
        {"Region": "us-east-1"},
        False,
    ),
    (
        "OPS anything-but suffix",
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.png"},
        False,
    ),
    (
        "OPS anything-but ignore case",
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "INITIALIZING"},
        False,
    ),
    (
        "OPS anything-but ignore case list",
        {"state": [{"anything-but": {"equals-ignore-case": ["a", "B"]}}]},
        {"state": "c"},
        True,
    ),
    (
        "OPS anything-but wildcard",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/lib/x.so"},
        False,
    ),
    (
        "OPS anything-but wildcard miss",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/bin/x"},
        True,
    ),
    # OPS: numeric ranges; numbers compare as numbers, strings never match
    ("OPS numeric range", {"c-count": [{"numeric": [">", 0, "<=", 5]}]}, {"c-count": 5}, True),
    ("OPS numeric range out", {"c-count": [{"numeric": [">", 0, "<=", 5]}]}, {"c-count": 0}, False),
    ("OPS numeric equals", {"d-count": [{"numeric": ["<", 10]}]}, {"d-count": 9.999}, True),
    ("OPS numeric =", {"x-limit": [{"numeric": ["=", 3.018e2]}]}, {"x-limit": 301.8}, True),
    ("OPS numeric string", {"x": [{"numeric": [">", 0]}]}, {"x": "5"}, False),
    ("OPS number literal", {"x": [300]}, {"x": 3.0e2}, True),
    ("OPS number literal is no string", {"x": [300]}, {"x": "300"}, False),
    # OPS: exists
    ("OPS exists true", {"detail": {"state": [{"exists": True}]}}, EC2, True),
    ("OPS exists false", {"detail": {"state": [{"exists": False}]}}, EC2, False),
    ("OPS exists false absent", {"detail": {"nope": [{"exists": False}]}}, EC2, True),
    ("OPS exists on null", {"detail": {"responseElements": [{"exists": True}]}}, AUTOSCALING, True),
    # OPS: cidr, IPv4 and IPv6
    (
        "OPS cidr",
        {"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}},
        {"detail": {"sourceIPAddress": "10.0.0.255"}},
        True,
    ),
    (
        "OPS cidr out",
        {"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}},
        {"detail": {"sourceIPAddress": "10.0.1.1"}},
        False,
    ),
    (
        "OPS cidr v6",
        {"ip": [{"cidr": "2001:db8::/32"}]},
        {"ip": "2001:db8:1234::1"},
        True,
    ),
    ("OPS cidr not an address", {"ip": [{"cidr": "10.0.0.0/8"}]}, {"ip": "ten"}, False),
    # OPS: wildcard, with escapes
    (
        "OPS wildcard",
        {"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]},
        {"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/default"},
        True,
    ),
    ("OPS wildcard miss", {"f": [{"wildcard": "*.png"}]}, {"f": "a.png.txt"}, False),
    ("OPS wildcard escaped star", {"f": [{"wildcard": "a\\*b"}]}, {"f": "a*b"}, True),
    ("OPS wildcard escaped star literal", {"f": [{"wildcard": "a\\*b"}]}, {"f": "axxb"}, False),
    # OPS: $or, at the top and nested, ANDed with its siblings
    (
        "OPS $or",
        {
            "$or": [
                {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                {"d-count": [{"numeric": ["<", 10]}]},
            ]
        },
        {"d-count": 3},
        True,
    ),
    (
        "OPS $or none",
        {
            "$or": [
                {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                {"d-count": [{"numeric": ["<", 10]}]},
            ]
        },
        {"c-count": 9, "d-count": 30},
        False,
    ),
    (
        "OPS $or with a sibling",
        {"source": ["aws.ec2"], "$or": [{"region": ["us-west-1"]}, {"account": ["1"]}]},
        EC2,
        True,
    ),
    (
        "OPS $or nested",
        {"detail": {"$or": [{"state": ["running"]}, {"instance-id": [{"prefix": "i-1"}]}]}},
        EC2,
        True,
    ),
    (
        "OPS $or sibling fails",
        {"source": ["aws.s3"], "$or": [{"region": ["us-west-1"]}, {"account": ["1"]}]},
        EC2,
        False,
    ),
]


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_documented_examples(
    pattern: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    assert compile_pattern(pattern).matches(event) is expected


def test_a_pattern_given_as_text_is_the_same_pattern() -> None:
    assert compile_pattern('{"source": ["aws.ec2"], "detail": {"state": ["terminated"]}}').matches(
        EC2
    )


INVALID: list[tuple[str, Any, str]] = [
    ("not JSON", '{"source": [', "not valid JSON"),
    ("not an object", '["aws.ec2"]', "must be a JSON object"),
    ("a bare value", {"source": "aws.ec2"}, "must be an object or an array"),
    ("an empty list", {"source": []}, "empty list"),
    ("an empty object", {"detail": {}}, "empty object"),
    ("an unknown operator", {"source": [{"prefixx": "aws."}]}, 'unknown operator "prefixx"'),
    ("two operators", {"source": [{"prefix": "a", "suffix": "b"}]}, "exactly one operator"),
    ("prefix of a number", {"source": [{"prefix": 1}]}, '"prefix" takes a string'),
    ("exists of a string", {"source": [{"exists": "true"}]}, '"exists" takes true or false'),
    ("numeric empty range", {"n": [{"numeric": [">", 5, "<", 1]}]}, "range is empty"),
    ("numeric two lowers", {"n": [{"numeric": [">", 1, ">=", 2]}]}, "cannot use '>='"),
    ("numeric unknown op", {"n": [{"numeric": ["!=", 1]}]}, "cannot use '!='"),
    ("numeric too big", {"n": [{"numeric": [">", 6e9]}]}, "between -5.0e9 and 5.0e9"),
    ("numeric NaN", '{"n": [{"numeric": [">", NaN]}]}', "not valid JSON"),
    ("cidr that is not one", {"ip": [{"cidr": "10.0.0.0/33"}]}, "is not a CIDR block"),
    ("consecutive wildcards", {"f": [{"wildcard": "a**b"}]}, "consecutive wildcard"),
    ("a dangling escape", {"f": [{"wildcard": "a\\"}]}, "a backslash"),
    ("anything-but a mix", {"s": [{"anything-but": ["a", 1]}]}, "strings or numbers"),
    (
        "anything-but numeric",
        {"s": [{"anything-but": {"numeric": [">", 1]}}]},
        'cannot take "numeric"',
    ),
    ("$or of one", {"$or": [{"a": ["b"]}]}, "at least two"),
    ("$or of a value", {"$or": [{"a": ["b"]}, "c"]}, "non-empty object"),
    ("a list in a list", {"a": [["b"]]}, "a list inside"),
]


@pytest.mark.parametrize(
    ("pattern", "reason"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_an_invalid_pattern_is_refused_with_its_reason(pattern: Any, reason: str) -> None:
    with pytest.raises(InvalidEventPatternError) as caught:
        compile_pattern(pattern)
    assert reason in caught.value.message


def test_deep_nesting_is_refused_not_a_crash() -> None:
    deep = '{"a": ' * 5000 + '["x"]' + "}" * 5000
    with pytest.raises(InvalidEventPatternError):
        compile_pattern(deep)

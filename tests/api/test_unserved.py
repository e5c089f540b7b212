"""A request for a service kindling does not serve: answered in the error shape its
client parses, which botocore's own parsers read back here."""

from __future__ import annotations

import asyncio

import pytest
from botocore.parsers import create_parser

from kindling.api.errors import render_unserved
from kindling.api.services import ServiceProtocols


@pytest.mark.parametrize(
    ("service", "content_type", "xml"),
    [
        ("cloudformation", "application/x-www-form-urlencoded", True),  # query
        ("s3", "", True),  # REST-XML
        ("ec2", "application/x-www-form-urlencoded", True),
        ("sqs", "application/x-amz-json-1.0", False),  # JSON (it left the query protocol)
        ("dynamodb", "application/x-amz-json-1.0", False),
        ("monitoring", "application/x-www-form-urlencoded", True),  # unknown name: a form
        ("made-up-service", "", False),  # unknown name, no form: JSON
    ],
)
def test_the_protocol_comes_from_botocore_models(
    service: str, content_type: str, xml: bool
) -> None:
    assert asyncio.run(ServiceProtocols().speaks_xml(service, content_type)) is xml


def test_only_names_botocore_knows_are_remembered() -> None:
    protocols = ServiceProtocols()

    async def ask() -> None:
        for name in ("cloudformation", "x" * 40, "y" * 40):
            await protocols.speaks_xml(name, "")

    asyncio.run(ask())
    assert protocols._known == {"cloudformation": "query"}


@pytest.mark.parametrize("protocol", ["query", "rest-xml", "ec2", "json", "rest-json"])
def test_each_protocols_parser_reads_the_error_naming_the_service(protocol: str) -> None:
    service = "cloud<formation>&"  # the name comes from the caller: escaped, not markup
    answer = render_unserved(
        service, ["lambda", "events"], "rid-1", xml=protocol in ("query", "rest-xml", "ec2")
    )
    parsed = create_parser(protocol).parse(
        {"status_code": answer.status, "headers": dict(answer.headers), "body": answer.body},
        None,
    )
    assert parsed["Error"]["Code"] == "UnknownOperationException", parsed
    assert f"kindling does not serve the {service!r} API" in parsed["Error"]["Message"]

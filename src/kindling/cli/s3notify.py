"""``kindling s3-notify``: which bucket of an S3-compatible store (MinIO, Ceph RGW)
invokes which function (ADR 0042), through the server's signed API.

Requests are SigV4-signed with the default credential chain (as the AWS CLI signs), so
a configuration belongs to the signer's account and region.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

s3notify_app = typer.Typer(
    help="Bucket notifications of S3-compatible stores (MinIO, Ceph RGW) to functions."
)
console = Console()
err = Console(stderr=True)

EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", help="kindling URL (default $AWS_ENDPOINT_URL or :9000)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
PATH = "/_kindling/s3-notifications"


def _call(endpoint: str | None, method: str, suffix: str = "", doc: Any = None) -> Any:
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    session = botocore.session.get_session()
    creds = session.get_credentials() or Credentials("test", "test")
    region = session.get_config_variable("region") or "us-east-1"
    base = (endpoint or os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:9000").rstrip("/")
    url = base + PATH + suffix
    body = b"" if doc is None else json.dumps(doc).encode()
    signed = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(creds, "lambda", region).add_auth(signed)
    request = urllib.request.Request(
        url, data=body or None, method=method, headers=dict(signed.headers.items())
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("Message", exc.reason)
        except ValueError:
            message = exc.reason
        err.print(f"refused ({exc.code}): {message}", markup=False)
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"the server did not answer: {exc}", markup=False)
        raise typer.Exit(1) from None


@s3notify_app.command("create")
def create(
    bucket: Annotated[str, typer.Option(help="the bucket whose events are sent")],
    function: Annotated[str, typer.Option(help="the function (name or ARN, qualifier allowed)")],
    event: Annotated[
        list[str] | None,
        typer.Option(help="an S3 event type, e.g. s3:ObjectCreated:* (repeat; none: all)"),
    ] = None,
    prefix: Annotated[str, typer.Option(help="only keys starting with this")] = "",
    suffix: Annotated[str, typer.Option(help="only keys ending with this")] = "",
    config_id: Annotated[
        str | None, typer.Option("--id", help="the events' configurationId (default: generated)")
    ] = None,
    endpoint: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send BUCKET's events to FUNCTION; prints the webhook URL and its token (once).

    The function's resource policy must allow s3.amazonaws.com first (aws lambda
    add-permission --principal s3.amazonaws.com --source-arn arn:aws:s3:::BUCKET)."""
    doc: dict[str, Any] = {"Bucket": bucket, "FunctionName": function, "Events": event or []}
    doc |= {"Prefix": prefix, "Suffix": suffix}
    if config_id:
        doc["Id"] = config_id
    made = _call(endpoint, "POST", doc=doc)
    if as_json:
        print(json.dumps(made, indent=2))
        return
    console.print(f"ConfigId:   {made['ConfigId']}", markup=False)
    console.print(f"WebhookUrl: {made['WebhookUrl']}", markup=False)
    console.print(f"Token:      {made['Token']}   (shown once)", markup=False)
    console.print(
        "MinIO: mc admin config set ALIAS notify_webhook:kindling "
        f'endpoint="{made["WebhookUrl"]}" auth_token="{made["Token"]}"',
        markup=False,
    )


@s3notify_app.command("list")
def listed(endpoint: EndpointOpt = None, as_json: JsonOpt = False) -> None:
    """The configurations of the signer's account and region."""
    configs = _call(endpoint, "GET")["Configurations"]
    if as_json:
        print(json.dumps(configs, indent=2))
        return
    table = Table("ConfigId", "Id", "Bucket", "Function", "Events", "Prefix", "Suffix")
    for c in configs:
        table.add_row(
            c["ConfigId"],
            c["Id"],
            c["Bucket"],
            c["FunctionArn"],
            ",".join(c["Events"]) or "(all)",
            c["Prefix"],
            c["Suffix"],
        )
    console.print(table)


@s3notify_app.command("delete")
def delete(config_id: str, endpoint: EndpointOpt = None) -> None:
    """Stop sending events of configuration CONFIG_ID (its webhook answers 404 after)."""
    gone = _call(endpoint, "DELETE", "/" + config_id)
    console.print(f"deleted {gone['ConfigId']} ({gone['Bucket']})", markup=False)

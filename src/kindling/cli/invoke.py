"""``kindling invoke | logs``: run a function and read what it printed."""

from __future__ import annotations

import base64
import enum
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from kindling.cli.common import (
    EndpointOpt,
    api_errors,
    console,
    describe,
    endpoint_of,
    err,
    fail,
    lambda_client,
)


class InvocationType(enum.StrEnum):
    REQUEST_RESPONSE = "RequestResponse"
    EVENT = "Event"
    DRY_RUN = "DryRun"


def read_payload(text: str) -> bytes:
    """The event: JSON given inline, or ``@path`` for a file of it. Checked here, so that
    a typo is one line naming it, not an error from inside the function."""
    source = "--payload"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text()
        except OSError as exc:
            fail(f"cannot read the payload file {source}: {exc.strerror}", code=2)
    try:
        json.loads(text)
    except ValueError as exc:
        fail(f"{source} is not JSON: {exc}", code=2)
    return text.encode()


def invoke(
    name: str,
    payload: Annotated[str, typer.Option(help="the JSON event, or @FILE holding it")] = "{}",
    qualifier: Annotated[
        str | None, typer.Option(help="a version or alias to invoke (default $LATEST)")
    ] = None,
    invocation_type: Annotated[
        InvocationType,
        typer.Option(
            "--invocation-type",
            help="RequestResponse waits for the answer; Event queues it (202); DryRun "
            "checks the call is allowed",
        ),
    ] = InvocationType.REQUEST_RESPONSE,
    endpoint: EndpointOpt = None,
) -> None:
    """Invoke NAME; print its response, and its log tail on stderr.

    Exits 1 if the function failed (its error document is still printed)."""
    body = read_payload(payload)
    client = lambda_client(endpoint)
    extra: dict[str, Any] = {"InvocationType": invocation_type.value}
    if qualifier is not None:
        extra["Qualifier"] = qualifier
    if invocation_type is InvocationType.REQUEST_RESPONSE:
        extra["LogType"] = "Tail"
    with api_errors(endpoint):
        out = client.invoke(FunctionName=name, Payload=body, **extra)
        answer = out["Payload"].read() if "Payload" in out else b""
    request_id = out.get("ResponseMetadata", {}).get("RequestId", "")
    if invocation_type is InvocationType.EVENT:
        console.print(f"queued (HTTP {out['StatusCode']}): request id {request_id}")
        return
    if invocation_type is InvocationType.DRY_RUN:
        console.print(f"allowed (HTTP {out['StatusCode']}): {name} can be invoked")
        return
    if "LogResult" in out:
        err.print(base64.b64decode(out["LogResult"]).decode(errors="replace"), end="", markup=False)
    sys.stdout.write(answer.decode(errors="replace") + "\n")
    if out.get("FunctionError"):
        raise typer.Exit(1)


def logs(
    name: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    endpoint: EndpointOpt = None,
) -> None:
    """Print the log of function NAME (START/END/REPORT and the function's output).

    The server keeps the newest 32 MiB of it, for 7 days (ADR 12)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    client = lambda_client(endpoint)
    creds = client._request_signer._credentials
    region = client.meta.region_name
    base = endpoint_of(endpoint)
    offset = "0"  # the server's cursor, passed back as it is
    while True:
        url = f"{base}/_kindling/logs/{name}?offset={urllib.parse.quote(offset)}"
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(creds, "lambda", region).add_auth(request)
        prepared = urllib.request.Request(url, headers=dict(request.headers.items()))
        try:
            with urllib.request.urlopen(prepared, timeout=60) as response:
                data = response.read()
                offset = response.headers.get("X-Kindling-Next-Offset", offset)
        except urllib.error.HTTPError as exc:
            fail(_refusal(exc, base))
        except OSError:
            fail(f"cannot reach kindling at {base}: is `kindling serve` running there?")
        sys.stdout.write(data.decode(errors="replace"))
        sys.stdout.flush()
        if data:
            continue  # a read returns at most 1 MiB: ask again at once
        if not follow:
            return
        time.sleep(0.5)


def _refusal(exc: urllib.error.HTTPError, base: str) -> str:
    """The server's error for a logs request, in the words ``describe`` gives an API
    call's (``Code: message``; refused credentials named as such)."""
    from botocore.exceptions import ClientError

    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    message = body.get("Message") or body.get("message") or str(exc.reason)
    code = exc.headers.get("x-amzn-ErrorType", "").split(":")[0] or body.get("Type") or "Error"
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": exc.code},
    }
    return describe(ClientError(response, "logs"), base) or str(message)

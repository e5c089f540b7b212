"""What every client command shares: the endpoint, a boto3 Lambda client, and the one
place that turns a failure into one line on stderr and a non-zero exit.

The client commands speak to the server only through its public API (botocore's
Lambda client, SigV4-signed), as any user's tool would: they are a check on the API as
much as a convenience.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

#: Piped or captured output is not cut to 80 columns: a table's rows stay whole for grep.
console = Console(width=None if sys.stdout.isatty() else 10_000)
err = Console(stderr=True)

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
#: A synchronous invoke waits for the function: up to its 900 s timeout, and some more.
READ_TIMEOUT_S = 910
CONNECT_TIMEOUT_S = 5

EndpointOpt = Annotated[
    str | None,
    typer.Option("--endpoint", help="kindling URL (default $AWS_ENDPOINT_URL or :9000)"),
]

#: The error codes that mean "these credentials are not accepted here".
AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)


def endpoint_of(value: str | None) -> str:
    return value or os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT


def lambda_client(endpoint: str | None) -> Any:
    """botocore's Lambda client for ``endpoint``, with the caller's credentials and
    region from the default chain (the dev key ``test``/``test`` and us-east-1 when
    there are none). One retry: a server that is down is said so at once."""
    return client("lambda", endpoint)


def client(service: str, endpoint: str | None) -> Any:
    """A botocore client of ``service`` at kindling's endpoint (see ``lambda_client``)."""
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    kwargs: dict[str, Any] = {}
    if session.get_credentials() is None:
        kwargs = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    region = session.get_config_variable("region") or "us-east-1"
    config = botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": 2},
    )
    return session.create_client(
        service, region_name=region, endpoint_url=endpoint_of(endpoint), config=config, **kwargs
    )


def fail(message: str, code: int = 1) -> NoReturn:
    """Prints ``message`` as one line on stderr (never wrapped) and exits with ``code``."""
    err.print(f"kindling: {message}", style="red", soft_wrap=True, markup=False, highlight=False)
    raise typer.Exit(code)


def describe(exc: Exception, endpoint: str) -> str | None:
    """One line for a failure of a call to the server, or None if it is not one."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.WaiterError) and "Error" in (exc.last_response or {}):
        exc = bx.ClientError(exc.last_response, "wait")  # what stopped the wait, said alike
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Error")
        message = " ".join(str(error.get("Message", "")).split())
        if code in AUTH_CODES:
            return (
                f"kindling at {endpoint} refused the credentials ({code}): {message} "
                "(check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
            )
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "Error" and status is not None:
            return f"kindling at {endpoint} answered HTTP {status}: {message}"
        return f"{code}: {message}"
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionClosedError)):
        return f"cannot reach kindling at {endpoint}: is `kindling serve` running there?"
    if isinstance(exc, bx.ReadTimeoutError):
        return f"kindling at {endpoint} did not answer within {READ_TIMEOUT_S} s"
    if isinstance(exc, bx.ConnectTimeoutError):
        return f"cannot reach kindling at {endpoint}: the connection timed out"
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return f"no usable AWS credentials: {exc}"
    if isinstance(exc, bx.BotoCoreError):
        return " ".join(str(exc).split())
    return None


@contextlib.contextmanager
def api_errors(endpoint: str | None) -> Iterator[None]:
    """Turns a failed call to the server into one line and exit code 1: never a
    traceback for a server that is down, a function that is missing, bad credentials."""
    try:
        yield
    except Exception as exc:
        line = describe(exc, endpoint_of(endpoint))
        if line is None:
            raise
        fail(line)

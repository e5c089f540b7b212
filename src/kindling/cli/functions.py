"""``kindling deploy | list | delete | publish``: a function's life from a directory.

``deploy`` of an existing function updates its code and, of its configuration, only
what a flag names (UpdateFunctionConfiguration changes only the members it is sent, as
on AWS); ``--env`` and ``--layers`` replace the whole set, as AWS's own
``--environment`` and ``--layers`` do, so a deploy script says all of it each time.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kindling.cli.common import (
    EndpointOpt,
    api_errors,
    client,
    console,
    err,
    fail,
    lambda_client,
)

#: What ``deploy`` gives a new function for the options it was not given.
NEW_FUNCTION_DEFAULTS: dict[str, Any] = {
    "Runtime": "python3.11",
    "Handler": "app.handler",
    "MemorySize": 128,
    "Timeout": 3,
}
#: The dev account (``test``/``test``): the one whose functions need no role of IAM.
DEV_ACCOUNT = "000000000000"
#: The role a new function of the dev account gets unless --role names one: the dev
#: account accepts a role it has not created (ADR 0036); any other account needs a role
#: of its IAM that Lambda may assume.
DEFAULT_ROLE = f"arn:aws:iam::{DEV_ACCOUNT}:role/kindling"
#: The fields ``deploy`` shows of the function it leaves.
SHOWN = (
    "FunctionArn",
    "Runtime",
    "Handler",
    "MemorySize",
    "Timeout",
    "CodeSha256",
    "State",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def zip_dir(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                archive.write(file, file.relative_to(path).as_posix())
    return buffer.getvalue()


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs (the value may hold ``=`` and be empty); a pair without
    ``=`` is a usage error, said in one line."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--env takes KEY=VALUE, not {pair!r}", code=2)
        found[key] = value
    return found


def parse_layers(values: list[str]) -> list[str]:
    """Layer version ARNs, each flag one or several separated by commas, in order."""
    return [arn.strip() for value in values for arn in value.split(",") if arn.strip()]


def deploy(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    name: Annotated[str, typer.Option(help="function name")],
    runtime: Annotated[str | None, typer.Option(help="[new function: python3.11]")] = None,
    handler: Annotated[str | None, typer.Option(help="[new function: app.handler]")] = None,
    memory: Annotated[int | None, typer.Option(help="MemorySize in MB [new: 128]")] = None,
    timeout: Annotated[int | None, typer.Option(help="Timeout in seconds [new: 3]")] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            metavar="KEY=VALUE",
            help="an environment variable, repeatable; given, they replace the "
            "function's whole environment",
        ),
    ] = None,
    layers: Annotated[
        list[str] | None,
        typer.Option(
            "--layers",
            metavar="ARN",
            help="a layer version ARN, repeatable or comma-separated, in order; given, "
            "they replace the function's layers",
        ),
    ] = None,
    role: Annotated[str | None, typer.Option(help=f"[new function: {DEFAULT_ROLE}]")] = None,
    endpoint: EndpointOpt = None,
) -> None:
    """Zip DIRECTORY and create the function, or update its code if it exists.

    A new function takes the defaults of the options not given; an existing one keeps
    its settings except those an option names."""
    settings: dict[str, Any] = {
        key: value
        for key, value in (
            ("Runtime", runtime),
            ("Handler", handler),
            ("MemorySize", memory),
            ("Timeout", timeout),
            ("Role", role),
        )
        if value is not None
    }
    if env is not None:
        settings["Environment"] = {"Variables": parse_env(env)}
    if layers is not None:
        settings["Layers"] = parse_layers(layers)
    code = zip_dir(directory)
    lam = lambda_client(endpoint)
    with api_errors(endpoint), err.status(f"deploying {name} ({len(code)} bytes)"):
        try:
            lam.get_function(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            if role is None:
                settings["Role"] = _default_role(endpoint)
            lam.create_function(
                FunctionName=name,
                Code={"ZipFile": code},
                **{**NEW_FUNCTION_DEFAULTS, **settings},
            )
            action = "created"
        else:
            lam.update_function_code(FunctionName=name, ZipFile=code)
            if settings:
                lam.get_waiter("function_updated_v2").wait(
                    FunctionName=name, WaiterConfig={"Delay": 1}
                )
                lam.update_function_configuration(FunctionName=name, **settings)
            action = "updated"
        lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
        config = lam.get_function_configuration(FunctionName=name)
    table = Table(title=f"{name} {action}")
    for key in SHOWN:
        table.add_row(key, str(config.get(key)))
    if config.get("Layers"):
        table.add_row("Layers", "\n".join(layer["Arn"] for layer in config["Layers"]))
    variables = config.get("Environment", {}).get("Variables", {})
    if variables:
        table.add_row("Environment", "\n".join(sorted(variables)))  # names only: no secrets
    console.print(table)


def _default_role(endpoint: str | None) -> str:
    """The dev account's default role, or, for any other account, a usage error that
    says what to pass (the caller's account from STS GetCallerIdentity)."""
    account = client("sts", endpoint).get_caller_identity()["Account"]
    if account != DEV_ACCOUNT:
        fail(
            f"a new function of account {account} needs --role arn:aws:iam::{account}:role/"
            "NAME, a role Lambda may assume (aws iam create-role with the trust policy of "
            "lambda.amazonaws.com)",
            code=2,
        )
    return DEFAULT_ROLE


def list_functions(
    as_json: JsonOpt = False,
    endpoint: EndpointOpt = None,
) -> None:
    """The account's functions in this region: runtime, memory, timeout, last change."""
    lam = lambda_client(endpoint)
    with api_errors(endpoint):
        found = [
            fn
            for page in lam.get_paginator("list_functions").paginate()
            for fn in page["Functions"]
        ]
    if as_json:
        print(json.dumps(found, indent=2, default=str))
        return
    if not found:
        err.print("no functions")
        return
    table = Table("name", "runtime", "handler", "memory/MB", "timeout/s", "last modified")
    for fn in sorted(found, key=lambda f: f["FunctionName"]):
        table.add_row(
            fn["FunctionName"],
            str(fn.get("Runtime", "")),
            str(fn.get("Handler", "")),
            str(fn.get("MemorySize", "")),
            str(fn.get("Timeout", "")),
            str(fn.get("LastModified", "")),
        )
    console.print(table)


def delete(
    name: str,
    qualifier: Annotated[
        str | None, typer.Option(help="delete only this published version")
    ] = None,
    endpoint: EndpointOpt = None,
) -> None:
    """Delete function NAME (all its versions and aliases), or one version of it."""
    lam = lambda_client(endpoint)
    extra = {} if qualifier is None else {"Qualifier": qualifier}
    with api_errors(endpoint):
        lam.delete_function(FunctionName=name, **extra)
    console.print(f"deleted {name}" + ("" if qualifier is None else f" version {qualifier}"))


def publish(
    name: str,
    description: Annotated[str | None, typer.Option(help="the version's description")] = None,
    endpoint: EndpointOpt = None,
) -> None:
    """Publish $LATEST of NAME as a new version (none if it did not change since the last)."""
    lam = lambda_client(endpoint)
    extra = {} if description is None else {"Description": description}
    with api_errors(endpoint), err.status(f"publishing {name}"):
        version = lam.publish_version(FunctionName=name, **extra)
    console.print(f"published {name} version {version['Version']}: {version['FunctionArn']}")

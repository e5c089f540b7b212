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

from kindling.cli.common import EndpointOpt, api_errors, console, err, fail, lambda_client

#: What ``deploy`` gives a new function for the options it was not given.
NEW_FUNCTION_DEFAULTS: dict[str, Any] = {
    "Runtime": "python3.11",
    "Handler": "app.handler",
    "MemorySize": 128,
    "Timeout": 3,
}
#: The role a new function gets unless --role names one: kindling's dev account's.
DEFAULT_ROLE = "arn:aws:iam::000000000000:role/kindling"
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
    client = lambda_client(endpoint)
    with api_errors(endpoint), err.status(f"deploying {name} ({len(code)} bytes)"):
        try:
            client.get_function(FunctionName=name)
        except client.exceptions.ResourceNotFoundException:
            client.create_function(
                FunctionName=name,
                Code={"ZipFile": code},
                **{**NEW_FUNCTION_DEFAULTS, "Role": DEFAULT_ROLE, **settings},
            )
            action = "created"
        else:
            client.update_function_code(FunctionName=name, ZipFile=code)
            if settings:
                client.get_waiter("function_updated_v2").wait(
                    FunctionName=name, WaiterConfig={"Delay": 1}
                )
                client.update_function_configuration(FunctionName=name, **settings)
            action = "updated"
        client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
        config = client.get_function_configuration(FunctionName=name)
    table = Table(title=f"{name} {action}")
    for key in SHOWN:
        table.add_row(key, str(config.get(key)))
    if config.get("Layers"):
        table.add_row("Layers", "\n".join(layer["Arn"] for layer in config["Layers"]))
    variables = config.get("Environment", {}).get("Variables", {})
    if variables:
        table.add_row("Environment", "\n".join(sorted(variables)))  # names only: no secrets
    console.print(table)


def list_functions(
    as_json: JsonOpt = False,
    endpoint: EndpointOpt = None,
) -> None:
    """The account's functions in this region: runtime, memory, timeout, last change."""
    client = lambda_client(endpoint)
    with api_errors(endpoint):
        found = [
            fn
            for page in client.get_paginator("list_functions").paginate()
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
    client = lambda_client(endpoint)
    extra = {} if qualifier is None else {"Qualifier": qualifier}
    with api_errors(endpoint):
        client.delete_function(FunctionName=name, **extra)
    console.print(f"deleted {name}" + ("" if qualifier is None else f" version {qualifier}"))


def publish(
    name: str,
    description: Annotated[str | None, typer.Option(help="the version's description")] = None,
    endpoint: EndpointOpt = None,
) -> None:
    """Publish $LATEST of NAME as a new version (none if it did not change since the last)."""
    client = lambda_client(endpoint)
    extra = {} if description is None else {"Description": description}
    with api_errors(endpoint), err.status(f"publishing {name}"):
        version = client.publish_version(FunctionName=name, **extra)
    console.print(f"published {name} version {version['Version']}: {version['FunctionArn']}")

"""The ``kindling`` command: one module per group of commands.

- ``serve``: the server (``kindling.cli.serve``);
- ``deploy | list | delete | publish``: functions (``kindling.cli.functions``);
- ``invoke | logs``: running them (``kindling.cli.invoke``);
- ``admin``: accounts and keys (``kindling.admin_cli``);
- ``cluster status | bench``: the operator's (``kindling.cli.ops``).

The client commands speak the public Lambda API through botocore; every failure of
theirs is one line on stderr and a non-zero exit (``kindling.cli.common``).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

import kindling
from kindling.admin_cli import admin_app
from kindling.cli import functions, invoke, ops, serve
from kindling.cli.common import describe, endpoint_of, err

app = typer.Typer(
    add_completion=False,
    help="A self-hosted serverless platform speaking AWS Lambda.",
    pretty_exceptions_show_locals=False,  # a bug's traceback must not print secrets
)


def _version(value: bool) -> None:
    if value:
        print(f"kindling {kindling.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """A self-hosted serverless platform speaking AWS Lambda."""


app.command()(serve.serve)
app.command()(functions.deploy)
app.command("list")(functions.list_functions)
app.command()(functions.delete)
app.command()(functions.publish)
app.command()(invoke.invoke)
app.command()(invoke.logs)
app.add_typer(admin_app, name="admin")
app.add_typer(ops.cluster_app, name="cluster")
app.command(context_settings=ops.BENCH_SETTINGS)(ops.bench)


def main() -> None:
    """The console script. A failure of a call to the server that a command did not
    turn into its line already still ends as one line, not a traceback."""
    try:
        app()
    except Exception as exc:
        line = describe(exc, endpoint_of(None))
        if line is None:
            raise
        err.print(f"kindling: {line}", style="red", soft_wrap=True, markup=False, highlight=False)
        sys.exit(1)

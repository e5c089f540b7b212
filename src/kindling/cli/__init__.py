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
from kindling.cli.s3notify import s3notify_app

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
app.add_typer(s3notify_app, name="s3-notify")
app.add_typer(ops.cluster_app, name="cluster")
app.command(context_settings=ops.BENCH_SETTINGS)(ops.bench)


def main() -> None:
    """The console script. Usage errors, and failures of calls to the server that a
    command did not turn into its line already, end as one line too, not as a box or
    a traceback."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        _line("aborted")
        sys.exit(1)
    except typer.TyperException as exc:  # click's usage errors, as Typer carries them
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        context = getattr(exc, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context is not None else ""
        _line(f"{message}{hint}")
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except Exception as exc:
        line = describe(exc, endpoint_of(None))
        if line is None:
            raise
        _line(line)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _line(message: str) -> None:
    err.print(f"kindling: {message}", style="red", soft_wrap=True, markup=False, highlight=False)

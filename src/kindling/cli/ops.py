"""``kindling cluster status`` and ``kindling bench``: the operator's commands."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kindling.cli.common import EndpointOpt, console, endpoint_of, fail
from kindling.config import Config, read_secret_file

cluster_app = typer.Typer(help="A cluster's control plane and workers (docs/cluster.md).")
#: ``bench`` passes the options it does not know on to the harness.
BENCH_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}


@cluster_app.command("token")
def cluster_token(
    worker_id: Annotated[str, typer.Argument(help="the worker's --worker-id")],
    cluster_secret_file: Annotated[
        Path | None, typer.Option(help="the cluster secret (or KINDLING_CLUSTER_SECRET[_FILE])")
    ] = None,
) -> None:
    """A worker's own credential, made from the cluster secret: give it to that worker
    (KINDLING_CLUSTER_SECRET or --cluster-secret-file) instead of the secret, so a
    worker whose host is taken cannot act as the control plane or as another worker."""
    from kindling.iam import cluster

    try:
        secret = (
            read_secret_file(str(cluster_secret_file))
            if cluster_secret_file is not None
            else Config.from_env().cluster_secret
        )
    except (OSError, ValueError) as exc:
        fail(f"the cluster secret: {exc}", 2)
    if not secret or cluster.is_token(secret):
        fail("needs the cluster secret: --cluster-secret-file or KINDLING_CLUSTER_SECRET", 2)
    try:
        print(cluster.worker_token(cluster.check_secret(secret), worker_id))
    except ValueError as exc:
        fail(str(exc), 2)


@cluster_app.command("status")
def cluster_status(
    endpoint: EndpointOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    cluster_secret_file: Annotated[
        Path | None, typer.Option(help="the cluster secret (or KINDLING_CLUSTER_SECRET[_FILE])")
    ] = None,
) -> None:
    """The workers a control node knows: capacity, sandboxes, lease, health."""
    from kindling.iam import cluster

    try:
        secret = (
            read_secret_file(str(cluster_secret_file))
            if cluster_secret_file is not None
            else Config.from_env().cluster_secret
        )
    except (OSError, ValueError) as exc:
        fail(f"the cluster secret: {exc}", 2)
    if not secret:
        fail("needs the cluster secret: --cluster-secret-file or KINDLING_CLUSTER_SECRET", 2)
    path = "/_kindling/cluster/status"
    request = urllib.request.Request(
        endpoint_of(endpoint) + path,
        headers={cluster.HEADER: cluster.sign(cluster.check_secret(secret), "GET", path, b"")},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            workers = json.loads(answer.read())["workers"]
    except OSError as exc:
        fail(f"the control plane at {endpoint_of(endpoint)} did not answer: {exc}")
    if as_json:
        print(json.dumps(workers, indent=2))
        return
    table = Table("worker", "address", "memory used/MB", "cpus", "sandboxes", "lease left", "up")
    for w in workers:
        table.add_row(
            str(w["worker_id"]) + ("" if w["healthy"] else " (lost)"),
            str(w["url"]),
            f"{w['memory_used_mb']}/{w['memory_mb']}",
            str(w["cpus"]),
            str(w["sandboxes"]),
            f"{w['lease_left_s']} s",
            f"{w['up_s']} s",
        )
    console.print(table)


def bench(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="a short smoke run (CI)")] = False,
    out: Annotated[
        Path | None, typer.Option(help="where results go (default: bench/results/)")
    ] = None,
) -> None:
    """Run the benchmarks (bench/ of the source tree); write JSON and a Markdown table.

    Further options go to the harness: ``kindling bench -- --help`` lists them.
    """
    import subprocess

    import kindling

    repo = Path(kindling.__file__).resolve().parents[2]
    if not (repo / "bench" / "run.py").is_file():
        fail(f"no bench/ beside this kindling ({repo}): run it from a source checkout", 2)
    argv = [sys.executable, "-m", "bench", *ctx.args]
    if quick:
        argv.append("--quick")
    if out is not None:
        argv += ["--out", str(out.resolve())]
    raise typer.Exit(subprocess.call(argv, cwd=repo))

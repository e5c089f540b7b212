"""The ``kindling`` command: serve, deploy, invoke, logs, bench."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kindling.admin_cli import admin_app
from kindling.config import Config, parse_counting, parse_egress_allow, read_secret_file
from kindling.s3notify_cli import s3notify_app

app = typer.Typer(
    add_completion=False, help="A self-hosted serverless platform speaking AWS Lambda."
)
console = Console()
err = Console(stderr=True)

EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", help="kindling URL (default $AWS_ENDPOINT_URL or :9000)")
]


def _endpoint(value: str | None) -> str:
    return value or os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:9000"


def _client(endpoint: str | None) -> Any:
    import botocore.session

    session = botocore.session.get_session()
    creds = session.get_credentials()
    kwargs: dict[str, Any] = {}
    if creds is None:
        kwargs = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    region = session.get_config_variable("region") or "us-east-1"
    return session.create_client(
        "lambda", region_name=region, endpoint_url=_endpoint(endpoint), **kwargs
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port (env KINDLING_PORT)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where state lives")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="the store: postgresql://user@host/db (libpq's URL, e.g. "
            "postgresql://kindling@/kindling?host=/run/postgresql; env KINDLING_STORE); "
            "default an SQLite file in the data dir"
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="sandbox backend")] = None,
    unsafe_process_backend: Annotated[
        bool | None,
        typer.Option(
            "--unsafe-process-backend",
            help="let functions tagged kindling:sandbox=process run unisolated, as root "
            "(debugging only; env KINDLING_UNSAFE_PROCESS_BACKEND)",
        ),
    ] = None,
    egress_allow: Annotated[
        str | None,
        typer.Option(
            help="private IPv4 ranges sandboxes may reach, comma-separated "
            "(env KINDLING_EGRESS_ALLOW; default: public destinations only)"
        ),
    ] = None,
    shutdown_grace: Annotated[
        float | None,
        typer.Option(
            help="seconds running invocations get to finish on SIGTERM "
            "(env KINDLING_SHUTDOWN_GRACE_S, default 30)",
            min=0,
        ),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(
            help="all (one process, the default), control (API and placement; sandboxes "
            "on registered workers) or worker (sandboxes for --control); env KINDLING_ROLE"
        ),
    ] = None,
    control: Annotated[
        str | None,
        typer.Option(help="a worker's control plane, http://host:port (env KINDLING_CONTROL)"),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option(
            help="the address control nodes reach this worker at, http://host:port "
            "(env KINDLING_ADVERTISE)"
        ),
    ] = None,
    worker_id: Annotated[
        str | None,
        typer.Option(help="this worker's name in the cluster (default: the hostname)"),
    ] = None,
    cluster_secret_file: Annotated[
        Path | None,
        typer.Option(
            help="file holding the cluster's shared secret, mode 600 "
            "(env KINDLING_CLUSTER_SECRET or KINDLING_CLUSTER_SECRET_FILE)"
        ),
    ] = None,
    max_lifetime: Annotated[
        float | None,
        typer.Option(
            help="a worker drains and exits after this many seconds, for its supervisor "
            "to restart it (env KINDLING_MAX_LIFETIME_S; default: never)",
            min=0,
        ),
    ] = None,
    dev_keys: Annotated[
        bool | None,
        typer.Option(
            "--dev-keys/--no-dev-keys",
            help="accept the dev key test/test (account 000000000000); default: only "
            "while listening on loopback (env KINDLING_DEV_KEYS)",
        ),
    ] = None,
    server_key_file: Annotated[
        Path | None,
        typer.Option(
            help="the key encrypting secrets at rest, created 0600 if absent; control "
            "nodes of one cluster share it (default: server.key in the data dir; env "
            "KINDLING_SERVER_KEY_FILE)"
        ),
    ] = None,
    counting: Annotated[
        str | None,
        typer.Option(
            help="count concurrency in this Redis, shared by every node naming it: "
            "redis://host:port/db (env KINDLING_COUNTING; default: in this process)"
        ),
    ] = None,
) -> None:
    """Serve the Lambda API on 127.0.0.1:9000 until SIGTERM or SIGINT, which drain it."""
    import uvloop

    from kindling.app import serve as run
    from kindling.errors import StoreUnavailableError
    from kindling.store.engine import engine_url

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from kindling.node import serve_worker

    try:
        counting = None if counting is None else parse_counting(counting)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--counting") from None
    try:
        allow = None if egress_allow is None else parse_egress_allow(egress_allow)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--egress-allow") from None
    try:
        secret = None if cluster_secret_file is None else read_secret_file(str(cluster_secret_file))
        config = Config.from_env().with_overrides(
            host=host,
            port=port,
            data_dir=data_dir,
            sandbox_backend=backend,
            unsafe_process_backend=unsafe_process_backend,
            egress_allow=allow,
            shutdown_grace_s=shutdown_grace,
            counting=counting,
            role=role,
            control_url=control,
            advertise_url=advertise,
            worker_id=worker_id,
            cluster_secret=secret,
            max_lifetime_s=max_lifetime,
            dev_keys=dev_keys,
            server_key_file=server_key_file,
        )
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    config = config.with_overrides(store=store)
    try:
        engine_url(config.store_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--store") from None
    # uvloop for our loop only: a global policy would also hand uvloop to helper threads
    # whose libraries (pyroute2's netlink sockets) need the standard loop.
    try:
        uvloop.run(serve_worker(config) if config.role == "worker" else run(config))
    except StoreUnavailableError as exc:  # at start: say so and exit, for systemd to retry
        cause = str(exc.__cause__).splitlines()[0] if exc.__cause__ else ""
        err.print(f"kindling: the store is unavailable: {cause}")
        raise typer.Exit(1) from None


def _zip_dir(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                archive.write(file, file.relative_to(path).as_posix())
    return buffer.getvalue()


#: What ``deploy`` gives a new function for the options it was not given.
NEW_FUNCTION_DEFAULTS: dict[str, Any] = {
    "Runtime": "python3.11",
    "Handler": "app.handler",
    "MemorySize": 128,
    "Timeout": 3,
}


@app.command()
def deploy(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    name: Annotated[str, typer.Option(help="function name")],
    runtime: Annotated[str | None, typer.Option(help="[new function: python3.11]")] = None,
    handler: Annotated[str | None, typer.Option(help="[new function: app.handler]")] = None,
    memory: Annotated[int | None, typer.Option(help="MemorySize in MB [new: 128]")] = None,
    timeout: Annotated[int | None, typer.Option(help="Timeout in seconds [new: 3]")] = None,
    endpoint: EndpointOpt = None,
) -> None:
    """Zip DIRECTORY and create the function, or update its code if it exists.

    A new function takes the defaults of the options not given; an existing one keeps
    its settings except those an option names."""
    client = _client(endpoint)
    code = _zip_dir(directory)
    settings = {
        key: value
        for key, value in (
            ("Runtime", runtime),
            ("Handler", handler),
            ("MemorySize", memory),
            ("Timeout", timeout),
        )
        if value is not None
    }
    with console.status(f"deploying {name} ({len(code)} bytes)"):
        try:
            client.get_function(FunctionName=name)
            client.update_function_code(FunctionName=name, ZipFile=code)
            if settings:
                client.get_waiter("function_updated_v2").wait(
                    FunctionName=name, WaiterConfig={"Delay": 1}
                )
                client.update_function_configuration(FunctionName=name, **settings)
            action = "updated"
        except client.exceptions.ResourceNotFoundException:
            client.create_function(
                FunctionName=name,
                Role="arn:aws:iam::000000000000:role/kindling",
                Code={"ZipFile": code},
                **{**NEW_FUNCTION_DEFAULTS, **settings},
            )
            action = "created"
        client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
        config = client.get_function_configuration(FunctionName=name)
    table = Table(title=f"{name} {action}")
    for key in (
        "FunctionArn",
        "Runtime",
        "Handler",
        "MemorySize",
        "Timeout",
        "CodeSha256",
        "State",
    ):
        table.add_row(key, str(config.get(key)))
    console.print(table)


@app.command()
def invoke(
    name: str,
    payload: Annotated[str, typer.Option(help="JSON event")] = "{}",
    endpoint: EndpointOpt = None,
) -> None:
    """Invoke NAME synchronously; print its response, and its log tail on stderr."""
    import base64

    client = _client(endpoint)
    out = client.invoke(FunctionName=name, Payload=payload.encode(), LogType="Tail")
    if "LogResult" in out:
        err.print(base64.b64decode(out["LogResult"]).decode(errors="replace"), end="", markup=False)
    sys.stdout.write(out["Payload"].read().decode(errors="replace") + "\n")
    if out.get("FunctionError"):
        raise typer.Exit(1)


@app.command()
def logs(
    name: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    endpoint: EndpointOpt = None,
) -> None:
    """Print the log of function NAME (START/END/REPORT and the function's output).

    The server keeps the newest 32 MiB of it, for 7 days (ADR 12)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    client = _client(endpoint)
    creds = client._request_signer._credentials
    region = client.meta.region_name
    offset = "0"  # the server's cursor, passed back as it is
    while True:
        url = f"{_endpoint(endpoint)}/_kindling/logs/{name}?offset={urllib.parse.quote(offset)}"
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(creds, "lambda", region).add_auth(request)
        prepared = urllib.request.Request(url, headers=dict(request.headers.items()))
        try:
            with urllib.request.urlopen(prepared) as response:
                data = response.read()
                offset = response.headers.get("X-Kindling-Next-Offset", offset)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            err.print(f"[red]{body.get('Message') or body.get('message') or exc}[/red]")
            raise typer.Exit(1) from exc
        sys.stdout.write(data.decode(errors="replace"))
        sys.stdout.flush()
        if data:
            continue  # a read returns at most 1 MiB: ask again at once
        if not follow:
            return
        time.sleep(0.5)


app.add_typer(admin_app, name="admin")
app.add_typer(s3notify_app, name="s3-notify")

cluster_app = typer.Typer(help="A cluster's control plane and workers (docs/cluster.md).")
app.add_typer(cluster_app, name="cluster")


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

    secret = (
        read_secret_file(str(cluster_secret_file))
        if cluster_secret_file is not None
        else Config.from_env().cluster_secret
    )
    if not secret:
        err.print("needs the cluster secret: --cluster-secret-file or KINDLING_CLUSTER_SECRET")
        raise typer.Exit(2)
    path = "/_kindling/cluster/status"
    request = urllib.request.Request(
        _endpoint(endpoint) + path,
        headers={cluster.HEADER: cluster.sign(cluster.check_secret(secret), "GET", path, b"")},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            workers = json.loads(answer.read())["workers"]
    except OSError as exc:
        err.print(f"the control plane did not answer: {exc}")
        raise typer.Exit(1) from None
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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
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
        err.print(f"[red]no bench/ beside this kindling ({repo}): run it from a source checkout[/]")
        raise typer.Exit(2)
    argv = [sys.executable, "-m", "bench", *ctx.args]
    if quick:
        argv.append("--quick")
    if out is not None:
        argv += ["--out", str(out.resolve())]
    raise typer.Exit(subprocess.call(argv, cwd=repo))


def main() -> None:
    app()

"""``kindling serve``: reads flags and environment into one Config and runs the server
(``kindling.app``) or a worker host (``kindling.node``) until a signal drains it.

What goes wrong at start is said in one line with exit code 1 (a port in use, a store
that does not answer), for a person or systemd to act on; never a traceback.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Annotated

import typer

from kindling.cli.common import fail
from kindling.config import Config, parse_counting, parse_egress_allow, read_secret_file

#: Why a listening socket could not be opened, in the words a user acts on.
LISTEN_ERRORS = {
    errno.EADDRINUSE: "the address is in use (another kindling serve?); choose --port",
    errno.EACCES: "permission denied (a port below 1024 needs root)",
    errno.EADDRNOTAVAIL: "this host has no such address; choose --host",
}


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
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="log one line per request: method, path, status, duration, request id, "
            "account (env KINDLING_ACCESS_LOG; default off)",
        ),
    ] = None,
) -> None:
    """Serve the Lambda API on 127.0.0.1:9000 until SIGTERM or SIGINT, which drain it.

    Health probes: GET /_kindling/health/live and /_kindling/health/ready, unsigned."""
    import uvloop

    from kindling.app import serve as run
    from kindling.errors import StoreUnavailableError
    from kindling.store.engine import engine_url

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # 7 lines of noise
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
            access_log=access_log,
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
        fail(f"the store is unavailable: {cause}")
    except OSError as exc:  # a socket it cannot listen on; any other OSError is a bug
        reason = LISTEN_ERRORS.get(exc.errno or 0)
        if reason is None:
            raise
        fail(f"cannot listen on {config.host}:{config.port}: {reason}")

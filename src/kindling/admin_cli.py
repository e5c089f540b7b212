"""``kindling admin``: accounts and their keys, through the server's admin API.

The admin credential is read from ``admin.key`` in the server's data dir (root only,
0600) or from KINDLING_ADMIN_KEY; requests are signed with it, never carry it (ADR 0036).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

admin_app = typer.Typer(help="Accounts and access keys (needs the server's admin credential).")
account_app = typer.Typer(help="Accounts: each with its own functions, roles and keys.")
key_app = typer.Typer(help="An account's root access keys.")
admin_app.add_typer(account_app, name="account")
admin_app.add_typer(key_app, name="key")
console = Console()
err = Console(stderr=True)

EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", help="kindling URL (default $AWS_ENDPOINT_URL or :9000)")
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="the server's data dir, holding admin.key (or env KINDLING_ADMIN_KEY)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _credential(data_dir: Path | None) -> str:
    given = os.environ.get("KINDLING_ADMIN_KEY")
    if given:
        return given.strip()
    folder = data_dir or Path(os.environ.get("KINDLING_DATA_DIR", ".kindling"))
    try:
        return (folder / "admin.key").read_text().strip()
    except OSError as exc:
        err.print(
            f"no admin credential: cannot read {folder / 'admin.key'} ({exc.strerror}); "
            "pass --data-dir or set KINDLING_ADMIN_KEY"
        )
        raise typer.Exit(2) from None


def _call(
    endpoint: str | None, data_dir: Path | None, method: str, what: str, doc: Any = None
) -> Any:
    from kindling.iam import cluster

    base = endpoint or os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:9000"
    path = f"/_kindling/admin/{what}"
    body = b"" if doc is None else json.dumps(doc).encode()
    key = _credential(data_dir).encode()
    request = urllib.request.Request(
        base.rstrip("/") + path,
        data=body if doc is not None else None,
        method=method,
        headers={
            "x-kindling-admin": cluster.sign(key, method, path, body),
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message", exc.reason)
        except ValueError:
            message = exc.reason
        err.print(f"refused ({exc.code}): {message}")
        raise typer.Exit(1) from None
    except OSError as exc:
        err.print(f"the server did not answer: {exc}")
        raise typer.Exit(1) from None


def _print_key(doc: dict[str, str]) -> None:
    console.print(f"account id:        {doc['AccountId']}")
    console.print(f"access key id:     {doc['AccessKeyId']}")
    console.print(f"secret access key: {doc['SecretAccessKey']}")
    console.print("(the secret is shown once: keep it now)")


@account_app.command("create")
def account_create(
    name: str, endpoint: EndpointOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False
) -> None:
    """Creates an account; prints its id and its root key once."""
    doc = _call(endpoint, data_dir, "POST", "accounts", {"name": name})
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    _print_key(doc["Key"])


@account_app.command("list")
def account_list(
    endpoint: EndpointOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False
) -> None:
    """The accounts this server knows."""
    accounts = _call(endpoint, data_dir, "GET", "accounts")["Accounts"]
    if as_json:
        print(json.dumps(accounts, indent=2))
        return
    table = Table("account id", "name")
    for account in accounts:
        table.add_row(account["account_id"], account["name"])
    console.print(table)


@account_app.command("delete")
def account_delete(account: str, endpoint: EndpointOpt = None, data_dir: DataDirOpt = None) -> None:
    """Deletes an account (by id or name) and its keys; refused while it has functions."""
    doc = _call(endpoint, data_dir, "DELETE", f"accounts/{account}")
    console.print(f"deleted account {doc['Account']['account_id']} ({doc['Account']['name']})")


@key_app.command("create")
def key_create(
    account: str,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A new root key for an account (by id or name); the secret is shown once."""
    doc = _call(endpoint, data_dir, "POST", "keys", {"account": account})
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    _print_key(doc["Key"])


@key_app.command("revoke")
def key_revoke(
    access_key_id: str, endpoint: EndpointOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Revokes a key: requests it signs are refused from now on."""
    _call(endpoint, data_dir, "DELETE", f"keys/{access_key_id}")
    console.print(f"revoked {access_key_id}")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(value: str) -> float:
    """``30m``, ``2h``, ``7d`` ago; an ISO 8601 time; or Unix seconds."""
    import time
    from datetime import UTC, datetime

    text = value.strip()
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return time.time() - int(text[:-1]) * _UNITS[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        err.print(f"--since {value!r}: give 30m, 2h, 7d, an ISO 8601 time or Unix seconds")
        raise typer.Exit(2) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


@admin_app.command("audit")
def audit(
    account: Annotated[str | None, typer.Option(help="only this account id")] = None,
    since: Annotated[
        str | None, typer.Option(help="only calls since: 30m, 2h, 7d, ISO 8601 or Unix seconds")
    ] = None,
    operation: Annotated[
        str | None, typer.Option(help="only this operation, e.g. CreateFunction")
    ] = None,
    limit: Annotated[int, typer.Option(help="the newest this many (at most 10000)")] = 1000,
    endpoint: EndpointOpt = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log of control-plane calls: who, what, when, and how it ended."""
    from datetime import UTC, datetime
    from urllib.parse import urlencode

    args: dict[str, str] = {"limit": str(limit)}
    if account:
        args["account"] = account
    if since:
        args["since"] = repr(_since(since))
    if operation:
        args["operation"] = operation
    events = _call(endpoint, data_dir, "GET", f"audit?{urlencode(args)}")["Events"]
    if as_json:
        print(json.dumps(events, indent=2))
        return
    for event in events:  # one line each, whole: an audit log is read with grep
        when = datetime.fromtimestamp(event["at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = str(event["status"]) + (f" {event['error_code']}" if event["error_code"] else "")
        fields = (
            when,
            event["account_id"] or "-",
            event["principal_arn"],
            f"{event['service']}:{event['operation']}",
            event["resource"] or "-",
            result,
            event["source_ip"] or "-",
        )
        print("  ".join(fields))

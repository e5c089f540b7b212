"""The audit log through the real server (ADR 0043): every control-plane call of
Lambda, IAM, STS and EventBridge is recorded with who made it (account, principal ARN),
what (operation, resource), when, how it ended (status, error code) and from where;
invokes are not (data events); nothing of a request's body is; ``kindling admin
audit`` reads it, filtered by account, time and operation.

AWS: CloudTrail records management events by default, each with ``userIdentity``
(``accountId``, ``arn``, ``accessKeyId``), ``eventName``, ``eventTime``,
``sourceIPAddress``, ``errorCode`` and the resources; Lambda's Invoke is a data event,
recorded only by a trail that asks for data events ("Logging Lambda API calls using
AWS CloudTrail"; "CloudTrail record contents").
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .support import KINDLING, Server, client_error
from .test_tenancy_security import Tenant, allow, make_account, make_function, make_user

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def server(tmp_path: Any) -> Iterator[Server]:
    srv = Server(data_dir=tmp_path / "data", log_path=tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop_cleanly()


def audit(server: Server, *args: str, as_json: bool = True) -> Any:
    run = subprocess.run(
        [
            str(KINDLING),
            "admin",
            "audit",
            *args,
            *(("--json",) if as_json else ()),
            "--endpoint",
            server.endpoint,
            "--data-dir",
            str(server.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout) if as_json else run.stdout


def test_control_plane_calls_are_audited_and_invokes_are_not(server: Server) -> None:
    started = time.time()
    a = make_account(server, "team-a")
    b = make_account(server, "team-b")
    fn = make_function(server, a, "audited")
    lam = a.client(server, "lambda")
    secret = "env-secret-value-7f3a"
    lam.update_function_configuration(
        FunctionName="audited", Environment={"Variables": {"TOKEN": secret}}
    )
    lam.invoke(FunctionName="audited")
    reader = make_user(server, a, "reader", allow("lambda:GetFunction"))
    reader_lam = reader.client(server, "lambda")
    reader_lam.get_function(FunctionName="audited")
    with client_error("AccessDeniedException", 403):
        reader_lam.delete_function(FunctionName="audited")
    with client_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName="missing")
    b.client(server, "lambda").list_functions()
    a.client(server, "sts").get_caller_identity()
    a.client(server, "events").list_event_buses()  # a JSON service's endpoint records too

    mine = audit(server, "--account", a.account)
    assert {e["account_id"] for e in mine} == {a.account}
    operations = [e["operation"] for e in mine]
    for expected in ("CreateUser", "PutUserPolicy", "CreateRole", "CreateFunction"):
        assert expected in operations
    assert "GetCallerIdentity" in operations
    buses = next(e for e in mine if e["operation"] == "ListEventBuses")
    assert (buses["service"], buses["status"], buses["error_code"]) == ("events", 200, None)
    assert "Invoke" not in operations  # a data event
    assert "ListFunctions" not in operations  # team-b's call, not team-a's
    denied = next(e for e in mine if e["operation"] == "DeleteFunction")
    assert denied["principal_arn"] == f"arn:aws:iam::{a.account}:user/reader"
    assert denied["access_key_id"] == reader.key
    assert (denied["status"], denied["error_code"]) == (403, "AccessDeniedException")
    assert denied["resource"] == fn
    assert denied["source_ip"] == "127.0.0.1" and denied["service"] == "lambda"
    assert denied["at"] >= started - 1
    created = next(e for e in mine if e["operation"] == "CreateFunction")
    assert created["principal_arn"] == f"arn:aws:iam::{a.account}:root"
    assert created["status"] == 201 and created["error_code"] is None
    missing = next(e for e in mine if e["resource"].endswith(":function:missing"))
    assert (missing["status"], missing["error_code"]) == (404, "ResourceNotFoundException")
    role = next(e for e in mine if e["operation"] == "CreateRole")
    assert role["service"] == "iam" and role["resource"] == f"arn:aws:iam::{a.account}:role/fn"
    assert secret not in json.dumps(audit(server))  # bodies are never recorded

    only = audit(server, "--operation", "DeleteFunction")
    assert [e["principal_arn"] for e in only] == [denied["principal_arn"]]
    assert audit(server, "--since", "1s", "--account", b.account, "--operation", "X") == []
    assert [e["operation"] for e in audit(server, "--account", b.account, "--since", "5m")] == [
        "ListFunctions"
    ]
    admin = [e for e in audit(server) if e["service"] == "kindling-admin"]
    assert [e["operation"] for e in admin] == ["POST accounts", "POST accounts"]
    assert "arn:aws:iam" in audit(server, "--account", a.account, as_json=False)


def test_the_audit_log_survives_a_restart(server: Server) -> None:
    a: Tenant = make_account(server, "team-a")
    a.client(server, "lambda").list_functions()
    server.stop_cleanly()
    server.start()
    assert [e["operation"] for e in audit(server, "--account", a.account)] == ["ListFunctions"]

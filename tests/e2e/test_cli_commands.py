"""``kindling list | delete | publish``, invoke's ``--qualifier`` and ``--invocation-type``,
deploy's ``--env`` and ``--layers``, against the real server; and every failure a user
meets daily as one line on stderr with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .kindling_cli import kindling_at, run_kindling
from .support import KINDLING, Server, free_port, make_zip, wait_for


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit code non-zero, one line on stderr holding ``words``, no traceback."""
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _app_dir(tmp_path: Path, code: str, sub: str = "fn") -> Path:
    folder = tmp_path / sub
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text(code)
    return folder


def test_list_shows_the_functions_as_a_table_and_as_json(
    server: Server, fn_name: str, tmp_path: Path
) -> None:
    folder = _app_dir(tmp_path, "def handler(event, context):\n    return 1\n")
    assert (
        kindling_at(server, "deploy", str(folder), "--name", fn_name, "--memory", "192").returncode
        == 0
    )
    table = kindling_at(server, "list")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if fn_name in line)
    assert "python3.11" in row and "192" in row
    as_json = kindling_at(server, "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    found = {f["FunctionName"]: f for f in json.loads(as_json.stdout)}
    assert found[fn_name]["MemorySize"] == 192


def test_publish_then_invoke_a_version_by_qualifier(
    server: Server, fn_name: str, tmp_path: Path
) -> None:
    folder = _app_dir(tmp_path, "def handler(event, context):\n    return {'v': 1}\n")
    assert kindling_at(server, "deploy", str(folder), "--name", fn_name).returncode == 0
    published = kindling_at(server, "publish", fn_name, "--description", "first")
    assert published.returncode == 0, published.stderr
    assert f"published {fn_name} version 1:" in published.stdout
    assert f":function:{fn_name}:1" in published.stdout

    (folder / "app.py").write_text("def handler(event, context):\n    return {'v': 2}\n")
    assert kindling_at(server, "deploy", str(folder), "--name", fn_name).returncode == 0
    assert kindling_at(server, "invoke", fn_name).stdout.strip() == '{"v": 2}'
    one = kindling_at(server, "invoke", fn_name, "--qualifier", "1")
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip() == '{"v": 1}'
    missing = kindling_at(server, "invoke", fn_name, "--qualifier", "7")
    assert_one_line_error(missing, "ResourceNotFoundException")


def test_invoke_as_an_event_queues_it_and_it_runs(
    server: Server, fn_name: str, tmp_path: Path, lam: Any
) -> None:
    code = "def handler(event, context):\n    print('event got', event['n'])\n"
    folder = _app_dir(tmp_path, code)
    assert kindling_at(server, "deploy", str(folder), "--name", fn_name).returncode == 0
    queued = kindling_at(
        server, "invoke", fn_name, "--invocation-type", "Event", "--payload", '{"n": 41}'
    )
    assert queued.returncode == 0, queued.stderr
    assert "queued (HTTP 202): request id " in queued.stdout
    request_id = queued.stdout.strip().rsplit(" ", 1)[-1]

    def ran() -> bool:
        logs = kindling_at(server, "logs", fn_name)
        return "event got 41" in logs.stdout and f"END RequestId: {request_id}" in logs.stdout

    wait_for(ran, timeout=120, interval=0.5)
    dry = kindling_at(server, "invoke", fn_name, "--invocation-type", "DryRun")
    assert dry.returncode == 0 and "allowed (HTTP 204)" in dry.stdout, dry.stdout + dry.stderr


def test_deploy_sets_environment_and_layers_and_a_redeploy_keeps_them(
    server: Server, fn_name: str, tmp_path: Path, lam: Any
) -> None:
    layer = lam.publish_layer_version(
        LayerName=f"{fn_name}-layer",
        Content={"ZipFile": make_zip({"python/greeting.py": "WHO = 'from the layer'\n"})},
    )
    try:
        code = (
            "import os, greeting\n"
            "def handler(event, context):\n"
            "    return {'who': greeting.WHO, 'A1': os.environ.get('A1'),\n"
            "            'EQ': os.environ.get('EQ'), 'GONE': os.environ.get('GONE')}\n"
        )
        folder = _app_dir(tmp_path, code)
        first = kindling_at(
            server, "deploy", str(folder), "--name", fn_name,
            "--env", "A1=one", "--env", "EQ=x=y", "--env", "GONE=soon",
            "--layers", layer["LayerVersionArn"],
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        assert layer["LayerVersionArn"] in first.stdout
        expected = {"who": "from the layer", "A1": "one", "EQ": "x=y", "GONE": "soon"}
        assert json.loads(kindling_at(server, "invoke", fn_name).stdout) == expected

        again = kindling_at(server, "deploy", str(folder), "--name", fn_name)
        assert again.returncode == 0, again.stderr
        assert json.loads(kindling_at(server, "invoke", fn_name).stdout) == expected

        replaced = kindling_at(server, "deploy", str(folder), "--name", fn_name, "--env", "A1=two")
        assert replaced.returncode == 0, replaced.stderr
        config = lam.get_function_configuration(FunctionName=fn_name)
        assert config["Environment"]["Variables"] == {"A1": "two"}  # the whole set, as AWS
        assert [x["Arn"] for x in config["Layers"]] == [layer["LayerVersionArn"]]

        bad = kindling_at(server, "deploy", str(folder), "--name", fn_name, "--env", "NOEQUALS")
        assert_one_line_error(bad, "--env takes KEY=VALUE")
        assert bad.returncode == 2
    finally:
        lam.delete_function(FunctionName=fn_name)
        lam.delete_layer_version(LayerName=f"{fn_name}-layer", VersionNumber=layer["Version"])


def test_delete_removes_the_function_and_a_second_delete_is_one_line(
    server: Server, fn_name: str, tmp_path: Path, lam: Any
) -> None:
    folder = _app_dir(tmp_path, "def handler(event, context):\n    return 1\n")
    assert kindling_at(server, "deploy", str(folder), "--name", fn_name).returncode == 0
    deleted = kindling_at(server, "delete", fn_name)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted {fn_name}" in deleted.stdout
    assert fn_name not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    again = kindling_at(server, "delete", fn_name)
    assert_one_line_error(again, "ResourceNotFoundException", fn_name)


@pytest.mark.parametrize(
    "args",
    [
        ("invoke", "nothing-here"),
        ("delete", "nothing-here"),
        ("publish", "nothing-here"),
        ("logs", "nothing-here"),
    ],
    ids=lambda a: a[0],
)
def test_a_missing_function_is_one_line(server: Server, args: tuple[str, ...]) -> None:
    assert_one_line_error(kindling_at(server, *args), "not found")


@pytest.mark.parametrize(
    "args",
    [("list",), ("invoke", "f"), ("delete", "f"), ("publish", "f"), ("logs", "f"), ("deploy",)],
    ids=lambda a: a[0],
)
def test_a_server_that_is_down_is_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    if args == ("deploy",):
        args = ("deploy", str(_app_dir(tmp_path, "x = 1\n")), "--name", "f")
    began = time.monotonic()
    done = run_kindling(*args, "--endpoint", nobody)
    line = assert_one_line_error(done, "cannot reach kindling at", nobody)
    assert "kindling serve" in line
    assert done.returncode == 1
    assert time.monotonic() - began < 120  # said promptly, not after a long retry


@pytest.mark.parametrize("args", [("list",), ("logs", "f"), ("invoke", "f")], ids=lambda a: a[0])
def test_bad_credentials_are_one_line(server: Server, args: tuple[str, ...]) -> None:
    done = kindling_at(
        server, *args, env={"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY", "AWS_SECRET_ACCESS_KEY": "x"}
    )
    assert_one_line_error(done, "refused the credentials", "UnrecognizedClientException")


def test_a_payload_that_is_not_json_is_one_line(server: Server, tmp_path: Path) -> None:
    done = kindling_at(server, "invoke", "whatever", "--payload", "{'single': 'quotes'}")
    assert_one_line_error(done, "--payload is not JSON")
    assert done.returncode == 2
    event = tmp_path / "event.json"
    event.write_text("[1, 2")
    done = kindling_at(server, "invoke", "whatever", "--payload", f"@{event}")
    assert_one_line_error(done, f"{event} is not JSON")


def test_invoke_reads_the_payload_from_a_file(server: Server, fn_name: str, tmp_path: Path) -> None:
    folder = _app_dir(tmp_path, "def handler(event, context):\n    return event\n")
    assert kindling_at(server, "deploy", str(folder), "--name", fn_name).returncode == 0
    event = tmp_path / "event.json"
    event.write_text('{"from": "a file"}')
    done = kindling_at(server, "invoke", fn_name, "--payload", f"@{event}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"from": "a file"}


def test_a_new_function_of_another_account_needs_a_role_and_deploys_with_one(
    private_server: Server, tmp_path: Path
) -> None:
    """The dev account may omit --role (ADR 0036); any other account's new function
    needs a role of its own IAM that Lambda may assume: without one, deploy says so in
    one line (the account from STS GetCallerIdentity) instead of the server's refusal."""
    import boto3

    srv = private_server
    srv.start()
    made = subprocess.run(
        [str(KINDLING), "admin", "account", "create", "team", "--json",
         "--endpoint", srv.endpoint, "--data-dir", str(srv.data_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    key = json.loads(made.stdout)["Key"]
    account = key["AccountId"]
    as_team = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
    folder = _app_dir(tmp_path, "def handler(event, context):\n    return 'team'\n")
    refused = kindling_at(srv, "deploy", str(folder), "--name", "f", env=as_team)
    assert_one_line_error(refused, f"needs --role arn:aws:iam::{account}:role/NAME")
    assert refused.returncode == 2

    iam = boto3.session.Session().client(
        "iam",
        region_name="us-east-1",
        endpoint_url=srv.endpoint,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="runner", AssumeRolePolicyDocument=json.dumps(trust))
    made_fn = kindling_at(
        srv, "deploy", str(folder), "--name", "f", "--role", role["Role"]["Arn"], env=as_team
    )
    assert made_fn.returncode == 0, made_fn.stderr
    assert f"arn:aws:lambda:us-east-1:{account}:function:f" in made_fn.stdout
    assert kindling_at(srv, "invoke", "f", env=as_team).stdout.strip() == '"team"'
    assert kindling_at(srv, "delete", "f", env=as_team).returncode == 0

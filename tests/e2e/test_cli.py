"""The ``kindling`` command against the real server: deploy, invoke, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .kindling_cli import kindling_at
from .support import Server


def test_deploy_invoke_logs_and_redeploy(
    server: Server, fn_name: str, tmp_path: Path, lam: Any
) -> None:
    (tmp_path / "app.py").write_text(
        "def handler(event, context):\n    print('cli says', event)\n    return {'v': 1}\n"
    )
    created = kindling_at(server, "deploy", str(tmp_path), "--name", fn_name)
    assert created.returncode == 0, created.stderr
    assert "created" in created.stdout
    assert lam.get_function(FunctionName=fn_name)["Configuration"]["State"] == "Active"

    invoked = kindling_at(server, "invoke", fn_name, "--payload", '{"k": 2}')
    assert invoked.returncode == 0, invoked.stderr
    assert invoked.stdout.strip() == '{"v": 1}'
    assert "cli says {'k': 2}" in invoked.stderr  # the log tail
    assert "REPORT RequestId:" in invoked.stderr

    logs = kindling_at(server, "logs", fn_name)
    assert logs.returncode == 0, logs.stderr
    assert "START RequestId:" in logs.stdout and "cli says {'k': 2}" in logs.stdout

    (tmp_path / "app.py").write_text("def handler(event, context):\n    return {'v': 2}\n")
    updated = kindling_at(server, "deploy", str(tmp_path), "--name", fn_name, "--memory", "256")
    assert updated.returncode == 0, updated.stderr
    assert "updated" in updated.stdout
    assert kindling_at(server, "invoke", fn_name).stdout.strip() == '{"v": 2}'
    assert lam.get_function_configuration(FunctionName=fn_name)["MemorySize"] == 256


def test_redeploy_keeps_the_settings_no_flag_changes(
    server: Server, fn_name: str, tmp_path: Path, lam: Any
) -> None:
    """``deploy`` of an existing function updates its code, and of its configuration
    only what a flag names: a redeploy without flags resets nothing to the defaults
    (UpdateFunctionConfiguration changes only the members it is sent, as on AWS)."""
    (tmp_path / "main.py").write_text("def go(event, context):\n    return {'v': 1}\n")
    first = kindling_at(
        server,
        "deploy",
        str(tmp_path),
        "--name",
        fn_name,
        "--runtime",
        "python3.12",
        "--handler",
        "main.go",
        "--memory",
        "256",
        "--timeout",
        "30",
    )
    assert first.returncode == 0, first.stderr
    settings = ("Runtime", "Handler", "MemorySize", "Timeout")

    def current() -> tuple[Any, ...]:
        config = lam.get_function_configuration(FunctionName=fn_name)
        return tuple(config[k] for k in settings)

    assert current() == ("python3.12", "main.go", 256, 30)
    revision = lam.get_function_configuration(FunctionName=fn_name)["RevisionId"]

    (tmp_path / "main.py").write_text("def go(event, context):\n    return {'v': 2}\n")
    again = kindling_at(server, "deploy", str(tmp_path), "--name", fn_name)
    assert again.returncode == 0, again.stderr
    assert current() == ("python3.12", "main.go", 256, 30)
    assert lam.get_function_configuration(FunctionName=fn_name)["RevisionId"] != revision
    assert kindling_at(server, "invoke", fn_name).stdout.strip() == '{"v": 2}'

    memory = kindling_at(server, "deploy", str(tmp_path), "--name", fn_name, "--memory", "512")
    assert memory.returncode == 0, memory.stderr
    assert current() == ("python3.12", "main.go", 512, 30)


def test_invoke_of_a_failing_function_exits_non_zero(
    server: Server, fn_name: str, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text("def handler(event, context):\n    raise KeyError('x')\n")
    assert kindling_at(server, "deploy", str(tmp_path), "--name", fn_name).returncode == 0
    failed = kindling_at(server, "invoke", fn_name)
    assert failed.returncode == 1
    assert '"errorType": "KeyError"' in failed.stdout


def test_logs_of_a_missing_function_is_an_error(server: Server) -> None:
    missing = kindling_at(server, "logs", "no-such-function-here")
    assert missing.returncode == 1
    assert "Function not found" in missing.stderr


def test_logs_prints_a_log_longer_than_one_read(server: Server, fn_name: str, lam: Any) -> None:
    """The logs endpoint answers 1 MiB a read: ``kindling logs`` asks until the end."""
    from tests.e2e.support import ROLE, make_zip, wait_active

    code = "def handler(event, context):\n    print('x' * 1000 + ' END-OF-' + event['n'])\n"
    lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": code})},
    )
    wait_active(lam, fn_name)
    for n in range(1200):  # 1.2 MB of log over many invocations
        lam.invoke(FunctionName=fn_name, Payload=f'{{"n": "{n}"}}'.encode())
    logs = kindling_at(server, "logs", fn_name)
    assert logs.returncode == 0, logs.stderr
    assert "END-OF-0\n" in logs.stdout and "END-OF-1199\n" in logs.stdout
    assert logs.stdout.count("INIT_START ") == 1  # one sandbox, one init, one line

"""What an API caller controls must never choose less isolation, and what kindling does
not honour must be refused, not stored and ignored.

Found: the tag ``kindling:sandbox=process`` (at CreateFunction, or later by TagResource
on any function) ran the function as root on the host; DeadLetterConfig and other
settings were accepted and silently ignored; environment values with NUL were accepted
and then broke every start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kindling.control.models import NETWORK_TAG, SANDBOX_TAG
from kindling.control.quotas import HOST_ARCHITECTURE

from .support import ROLE, Deploy, Server, client_error, lambda_client, make_zip, wait_active

WHO = "import os\ndef handler(event, context):\n    return {'uid': os.getuid()}\n"


def _create(lam: Any, name: str, **params: Any) -> None:
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": WHO})},
        **params,
    )


def test_a_caller_cannot_choose_the_unisolated_backend(lam: Any, fn_name: str) -> None:
    with client_error("InvalidParameterValueException", 400) as info:
        _create(lam, fn_name, Tags={SANDBOX_TAG: "process"})
    assert "--unsafe-process-backend" in info.value.response["Error"]["Message"]


def test_tagging_an_existing_function_cannot_turn_isolation_off(lam: Any, deploy: Deploy) -> None:
    name = deploy({"app.py": WHO})
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    with client_error("InvalidParameterValueException", 400):
        lam.tag_resource(Resource=arn, Tags={SANDBOX_TAG: "process"})
    assert SANDBOX_TAG not in lam.list_tags(Resource=arn)["Tags"]
    out = lam.invoke(FunctionName=name)
    assert "FunctionError" not in out
    assert json.loads(out["Payload"].read())["uid"] != 0  # still the sandbox's user


@pytest.mark.parametrize(
    "tags",
    [{"aws:cloudformation:stack-name": "x"}, {"kindling:sandbx": "gvisor"}, {NETWORK_TAG: "all"}],
)
def test_reserved_and_unknown_kindling_tags_are_refused(
    lam: Any, fn_name: str, tags: dict[str, str]
) -> None:
    with client_error("InvalidParameterValueException", 400):
        _create(lam, fn_name, Tags=tags)


def test_the_operator_can_enable_the_process_backend(tmp_path: Path) -> None:
    server = Server(
        data_dir=tmp_path / "data",
        log_path=tmp_path / "server.log",
        extra_args=("--unsafe-process-backend",),
    )
    server.start()
    try:
        lam = lambda_client(server.endpoint)
        _create(lam, "debugging", Tags={SANDBOX_TAG: "process"})
        wait_active(lam, "debugging")
        assert lam.invoke(FunctionName="debugging")["StatusCode"] == 200
    finally:
        server.stop_cleanly()


def test_environment_values_with_nul_are_refused(lam: Any, fn_name: str) -> None:
    with client_error("InvalidParameterValueException", 400) as info:
        _create(lam, fn_name, Environment={"Variables": {"AB": "x\x00y"}})
    assert "NUL" in info.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "setting",
    [
        {"VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}},
        {"TracingConfig": {"Mode": "Active"}},
        {"Architectures": ["arm64" if HOST_ARCHITECTURE == "x86_64" else "x86_64"]},
    ],
    ids=lambda s: next(iter(s)),
)
def test_settings_kindling_would_ignore_are_refused(
    lam: Any, fn_name: str, deploy: Deploy, setting: dict[str, Any]
) -> None:
    key = next(iter(setting))
    with client_error("InvalidParameterValueException", 400) as info:
        _create(lam, fn_name, **setting)
    assert "not supported" in info.value.response["Error"]["Message"]
    if key != "Architectures":  # on update too
        name = deploy({"app.py": WHO})
        with client_error("InvalidParameterValueException", 400):
            lam.update_function_configuration(FunctionName=name, **setting)


def test_empty_and_default_values_of_those_settings_are_accepted(lam: Any, fn_name: str) -> None:
    """What Terraform and SAM send when a user set nothing."""
    _create(
        lam,
        fn_name,
        DeadLetterConfig={},
        VpcConfig={"SubnetIds": [], "SecurityGroupIds": []},
        Layers=[],
        TracingConfig={"Mode": "PassThrough"},
        LoggingConfig={"LogFormat": "Text", "LogGroup": f"/aws/lambda/{fn_name}"},
        Architectures=[HOST_ARCHITECTURE],
    )
    wait_active(lam, fn_name)

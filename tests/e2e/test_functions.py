"""The function resource with boto3: create, read, list, update, delete, tags, account."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.request
from typing import Any

from .support import (
    ACCOUNT,
    REGION,
    ROLE,
    ClientFactory,
    Deploy,
    assert_shape,
    client_error,
    invoke_json,
    make_zip,
    wait_active,
)

ECHO = {"app.py": "def handler(event, context):\n    return {'echo': event}\n"}

CONFIG_APP = {
    "app.py": (
        "import os\n"
        "def handler(event, context):\n"
        "    return {\n"
        "        'which': 'handler',\n"
        "        'env': {k: os.environ.get(k) for k in event.get('keys', [])},\n"
        "        'memory': os.environ['AWS_LAMBDA_FUNCTION_MEMORY_SIZE'],\n"
        "        'remaining': context.get_remaining_time_in_millis(),\n"
        "    }\n"
        "def other(event, context):\n"
        "    return {'which': 'other', 'memory': context.memory_limit_in_mb}\n"
    )
}


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_create_function_reports_lambda_defaults(lam: Any, fn_name: str) -> None:
    code = make_zip(ECHO)
    created = lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": code},
        Tags={"team": "e2e"},
    )
    assert_shape("CreateFunction", created)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["State"] in ("Pending", "Active")
    assert created["FunctionName"] == fn_name
    assert created["FunctionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn_name}"
    assert created["Runtime"] == "python3.11"
    assert created["Handler"] == "app.handler"
    assert created["Role"] == ROLE
    assert created["Timeout"] == 3
    assert created["MemorySize"] == 128
    assert created["EphemeralStorage"] == {"Size": 512}
    assert created["PackageType"] == "Zip"
    assert created["Architectures"] == ["x86_64"]
    assert created["Version"] == "$LATEST"
    assert created["CodeSha256"] == _b64_sha256(code)
    assert created["CodeSize"] == len(code)
    assert created["RevisionId"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", created["LastModified"])

    lam.get_waiter("function_active_v2").wait(
        FunctionName=fn_name, WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )
    config = lam.get_function_configuration(FunctionName=fn_name)
    assert_shape("GetFunctionConfiguration", config)
    assert config["State"] == "Active"
    assert config["LastUpdateStatus"] == "Successful"
    assert config["CodeSha256"] == created["CodeSha256"]

    got = lam.get_function(FunctionName=fn_name)
    assert_shape("GetFunction", got)
    assert got["Configuration"]["FunctionArn"] == created["FunctionArn"]
    assert got["Configuration"]["State"] == "Active"
    assert got["Tags"] == {"team": "e2e"}
    location = got["Code"]["Location"]
    assert location.startswith("http")
    with urllib.request.urlopen(location, timeout=10) as response:  # no credentials at all
        assert response.status == 200
        assert response.read() == code

    # the same function by its ARN and by a partial ARN
    by_arn = lam.get_function_configuration(FunctionName=created["FunctionArn"])
    assert by_arn["FunctionName"] == fn_name
    by_partial = lam.get_function_configuration(FunctionName=f"{ACCOUNT}:function:{fn_name}")
    assert by_partial["FunctionName"] == fn_name


def test_code_location_is_signed(lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    tampered = re.sub(r"sig=[0-9a-f]+", "sig=" + "0" * 64, location)
    assert tampered != location
    try:
        urllib.request.urlopen(tampered, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 403
    else:
        raise AssertionError("a tampered code URL was served")


def test_list_functions_pages_with_marker(make_client: ClientFactory) -> None:
    # a region of its own, so the listing holds exactly this test's functions
    lam = make_client(region="eu-south-2")
    names = sorted(f"e2e-list-{i}-{hashlib.md5(str(i).encode()).hexdigest()[:6]}" for i in range(5))
    code = make_zip(ECHO)
    try:
        for name in names:
            lam.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Handler="app.handler",
                Role=ROLE,
                Code={"ZipFile": code},
            )
        seen: list[str] = []
        sizes: list[int] = []
        marker = None
        for _ in range(10):
            kwargs = {"MaxItems": 2} | ({"Marker": marker} if marker else {})
            page = lam.list_functions(**kwargs)
            assert_shape("ListFunctions", page)
            sizes.append(len(page["Functions"]))
            seen.extend(f["FunctionName"] for f in page["Functions"])
            for function in page["Functions"]:
                assert function["FunctionArn"].startswith("arn:aws:lambda:eu-south-2:")
            marker = page.get("NextMarker")
            if not marker:
                break
        assert sizes == [2, 2, 1]
        assert seen == names  # all, once each, in order

        paginated = [
            f["FunctionName"]
            for page in lam.get_paginator("list_functions").paginate(
                PaginationConfig={"PageSize": 2}
            )
            for f in page["Functions"]
        ]
        assert paginated == names
        assert len(lam.list_functions()["Functions"]) == 5
    finally:
        for name in names:
            lam.delete_function(FunctionName=name)
    assert lam.list_functions()["Functions"] == []


def test_update_function_code(lam: Any, deploy: Deploy) -> None:
    name = deploy({"app.py": "def handler(event, context):\n    return 'v1'\n"})
    assert invoke_json(lam, name)[0] == "v1"
    new_code = make_zip({"app.py": "def handler(event, context):\n    return 'v2'\n"})
    updated = lam.update_function_code(FunctionName=name, ZipFile=new_code)
    assert_shape("UpdateFunctionCode", updated)
    assert updated["LastUpdateStatus"] == "InProgress"
    assert updated["CodeSha256"] == _b64_sha256(new_code)
    assert updated["CodeSize"] == len(new_code)
    lam.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )
    config = lam.get_function_configuration(FunctionName=name)
    assert config["LastUpdateStatus"] == "Successful"
    assert config["RevisionId"] != ""
    assert invoke_json(lam, name)[0] == "v2"
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    with urllib.request.urlopen(location, timeout=10) as response:
        assert response.read() == new_code


def test_update_function_configuration(lam: Any, deploy: Deploy) -> None:
    name = deploy(CONFIG_APP, Description="before")
    before = invoke_json(lam, name, {"keys": ["GREETING"]})[0]
    assert before["env"] == {"GREETING": None}
    assert before["memory"] == "128"

    updated = lam.update_function_configuration(
        FunctionName=name,
        Environment={"Variables": {"GREETING": "hello", "OTHER": "x y z"}},
        MemorySize=256,
        Timeout=7,
        Description="after",
        EphemeralStorage={"Size": 1024},
    )
    assert_shape("UpdateFunctionConfiguration", updated)
    assert updated["LastUpdateStatus"] == "InProgress"
    assert updated["MemorySize"] == 256
    assert updated["Timeout"] == 7
    assert updated["Description"] == "after"
    assert updated["EphemeralStorage"] == {"Size": 1024}
    assert updated["Environment"] == {"Variables": {"GREETING": "hello", "OTHER": "x y z"}}
    lam.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )
    config = lam.get_function_configuration(FunctionName=name)
    assert config["LastUpdateStatus"] == "Successful"
    assert (config["MemorySize"], config["Timeout"], config["Description"]) == (256, 7, "after")
    assert config["EphemeralStorage"] == {"Size": 1024}

    after, response = invoke_json(lam, name, {"keys": ["GREETING", "OTHER"]}, LogType="Tail")
    assert after["env"] == {"GREETING": "hello", "OTHER": "x y z"}
    assert after["memory"] == "256"
    assert 3000 < after["remaining"] <= 7000
    assert "Memory Size: 256 MB" in base64.b64decode(response["LogResult"]).decode()

    lam.update_function_configuration(FunctionName=name, Handler="app.other")
    config = wait_active(lam, name)
    assert config["Handler"] == "app.other"
    assert config["Environment"]["Variables"]["GREETING"] == "hello"  # untouched members stay
    assert invoke_json(lam, name)[0] == {"which": "other", "memory": "256"}


def test_update_with_revision_id(lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    revision = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    with client_error("PreconditionFailedException", 412):
        lam.update_function_configuration(
            FunctionName=name, Description="stale", RevisionId="not-" + revision
        )
    updated = lam.update_function_configuration(
        FunctionName=name, Description="fresh", RevisionId=revision
    )
    assert updated["RevisionId"] != revision
    assert wait_active(lam, name)["Description"] == "fresh"
    with client_error("PreconditionFailedException", 412):
        lam.update_function_code(FunctionName=name, ZipFile=make_zip(ECHO), RevisionId=revision)


def test_update_conflicts_while_in_progress(lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO)
    lam.update_function_configuration(FunctionName=name, Description="one")
    with client_error("ResourceConflictException", 409):
        lam.update_function_configuration(FunctionName=name, Description="two")
    assert wait_active(lam, name)["Description"] == "one"


def test_delete_function(lam: Any, fn_name: str) -> None:
    lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(ECHO)},
    )
    wait_active(lam, fn_name)
    assert invoke_json(lam, fn_name, {"x": 1})[0] == {"echo": {"x": 1}}
    deleted = lam.delete_function(FunctionName=fn_name)
    assert_shape("DeleteFunction", deleted)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    with client_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=fn_name)
    with client_error("ResourceNotFoundException", 404):
        lam.get_function_configuration(FunctionName=fn_name)
    with client_error("ResourceNotFoundException", 404):
        lam.invoke(FunctionName=fn_name, Payload=b"{}")
    with client_error("ResourceNotFoundException", 404):
        lam.delete_function(FunctionName=fn_name)
    # the name is free again
    lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 'again'\n"})},
    )
    wait_active(lam, fn_name)
    assert invoke_json(lam, fn_name)[0] == "again"


def test_tags(lam: Any, deploy: Deploy) -> None:
    name = deploy(ECHO, Tags={"a": "1"})
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    listed = lam.list_tags(Resource=arn)
    assert_shape("ListTags", listed)
    assert listed["Tags"] == {"a": "1"}
    tagged = lam.tag_resource(Resource=arn, Tags={"b": "2", "c": "3"})
    assert_shape("TagResource", tagged)
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1", "b": "2", "c": "3"}
    untagged = lam.untag_resource(Resource=arn, TagKeys=["a", "c"])
    assert_shape("UntagResource", untagged)
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"b": "2"}
    missing = arn.replace(name, name + "-missing")
    with client_error("ResourceNotFoundException", 404):
        lam.list_tags(Resource=missing)
    with client_error("ResourceNotFoundException", 404):
        lam.tag_resource(Resource=missing, Tags={"x": "y"})


def test_get_account_settings(lam: Any, deploy: Deploy) -> None:
    deploy(ECHO)
    settings = lam.get_account_settings()
    assert_shape("GetAccountSettings", settings)
    limit = settings["AccountLimit"]
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["CodeSizeZipped"] == 50 * 1024 * 1024
    assert limit["CodeSizeUnzipped"] == 250 * 1024 * 1024
    assert limit["TotalCodeSize"] == 80_530_636_800  # AWS: 75 GB
    assert 0 < limit["UnreservedConcurrentExecutions"] <= 1000
    usage = settings["AccountUsage"]
    assert usage["FunctionCount"] >= 1
    assert usage["TotalCodeSize"] >= len(make_zip(ECHO))

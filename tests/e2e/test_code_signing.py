"""Code signing configs, runtime management, ListFunctions FunctionVersion=ALL and the
operations kindling refuses, through a real server with boto3.

Each test names the AWS API reference page whose behaviour it checks.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from .support import (
    ACCOUNT,
    REGION,
    ROLE,
    ClientFactory,
    Deploy,
    assert_shape,
    client_error,
    make_zip,
    wait_active,
)

APP = {"app.py": "def handler(event, context):\n    return 'ok'\n"}
PROFILE = f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/kindling/abcdefghij"
CSC_ARN = re.compile(rf"^arn:aws:lambda:{REGION}:{ACCOUNT}:code-signing-config:csc-[a-z0-9]{{17}}$")


def _config(lam: Any, policy: str = "Warn", **extra: Any) -> dict[str, Any]:
    created = lam.create_code_signing_config(
        AllowedPublishers={"SigningProfileVersionArns": [PROFILE]},
        CodeSigningPolicies={"UntrustedArtifactOnDeployment": policy},
        **extra,
    )
    assert_shape("CreateCodeSigningConfig", created)
    config: dict[str, Any] = created["CodeSigningConfig"]
    return config


def test_a_code_signing_config_is_created_read_updated_listed_and_deleted(lam: Any) -> None:
    """API_CreateCodeSigningConfig, API_GetCodeSigningConfig, API_UpdateCodeSigningConfig,
    API_ListCodeSigningConfigs, API_DeleteCodeSigningConfig (docs.aws.amazon.com/lambda/
    latest/api/): the CodeSigningConfig shape, Warn by default (API_CodeSigningPolicies),
    204 on delete and ResourceNotFoundException after it."""
    created = lam.create_code_signing_config(
        Description="first", AllowedPublishers={"SigningProfileVersionArns": [PROFILE]}
    )["CodeSigningConfig"]
    arn = created["CodeSigningConfigArn"]
    assert CSC_ARN.match(arn), arn
    assert arn.endswith(created["CodeSigningConfigId"])
    assert created["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"}
    assert created["AllowedPublishers"] == {"SigningProfileVersionArns": [PROFILE]}
    assert created["Description"] == "first"
    assert lam.get_code_signing_config(CodeSigningConfigArn=arn)["CodeSigningConfig"] == created

    updated = lam.update_code_signing_config(
        CodeSigningConfigArn=arn,
        Description="second",
        CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Enforce"},
    )["CodeSigningConfig"]
    assert updated["Description"] == "second"
    assert updated["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"}
    assert updated["AllowedPublishers"] == created["AllowedPublishers"]

    listed = [
        c["CodeSigningConfigArn"]
        for page in lam.get_paginator("list_code_signing_configs").paginate(
            PaginationConfig={"PageSize": 1}
        )
        for c in page["CodeSigningConfigs"]
    ]
    assert arn in listed

    deleted = lam.delete_code_signing_config(CodeSigningConfigArn=arn)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with client_error("ResourceNotFoundException", 404):
        lam.get_code_signing_config(CodeSigningConfigArn=arn)


def test_a_function_binds_to_a_config_and_the_config_cannot_go_while_used(
    lam: Any, deploy: Deploy
) -> None:
    """API_GetFunctionCodeSigningConfig (an empty CodeSigningConfigArn, minimum length 0,
    for a function with none), API_PutFunctionCodeSigningConfig,
    API_ListFunctionsByCodeSigningConfig, API_DeleteFunctionCodeSigningConfig, and
    API_DeleteCodeSigningConfig: "You can delete the code signing configuration only if
    no function is using it" (ResourceConflictException)."""
    name = deploy(APP)
    none = lam.get_function_code_signing_config(FunctionName=name)
    assert_shape("GetFunctionCodeSigningConfig", none)
    assert (none["CodeSigningConfigArn"], none["FunctionName"]) == ("", name)

    arn = _config(lam)["CodeSigningConfigArn"]
    put = lam.put_function_code_signing_config(CodeSigningConfigArn=arn, FunctionName=name)
    assert (put["CodeSigningConfigArn"], put["FunctionName"]) == (arn, name)
    got = lam.get_function_code_signing_config(FunctionName=name)
    assert got["CodeSigningConfigArn"] == arn
    using = lam.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)
    assert using["FunctionArns"] == [f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"]

    with client_error("ResourceConflictException", 409):
        lam.delete_code_signing_config(CodeSigningConfigArn=arn)

    lam.delete_function_code_signing_config(FunctionName=name)
    assert lam.get_function_code_signing_config(FunctionName=name)["CodeSigningConfigArn"] == ""
    assert lam.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == []
    lam.delete_code_signing_config(CodeSigningConfigArn=arn)


def test_a_config_that_does_not_exist_is_named_as_such(lam: Any, deploy: Deploy) -> None:
    """API_PutFunctionCodeSigningConfig and API_CreateFunction list
    CodeSigningConfigNotFoundException (404) for a config that does not exist."""
    name = deploy(APP)
    missing = f"arn:aws:lambda:{REGION}:{ACCOUNT}:code-signing-config:csc-0123456789abcdefg"
    with client_error("CodeSigningConfigNotFoundException", 404):
        lam.put_function_code_signing_config(CodeSigningConfigArn=missing, FunctionName=name)
    with client_error("CodeSigningConfigNotFoundException", 404):
        lam.create_function(
            FunctionName=f"{name}-2",
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(APP)},
            CodeSigningConfigArn=missing,
        )


def test_enforce_refuses_unsigned_code_and_warn_deploys_it(
    lam: Any, fn_name: str, deploy: Deploy
) -> None:
    """API_CodeSigningPolicies: "If you set the policy to Enforce, Lambda blocks the
    deployment request if signature validation checks fail. If you set the policy to
    Warn, Lambda allows the deployment"; CodeVerificationFailedException (400) is the
    error for a blocked deployment (API_CreateFunction, API_UpdateFunctionCode).
    kindling signs nothing, so Enforce blocks every deployment and says why."""
    enforce = _config(lam, "Enforce")["CodeSigningConfigArn"]
    with client_error("CodeVerificationFailedException", 400) as info:
        lam.create_function(
            FunctionName=fn_name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(APP)},
            CodeSigningConfigArn=enforce,
        )
    assert "no AWS Signer" in info.value.response["Error"]["Message"]
    with client_error("ResourceNotFoundException", 404):
        lam.get_function(FunctionName=fn_name)

    warn = _config(lam, "Warn")["CodeSigningConfigArn"]
    lam.create_function(
        FunctionName=fn_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(APP)},
        CodeSigningConfigArn=warn,
    )
    wait_active(lam, fn_name)
    assert lam.get_function_code_signing_config(FunctionName=fn_name)["CodeSigningConfigArn"] == (
        warn
    )
    lam.update_function_code(FunctionName=fn_name, ZipFile=make_zip(APP))
    wait_active(lam, fn_name)

    lam.put_function_code_signing_config(CodeSigningConfigArn=enforce, FunctionName=fn_name)
    with client_error("CodeVerificationFailedException", 400):
        lam.update_function_code(FunctionName=fn_name, ZipFile=make_zip(APP))
    lam.delete_function(FunctionName=fn_name)  # and its binding with it
    lam.delete_code_signing_config(CodeSigningConfigArn=enforce)
    lam.delete_code_signing_config(CodeSigningConfigArn=warn)


def test_a_code_signing_config_is_tagged(lam: Any) -> None:
    """API_CreateCodeSigningConfig takes Tags; API_TagResource, API_ListTags and
    API_UntagResource take a code signing config's ARN as well as a function's."""
    arn = _config(lam, Tags={"team": "a"})["CodeSigningConfigArn"]
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "a"}
    lam.tag_resource(Resource=arn, Tags={"stage": "dev"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "a", "stage": "dev"}
    lam.untag_resource(Resource=arn, TagKeys=["team"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"stage": "dev"}
    lam.delete_code_signing_config(CodeSigningConfigArn=arn)
    with client_error("ResourceNotFoundException", 404):
        lam.list_tags(Resource=arn)


def test_a_function_names_the_runtime_version_it_runs_on(lam: Any, deploy: Deploy) -> None:
    """API_RuntimeVersionConfig in GetFunction's configuration; API_GetRuntimeManagementConfig
    and API_PutRuntimeManagementConfig: Auto by default, "If the runtime update mode is
    Manual, the ARN is returned, otherwise null is returned"."""
    name = deploy(APP, runtime="python3.12")
    config = lam.get_function(FunctionName=name)["Configuration"]
    runtime_arn = config["RuntimeVersionConfig"]["RuntimeVersionArn"]
    assert re.match(rf"^arn:aws:lambda:{REGION}::runtime:[0-9a-f]{{64}}$", runtime_arn)
    other = deploy(APP, runtime="python3.11")
    other_arn = lam.get_function_configuration(FunctionName=other)["RuntimeVersionConfig"][
        "RuntimeVersionArn"
    ]
    assert other_arn != runtime_arn  # another interpreter build

    got = lam.get_runtime_management_config(FunctionName=name)
    assert_shape("GetRuntimeManagementConfig", got)
    assert got["UpdateRuntimeOn"] == "Auto"
    assert got["FunctionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    assert "RuntimeVersionArn" not in got

    put = lam.put_runtime_management_config(
        FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn=runtime_arn
    )
    assert (put["UpdateRuntimeOn"], put["RuntimeVersionArn"]) == ("Manual", runtime_arn)
    assert lam.get_runtime_management_config(FunctionName=name)["RuntimeVersionArn"] == (
        runtime_arn
    )
    with client_error("InvalidParameterValueException", 400) as info:
        lam.put_runtime_management_config(
            FunctionName=name, UpdateRuntimeOn="Manual", RuntimeVersionArn=other_arn
        )
    assert runtime_arn in info.value.response["Error"]["Message"]  # names the one it has
    with client_error("InvalidParameterValueException", 400):
        lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="Manual")
    lam.put_runtime_management_config(FunctionName=name, UpdateRuntimeOn="FunctionUpdate")
    assert lam.get_runtime_management_config(FunctionName=name)["UpdateRuntimeOn"] == (
        "FunctionUpdate"
    )
    with client_error("ResourceNotFoundException", 404):
        lam.get_runtime_management_config(FunctionName=f"{name}-missing")


def test_list_functions_all_versions(make_client: ClientFactory) -> None:
    """API_ListFunctions: "Set FunctionVersion to ALL to include all published versions
    of each function in addition to the unpublished version", at most MaxItems a page;
    and ListFunctions "returns a subset of the FunctionConfiguration fields" (no State,
    LastUpdateStatus or RuntimeVersionConfig: those are GetFunction's)."""
    lam = make_client(region="eu-south-2")  # a region of this test's functions alone
    names = []
    for n in range(2):
        name = f"all-{n}-{uuid.uuid4().hex[:8]}"
        lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(APP)},
        )
        wait_active(lam, name)
        lam.publish_version(FunctionName=name)
        lam.update_function_configuration(FunctionName=name, MemorySize=256)
        wait_active(lam, name)
        lam.publish_version(FunctionName=name)
        names.append(name)
    try:
        plain = lam.list_functions()["Functions"]
        assert [(f["FunctionName"], f["Version"]) for f in plain] == [(n, "$LATEST") for n in names]
        for listed in plain:
            assert not {"State", "LastUpdateStatus", "RuntimeVersionConfig"} & set(listed)
        seen = []
        for page in lam.get_paginator("list_functions").paginate(
            FunctionVersion="ALL", PaginationConfig={"PageSize": 2}
        ):
            assert len(page["Functions"]) <= 2
            seen += [(f["FunctionName"], f["Version"]) for f in page["Functions"]]
        assert seen == [(n, v) for n in names for v in ("$LATEST", "1", "2")]

        # "MasterRegion: For Lambda@Edge functions, the AWS Region of the master
        # function ... If specified, you must set FunctionVersion to ALL": kindling makes
        # no Lambda@Edge replicas, so there are none to list.
        edge = lam.list_functions(FunctionVersion="ALL", MasterRegion="us-east-1")
        assert edge["Functions"] == []
        with client_error("InvalidParameterValueException", 400):
            lam.list_functions(MasterRegion="us-east-1")
    finally:
        for name in names:
            lam.delete_function(FunctionName=name)


def test_scaling_configs_and_capacity_providers_are_refused_clearly(
    lam: Any, deploy: Deploy
) -> None:
    """API_GetFunctionScalingConfig, API_PutFunctionScalingConfig and the capacity
    provider operations need Lambda Managed Instances: kindling answers each with an
    InvalidParameterValueException naming what it does not support."""
    name = deploy(APP)
    with client_error("InvalidParameterValueException", 400) as info:
        lam.get_function_scaling_config(FunctionName=name, Qualifier="1")
    assert "not supported by kindling" in info.value.response["Error"]["Message"]
    with client_error("InvalidParameterValueException", 400):
        lam.put_function_scaling_config(
            FunctionName=name,
            Qualifier="1",
            FunctionScalingConfig={"MinExecutionEnvironments": 1},
        )
    with client_error("InvalidParameterValueException", 400) as info:
        lam.list_capacity_providers()
    assert "capacity providers" in info.value.response["Error"]["Message"]


def test_recursion_config_is_kept(lam: Any, deploy: Deploy) -> None:
    """API_GetFunctionRecursionConfig / API_PutFunctionRecursionConfig: RecursiveLoop is
    Allow or Terminate, Terminate by default. (No kindling function can be triggered by
    SQS, SNS or S3 yet, so no loop through them can form: either setting holds.)"""
    name = deploy(APP)
    got = lam.get_function_recursion_config(FunctionName=name)
    assert_shape("GetFunctionRecursionConfig", got)
    assert got["RecursiveLoop"] == "Terminate"
    put = lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Allow")
    assert put["RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Allow"
    lam.put_function_recursion_config(FunctionName=name, RecursiveLoop="Terminate")
    assert lam.get_function_recursion_config(FunctionName=name)["RecursiveLoop"] == "Terminate"
    with client_error("ResourceNotFoundException", 404):
        lam.get_function_recursion_config(FunctionName=f"{name}-missing")

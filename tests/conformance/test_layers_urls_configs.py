"""Layers, function URL configs and event invoke configs answered as the API reference
documents them (docs.aws.amazon.com/lambda/latest/api/<page>.html)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from ..e2e.support import ACCOUNT, REGION, Deploy, client_error, make_zip

ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:"
APP = {"app.py": "def handler(event, context):\n    return event\n"}
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000"


def test_publish_layer_version_answers_201_with_its_members(lam: Any) -> None:
    """API_PublishLayerVersion, "Response Syntax": 201 with LayerArn, LayerVersionArn,
    Version, Content (Location, CodeSha256, CodeSize), CreatedDate (ISO 8601
    YYYY-MM-DDThh:mm:ss.sTZD), and what was sent back (Description, CompatibleRuntimes,
    LicenseInfo); API_GetLayerVersion of a version that does not exist: 404."""
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    zipped = make_zip({"python/shared.py": "X = 1\n"})
    layer = lam.publish_layer_version(
        LayerName=name,
        Content={"ZipFile": zipped},
        CompatibleRuntimes=["python3.11"],
        Description="shared code",
        LicenseInfo="MIT",
    )
    try:
        assert layer["ResponseMetadata"]["HTTPStatusCode"] == 201
        assert layer["LayerArn"] == f"{ARN}layer:{name}"
        assert layer["LayerVersionArn"] == f"{ARN}layer:{name}:1"
        assert layer["Version"] == 1
        assert layer["Content"]["CodeSize"] == len(zipped)
        assert layer["Content"]["Location"]
        assert re.fullmatch(TIMESTAMP, layer["CreatedDate"])
        assert layer["Description"] == "shared code"
        assert layer["CompatibleRuntimes"] == ["python3.11"]
        assert layer["LicenseInfo"] == "MIT"
        with client_error("ResourceNotFoundException", 404) as info:
            lam.get_layer_version(LayerName=name, VersionNumber=9)
        assert info.value.response["Error"]["Message"] == (
            "The resource you requested does not exist."
        )
    finally:
        lam.delete_layer_version(LayerName=name, VersionNumber=1)


def test_a_missing_layer_is_named(lam: Any, deploy: Deploy) -> None:
    """API_UpdateFunctionConfiguration, "Layers": a layer version that does not exist is
    InvalidParameterValueException "Layer version ARN does not exist."."""
    name = deploy(APP)
    missing = f"{ARN}layer:conformance-nobody:9"
    with client_error("InvalidParameterValueException", 400) as info:
        lam.update_function_configuration(FunctionName=name, Layers=[missing])
    assert info.value.response["Error"]["Message"] == f"Layer version {missing} does not exist."


def test_function_url_config_answers(lam: Any, deploy: Deploy) -> None:
    """API_CreateFunctionUrlConfig, "Response Syntax": 201 with FunctionUrl, FunctionArn,
    AuthType, CreationTime, InvokeMode (BUFFERED by default); a second one for the same
    function: ResourceConflictException with AWS's sentence."""
    name = deploy(APP)
    created = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionArn"] == f"{ARN}function:{name}"
    assert created["AuthType"] == "NONE"
    assert created["InvokeMode"] == "BUFFERED"
    assert re.fullmatch(
        r"https?://[a-z0-9]{32}\.lambda-url\.[a-z0-9-]+\.\S+/", created["FunctionUrl"]
    )
    with client_error("ResourceConflictException", 409) as info:
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert info.value.response["Error"]["Message"] == (
        f"Failed to create function url config for [functionArn = {ARN}function:{name}]. "
        "Error message:  FunctionUrlConfig exists for this Lambda function"
    )


def test_event_invoke_config_answers(lam: Any, deploy: Deploy) -> None:
    """API_PutFunctionEventInvokeConfig, "Response Syntax": 200 with LastModified,
    FunctionArn (qualified with $LATEST), MaximumRetryAttempts, DestinationConfig;
    API_GetFunctionEventInvokeConfig without one: ResourceNotFoundException "The function
    ARN doesn't have an EventInvokeConfig", the ARN qualified as the config's FunctionArn
    is ($LATEST for an unqualified name)."""
    name = deploy(APP)
    with client_error("ResourceNotFoundException", 404) as info:
        lam.get_function_event_invoke_config(FunctionName=name)
    assert info.value.response["Error"]["Message"] == (
        f"The function {ARN}function:{name}:$LATEST doesn't have an EventInvokeConfig"
    )
    put = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert put["FunctionArn"] == f"{ARN}function:{name}:$LATEST"
    assert put["MaximumRetryAttempts"] == 1
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}

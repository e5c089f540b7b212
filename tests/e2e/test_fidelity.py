"""Members of a function's configuration that tools read back and compare with what
they sent (Terraform plans a change for every one that differs)."""

from __future__ import annotations

from typing import Any

from .support import Deploy, invoke_json, wait_active

LOG_GROUP_APP = {
    "app.py": (
        "import os\n"
        "def handler(event, context):\n"
        "    return [context.log_group_name, os.environ['AWS_LAMBDA_LOG_GROUP_NAME']]\n"
    )
}


def test_a_custom_log_group_is_kept_and_named_to_the_function(lam: Any, deploy: Deploy) -> None:
    """API_LoggingConfig (docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html):
    "LogGroup - The name of the Amazon CloudWatch log group the
    function sends logs to. By default, Lambda functions send logs to a default log group
    named /aws/lambda/<function name>." kindling keeps every function's logs itself
    (``kindling logs``); the group it is given is its name, in the configuration, the
    environment (AWS_LAMBDA_LOG_GROUP_NAME) and the context, as on AWS."""
    name = deploy(LOG_GROUP_APP, LoggingConfig={"LogFormat": "Text", "LogGroup": "/custom/a"})
    config = lam.get_function_configuration(FunctionName=name)
    assert config["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/custom/a"}
    assert invoke_json(lam, name)[0] == ["/custom/a", "/custom/a"]

    lam.update_function_configuration(
        FunctionName=name, LoggingConfig={"LogFormat": "Text", "LogGroup": "/custom/b"}
    )
    wait_active(lam, name)
    assert lam.get_function(FunctionName=name)["Configuration"]["LoggingConfig"]["LogGroup"] == (
        "/custom/b"
    )
    assert invoke_json(lam, name)[0] == ["/custom/b", "/custom/b"]
    lam.update_function_configuration(FunctionName=name, Description="other")  # kept
    wait_active(lam, name)
    published = lam.publish_version(FunctionName=name)
    assert published["LoggingConfig"]["LogGroup"] == "/custom/b"

    plain = deploy(LOG_GROUP_APP)
    default = f"/aws/lambda/{plain}"
    assert lam.get_function_configuration(FunctionName=plain)["LoggingConfig"] == {
        "LogFormat": "Text",
        "LogGroup": default,
    }
    assert invoke_json(lam, plain)[0] == [default, default]

"""Functions that call the platform (issue 19, ADR 0035): boto3 from the managed runtime,
no bundling, pointed by ``AWS_ENDPOINT_URL`` at kindling's API inside the sandbox.

As AWS documents for its Python runtimes ("Building Lambda functions with Python": the
runtime includes the AWS SDK for Python; a copy in the deployment package takes
precedence), and for the SDK's configuration ("Service-specific endpoints": the
``AWS_ENDPOINT_URL`` environment variable)."""

from __future__ import annotations

import json
from typing import Any

from .support import Deploy, function_log, invoke_json, wait_for

CALLEE = """\
def handler(event, context):
    return {"doubled": event["n"] * 2}
"""

CALLER = """\
import json, os
import boto3


def handler(event, context):
    client = boto3.client("lambda")
    if event.get("async"):
        answer = client.invoke(
            FunctionName=event["callee"], InvocationType="Event", Payload=json.dumps({"n": 1})
        )
        return {"status": answer["StatusCode"]}
    answer = client.invoke(FunctionName=event["callee"], Payload=json.dumps({"n": event["n"]}))
    return {
        "answer": json.loads(answer["Payload"].read()),
        "boto3": boto3.__file__,
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
    }
"""


def test_a_function_invokes_another_with_the_runtimes_boto3(deploy: Deploy, lam: Any) -> None:
    callee = deploy({"app.py": CALLEE})
    caller = deploy({"app.py": CALLER}, Timeout=30)
    out, _ = invoke_json(lam, caller, {"callee": callee, "n": 21})
    assert out["answer"] == {"doubled": 42}
    assert out["boto3"].startswith("/var/runtime/sdk/")  # the runtime's, not bundled
    assert out["endpoint"] == "http://127.0.0.1:9000"


def test_an_event_invoke_from_inside_is_accepted(deploy: Deploy, lam: Any) -> None:
    marker = deploy({"app.py": "def handler(e, c):\n    print('CALLED-BY-A-FUNCTION')\n"})
    caller = deploy({"app.py": CALLER}, Timeout=30)
    assert invoke_json(lam, caller, {"callee": marker, "async": True})[0] == {"status": 202}

    wait_for(
        lambda: "CALLED-BY-A-FUNCTION" in function_log(lam.meta.endpoint_url, marker), timeout=60
    )


def test_a_function_with_no_network_still_reaches_the_api(deploy: Deploy, lam: Any) -> None:
    callee = deploy({"app.py": CALLEE})
    caller = deploy({"app.py": CALLER}, Timeout=30, Tags={"kindling:network": "none"})
    assert invoke_json(lam, caller, {"callee": callee, "n": 2})[0]["answer"] == {"doubled": 4}


def test_a_bundled_boto3_and_a_users_endpoint_win(deploy: Deploy, lam: Any) -> None:
    own = deploy(
        {
            "boto3/__init__.py": "MINE = True\n",
            "app.py": (
                "import os, boto3\n"
                "def handler(e, c):\n"
                "    return {'mine': getattr(boto3, 'MINE', False),"
                " 'endpoint': os.environ['AWS_ENDPOINT_URL']}\n"
            ),
        },
        Environment={"Variables": {"AWS_ENDPOINT_URL": "http://example.invalid:1"}},
    )
    assert invoke_json(lam, own, {})[0] == {"mine": True, "endpoint": "http://example.invalid:1"}


def test_an_unsigned_call_from_inside_is_refused_as_aws_does(deploy: Deploy, lam: Any) -> None:
    """The path is kindling's API, not a way around it: no signature, no access."""
    probe = deploy(
        {
            "app.py": (
                "import json, urllib.request, urllib.error\n"
                "def handler(e, c):\n"
                "    url = 'http://127.0.0.1:9000/2015-03-31/functions/'\n"
                "    try:\n"
                "        urllib.request.urlopen(url, timeout=10)\n"
                "    except urllib.error.HTTPError as err:\n"
                "        return {'status': err.code, 'body': json.loads(err.read())}\n"
                "    return {'status': 200}\n"
            )
        },
        Timeout=30,
    )
    out, _ = invoke_json(lam, probe, {})
    assert out["status"] == 403, out
    assert json.dumps(out["body"])  # an AWS error shape, not a bare socket error

"""A caller that hangs up mid-invoke: the invocation still completes, the function still serves."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .support import Deploy, Server, function_log, raw_request, wait_for

SLEEPY = {
    "app.py": (
        "import time\nCOUNT = 0\n"
        "def handler(event, context):\n"
        "    global COUNT\n"
        "    COUNT += 1\n"
        "    time.sleep(event.get('s', 0))\n"
        "    print('finished', context.aws_request_id)\n"
        "    return COUNT\n"
    )
}


def test_a_caller_hanging_up_does_not_break_the_function(
    server: Server, deploy: Deploy, lam: Any
) -> None:
    name = deploy(SLEEPY)
    path = f"/2015-03-31/functions/{name}/invocations"
    with pytest.raises(TimeoutError):
        raw_request(server.endpoint, "POST", path, json.dumps({"s": 0.5}).encode(), timeout=0.1)
    wait_for(lambda: "finished" in function_log(server.endpoint, name), timeout=10)
    for expected in (2, 3, 4):  # the same warm sandbox, after the abandoned invocation
        out = lam.invoke(FunctionName=name, Payload=b"{}")
        assert "FunctionError" not in out
        assert json.loads(out["Payload"].read()) == expected

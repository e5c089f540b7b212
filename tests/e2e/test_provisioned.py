"""Provisioned concurrency through boto3: READY sandboxes, initialization type, spill-over."""

from __future__ import annotations

import json
import threading
from typing import Any

from .support import Deploy, assert_shape, client_error, wait_for

APP = {
    "app.py": (
        "import os, time\n"
        "def handler(event, context):\n"
        "    time.sleep(event.get('s', 0))\n"
        "    return os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']\n"
    )
}


def test_provisioned_sandboxes_serve_first_then_spill_over(lam: Any, deploy: Deploy) -> None:
    name = deploy(APP)
    lam.publish_version(FunctionName=name)
    with client_error("InvalidParameterValueException", 400):
        lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    with client_error("ProvisionedConcurrencyConfigNotFoundException", 404):
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    put = lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    assert_shape("PutProvisionedConcurrencyConfig", put)
    assert put["Status"] == "IN_PROGRESS"
    ready = wait_for(
        lambda: (
            c
            if (c := lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1"))[
                "Status"
            ]
            == "READY"
            else None
        ),
        timeout=30,
    )
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2

    kinds: list[str] = []

    def call() -> None:
        out = lam.invoke(FunctionName=name, Qualifier="1", Payload=b'{"s": 0.8}')
        kinds.append(json.loads(out["Payload"].read()))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(kinds) == ["on-demand", "provisioned-concurrency", "provisioned-concurrency"]

    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)
    assert_shape("ListProvisionedConcurrencyConfigs", listed)
    assert [
        c["FunctionArn"].rsplit(":", 1)[1] for c in listed["ProvisionedConcurrencyConfigs"]
    ] == ["1"]
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    with client_error("ProvisionedConcurrencyConfigNotFoundException", 404):
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")

"""A retired version's sandboxes go at once, not at the keep-alive: the old revision's
on an update, every version's on DeleteFunction, and a sandbox that was busy at that
moment as soon as its invocation ends. A deleted function's metric series go with it
and do not come back when an invocation that was running then finishes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.hostcheck import processes_with

from .support import (
    METRICS_ON_WORKERS,
    ROLE,
    ClientFactory,
    Deploy,
    Server,
    make_zip,
    wait_active,
    wait_for,
)
from .test_metrics import scrape


def _marked_app() -> tuple[str, dict[str, str]]:
    """A function whose sandbox runs a ``sleep MARKER`` process: the sandbox is alive
    exactly while that process is."""
    marker = f"{time.time() % 1000:.6f}{uuid.uuid4().int % 1000}"
    app = (
        "import subprocess, time\n"
        f"subprocess.Popen(['sleep', '{marker}'])\n"
        "def handler(event, context):\n"
        "    time.sleep(event.get('hold', 0))\n"
        "    return 1\n"
    )
    return marker, {"app.py": app}


def _series_of(server: Server, name: str) -> list[str]:
    _, found = scrape(server)
    return sorted({sample for sample, labels in found if dict(labels).get("function") == name})


def test_update_destroys_the_old_revisions_sandboxes(lam: Any, deploy: Deploy) -> None:
    marker, files = _marked_app()
    name = deploy(files, Timeout=30)
    lam.invoke(FunctionName=name, Payload=b"{}")
    assert processes_with(marker), "the sandbox's marker process should be running"
    lam.update_function_configuration(FunctionName=name, Description="new revision")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    wait_for(lambda: not processes_with(marker), timeout=10)


@pytest.mark.single_only(METRICS_ON_WORKERS)
def test_delete_destroys_every_versions_sandboxes_and_series(
    server: Server, lam: Any, deploy: Deploy
) -> None:
    marker, files = _marked_app()
    name = deploy(files, Timeout=30)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.invoke(FunctionName=name, Qualifier=version, Payload=b"{}")
    lam.invoke(FunctionName=name, Payload=b"{}")
    assert len(processes_with(marker)) == 2, "one sandbox for the version, one for $LATEST"
    assert "kindling_invocations_total" in _series_of(server, name)
    lam.delete_function(FunctionName=name)
    wait_for(lambda: not processes_with(marker), timeout=10)
    wait_for(lambda: not _series_of(server, name), timeout=10)


def test_delete_destroys_provisioned_sandboxes_and_forgets_their_config(
    private_server: Server, make_client: ClientFactory
) -> None:
    private_server.start()
    lam: Any = make_client(endpoint=private_server.endpoint)
    marker, files = _marked_app()
    lam.create_function(
        FunctionName="kept",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip(files)},
    )
    wait_active(lam, "kept")
    version = lam.publish_version(FunctionName="kept")["Version"]
    lam.put_provisioned_concurrency_config(
        FunctionName="kept", Qualifier=version, ProvisionedConcurrentExecutions=2
    )
    wait_for(lambda: len(processes_with(marker)) == 2, timeout=30)
    lam.delete_function(FunctionName="kept")  # provisioned sandboxes are never reaped...
    wait_for(lambda: not processes_with(marker), timeout=10)  # ...so they must go now
    private_server.stop_cleanly()
    private_server.start()  # nothing of the deleted function is provisioned again
    time.sleep(2)
    assert not processes_with(marker)
    assert "kept" not in private_server.log_tail(20000).split("kindling listening")[-1]
    private_server.stop_cleanly()


def _busy(server: Server, name: str) -> bool:
    """Whether an invocation of ``name`` is admitted and running now."""
    _, found = scrape(server)
    return any(
        sample == "kindling_concurrent_executions" and dict(labels).get("function") == name
        for (sample, labels), value in found.items()
        if value
    )


def _while_busy(
    server: Server,
    lam: Any,
    name: str,
    marker: str,
    change: Callable[[], None],
    qualifier: str = "$LATEST",
) -> None:
    """Runs ``change`` while an invocation of ``name`` holds its sandbox, and checks that
    the invocation still ends well (a running invocation is never cut)."""
    answers: list[Any] = []

    def call() -> None:
        try:
            answers.append(
                lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=b'{"hold": 3}')
            )
        except Exception as exc:  # shown by the assertion below
            answers.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        # admitted, and its sandbox has run init (the marker process) and holds it
        wait_for(lambda: _busy(server, name) and processes_with(marker), timeout=20)
        time.sleep(0.5)
        change()
    finally:
        caller.join(60)
    assert answers and not isinstance(answers[0], Exception), answers
    assert answers[0]["StatusCode"] == 200, answers
    assert "FunctionError" not in answers[0], answers[0]["Payload"].read()


def test_a_sandbox_busy_at_delete_is_destroyed_when_it_finishes(
    server: Server, lam: Any, deploy: Deploy
) -> None:
    marker, files = _marked_app()
    name = deploy(files, Timeout=30)
    version = lam.publish_version(FunctionName=name)["Version"]
    _while_busy(server, lam, name, marker, lambda: lam.delete_function(FunctionName=name), version)
    wait_for(lambda: not processes_with(marker), timeout=10)  # keep-alive is 10 min
    wait_for(lambda: not _series_of(server, name), timeout=10)
    time.sleep(0.5)  # nothing brings them back once the last invocation has settled
    assert not _series_of(server, name)


def test_a_sandbox_busy_at_an_update_is_destroyed_when_it_finishes(
    server: Server, lam: Any, deploy: Deploy
) -> None:
    marker, files = _marked_app()
    name = deploy(files, Timeout=30)

    def update() -> None:
        lam.update_function_code(FunctionName=name, ZipFile=make_zip(_marked_app()[1]))

    _while_busy(server, lam, name, marker, update)
    wait_for(lambda: not processes_with(marker), timeout=10)


def test_a_sandbox_busy_at_a_configuration_update_is_destroyed_when_it_finishes(
    server: Server, lam: Any, deploy: Deploy
) -> None:
    marker, files = _marked_app()
    name = deploy(files, Timeout=30)

    def update() -> None:
        lam.update_function_configuration(FunctionName=name, Description="changed")

    _while_busy(server, lam, name, marker, update)
    wait_for(lambda: not processes_with(marker), timeout=10)

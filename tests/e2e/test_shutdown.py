"""SIGTERM drains a real ``kindling serve``: no new connection or request is taken,
running invocations finish within the grace period and get their own answers, and what
outlives the grace is cut with Lambda's service error (ServiceException, 5xx), never
reported as the function's own error."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
from typing import Any

from .support import ROLE, ClientFactory, Server, make_zip, wait_active, wait_for
from .test_metrics import scrape

SLEEPS = """\
import time


def handler(event, context):
    time.sleep(event["sleep"])
    return {"slept": event["sleep"]}
"""


def _deploy_sleeper(server: Server, make_client: ClientFactory) -> Any:
    server.start()
    lam: Any = make_client(endpoint=server.endpoint)
    lam.create_function(
        FunctionName="sleeper",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Timeout=60,
        Code={"ZipFile": make_zip({"app.py": SLEEPS})},
    )
    wait_active(lam, "sleeper")
    return lam


def _invoke_in_background(lam: Any, seconds: float) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def call() -> None:
        try:
            outcome.append(
                lam.invoke(FunctionName="sleeper", Payload=json.dumps({"sleep": seconds}).encode())
            )
        except Exception as exc:  # the assertions say what was expected
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    return caller, outcome


def _running(server: Server) -> bool:
    _, found = scrape(server)
    return any(
        name == "kindling_concurrent_executions" and dict(labels).get("function") == "sleeper"
        for (name, labels), value in found.items()
        if value
    )


def _refuses_connections(server: Server) -> bool:
    try:
        socket.create_connection((server.host, server.port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_lets_running_invocations_finish_and_takes_nothing_new(
    private_server: Server, make_client: ClientFactory
) -> None:
    lam = _deploy_sleeper(private_server, make_client)
    lam.invoke(FunctionName="sleeper", Payload=b'{"sleep": 0}')  # warm: no cold start below
    kept = http.client.HTTPConnection("127.0.0.1", private_server.port, timeout=30)
    kept.request("GET", "/metrics")  # a keep-alive connection opened before the drain
    assert kept.getresponse().read()
    caller, outcome = _invoke_in_background(lam, 5)
    wait_for(lambda: _running(private_server), timeout=20)
    assert private_server.proc is not None
    private_server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: _refuses_connections(private_server), timeout=10)
    kept.request("GET", "/metrics")
    refused = kept.getresponse()
    assert refused.status >= 500, refused.status
    assert refused.getheader("x-amzn-ErrorType") == "ServiceException"
    refused.read()
    kept.close()
    caller.join(60)
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert "FunctionError" not in outcome[0], outcome[0]
    assert json.loads(outcome[0]["Payload"].read()) == {"slept": 5}
    assert private_server.proc.wait(30) == 0
    private_server.stop_cleanly()  # exited 0 and left no runtime process


def test_what_outlives_the_grace_is_cut_as_a_service_error(
    private_server: Server, make_client: ClientFactory
) -> None:
    private_server.extra_args = ("--shutdown-grace", "1")  # the flag; the env is the same
    lam = _deploy_sleeper(private_server, make_client)
    caller, outcome = _invoke_in_background(lam, 30)
    wait_for(lambda: _running(private_server), timeout=20)
    private_server.stop_cleanly()  # exits 0 after the grace, no runtime process left
    caller.join(60)
    assert outcome, "the caller got no answer"
    error = outcome[0]
    assert not isinstance(error, dict), f"a cut invocation answered as the function's: {error}"
    response = getattr(error, "response", None)
    assert response is not None, error
    assert response["Error"]["Code"] == "ServiceException", response
    assert response["ResponseMetadata"]["HTTPStatusCode"] >= 500


def test_a_second_signal_cuts_the_drain_short(
    private_server: Server, make_client: ClientFactory
) -> None:
    lam = _deploy_sleeper(private_server, make_client)  # the default grace: 30 s
    caller, outcome = _invoke_in_background(lam, 40)
    wait_for(lambda: _running(private_server), timeout=20)
    proc = private_server.proc
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: _refuses_connections(private_server), timeout=10)  # draining
    proc.send_signal(signal.SIGINT)  # e.g. a second Ctrl-C
    assert proc.wait(20) == 0  # well before the grace or the invocation would end
    caller.join(30)
    assert outcome and getattr(outcome[0], "response", {}).get("Error", {}).get("Code") == (
        "ServiceException"
    ), outcome
    private_server.stop_cleanly()  # no runtime process left

"""An operable server: health probes for load balancers and Kubernetes, an access log
that can be switched on, and start-up and shutdown lines that say what it does."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.engines import Postgres

from .support import (
    ACCOUNT,
    KINDLING,
    ROLE,
    Server,
    function_log,
    lambda_client,
    make_zip,
    raw_request,
    wait_active,
    wait_for,
)

LIVE, READY = "/_kindling/health/live", "/_kindling/health/ready"


def test_probes_answer_unsigned_with_no_tenant_data(server: Server, lam: Any) -> None:
    """Both topologies: a single node checks its store; a control node also its workers
    and its shared counter. The answer names the checks, and nothing of any account."""
    live = raw_request(server.endpoint, "GET", LIVE, sign=False)
    assert (live.status, live.json()) == (200, {"status": "pass"})
    assert live.headers["cache-control"] == "no-store"
    for path in (READY, "/_kindling/health"):
        ready = raw_request(server.endpoint, "GET", path, sign=False)
        assert ready.status == 200, ready.body
        doc = ready.json()
        assert doc["status"] == "pass" and doc["checks"]["store"] == "pass", doc
        assert set(doc) == {"status", "checks"}
        assert set(doc["checks"]) <= {"store", "workers", "counting"}
        assert ACCOUNT not in ready.body.decode()
    head = raw_request(server.endpoint, "HEAD", READY, sign=False)
    assert (head.status, head.body) == (200, b"")
    wrong = raw_request(server.endpoint, "POST", READY, sign=False)
    assert wrong.status >= 400


def test_cluster_readiness_names_workers_and_counting(server: Server) -> None:
    doc = raw_request(server.endpoint, "GET", READY, sign=False).json()
    if "--role" not in " ".join(server.extra_args):
        assert set(doc["checks"]) == {"store"}
        return
    assert doc["checks"] == {"store": "pass", "workers": "pass", "counting": "pass"}


def _probe(conn: http.client.HTTPConnection, path: str) -> tuple[int, Any]:
    conn.request("GET", path)
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read())


def test_readiness_fails_while_draining_and_liveness_holds(
    private_server: Server, tmp_path: Path
) -> None:
    """SIGTERM with an invocation running: the server drains. It stops listening at
    once (a new probe's connection is refused, a failed probe), and on a connection a
    prober kept open, ready says 503 draining while live stays 200 (a prober must not
    kill a server that is finishing its work)."""
    srv = private_server
    srv.start()
    lam = lambda_client(srv.endpoint)
    code = "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n"
    lam.create_function(
        FunctionName="sleeper",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Timeout=60,
        Code={"ZipFile": make_zip({"app.py": code})},
    )
    wait_active(lam, "sleeper")
    prober = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    assert _probe(prober, READY)[0] == 200
    result: dict[str, Any] = {}
    call = threading.Thread(
        target=lambda: result.update(lam.invoke(FunctionName="sleeper", Payload=b'{"s": 15}'))
    )
    call.start()
    wait_for(lambda: "START RequestId" in function_log(srv.endpoint, "sleeper"), timeout=60)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    try:
        wait_for(lambda: "SIGTERM: draining" in _log(srv), timeout=30)
        assert _probe(prober, READY) == (503, {"status": "fail", "draining": True})
        assert _probe(prober, LIVE) == (200, {"status": "pass"})
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
    finally:
        prober.close()
        call.join(120)
    assert result["StatusCode"] == 200 and "FunctionError" not in result
    srv.proc.wait(60)
    assert "kindling stopped" in _log(srv)


def _log(srv: Server) -> str:
    return srv.log_tail(200_000)


def test_readiness_fails_while_the_store_is_down_and_recovers(
    tmp_path: Path, private_server: Server
) -> None:
    engine = Postgres.create()  # its own: this test stops and starts it
    try:
        engine.start()
        srv = private_server
        srv.extra_args = ("--store", engine.database())
        srv.start()
        assert raw_request(srv.endpoint, "GET", READY, sign=False).status == 200
        engine.stop()
        down = raw_request(srv.endpoint, "GET", READY, sign=False, timeout=60)
        assert down.status == 503, down.body
        assert down.json() == {"status": "fail", "checks": {"store": "fail"}}
        assert raw_request(srv.endpoint, "GET", LIVE, sign=False).status == 200
        engine.start()
        wait_for(
            lambda: raw_request(srv.endpoint, "GET", READY, sign=False).status == 200,
            timeout=60,
            interval=0.5,
        )
        srv.stop_cleanly()
    finally:
        engine.remove()


ACCESS = re.compile(
    r"INFO kindling\.access: method=(?P<method>\S+) path=(?P<path>\S+) status=(?P<status>\d+) "
    r"duration_ms=(?P<ms>[\d.]+) request_id=(?P<rid>\S+) account=(?P<account>\S+) "
    r"peer=(?P<peer>\S+)$"
)


def _access_lines(srv: Server) -> list[dict[str, str]]:
    found = []
    for line in _log(srv).splitlines():
        match = ACCESS.search(line)
        if match:
            found.append(match.groupdict())
    return found


def test_the_access_log_writes_one_line_per_request(private_server: Server) -> None:
    srv = private_server
    srv.extra_args = ("--access-log",)
    srv.start()
    lam = lambda_client(srv.endpoint)
    listed = lam.list_functions()
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
        lam.get_function(FunctionName="nobody-home")
    raw_request(srv.endpoint, "GET", "/2015-03-31/functions?MaxItems=1", access_key="nope")
    raw_request(srv.endpoint, "GET", READY, sign=False)

    def four() -> list[dict[str, str]] | None:
        lines = _access_lines(srv)
        return lines if len(lines) >= 4 else None

    lines = wait_for(four, timeout=30)
    ok, gone, refused, probe = lines[:4]
    assert ok == {
        "method": "GET",
        "path": "/2015-03-31/functions",
        "status": "200",
        "ms": ok["ms"],
        "rid": listed["ResponseMetadata"]["RequestId"],
        "account": ACCOUNT,
        "peer": "127.0.0.1",
    }
    assert float(ok["ms"]) > 0
    assert gone["status"] == "404" and gone["path"] == "/2015-03-31/functions/nobody-home"
    assert gone["rid"] == missing.value.response["ResponseMetadata"]["RequestId"]
    assert refused["status"] == "403" and refused["account"] == "-"
    assert "MaxItems" not in refused["path"]  # the query is never logged
    assert probe["path"] == READY and probe["account"] == "-"
    srv.stop_cleanly()


def test_start_up_lines_say_what_the_server_does_and_the_access_log_is_off(
    server: Server, lam: Any
) -> None:
    lam.list_functions()
    log = _log(server)
    assert re.search(r"kindling listening on http://\S+:\d+ \(version \S+, pid \d+\)", log)
    assert f"data dir {server.data_dir}" in log
    assert "access log off" in log and "/_kindling/health/ready" in log
    assert "kindling.access" not in log  # off by default
    if "--role" not in " ".join(server.extra_args):
        assert "dev mode: key test/test signs as account 000000000000" in log
        assert "role all; sandboxes namespace backend" in log
    else:
        assert "role control; sandboxes on registered workers" in log


@pytest.mark.parametrize(
    ("service", "call"),
    [
        ("cloudformation", lambda c: c.describe_stacks(StackName="hello")),  # query (XML)
        ("s3", lambda c: c.put_object(Bucket="b", Key="k", Body=b"zip")),  # REST-XML
        ("sqs", lambda c: c.list_queues()),  # JSON
    ],
    ids=["cloudformation", "s3", "sqs"],
)
def test_a_service_kindling_does_not_serve_gets_an_error_its_client_parses(
    server: Server, service: str, call: Any
) -> None:
    """``sam deploy`` calls CloudFormation (query protocol, XML) and S3 (REST-XML): the
    error naming the service comes in the shape each client parses, so the user reads
    it instead of a parser's traceback."""
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import ClientError

    client = boto3.session.Session().client(
        service,
        region_name="us-east-1",
        endpoint_url=server.endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    with pytest.raises(ClientError) as caught:
        call(client)
    error = caught.value.response["Error"]
    assert error["Code"] == "UnknownOperationException", caught.value.response
    assert f"kindling does not serve the '{service}' API" in error["Message"], error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_every_worker_of_a_cluster_answers_the_same_probes(server: Server) -> None:
    """Listed by ``kindling cluster status --json`` (the control node's view); each worker
    host is live, and ready while a control node hears its heartbeats."""
    secret = server.env.get("KINDLING_CLUSTER_SECRET")
    if "--role" not in " ".join(server.extra_args) or not secret:
        pytest.skip("a single node has no workers of its own to probe")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["KINDLING_CLUSTER_SECRET"] = secret
    listed = subprocess.run(
        [str(KINDLING), "cluster", "status", "--json", "--endpoint", server.endpoint],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    )  # fmt: skip
    workers = json.loads(listed.stdout)
    assert workers, listed.stdout
    for worker in workers:
        assert raw_request(worker["url"], "GET", LIVE, sign=False).json() == {"status": "pass"}
        ready = raw_request(worker["url"], "GET", READY, sign=False)
        assert ready.status == 200, ready.body
        assert ready.json() == {"status": "pass", "checks": {"control": "pass"}}

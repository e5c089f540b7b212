"""A steady load on a cluster, and what a fault test checks after it (issue 20's "faults
it must survive").

**Load.** Threads send synchronous invokes and Event invokes to every control node in
turn, with no retries, and record each call: when it started and ended, where it went,
and how it ended (answered, an AWS error with its code and status, or no connection).

**Sink.** Every Event invocation carries an id; its handler POSTs that id to an HTTP
listener the test runs on the topology's host-side address, which the workers'
sandboxes reach through their namespace (the workers' egress allow-list opens exactly
that address). So "delivered" means a handler really ran with the event, on whatever
worker; an accepted (202) event whose id never arrives is lost. Duplicates are allowed
(at least once).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from tests.e2e.support import lambda_client

#: The function's timeout: a synchronous call must end within it and the platform's
#: own slack for a worker's answer (limits.CLUSTER_ANSWER_SLACK_S).
FUNCTION_TIMEOUT_S = 10
ANSWER_BOUND_S = FUNCTION_TIMEOUT_S + 30 + 5

HANDLER = """
import json, os, time, urllib.request

def handler(event, context):
    if event.get("id"):
        request = urllib.request.Request(os.environ["SINK"] + "/" + event["id"], data=b"x")
        urllib.request.urlopen(request, timeout=5).read()
    time.sleep(event.get("sleep", 0))
    return {"n": event.get("n"), "id": event.get("id")}
"""


class Sink:
    """Ids the handlers POSTed, with how many times each came."""

    def __init__(self, host: str) -> None:
        self.seen: Counter[str] = Counter()
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                with lock:
                    sink.seen[self.path.strip("/")] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def sink(host: str) -> Iterator[Sink]:
    found = Sink(host)
    try:
        yield found
    finally:
        found.close()


@dataclass
class Call:
    kind: str  # "sync" or "event"
    endpoint: str
    started: float
    ended: float
    #: "ok", "no-connection", or the AWS error code
    outcome: str
    status: int = 0
    event_id: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def client(endpoint: str) -> Any:
    """No retries: each call shows what the server did; the read timeout is far above
    what a call may take, so a hang shows as a duration, not as a client error."""
    return lambda_client(
        endpoint,
        BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=ANSWER_BOUND_S + 60,
            max_pool_connections=4,
        ),
    )


@dataclass
class Load:
    """``sync_threads`` threads of synchronous invokes and one of Event invokes, each
    going round the endpoints, pausing ``pause_s`` between calls. Each synchronous
    invocation runs ``busy_s`` in its handler, so a fault finds some in flight."""

    endpoints: list[str]
    function: str
    sync_threads: int = 2
    pause_s: float = 0.05
    busy_s: float = 0.2
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for index in range(self.sync_threads):
            self._threads.append(threading.Thread(target=self._run, args=("sync", index)))
        self._threads.append(threading.Thread(target=self._run, args=("event", 0)))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(ANSWER_BOUND_S + 120)

    def _run(self, kind: str, index: int) -> None:
        clients = {e: client(e) for e in self.endpoints}
        turn = index
        while not self._stop.is_set():
            endpoint = self.endpoints[turn % len(self.endpoints)]
            turn += 1
            event_id = uuid.uuid4().hex if kind == "event" else ""
            busy = 0.0 if kind == "event" else self.busy_s
            payload = json.dumps({"n": turn, "id": event_id, "sleep": busy}).encode()
            started = time.monotonic()
            outcome, status = "ok", 0
            try:
                if kind == "event":
                    answer = clients[endpoint].invoke(
                        FunctionName=self.function, InvocationType="Event", Payload=payload
                    )
                    status = answer["StatusCode"]
                else:
                    answer = clients[endpoint].invoke(FunctionName=self.function, Payload=payload)
                    status = answer["StatusCode"]
                    body = json.loads(answer["Payload"].read())
                    if answer.get("FunctionError") or body.get("n") != turn:
                        outcome = f"function:{answer.get('FunctionError')}:{body}"
            except ClientError as exc:
                outcome = exc.response["Error"]["Code"]
                status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
            except BotoCoreError:
                outcome = "no-connection"
            with self._lock:
                self.calls.append(
                    Call(kind, endpoint, started, time.monotonic(), outcome, status, event_id)
                )
            time.sleep(self.pause_s)

    def accepted(self) -> set[str]:
        return {c.event_id for c in self.calls if c.kind == "event" and c.ok and c.status == 202}

    def failures(self) -> list[Call]:
        return [c for c in self.calls if not c.ok]

    def failed(self, since: float, dead: set[str]) -> list[Call]:
        """Calls since ``since`` that failed, but for those that could not connect to a
        ``dead`` endpoint (not the service's failure: a load balancer stops sending
        there)."""
        with self._lock:
            calls = list(self.calls)
        return [
            c
            for c in calls
            if not c.ok
            and c.started >= since
            and not (c.outcome == "no-connection" and c.endpoint in dead)
        ]

    def degraded(self, since: float, dead: set[str]) -> tuple[float, float] | None:
        """(first failure, first success again) after ``since``, in seconds from it: from
        the first call that failed to the end of the first synchronous call that
        succeeded having started after the last failure (``failed``). None when nothing
        failed."""
        failed = self.failed(since, dead)
        if not failed:
            return None
        first = min(c.started for c in failed)
        last = max(c.started for c in failed)
        after = [c.ended for c in self.calls if c.ok and c.kind == "sync" and c.started > last]
        assert after, "service never came back"
        return first - since, min(after) - since

    def slowest(self, since: float) -> float:
        """The longest a call that ended after ``since`` took (those in flight at a fault
        included), in seconds."""
        return max((c.ended - c.started for c in self.calls if c.ended >= since), default=0)

    def summary(self) -> str:
        kinds = Counter((c.kind, c.outcome, c.status) for c in self.calls)
        return ", ".join(f"{k}/{o}/{s}: {n}" for (k, o, s), n in sorted(kinds.items()))

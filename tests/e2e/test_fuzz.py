"""Seeded, time-bounded fuzzing of every operation in botocore's Lambda model (all 91,
implemented or not) against a real server: no answer may be a 5xx, none may hang, and
the server must stay up and keep serving.

Was: 84 of 30,771 fuzzed requests answered 5xx (deeply nested JSON on every JSON
operation and on Invoke payloads, bad zips, the logs endpoint's offset).

The seed is printed; ``KINDLING_FUZZ_SEED=<seed>`` reproduces a run and
``KINDLING_FUZZ_SECONDS`` sets its length (default 30).
"""

from __future__ import annotations

import http.client
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from kindling.api.model import load_service_model

from .fuzzing import GOOD_ZIP, TARGET, Fuzzed, Fuzzer
from .support import ROLE, Server, lambda_client, raw_request, wait_active


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("kindling-fuzz")
    srv = Server(data_dir=root / "data", log_path=root / "server.log")
    srv.start()
    yield srv
    srv.stop_cleanly()


def _send(server: Server, fuzzer: Fuzzer, fuzzed: Fuzzed) -> tuple[int, bytes, str]:
    """Sends one fuzzed request; (status, body, x-amzn-ErrorType)."""
    request = fuzzer.signed(fuzzed)
    parts = urlsplit(request.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    try:
        conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", parts.netloc)  # what SigV4 signed
        for key, value in request.headers.items():
            conn.putheader(key, value)
        body = request.body or b""
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        reply = conn.getresponse()
        return reply.status, reply.read(), reply.getheader("x-amzn-ErrorType", "")
    finally:
        conn.close()


def test_fuzzed_requests_never_answer_5xx(fuzz_server: Server) -> None:
    seed = int(os.environ.get("KINDLING_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    seconds = float(os.environ.get("KINDLING_FUZZ_SECONDS", "30"))
    print(f"fuzz seed {seed} (KINDLING_FUZZ_SEED={seed} reproduces this run)")
    lam = lambda_client(fuzz_server.endpoint)
    lam.create_function(
        FunctionName=TARGET,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": GOOD_ZIP},
    )
    wait_active(lam, TARGET)

    fuzzer = Fuzzer(load_service_model(), fuzz_server.endpoint, seed)
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    unimplemented: set[str] = set()
    operations: Counter[str] = Counter()
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline or not set(fuzzer.operations) <= set(operations):
        untried = [op for op in fuzzer.operations if op not in operations]
        implemented = [op for op in fuzzer.operations if op not in unimplemented]
        roll = fuzzer.rng.random()
        if untried and roll < 0.3:  # every operation is tried at least once, early
            name = untried[0]
        elif roll < 0.9 and implemented:  # most requests where there is code to break
            name = fuzzer.rng.choice(implemented)
        else:
            name = fuzzer.rng.choice(fuzzer.operations)
        fuzzed = fuzzer.internal() if roll > 0.97 else fuzzer.request(name)
        try:
            status, body, kind = _send(fuzz_server, fuzzer, fuzzed)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{type(exc).__name__}: {exc} on {fuzzed.describe()}")
            break
        sent += 1
        statuses[status] += 1
        if kind == "UnknownOperationException" and not fuzzed.mutated_url:
            unimplemented.add(fuzzed.operation)
        kinds[kind or str(status)] += 1
        operations[fuzzed.operation] += 1
        if status >= 500:
            failures.append(f"{status} {body[:300]!r} on {fuzzed.describe()}")
        assert fuzz_server.proc is not None and fuzz_server.proc.poll() is None, (
            f"the server died (seed {seed}):\n{fuzz_server.log_tail()}"
        )
        if time.monotonic() > deadline + 4 * seconds:
            break  # every operation is tried in the end; never run for ever
    print(f"sent {sent} requests over {len(operations)} operations: {dict(statuses)}")
    print(f"answers: {kinds.most_common()}")
    assert not failures, f"seed {seed}: {len(failures)} bad answers, first: {failures[:5]}"
    assert set(fuzzer.operations) <= set(operations), set(fuzzer.operations) - set(operations)
    assert raw_request(fuzz_server.endpoint, "GET", "/2015-03-31/functions/").status == 200
    after = f"fuzz-after-{seed}"  # a fresh one: the fuzzer may have deleted or throttled its own
    lam.create_function(
        FunctionName=after,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": GOOD_ZIP},
    )
    wait_active(lam, after)
    out = lam.invoke(FunctionName=after, Payload=b'{"still": "up"}')
    assert out["StatusCode"] == 200 and out["Payload"].read() == b'{"still": "up"}'


@pytest.mark.parametrize(
    ("operation", "path", "body"),
    [
        ("CreateFunction", "/2015-03-31/functions", b"[" * 2000),
        ("Invoke", f"/2015-03-31/functions/{TARGET}/invocations", b"[" * 2000),
        ("Invoke", f"/2015-03-31/functions/{TARGET}/invocations", b"[" * 5000 + b"]" * 5000),
        ("Invoke", f"/2015-03-31/functions/{TARGET}/invocations", b"{not json"),
    ],
)
def test_nested_or_broken_json_answers_invalid_request_content(
    fuzz_server: Server, operation: str, path: str, body: bytes
) -> None:
    """Was: a 4 KB body of ``[`` crashed parsing (RecursionError, 500) everywhere."""
    response = raw_request(fuzz_server.endpoint, "POST", path, body)
    assert response.status == 400, (operation, response.body)
    assert response.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert response.json()["message"].startswith("Could not parse request body into json")

"""Seeded, time-bounded fuzzing of the EventBridge and Scheduler operations kindling
serves, with the Lambda fuzzer's hostile values and mutations, serialized by botocore's
own serializer for each protocol (JSON 1.1, REST-JSON) and signed for each service: no
answer may be a 5xx and the server must stay up (ADR 0033).

``KINDLING_FUZZ_SEED`` reproduces a run, ``KINDLING_FUZZ_SECONDS`` sets its length.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.serialize import create_serializer

from kindling.api.eventbridge import EventBridgeApi
from kindling.api.scheduler import SchedulerApi
from kindling.api.services import load_model

from .fuzzing import Fuzzed, Fuzzer
from .support import Server
from .test_fuzz import _send


class ServiceFuzzer(Fuzzer):
    """The Lambda fuzzer's values and mutations, for another service's model."""

    def __init__(self, model: Any, endpoint: str, seed: int, operations: list[str]) -> None:
        super().__init__(model, endpoint, seed)
        self.serializer = create_serializer(model.metadata["protocol"], include_validation=False)
        self.operations = sorted(operations)
        self.service = model.metadata.get("signingName") or model.metadata["endpointPrefix"]

    def signed(self, fuzzed: Fuzzed) -> AWSRequest:
        request = AWSRequest(
            method=fuzzed.method, url=fuzzed.url, data=fuzzed.body, headers=fuzzed.headers
        )
        if "Authorization" in request.headers:
            del request.headers["Authorization"]
        SigV4Auth(self.credentials, self.service, "us-east-1").add_auth(request)
        return request


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("kindling-fuzz-events")
    srv = Server(data_dir=root / "data", log_path=root / "server.log")
    srv.start()
    yield srv
    srv.stop_cleanly()


@pytest.mark.parametrize("service", ["events", "scheduler"])
def test_fuzzed_events_and_scheduler_requests_never_answer_5xx(
    fuzz_server: Server, service: str
) -> None:
    seed = int(os.environ.get("KINDLING_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    seconds = float(os.environ.get("KINDLING_FUZZ_SECONDS", "15"))
    print(f"fuzz seed {seed} (KINDLING_FUZZ_SEED={seed} reproduces this run)")
    api: Any = EventBridgeApi if service == "events" else SchedulerApi
    operations = list(api(None).operations())  # the names only: no component is called
    fuzzer = ServiceFuzzer(load_model(service), fuzz_server.endpoint, seed, operations)
    statuses: Counter[int] = Counter()
    tried: Counter[str] = Counter()
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or not set(operations) <= set(tried):
        untried = [op for op in operations if op not in tried]
        name = untried[0] if untried else fuzzer.rng.choice(operations)
        fuzzed = fuzzer.request(name)
        status, body, _ = _send(fuzz_server, fuzzer, fuzzed)
        statuses[status] += 1
        tried[name] += 1
        if status >= 500:
            failures.append(f"{status} {body[:300]!r} on {fuzzed.describe()}")
        assert fuzz_server.proc is not None and fuzz_server.proc.poll() is None, (
            f"the server died (seed {seed}):\n{fuzz_server.log_tail()}"
        )
    print(f"sent {sum(statuses.values())} requests: {dict(statuses)}")
    assert not failures, f"seed {seed}: {len(failures)} bad answers, first: {failures[:5]}"
    assert statuses[200] > 0  # some requests went all the way through

"""What the stream poller's tests share (test_stream_poller.py, test_stream_lanes.py):
moto's server with the Kinesis and DynamoDB endpoints set as a user would, a thread
pool, checkpoints in a real store, a new stream, and a real ``StreamPoller`` run until
the test's condition holds, its function a stand-in ``Invoke`` (as in
test_sqs_poller.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kindling.control.event_sources import Mapping
from kindling.control.models import FunctionRef
from kindling.events.aws import AwsClients
from kindling.events.checkpoints import Checkpoints
from kindling.events.destinations import AwsDestinations
from kindling.events.stream_poller import StreamPoller
from kindling.store import Store
from tests.engines import MotoServer
from tests.events.test_sqs_poller import REGION

ACCOUNT = MotoServer.ACCOUNT

#: The stand-in function: the whole event in, (handled, its answer) out.
EventFunction = Callable[[dict[str, Any]], Awaitable[tuple[bool, bytes]]]


@pytest.fixture
def moto(aws_services: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for key, value in aws_services.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", aws_services.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", aws_services.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", aws_services.url)
    return aws_services


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(8)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def checkpoints(tmp_path: Path) -> Checkpoints:
    return Checkpoints(Store(f"sqlite:///{tmp_path / 'k.db'}"))


def make_stream(moto: MotoServer, shards: int = 1) -> str:
    kinesis = moto.client("kinesis", REGION)
    name = f"esm-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"


def poll_until(
    threads: ThreadPoolExecutor,
    checkpoints: Checkpoints,
    the_mapping: Mapping,
    function: EventFunction,
    until: Callable[[], bool],
    limit_s: float,
    interval_s: float,
) -> StreamPoller:
    """Runs a StreamPoller of ``the_mapping`` (its uuid fixed, so a second run resumes
    from the first's checkpoints) until ``until()`` holds, checked every
    ``interval_s``; fails after ``limit_s``. Returns the stopped poller."""

    async def invoke(_ref: FunctionRef, payload: bytes) -> tuple[bool, bytes]:
        return await function(json.loads(payload))

    fixed = replace(the_mapping, uuid="fixed-uuid")
    clients = AwsClients(timeouts_s=(5.0, 20.0))

    async def scenario() -> StreamPoller:
        poller = StreamPoller(
            fixed,
            clients,
            threads,
            invoke,
            lambda _u, _r: None,
            checkpoints,
            AwsDestinations(clients=clients).record,
            lambda _m: "arn:aws:iam::000000000000:role/r",
            idle_s=0.1,
            backoff_s=(0.05, 0.2),
        )
        poller.start()
        deadline = time.monotonic() + limit_s
        try:
            while not until():
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(interval_s)
        finally:
            await poller.stop()
        return poller

    return asyncio.run(scenario())

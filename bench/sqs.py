"""SQS event source mapping throughput beside a plain boto3 consumer of the same SQS API,
in one run (issue 18's benchmark; ADR 0034).

``python -m bench sqs [--quick] [--messages N] [--out DIR]``.

Both drain N messages from a queue of moto's server (the stand-in for a user's SQS):

- ``boto3``: ``--threads`` threads of a plain consumer, each receiving ten at a time
  (long poll) and deleting them in one DeleteMessageBatch; no function runs: this is
  what the SQS API itself allows on this machine;
- ``mapping``: a kindling event source mapping (BatchSize 10) on a real ``kindling
  serve``: the poller receives, invokes a Python function that returns at once with the
  batch, and deletes. The mapping is warmed on a first fill, disabled, the queue filled
  again, then enabled: the time runs from UpdateEventSourceMapping(Enabled=True) until
  the queue is empty (so it includes the up to ESM_RECONCILE_S until the poller starts).

Reported: messages/s end to end of each and their ratio. Nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from bench import outputs, servers
from bench.engines import MotoServer

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ACCOUNT = "000000000000"
NAME = "bench-sqs"


def _queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def _fill(sqs: Any, url: str, count: int) -> None:
    for start in range(0, count, 10):
        entries = [
            {"Id": str(i), "MessageBody": f'{{"n": {start + i}}}'}
            for i in range(min(10, count - start))
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def _left(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _wait_empty(sqs: Any, url: str, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while _left(sqs, url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the queue did not drain in {limit_s} s")
        time.sleep(0.05)


def boto3_consumer(moto: MotoServer, count: int, threads: int) -> dict[str, Any]:
    sqs = moto.client("sqs", REGION)
    url, _arn = _queue(sqs, "bench-plain")
    _fill(sqs, url, count)
    consumed = [0]
    lock = threading.Lock()

    def consume() -> None:
        while True:
            with lock:
                if consumed[0] >= count:
                    return
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            messages = answer.get("Messages") or []
            if not messages:
                if not _left(sqs, url):
                    return
                continue
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
            with lock:
                consumed[0] += len(messages)

    started = time.monotonic()
    workers = [threading.Thread(target=consume) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    rate = round(count / elapsed, 1)
    return {"messages": consumed[0], "seconds": round(elapsed, 3), "rate": rate}


def mapping_drain(moto: MotoServer, workdir: Path, count: int, warmup: int) -> dict[str, Any]:
    env = {
        "AWS_ENDPOINT_URL_SQS": moto.url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    kindling = servers.start_kindling(workdir, REPO, extra_env=env)
    try:
        servers.deploy_echo(kindling.port, NAME)
        import botocore.session

        lam = botocore.session.Session().create_client(
            "lambda",
            region_name=REGION,
            endpoint_url=kindling.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        sqs = moto.client("sqs", REGION)
        url, arn = _queue(sqs, "bench-mapping")
        mapping = lam.create_event_source_mapping(
            FunctionName=NAME, EventSourceArn=arn, BatchSize=10
        )["UUID"]
        _fill(sqs, url, warmup)
        _wait_empty(sqs, url, 300)
        lam.update_event_source_mapping(UUID=mapping, Enabled=False)
        _wait_state(lam, mapping, "Disabled")
        _fill(sqs, url, count)
        started = time.monotonic()
        lam.update_event_source_mapping(UUID=mapping, Enabled=True)
        _wait_empty(sqs, url, 900)
        elapsed = time.monotonic() - started
        result = lam.get_event_source_mapping(UUID=mapping)["LastProcessingResult"]
    finally:
        kindling.stop()
    return {
        "messages": count,
        "seconds": round(elapsed, 3),
        "rate": round(count / elapsed, 1),
        "last_processing_result": result,
    }


def _wait_state(lam: Any, mapping: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while lam.get_event_source_mapping(UUID=mapping)["State"] != state:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the mapping never became {state}")
        time.sleep(0.1)


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    plain, mapped = result["boto3"], result["mapping"]
    return "\n".join(
        [
            f"# SQS mapping throughput vs a plain boto3 consumer ({meta['started']}, "
            f"git {meta['git']})",
            "",
            f"{meta['cpus']} CPUs, load {meta['loadavg_start']} -> {meta.get('loadavg_end')}; "
            f"quick: {meta['quick']}; moto's server as the queue",
            "",
            "| consumer | messages | seconds | messages/s |",
            "| --- | --- | --- | --- |",
            f"| boto3, {meta['params']['threads']} threads, no function | {plain['messages']} | "
            f"{plain['seconds']} | {plain['rate']} |",
            f"| kindling mapping, BatchSize 10, a Python function | {mapped['messages']} | "
            f"{mapped['seconds']} | {mapped['rate']} |",
            "",
            f"mapping / boto3: {result['ratio']}",
            "",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench sqs", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few messages")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--threads", type=int, default=5, help="of the boto3 consumer")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.warmup = 200, 30
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = {"messages": args.messages, "warmup": args.warmup, "threads": args.threads}

    def measure(result: dict[str, Any], tmp: Path) -> None:
        moto = MotoServer(tmp / "moto")
        moto.start()
        try:
            outputs.say(f"sqs: plain boto3 consumer, {args.messages} messages")
            result["boto3"] = boto3_consumer(moto, args.messages, args.threads)
            outputs.say(f"sqs: kindling mapping, {args.messages} messages")
            result["mapping"] = mapping_drain(moto, tmp, args.messages, args.warmup)
        finally:
            moto.stop()
        result["ratio"] = round(result["mapping"]["rate"] / result["boto3"]["rate"], 3)

    return outputs.scenario("sqs", args.quick, params, measure, markdown, args.out)

"""EventBridge and schedules through a real ``kindling serve``, in one run (issue 18's
benchmark; ADR 0033).

``python -m bench events [--quick] [--fires N] [--per-second K] [--events N] [--rules R]``.

One function records, for every event it gets, the wall-clock time its handler started.

- **Schedule firing accuracy.** A rate(1 minute) would give a figure an hour, so the
  bench creates ``--fires`` one-time EventBridge Scheduler schedules, ``at()`` times
  ``--per-second`` to a second, over the next seconds; each is a real tick of the real
  scheduler task, claimed in the store and delivered on the async queue. Lateness is
  the handler's start minus the tick it was told (``<aws.scheduler.scheduled-time>``),
  so it holds the scheduler's wake-up, the claim, the enqueue and the Event invoke. With
  ``--rules R`` also R EventBridge rules on ``cron(* * * * ? *)`` all due at the same
  minute (a burst: lateness there is mostly the queue working through R events).
- **PutEvents to invoke** beside a direct ``Invoke`` (InvocationType Event) of the same
  warm function, interleaved, one at a time ``--gap-ms`` apart: latency is the handler's
  start minus the client's clock just before the call (same host, same clock).

The ratios (lateness p50 over direct-Event-invoke p50, PutEvents p50 over direct p50)
are what to compare across machines. Nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import outputs, servers
from bench.coldreport import percentile

NAME = "bench-events"
ACCOUNT = "000000000000"
REGION = "us-east-1"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{NAME}"
RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
HANDLER = """\
import json
import time


def handler(event, context):
    print("T " + json.dumps({"now": time.time(), "event": event}))
"""


def _client(service: str, port: int) -> Any:
    import botocore.session

    return botocore.session.Session().create_client(
        service,
        region_name=REGION,
        endpoint_url=f"http://{servers.HOST}:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def deploy(port: int) -> None:
    lam = _client("lambda", port)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", HANDLER)
    lam.create_function(
        FunctionName=NAME,
        Runtime="python3.11",
        Handler="app.handler",
        Role=f"arn:aws:iam::{ACCOUNT}:role/bench",
        Code={"ZipFile": buffer.getvalue()},
        MemorySize=servers.ECHO_MEMORY_MB,
        Timeout=30,
    )
    lam.get_waiter("function_active_v2").wait(
        FunctionName=NAME, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    lam.invoke(FunctionName=NAME, Payload=b'{"warm": true}')


def records(port: int) -> list[dict[str, Any]]:
    """Every ``T`` line the function printed so far (the signed logs endpoint)."""
    import http.client

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    path = f"/_kindling/logs/{NAME}?offset=0"
    request = AWSRequest(method="GET", url=f"http://{servers.HOST}:{port}{path}")
    SigV4Auth(Credentials("test", "test"), "lambda", REGION).add_auth(request)
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=30)
    try:
        conn.request("GET", path, headers=dict(request.headers.items()))
        body = conn.getresponse().read().decode("utf-8", "replace")
    finally:
        conn.close()
    return [json.loads(line[2:]) for line in body.splitlines() if line.startswith("T ")]


def wait_records(port: int, check: Any, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = records(port)
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def summary_ms(values: list[float]) -> dict[str, Any]:
    ms = sorted(v * 1000 for v in values)
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def schedule_accuracy(port: int, fires: int, per_second: int) -> dict[str, Any]:
    scheduler = _client("scheduler", port)
    first = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
    for i in range(fires):
        at = first + timedelta(seconds=i // per_second)
        scheduler.create_schedule(
            Name=f"bench-at-{i}",
            ScheduleExpression=f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Target={
                "Arn": ARN,
                "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/bench",
                "Input": json.dumps({"kind": "at", "tick": "<aws.scheduler.scheduled-time>"}),
            },
        )
    created = time.time()
    if created > first.timestamp():
        outputs.say("events: schedules were still being created at the first tick")
    span = fires // per_second + 60
    found = wait_records(
        port, lambda r: sum(1 for x in r if x["event"].get("kind") == "at") >= fires, span
    )
    late = [x["now"] - _epoch(x["event"]["tick"]) for x in found if x["event"].get("kind") == "at"]
    return {
        "created_before_first_tick_s": round(first.timestamp() - created, 2),
        **summary_ms(late),
    }


def rule_burst(port: int, rules: int) -> dict[str, Any]:
    events = _client("events", port)
    for i in range(rules):
        events.put_rule(Name=f"bench-minute-{i}", ScheduleExpression="cron(* * * * ? *)")
        events.put_targets(
            Rule=f"bench-minute-{i}",
            Targets=[
                {
                    "Id": "1",
                    "Arn": ARN,
                    "InputTransformer": {
                        "InputPathsMap": {"t": "$.time"},
                        "InputTemplate": '{"kind": "minute", "tick": <t>}',
                    },
                }
            ],
        )
    found = wait_records(
        port, lambda r: sum(1 for x in r if x["event"].get("kind") == "minute") >= rules, 150
    )
    for i in range(rules):
        events.remove_targets(Rule=f"bench-minute-{i}", Ids=["1"])
        events.delete_rule(Name=f"bench-minute-{i}")
    minute = [x for x in found if x["event"].get("kind") == "minute"]
    first_tick = min((x["event"]["tick"] for x in minute), default=None)
    late = [
        x["now"] - _epoch(x["event"]["tick"]) for x in minute if x["event"]["tick"] == first_tick
    ]
    return {"rules": rules, **summary_ms(late)}


def put_events_vs_invoke(port: int, count: int, gap_s: float) -> dict[str, Any]:
    lam = _client("lambda", port)
    events = _client("events", port)
    events.put_rule(Name="bench-bridge", EventPattern='{"source": ["bench"]}')
    events.put_targets(
        Rule="bench-bridge", Targets=[{"Id": "1", "Arn": ARN, "InputPath": "$.detail"}]
    )
    calls: dict[str, list[float]] = {"direct": [], "bridge": []}
    for i in range(count):
        for kind in ("direct", "bridge"):
            body = {"kind": kind, "i": i, "t0": time.time()}
            started = time.perf_counter()
            if kind == "direct":
                lam.invoke(FunctionName=NAME, InvocationType="Event", Payload=json.dumps(body))
            else:
                out = events.put_events(
                    Entries=[{"Source": "bench", "DetailType": "b", "Detail": json.dumps(body)}]
                )
                if out["FailedEntryCount"]:
                    raise RuntimeError(f"PutEvents failed: {out}")
            calls[kind].append(time.perf_counter() - started)
            time.sleep(gap_s)
    found = wait_records(
        port,
        lambda r: sum(1 for x in r if x["event"].get("kind") in calls) >= 2 * count,
        120,
    )
    events.remove_targets(Rule="bench-bridge", Ids=["1"])
    events.delete_rule(Name="bench-bridge")
    out: dict[str, Any] = {}
    for kind in calls:
        seen = [x["now"] - x["event"]["t0"] for x in found if x["event"].get("kind") == kind]
        out[kind] = {"to_handler": summary_ms(seen), "api_call": summary_ms(calls[kind])}
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    kindling = servers.start_kindling(workdir, REPO)
    out: dict[str, Any] = {}
    try:
        deploy(kindling.port)
        outputs.say(f"events: PutEvents vs Invoke, {args.events} each")
        out["put_events"] = put_events_vs_invoke(kindling.port, args.events, args.gap_ms / 1000)
        outputs.say(f"events: {args.fires} at() schedules, {args.per_second} a second")
        out["schedules"] = schedule_accuracy(kindling.port, args.fires, args.per_second)
        if args.rules:
            outputs.say(f"events: {args.rules} cron rules due at the same minute")
            out["rule_burst"] = rule_burst(kindling.port, args.rules)
    finally:
        kindling.stop()
    direct = out["put_events"]["direct"]["to_handler"].get("p50_ms") or 0
    bridge = out["put_events"]["bridge"]["to_handler"].get("p50_ms") or 0
    late = out["schedules"].get("p50_ms") or 0
    out["ratios"] = {
        "put_events_over_direct_p50": round(bridge / direct, 2) if direct else None,
        "schedule_lateness_over_direct_p50": round(late / direct, 2) if direct else None,
    }
    return out


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    pe = result["put_events"]
    lines = [
        f"# EventBridge and schedules ({meta['started']}, git {meta['git']})",
        "",
        f"{meta['cpus']} CPUs, load {meta['loadavg_start']} -> {meta.get('loadavg_end')}; "
        f"quick: {meta['quick']}",
        "",
        "## Event to handler start (ms)",
        "",
        "| path | n | p50 | p90 | p99 | max | API call p50 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, label in (("direct", "Invoke (Event)"), ("bridge", "PutEvents -> rule -> target")):
        row = pe[kind]["to_handler"]
        lines.append(
            f"| {label} | {row.get('n')} | {row.get('p50_ms')} | {row.get('p90_ms')} | "
            f"{row.get('p99_ms')} | {row.get('max_ms')} | {pe[kind]['api_call'].get('p50_ms')} |"
        )
    s = result["schedules"]
    lines += [
        "",
        "## Schedule lateness: handler start minus the tick (ms)",
        "",
        "| what | n | p50 | p90 | p99 | max |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| at() schedules, {meta['params']['per_second']}/s | {s.get('n')} | {s.get('p50_ms')} | "
        f"{s.get('p90_ms')} | {s.get('p99_ms')} | {s.get('max_ms')} |",
    ]
    if "rule_burst" in result:
        b = result["rule_burst"]
        lines.append(
            f"| {b['rules']} cron rules, same minute | {b.get('n')} | {b.get('p50_ms')} | "
            f"{b.get('p90_ms')} | {b.get('p99_ms')} | {b.get('max_ms')} |"
        )
    r = result["ratios"]
    lines += [
        "",
        f"Ratios (p50): PutEvents over direct Invoke {r['put_events_over_direct_p50']}; "
        f"schedule lateness over direct Invoke {r['schedule_lateness_over_direct_p50']}.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench events", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few events")
    parser.add_argument("--fires", type=int, default=200, help="at() schedules")
    parser.add_argument("--per-second", type=int, default=10, help="schedules per tick second")
    parser.add_argument("--events", type=int, default=200, help="PutEvents and Invokes each")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between sends")
    parser.add_argument("--rules", type=int, default=50, help="cron rules due at one minute")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.fires, args.per_second, args.events, args.rules = 10, 5, 20, 0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params = {
        "fires": args.fires,
        "per_second": args.per_second,
        "events": args.events,
        "gap_ms": args.gap_ms,
        "rules": args.rules,
    }
    return outputs.scenario(
        "events",
        args.quick,
        params,
        lambda result, tmp: result.update(run(args, tmp)),
        markdown,
        args.out,
    )

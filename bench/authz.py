"""The cost of authorization (issue 19, ADR 0036): IAM policy evaluation per request with
1, 10 and 100 statements, and the warm invoke p50 of a caller that is evaluated (an IAM
user with an identity policy) beside one that is not (the account's root, which is what
every invoke was before authorization existed), in the same run on the same server.

    .venv/bin/python -m bench.authz [--quick] [--out DIR]

Writes ``authz-<stamp>.json`` and ``.md`` (and ``authz-latest.*``) under ``--out``
(default bench/results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.servers import HOST, deploy_echo, start_kindling
from bench.wire import build_request, percentile, run_sequential
from kindling.iam.policy import Kind, Principal, Request, evaluate, parse_policy

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "000000000000"
FUNCTION = "authz-echo"
ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{FUNCTION}"


def _identity(statements: int) -> dict[str, Any]:
    """``statements`` statements, the last the one that allows: the evaluator reads all."""
    misses = [
        {
            "Effect": "Allow",
            "Action": [f"lambda:GetFunction{i}", "s3:GetObject"],
            "Resource": f"arn:aws:lambda:*:{ACCOUNT}:function:other-{i}*",
            "Condition": {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}},
        }
        for i in range(statements - 1)
    ]
    hit = {"Effect": "Allow", "Action": "lambda:Invoke*", "Resource": ARN}
    return {"Version": "2012-10-17", "Statement": [*misses, hit]}


def evaluation_cost(statements: int, rounds: int) -> float:
    """Microseconds per evaluate() of one invoke against ``statements`` statements."""
    identity = [parse_policy(_identity(statements), Kind.IDENTITY)]
    principal = Principal(f"arn:aws:iam::{ACCOUNT}:user/bench", ACCOUNT)
    request = Request(principal, "lambda:InvokeFunction", ARN, ACCOUNT)
    assert evaluate(request, identity).allowed
    best = float("inf")
    for _ in range(5):  # the best of five: the least disturbed by the shared machine
        started = time.perf_counter()
        for _ in range(rounds):
            evaluate(request, identity)
        best = min(best, (time.perf_counter() - started) / rounds * 1e6)
    return best


def _signed_invoke(port: int, key: str, secret: str) -> bytes:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    path = f"/2015-03-31/functions/{FUNCTION}/invocations"
    headers = {"Host": f"{HOST}:{port}", "Content-Type": "application/json"}
    request = AWSRequest(
        method="POST", url=f"http://{HOST}:{port}{path}", data=b"{}", headers=headers
    )
    SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(request)
    signed = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
    return build_request("POST", path, signed, b"{}")


def _user_key(port: int, statements: int) -> tuple[str, str]:
    import boto3

    iam = boto3.session.Session().client(
        "iam",
        region_name="us-east-1",
        endpoint_url=f"http://{HOST}:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    iam.create_user(UserName="bench")
    iam.put_user_policy(
        UserName="bench", PolicyName="p", PolicyDocument=json.dumps(_identity(statements))
    )
    key = iam.create_access_key(UserName="bench")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def invoke_overhead(count: int, warmup: int, rounds: int, statements: int) -> dict[str, Any]:
    """Warm invoke p50/p99 (µs) of the root (no evaluation) and of an IAM user (identity
    policy of ``statements`` statements plus the function's resource policy), taken in
    alternating rounds on one server."""
    with tempfile.TemporaryDirectory(prefix="kindling-authz-") as tmp:
        server = start_kindling(Path(tmp), REPO)
        try:
            deploy_echo(server.port, FUNCTION)
            key, secret = _user_key(server.port, statements)
            raws = {
                "root": _signed_invoke(server.port, "test", "test"),
                "user": _signed_invoke(server.port, key, secret),
            }
            latencies: dict[str, list[int]] = {"root": [], "user": []}
            for _ in range(rounds):
                for who, raw in raws.items():
                    sample = run_sequential(HOST, server.port, raw, warmup, count // rounds)
                    if sample.errors:
                        raise RuntimeError(f"{who}: {sample.first_error}")
                    latencies[who].extend(sample.latencies_ns)
        finally:
            server.stop()
    out: dict[str, Any] = {"statements": statements, "requests_each": count}
    for who, values in latencies.items():
        values.sort()
        out[who] = {
            "p50_us": percentile(values, 50) / 1000,
            "p99_us": percentile(values, 99) / 1000,
            "mean_us": statistics.fmean(values) / 1000,
        }
    out["p50_added_pct"] = 100 * (out["user"]["p50_us"] / out["root"]["p50_us"] - 1)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Authorization cost",
        "",
        "| statements | evaluate() µs/request |",
        "| ---: | ---: |",
    ]
    lines += [f"| {n} | {us:.2f} |" for n, us in result["evaluation_us"].items()]
    inv = result.get("invoke")
    if inv:
        lines += [
            "",
            f"Warm invoke, one connection, {inv['requests_each']} requests each, alternating "
            f"rounds (IAM user with {inv['statements']} statements):",
            "",
            "| caller | p50 µs | p99 µs |",
            "| --- | ---: | ---: |",
            f"| root (no evaluation, as before) | {inv['root']['p50_us']:.0f} | "
            f"{inv['root']['p99_us']:.0f} |",
            f"| IAM user (evaluated) | {inv['user']['p50_us']:.0f} | {inv['user']['p99_us']:.0f} |",
            "",
            f"p50 added by authorization: {inv['p50_added_pct']:+.1f} %",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (CI smoke)")
    parser.add_argument("--no-invoke", action="store_true", help="evaluation cost only")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    rounds = 200 if args.quick else 5000
    result: dict[str, Any] = {
        "evaluation_us": {n: evaluation_cost(n, rounds) for n in (1, 10, 100)},
    }
    if not args.no_invoke:
        count, warmup = (150, 20) if args.quick else (3000, 200)
        result["invoke"] = invoke_overhead(count, warmup, 3, 10)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for name in (f"authz-{stamp}", "authz-latest"):
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
        (args.out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()

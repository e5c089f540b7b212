"""The bench's outputs: the targets verdict, the table, JSON and Markdown files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

#: Issue 3's targets for the warm path on a 2-core machine.
TARGET_OVERHEAD_P50_MS = 1.0
TARGET_INVOKES_PER_S = 3000.0


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def _throughput_runs(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(client, connections, {bare: row, kindling: row}) for every throughput run."""
    runs = []
    for client, data in (result.get("throughput") or {}).items():
        if not data:
            continue
        for connections in data["kindling"]:
            pair = {"bare": data["bare"][connections], "kindling": data["kindling"][connections]}
            runs.append((client, connections, pair))
    return runs


def targets(result: dict[str, Any]) -> dict[str, Any]:
    latency = result["latency"]
    best = max(
        (
            (pair["kindling"]["rps"], client, connections)
            for client, connections, pair in _throughput_runs(result)
            if not pair["kindling"]["errors"]
        ),
        default=(0.0, "", ""),
    )
    return {
        "warm_overhead_p50_ms": {
            "target": f"<= {TARGET_OVERHEAD_P50_MS}",
            "value": latency["overhead_p50_ms"],
            "met": latency["overhead_p50_ms"] <= TARGET_OVERHEAD_P50_MS,
        },
        "invokes_per_s": {
            "target": f">= {TARGET_INVOKES_PER_S:.0f}",
            "value": best[0],
            "at": f"{best[1]} client, {best[2]} connections (best run without errors)",
            "met": best[0] >= TARGET_INVOKES_PER_S,
        },
    }


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """scenario | p50 ms | p99 ms | req/s | ratio vs bare (x slower than the bare server)."""
    ref = result["reference"]["python_c_pass"]
    rows: list[dict[str, Any]] = [
        {
            "scenario": "reference: python3.11 -c pass (one process start)",
            "p50_ms": ref["p50_ms"],
            "p99_ms": ref["p99_ms"],
            "rps": None,
            "ratio_vs_bare": None,
        }
    ]
    latency = result["latency"]
    for name in ("bare", "kindling"):
        row = latency[name]
        rows.append(
            {
                "scenario": f"latency, 1 conn sequential: {_label(name)}",
                "p50_ms": row["p50_ms"],
                "p99_ms": row["p99_ms"],
                "rps": row["rps"],
                "ratio_vs_bare": _ratio(row["p50_ms"], latency["bare"]["p50_ms"]),
            }
        )
    for client, connections, pair in _throughput_runs(result):
        for name in ("bare", "kindling"):
            row = pair[name]
            flag = f" ({row['errors']} ERRORS)" if row["errors"] else ""
            rows.append(
                {
                    "scenario": f"throughput, {client} client, {connections} conn: "
                    f"{_label(name)}{flag}",
                    "p50_ms": row["p50_ms"],
                    "p99_ms": row["p99_ms"],
                    "rps": row["rps"],
                    "ratio_vs_bare": _ratio(pair["bare"]["rps"], row["rps"]),
                }
            )
    return rows


def _label(name: str) -> str:
    return "bare echo (httpd)" if name == "bare" else "kindling invoke"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        f"# kindling bench {meta['started']}",
        "",
        f"git {meta['git']} · {meta['cpus']} CPUs · Python {meta['python']} · "
        f"{'quick' if meta['quick'] else 'full'} run · {meta['elapsed_s']} s · "
        f"payload {meta['payload_bytes']} B · echo function python3.11 · "
        f"load average at start {meta['loadavg_start'][0]} (1 min), at end "
        f"{meta['loadavg_end'][0]}",
        "",
        "## Targets (issue 3)",
        "",
    ]
    for name, target in result["targets"].items():
        verdict = "MET" if target["met"] else "NOT MET"
        extra = f" ({target['at']})" if "at" in target else ""
        lines.append(
            f"- {name}: {target['value']}{extra}, target {target['target']}: **{verdict}**"
        )
    latency = result["latency"]
    lines += [
        f"- warm overhead p99: {latency['overhead_p99_ms']} ms, "
        f"mean: {latency['overhead_mean_ms']} ms",
        "",
        "## Results",
        "",
        "| scenario | p50 ms | p99 ms | req/s | ratio vs bare |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in result["table"]:
        ratio = row["ratio_vs_bare"]
        lines.append(
            f"| {row['scenario']} | {_num(row['p50_ms'])} | {_num(row['p99_ms'])} | "
            f"{_num(row['rps'])} | {'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    lines += [
        "",
        "ratio vs bare: how many times slower than the bare echo server on the same stack "
        "(latency: kindling p50 / bare p50; throughput: bare req/s / kindling req/s).",
        "",
        "## CPU per request",
        "",
        "| run | server µs/req | of which kernel | sandboxes µs/req | of which kernel | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for client, connections, pair in _throughput_runs(result):
        for name in ("bare", "kindling"):
            row = pair[name]
            lines.append(
                f"| {client}, {connections} conn, {_label(name)} | "
                f"{_num(row['server_cpu_us_per_req'], 1)} | "
                f"{_num(row['server_sys_us_per_req'], 1)} | "
                f"{_num(row['sandbox_cpu_us_per_req'], 1)} | "
                f"{_num(row['sandbox_sys_us_per_req'], 1)} | {row['errors']} |"
            )
    lines += _errors_markdown(result)
    lines += _profile_markdown(result.get("profile"))
    lines += _cprofile_markdown(result.get("cprofile"), result)
    return "\n".join(lines) + "\n"


def _errors_markdown(result: dict[str, Any]) -> list[str]:
    found = []
    runs = [("latency", "1", result["latency"])]
    runs += [(client, conns, pair) for client, conns, pair in _throughput_runs(result)]
    for client, connections, pair in runs:
        for name in ("bare", "kindling"):
            row = pair[name]
            if row["errors"] or row.get("warmup_errors"):
                found.append(
                    f"- {client}, {connections} conn, {_label(name)}: {row['errors']} errors "
                    f"of {row['requests']}; warm-up: {row.get('warmup_errors') or 'ok'}; "
                    f"e.g. `{row.get('first_error', '?')}`"
                )
    if not found:
        return []
    return ["", "## Errors (runs with errors do not count for the targets)", "", *found]


def _profile_markdown(prof: dict[str, Any] | None) -> list[str]:
    if not prof:
        return []
    if "error" in prof:
        return ["", "## Profile", "", f"not taken: {prof['error']}"]
    lines = [
        "",
        "## Profile (py-spy, kindling under load)",
        "",
        f"{prof['connections']} connections, {prof['duration_s']} s, "
        f"{prof['load']['client']} client at {prof['load']['rps']:,.0f} req/s while sampled; "
        f"files: `{prof['files']['speedscope']}` (open in speedscope.app), "
        f"`{prof['files']['collapsed']}`. Shares are of non-idle samples; on a busy 2-core "
        "box they include time spent runnable but preempted (e.g. right after a socket "
        "write wakes the peer), so read them with the CPU table above.",
    ]
    for role in ("server", "sandbox"):
        data = prof[role]
        lines += [
            "",
            f"### {role}: {data['samples']} samples, {data['cpu_us_per_invoke']} µs CPU/invoke",
        ]
        for view, title in (
            ("by_kindling_function", "charged to the deepest kindling frame"),
            ("self", "self time (top of stack)"),
        ):
            lines += ["", f"{title}:", "", "| % | µs/invoke | function |", "| ---: | ---: | --- |"]
            lines.extend(
                f"| {r['pct']} | {r.get('us_per_invoke', '-')} | `{r['function']}` |"
                for r in data[view][:12]
            )
    return lines


def _cprofile_markdown(prof: dict[str, Any] | None, result: dict[str, Any]) -> list[str]:
    if not prof:
        return []
    if "error" in prof:
        return ["", "## cProfile", "", f"not taken: {prof['error']}"]
    conns = str(prof["connections"])
    plain = ((result.get("throughput") or {}).get("python") or {}).get("kindling", {}).get(conns)
    inflation = ""
    if plain and plain.get("server_cpu_us_per_req"):
        factor = prof["cpu"]["server_cpu_us_per_req"] / plain["server_cpu_us_per_req"]
        inflation = (
            f" Server CPU under cProfile {prof['cpu']['server_cpu_us_per_req']} µs/invoke vs "
            f"{plain['server_cpu_us_per_req']} without: profiler inflation {factor:.1f}x."
        )
    lines = [
        "",
        "## cProfile (server, thread CPU time, deterministic)",
        "",
        f"{prof['connections']} connections, {prof['duration_s']} s, {prof['invokes']} invokes, "
        f"{prof['profiled_cpu_us_per_invoke']} µs profiled CPU/invoke.{inflation} "
        f"Dump: `{prof['file']}` (`python -m pstats`, snakeviz).",
    ]
    for view, title in (
        ("self", "self time"),
        ("kindling_cumulative", "kindling functions, cumulative"),
    ):
        lines += [
            "",
            f"{title}:",
            "",
            "| self % | self µs/inv | cum µs/inv | calls/inv | function |",
            "| ---: | ---: | ---: | ---: | --- |",
        ]
        lines.extend(
            f"| {r['self_pct']} | {r['self_us_per_invoke']} | {r['cum_us_per_invoke']} | "
            f"{r['calls_per_invoke']} | `{r['function']}` |"
            for r in prof[view][:20]
        )
    return lines


def console(result: dict[str, Any]) -> str:
    return markdown(result)


def write(result: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    """bench-<stamp>.json/.md, and the same as latest.json/.md."""
    json_path = out_dir / f"bench-{stamp}.json"
    md_path = out_dir / f"bench-{stamp}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown(result))
    shutil.copyfile(json_path, out_dir / "latest.json")
    shutil.copyfile(md_path, out_dir / "latest.md")
    return json_path, md_path

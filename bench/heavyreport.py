"""The heavy-import bench's outputs: summaries, the table, targets, Markdown and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import outputs
from bench.coldcommon import Scenario
from bench.coldreport import errors_markdown

#: Issue 5's targets for a heavy-import cold start with a snapshot.
TARGET_MS = 50.0
TARGET_SPEEDUP = 8.0


def label(runtime: str, snapshot: bool) -> str:
    return f"api: {runtime} numpy, snapshot {'on' if snapshot else 'off'}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def report(result: dict[str, Any], scenarios: list[Scenario]) -> None:
    """Fills result["scenarios"], ["table"] and ["targets"]."""
    functions: dict[str, Any] = result.pop("functions")  # label -> heavy.Deployed
    p50: dict[tuple[str, str], float] = {}
    for s in scenarios:
        summary = {k: outputs.summarize(v) for k, v in s.metrics.items()}
        fn = functions.get(s.name)
        result["scenarios"][s.name] = {
            "kind": s.kind,
            "function": s.note,
            "skipped": s.skipped,
            "errors": s.errors[:5],
            "error_count": len(s.errors),
            "report_field": " / ".join(sorted(fn.fields)) if fn else None,
            "initialization_type": " / ".join(sorted(fn.init_types)) if fn else None,
            "version": fn.version if fn else None,
            "publish_ms": round(fn.publish_ms, 3) if fn else None,
            "first_cold": {**fn.first, "report_field": fn.first_field} if fn else None,
            "summary": summary,
            "samples_ms": {k: [round(x, 3) for x in v] for k, v in s.metrics.items()},
        }
        for metric, figures in summary.items():
            if figures.get("n"):
                p50[(s.name, metric)] = float(figures["p50_ms"])
    rows = []
    targets = {}
    for runtime in result["runtimes"]:
        version = runtime.removeprefix("python")
        ref_import = p50.get((f"python{version} -c 'import numpy'", "total_ms"))
        ref_pass = p50.get((f"python{version} -c pass", "total_ms"))
        for name in (f"python{version} -c pass", f"python{version} -c 'import numpy'"):
            if name in result["scenarios"]:
                rows.append(_row(result, name, "total_ms", name, ref_import, ref_pass))
        for snapshot in (False, True):
            name = label(runtime, snapshot)
            if name not in result["scenarios"]:
                continue
            field_name = result["scenarios"][name]["report_field"] or "Init Duration"
            if result["scenarios"][name]["skipped"]:
                rows.append(_row(result, name, "total_ms", name, ref_import, ref_pass))
                continue
            for metric, what in (
                ("total_ms", "cold invoke, client wall time"),
                ("init_ms", f"{field_name} (REPORT line)"),
                ("warm_ms", "warm invoke right after"),
            ):
                rows.append(_row(result, name, metric, f"{name}: {what}", ref_import, ref_pass))
        off = p50.get((label(runtime, False), "total_ms"))
        on_name = label(runtime, True)
        on = p50.get((on_name, "total_ms"))
        on_data = result["scenarios"].get(on_name) or {}
        why = on_data.get("skipped") or ("no successful sample" if on is None else None)
        restored = None if why else on_data.get("report_field") == "Restore Duration"
        targets[runtime] = {
            "snapshot_cold_p50_ms": on,
            "no_snapshot_cold_p50_ms": off,
            "speedup": _ratio(off, on),
            "speedup_init": _ratio(
                p50.get((label(runtime, False), "init_ms")), p50.get((on_name, "init_ms"))
            ),
            "met_50ms": None if on is None else on <= TARGET_MS,
            "met_8x": None if on is None or off is None else off / on >= TARGET_SPEEDUP,
            "not_available": why,
            "restored": restored,
            "initialization_type": on_data.get("initialization_type"),
        }
    result["table"] = rows
    result["targets"] = targets


def _row(
    result: dict[str, Any],
    name: str,
    metric: str,
    label: str,
    ref_import: float | None,
    ref_pass: float | None,
) -> dict[str, Any]:
    data = result["scenarios"][name]
    summary = data["summary"].get(metric) or {}
    row: dict[str, Any] = {"scenario": label, "series": name, "metric": metric}
    if data["skipped"] or not summary.get("n"):
        row["skipped"] = data["skipped"] or "no successful sample"
        row["scenario"] = name if data["skipped"] else label
        return row
    row.update({k: summary[k] for k in ("n", "p50_ms", "p90_ms", "p99_ms", "min_ms")})
    if metric in ("total_ms", "init_ms"):
        row["ratio_import"] = _ratio(summary["p50_ms"], ref_import)
        row["ratio_pass"] = _ratio(summary["p50_ms"], ref_pass)
    return row


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    params = meta["params"]
    lines = [
        f"# kindling bench heavy {meta['started']}",
        "",
        f"git {meta['git']} · {meta['cpus']} CPUs · kernel {meta['kernel']} · "
        f"{'quick' if meta['quick'] else 'full'} run · {meta['elapsed_s']} s · backend "
        f"{params['backend']} · {params['samples']} cold starts per series after "
        f"{params['warmup']} untimed round(s) · `{params['package']}` · function at "
        f"{params['memory_mb']} MB · load average at start {meta['loadavg_start'][0]}, "
        f"at end {meta['loadavg_end'][0]}",
        "",
        "One sample per series per round, rounds shuffled. A cold start: an invoke of the "
        "function's published version after the server's keep-alive (0.5 s, fixed) reaped "
        "its last sandbox; with SnapStart, a restore from the snapshot the version's first "
        "cold start built (that one is reported below, not in the samples). Ratios: p50 / "
        "p50 of the same runtime's `-c 'import numpy'` and `-c pass` in the same run. p99 "
        "over fewer than 100 samples is the maximum.",
        "",
        "| scenario | n | p50 ms | p90 ms | p99 ms | min ms | x import numpy | x -c pass |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ms = outputs.fmt_ms
    for row in result["table"]:
        if "skipped" in row:
            lines.append(f"| {row['scenario']} | | skipped: {row['skipped']} | | | | | |")
            continue
        ratios = [row.get("ratio_import"), row.get("ratio_pass")]
        lines.append(
            f"| {row['scenario']} | {row['n']} | {ms(row['p50_ms'])} | {ms(row['p90_ms'])} | "
            f"{ms(row['p99_ms'])} | {ms(row['min_ms'])} | "
            + " | ".join("-" if r is None else f"{r:.2f}x" for r in ratios)
            + " |"
        )
    firsts = [
        f"| {name} | {d['version']} | {ms(d['publish_ms'])} | "
        f"{ms(d['first_cold'].get('total_ms'))} | {ms(d['first_cold'].get('init_ms'))} "
        f"({d['first_cold']['report_field']}) |"
        for name, d in result["scenarios"].items()
        if d.get("first_cold")
    ]
    if firsts:
        lines += [
            "",
            "First cold start of each published version (for SnapStart: builds the snapshot):",
            "",
            "| series | version | PublishVersion -> Active ms | cold invoke ms | REPORT ms |",
            "| --- | ---: | ---: | ---: | ---: |",
            *firsts,
        ]
    lines += [
        "",
        "## Targets (issue 5; reported, not asserted)",
        "",
        f"| runtime | snapshot cold p50 ms (<= {TARGET_MS:.0f}) | without ms | speed-up "
        f"(>= {TARGET_SPEEDUP:.0f}x) | speed-up by REPORT field |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for runtime, t in result["targets"].items():
        if t["not_available"]:
            lines.append(
                f"| {runtime} | {t['not_available']} | {ms(t['no_snapshot_cold_p50_ms'])} | | |"
            )
            continue
        lines.append(
            f"| {runtime} | {ms(t['snapshot_cold_p50_ms'])} "
            f"({'met' if t['met_50ms'] else 'not met'}) | {ms(t['no_snapshot_cold_p50_ms'])} | "
            f"{t['speedup']}x ({'met' if t['met_8x'] else 'not met'}) | {t['speedup_init']}x |"
        )
    for runtime, t in result["targets"].items():
        if t["restored"] is False:
            lines += [
                "",
                f"{runtime}: the server accepted SnapStart, but the snapshot series' REPORT "
                f"lines carry `{result['scenarios'][label(runtime, True)]['report_field']}`, "
                "not `Restore Duration` (AWS_LAMBDA_INITIALIZATION_TYPE "
                f"`{t['initialization_type']}`): those invokes did not restore from a "
                "snapshot.",
            ]
    info = [
        f"- {runtime}: `{r['interpreter']}`"
        + (
            f", skipped: {r['skipped']}"
            if "skipped" in r
            else f", zip {r['zip_bytes'] / 2**20:.1f} MiB ({r['unzipped_bytes'] / 2**20:.1f} "
            "MiB unzipped)"
        )
        for runtime, r in result["runtimes"].items()
    ]
    lines += ["", "Runtimes:", "", *info]
    lines += errors_markdown(result["scenarios"])
    lines += outputs.markdown_tail(result)
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> dict[str, Any]:
    series = []
    for name, data in result["scenarios"].items():
        samples = data["samples_ms"]
        if data["kind"] == "api" and samples.get("init_ms"):
            series.append((f"{name}: {data['report_field']}", samples["init_ms"]))
        if samples.get("total_ms"):
            label = name if data["kind"] == "baseline" else f"{name}: cold invoke"
            series.append((label, samples["total_ms"]))
    return outputs.boxplot(
        series,
        path,
        f"kindling heavy-import cold start, {result['meta']['started']} ({result['meta']['git']})",
        "ms (log scale); whiskers: min and max",
        marks=[(TARGET_MS, f"target {TARGET_MS:.0f} ms")],
    )

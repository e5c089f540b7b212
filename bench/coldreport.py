"""The cold-start bench's outputs: summaries, phase breakdowns, table, JSON, Markdown, PNG."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

from bench import coldtrace

#: The reference each phase's ratios are taken against (its own, measured interleaved).
REFERENCES = {"sandbox": "python3.11 -c pass", "api": "api phase: python3.11 -c pass"}
#: Issue 5's target: isolated cold start p50 <= 1.0x ``python3 -c pass`` in the same run.
TARGET_RATIO = 1.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 3),
        "p90_ms": round(percentile(values, 90), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "min_ms": round(min(values), 3),
        "max_ms": round(max(values), 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }


def _aggregate(per_sample: list[list[tuple[str, float]]]) -> list[dict[str, Any]]:
    """Phases in first-seen order with p50 / mean ms over the samples that have them."""
    order: list[str] = []
    values: dict[str, list[float]] = {}
    for phases in per_sample:
        for label, ms in phases:
            if label not in values:
                order.append(label)
                values[label] = []
            values[label].append(ms)
    totals = [sum(ms for _, ms in phases) for phases in per_sample]
    mean_total = statistics.fmean(totals) if totals else 0.0
    rows = []
    for label in order:
        got = values[label]
        mean = statistics.fmean(got) * len(got) / len(per_sample)
        rows.append(
            {
                "phase": label,
                "n": len(got),
                "p50_ms": round(percentile(got, 50), 3),
                "mean_ms": round(mean, 3),
                "share_pct": round(100.0 * mean / mean_total, 1) if mean_total else 0.0,
            }
        )
    return rows


def breakdowns(scenarios: list[Any]) -> dict[str, Any]:
    """The traced namespace critical path, and a coarse split of every sandbox series."""
    out: dict[str, Any] = {"critical_path": None, "coarse": {}}
    for scenario in scenarios:
        if scenario.kind != "sandbox" or not scenario.traces:
            continue
        traces = [t for t in scenario.traces if "create_called" in t.events]
        coarse = [coldtrace.segments(t, coldtrace.SIMPLE_PATH, "create_called") for t in traces]
        out["coarse"][scenario.name] = {
            "handler_clock": all("handler.imported" in t.events for t in traces),
            "phases": _aggregate(coarse),
        }
        if scenario.name == "namespace (traced)":
            full = [coldtrace.segments(t, coldtrace.CRITICAL_PATH, "create_called") for t in traces]
            facts: dict[str, list[float]] = {}
            for trace in traces:
                for key, value in coldtrace.side_facts(trace).items():
                    facts.setdefault(key, []).append(value)
            out["critical_path"] = {
                "samples": len(traces),
                "phases": _aggregate(full),
                "total": summarize([sum(ms for _, ms in p) for p in full]),
                "side_p50": {k: round(percentile(v, 50), 3) for k, v in facts.items()},
                "per_sample_ms": [{label: round(ms, 3) for label, ms in p} for p in full],
            }
    return out


def import_profile(lines: list[str]) -> dict[str, Any]:
    """Top-level imports (cumulative µs) from ``-X importtime`` lines, in import order."""
    top: list[tuple[str, int]] = []
    for line in lines:
        _, found, rest = line.partition("import time:")
        if not found:
            continue
        parts = rest.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header
        name = parts[2].rstrip()
        if name.startswith("  "):
            continue  # nested: counted in its top-level parent
        top.append((name.strip(), int(parts[1])))
    if not top:
        return {"error": "no -X importtime lines in the sandbox's output"}
    total = sum(us for _, us in top)
    ranked = sorted(top, key=lambda item: -item[1])
    return {
        "total_ms": round(total / 1000, 2),
        "modules": len(top),
        "top": [{"module": name, "cumulative_ms": round(us / 1000, 2)} for name, us in ranked[:12]],
    }


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 2)


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """scenario | p50 | p99 | min | ratio to its phase's ``python3.11 -c pass`` p50."""
    scenarios = result["scenarios"]
    refs: dict[str, float | None] = {}
    for phase, name in REFERENCES.items():
        summary = (scenarios.get(name) or {}).get("summary", {}).get("total_ms", {})
        refs[phase] = summary.get("p50_ms")
    rows: list[dict[str, Any]] = []
    for name, data in scenarios.items():
        views: list[tuple[str, str]]
        if data["kind"] == "baseline":
            views = [("total_ms", name)]
        elif data["kind"] == "sandbox":
            views = [
                ("init_ms", f"{name}: init (InitResult.duration_ms)"),
                ("total_ms", f"{name}: create -> first response"),
            ]
        else:
            views = [
                ("init_ms", f"{name}: Init Duration (REPORT line)"),
                ("total_ms", f"{name}: cold invoke, client wall time"),
                ("warm_ms", f"{name}: warm invoke right after, client wall time"),
            ]
        for metric, label in views:
            row: dict[str, Any] = {"scenario": label, "phase": data["phase"], "metric": metric}
            summary = data["summary"].get(metric) or {}
            if data["skipped"] or not summary.get("n"):
                row["skipped"] = data["skipped"] or "no successful sample"
            else:
                row.update(
                    n=summary["n"],
                    p50_ms=summary["p50_ms"],
                    p90_ms=summary["p90_ms"],
                    p99_ms=summary["p99_ms"],
                    min_ms=summary["min_ms"],
                    ratio=_ratio(summary["p50_ms"], refs.get(data["phase"])),
                )
            rows.append(row)
    return rows


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    params = meta["params"]
    lines = [
        f"# kindling bench coldstart {meta['started']}",
        "",
        f"git {meta['git']} · {meta['cpus']} CPUs · kernel {meta['kernel']} · "
        f"{'quick' if meta['quick'] else 'full'} run · {meta['elapsed_s']} s · "
        f"{params['samples']} cold starts per sandbox-layer scenario, {params['api_samples']} "
        f"per API backend (cold by {params.get('api_cold_by', 'update')}), after "
        f"{params['warmup_rounds']} untimed round(s) · function "
        f"python3.11 hello at {params['memory_mb']} MB · load average at start "
        f"{meta['loadavg_start'][0]}, at end {meta['loadavg_end'][0]}",
        "",
        "Each phase's samples are interleaved (one round runs every scenario once, shuffled). "
        "Ratio = p50 / p50 of `python3.11 -c pass` measured in the same phase "
        f"(issue 5's target for an isolated cold start: <= {TARGET_RATIO:.1f}x). "
        "p99 over fewer than 100 samples is the maximum.",
        "",
        "| scenario | p50 ms | p90 ms | p99 ms | min ms | ratio to python -c pass |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["table"]:
        if "skipped" in row:
            lines.append(f"| {row['scenario']} | skipped: {row['skipped']} | | | | |")
            continue
        ratio = row["ratio"]
        lines.append(
            f"| {row['scenario']} | {_ms(row['p50_ms'])} | {_ms(row['p90_ms'])} | "
            f"{_ms(row['p99_ms'])} | {_ms(row['min_ms'])} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} |"
        )
    notes = [
        f"- **{name}**: {data['note']}"
        for name, data in result["scenarios"].items()
        if data.get("note")
    ]
    if notes:
        lines += ["", "Scenarios:", "", *notes]
    lines += _breakdown_markdown(result.get("breakdown") or {})
    lines += _imports_markdown(result.get("import_profile") or {})
    lines += _destroy_markdown(result)
    lines += errors_markdown(result["scenarios"])
    lines += _orphans_markdown(result)
    if result.get("leftovers"):
        lines += ["", "## LEFT BEHIND by this run's kindling instances", ""]
        lines += [f"- `{item}`" for item in result["leftovers"]]
    plot = result.get("plot") or {}
    lines += [
        "",
        "## Plot",
        "",
        f"`{plot['file']}`" if plot.get("file") else f"not drawn: {plot.get('skipped', '?')}",
    ]
    return "\n".join(lines) + "\n"


def _breakdown_markdown(breakdown: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    critical = breakdown.get("critical_path")
    if critical:
        total = critical["total"]
        lines += [
            "",
            "## Where a namespace cold start goes",
            "",
            f"{critical['samples']} traced samples (`namespace (traced)`), create -> first "
            f"response p50 {_ms(total['p50_ms'])} ms, mean {_ms(total['mean_ms'])} ms. "
            "Phases along the critical path, each from the end of the one before; means add "
            "up to the mean total. Timestamps from the worker (wrapped calls), from nsinit "
            "(a wrapper script around the real one) and from the function itself, all "
            "CLOCK_MONOTONIC.",
            "",
            "| phase | p50 ms | mean ms | share of mean |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['phase']} | {_ms(r['p50_ms'])} | {_ms(r['mean_ms'])} | {r['share_pct']} % |"
            for r in critical["phases"]
        ]
        side = critical["side_p50"]
        labels = {
            "slot_total_ms": "network slot, cgroup done -> slot in hand (ms)",
            "netlink_open_close_ms": "of which netlink socket open+close (ms)",
            "nsinit_total_ms": "launch request -> runtime start (ms)",
            "mount_calls": "mount(2) calls on the path (the rest of the root was built ahead)",
            "mount_syscalls_ms": "time in those mount calls (ms)",
            "cgroup_join_writes": "cgroup.procs writes joining the sandbox cgroups",
            "cgroup_join_ms": "time in those writes (ms)",
            "runtime_total_ms": "runtime, execve -> first /next (ms)",
            "status_line_lag_ms": "worker reads nsinit's 'pid' line, after the child's "
            "release (ms, off the critical path)",
        }
        lines += ["", "Also (p50):", ""]
        for key, label in labels.items():
            if key in side:
                lines.append(f"- {label}: {_ms(side[key])}")
            if key == "cgroup_join_ms":
                lines += [
                    f"  - {k.split(':')[1].removesuffix('_ms')}: {_ms(v)} ms"
                    for k, v in side.items()
                    if k.startswith("cgroup_join:")
                ]
    coarse = breakdown.get("coarse") or {}
    if coarse:
        lines += [
            "",
            "## Coarse split of every sandbox series",
            "",
            "From the function's own timestamps (module import, handler call).",
            "",
            "| series | phase | p50 ms | mean ms | share |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for name, data in coarse.items():
            if not data["handler_clock"]:
                lines.append(f"| {name} | (its clock differs from the host's: no split) | | | |")
                continue
            lines += [
                f"| {name} | {r['phase']} | {_ms(r['p50_ms'])} | {_ms(r['mean_ms'])} | "
                f"{r['share_pct']} % |"
                for r in data["phases"]
            ]
    return lines


def _imports_markdown(profiles: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for backend, profile in profiles.items():
        if "top" not in profile:
            lines += [
                "",
                f"Import profile, {backend}: {profile.get('error') or profile.get('skipped')}",
            ]
            continue
        lines += [
            "",
            f"## What the runtime imports before its first /next ({backend})",
            "",
            f"One extra cold start with `PYTHONPROFILEIMPORTTIME=1` (not in the figures): "
            f"{profile['modules']} top-level imports, {_ms(profile['total_ms'])} ms in all "
            "(the profiler's own cost included). Largest, cumulative:",
            "",
            "| module | ms |",
            "| --- | ---: |",
            *(f"| `{r['module']}` | {_ms(r['cumulative_ms'])} |" for r in profile["top"]),
        ]
    return lines


def _orphans_markdown(result: dict[str, Any]) -> list[str]:
    found = [
        f"- {name}: " + ", ".join(f"{n} `{comm}`" for comm, n in data["orphans_reaped"].items())
        for name, data in result["scenarios"].items()
        if data.get("orphans_reaped")
    ]
    server = result.get("api_server_zombies")
    if server:
        found.append(
            "- the `kindling serve` of the API phase, before it stopped: "
            + ", ".join(f"{n} `{comm}`" for comm, n in server.items())
            + " zombie children (never reaped)"
        )
    if not found:
        return []
    return [
        "",
        "## Orphans",
        "",
        "A child subreaper (the bench, as `HostResources.prepare` makes it, like the worker) "
        "inherits the orphaned helpers of what it starts; the bench reaps them after each "
        "sample (outside the timed part). Reaped or found, by series:",
        "",
        *found,
    ]


def _destroy_markdown(result: dict[str, Any]) -> list[str]:
    rows = []
    for name, data in result["scenarios"].items():
        summary = data["summary"].get("destroy_ms")
        if summary and summary.get("n"):
            rows.append(
                f"| {name} | {_ms(summary['p50_ms'])} | {_ms(summary['p99_ms'])} | "
                f"{_ms(summary['min_ms'])} |"
            )
    if not rows:
        return []
    return [
        "",
        "## Destroy (not in the totals above)",
        "",
        "| series | p50 ms | p99 ms | min ms |",
        "| --- | ---: | ---: | ---: |",
        *rows,
    ]


def plot(result: dict[str, Any], path: Path) -> dict[str, Any]:
    """Box plots of every series' total (log scale); skipped without matplotlib."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return {"skipped": "matplotlib is not installed in this environment"}
    series: list[tuple[str, list[float]]] = []
    for name, data in result["scenarios"].items():
        samples = data["samples_ms"]
        if data["kind"] == "api" and samples.get("init_ms"):
            series.append((f"{name}: Init Duration", samples["init_ms"]))
        if samples.get("total_ms"):
            label = name if data["kind"] == "baseline" else f"{name}: to first response"
            series.append((label, samples["total_ms"]))
    if not series:
        return {"skipped": "no samples"}
    height = max(3.0, 0.42 * len(series) + 1.2)
    fig, ax = plt.subplots(figsize=(10, height))
    labels = [label for label, _ in reversed(series)]
    ax.boxplot(
        [values for _, values in reversed(series)],
        vert=False,
        whis=(0, 100),
        widths=0.6,
    )
    for index, (_, values) in enumerate(reversed(series), start=1):
        ax.scatter(values, [index] * len(values), s=6, alpha=0.35, color="tab:blue")
    ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    reference = (result["scenarios"].get(REFERENCES["sandbox"]) or {}).get("summary", {})
    if reference.get("total_ms", {}).get("p50_ms"):
        ax.axvline(reference["total_ms"]["p50_ms"], ls="--", lw=0.8, color="tab:red")
    ax.set_xscale("log")
    ax.set_xlabel("ms (log scale); whiskers: min and max; dashed: python3.11 -c pass p50")
    meta = result["meta"]
    ax.set_title(f"kindling cold start, {meta['started']} ({meta['git']})", fontsize=10)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"file": str(path)}


def write(result: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    """coldstart-<stamp>.json/.md, copied to coldstart-latest.json/.md."""
    json_path = out_dir / f"coldstart-{stamp}.json"
    md_path = out_dir / f"coldstart-{stamp}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown(result))
    shutil.copyfile(json_path, out_dir / "coldstart-latest.json")
    shutil.copyfile(md_path, out_dir / "coldstart-latest.md")
    return json_path, md_path


def errors_markdown(scenarios: dict[str, dict[str, Any]]) -> list[str]:
    """The Errors section of a cold-start report (coldstart's and heavy's): each series
    with failed samples, its count and a first error; nothing when none failed."""
    errors = [
        f"- {name}: {data['error_count']} failed sample(s), e.g. `{data['errors'][0]}`"
        for name, data in scenarios.items()
        if data["errors"]
    ]
    return ["", "## Errors", "", *errors] if errors else []

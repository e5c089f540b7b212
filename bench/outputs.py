"""What the benches share: run metadata, summaries, result files (``<name>-<stamp>.json``
/ ``.md``, copied to ``<name>-latest.*``), plots, and the frame of a scenario's main
(``scenario``).

The plots need matplotlib (a dev dependency); without it a run says so and draws nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.coldreport import percentile, summarize

__all__ = [
    "bars",
    "boxplot",
    "cdf_plot",
    "finish_meta",
    "fmt_ms",
    "meta",
    "percentile",
    "publish_plotted",
    "say",
    "scenario",
    "stamp",
    "summarize",
    "write",
]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def meta(scenario: str, started: str, quick: bool, params: dict[str, Any]) -> dict[str, Any]:
    from bench.run import _git_rev

    return {
        "scenario": scenario,
        "started": started,
        "quick": quick,
        "git": _git_rev(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "root": os.geteuid() == 0,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "params": params,
    }


def finish_meta(result: dict[str, Any], elapsed_s: float) -> None:
    result["meta"]["elapsed_s"] = round(elapsed_s, 1)
    result["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]


def record_leftovers(result: dict[str, Any], *data_dirs: Path) -> None:
    """What the run's kindling servers left on the host (cgroups, links, nft tables,
    processes), found by the instance ids of their data dirs; only root can see them."""
    if os.geteuid() != 0:
        return
    from bench.coldstart import instance_of, leftovers

    result["leftovers"] = leftovers([instance_of(d / "runtimes") for d in data_dirs])


def markdown_tail(result: dict[str, Any]) -> list[str]:
    """The closing sections every scenario's Markdown ends with: leftovers and the plot."""
    lines: list[str] = []
    if result.get("leftovers"):
        lines += ["", "## LEFT BEHIND by this run's kindling", ""]
        lines += [f"- `{item}`" for item in result["leftovers"]]
    plot = result.get("plot") or {}
    drawn = f"`{plot['file']}`" if plot.get("file") else f"not drawn: {plot.get('skipped')}"
    return [*lines, "", "## Plot", "", drawn]


def fmt_ms(value: Any) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def write(
    result: dict[str, Any], markdown: str, out_dir: Path, name: str, when: str
) -> tuple[Path, Path]:
    """``<name>-<when>.json`` and ``.md``, copied to ``<name>-latest.json`` / ``.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}-{when}.json"
    md_path = out_dir / f"{name}-{when}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown)
    shutil.copyfile(json_path, out_dir / f"{name}-latest.json")
    shutil.copyfile(md_path, out_dir / f"{name}-latest.md")
    return json_path, md_path


def publish(
    result: dict[str, Any],
    markdown: str,
    out_dir: Path,
    name: str,
    when: str,
    png: Path | None = None,
) -> None:
    """Writes the JSON and Markdown (``write``), the plot's ``-latest`` copy (if the
    scenario plots), and prints the table: the end of every scenario's main."""
    json_path, md_path = write(result, markdown, out_dir, name, when)
    if png is not None and png.exists():
        shutil.copyfile(png, out_dir / f"{name}-latest.png")
    print(markdown)
    print(f"wrote {json_path}\nwrote {md_path}", file=sys.stderr)


def publish_plotted(
    result: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    out_dir: Path,
    name: str,
    when: str,
    draw: Callable[[Path], dict[str, Any]] | None,
) -> None:
    """``publish`` of a scenario that plots: ``draw(png)`` (None: ``--plot no``) sets
    ``result["plot"]`` before the Markdown is written, so the Markdown names the file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}-{when}.png"
    result["plot"] = draw(png) if draw is not None else {"skipped": "--plot no"}
    publish(result, markdown(result), out_dir, name, when, png)


def scenario(
    name: str,
    quick: bool,
    params: dict[str, Any],
    measure: Callable[[dict[str, Any], Path], None],
    markdown: Callable[[dict[str, Any]], str],
    out_dir: Path,
) -> int:
    """The frame of a scenario's main: the result's metadata (``meta``), then
    ``measure(result, tmp)`` filling the result in with a temporary directory of its
    own (``kindling-<name>-*``, gone after), then the metadata's end (``finish_meta``)
    and ``publish``. Returns main's exit status."""
    when = stamp()
    started = time.monotonic()
    result: dict[str, Any] = {"meta": meta(name, when, quick, params)}
    with tempfile.TemporaryDirectory(prefix=f"kindling-{name}-") as tmp:
        measure(result, Path(tmp))
    finish_meta(result, time.monotonic() - started)
    publish(result, markdown(result), out_dir, name, when)
    return 0


def _pyplot() -> Any:
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    return plt


def boxplot(
    series: Sequence[tuple[str, list[float]]],
    path: Path,
    title: str,
    xlabel: str,
    marks: Sequence[tuple[float, str]] = (),
    log: bool = True,
) -> dict[str, Any]:
    """Horizontal box plots (whiskers: min and max) with every sample drawn as a dot;
    ``marks`` are dashed vertical lines (value, label)."""
    plt = _pyplot()
    if plt is None:
        return {"skipped": "matplotlib is not installed in this environment"}
    series = [(label, values) for label, values in series if values]
    if not series:
        return {"skipped": "no samples"}
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.45 * len(series) + 1.4)))
    ordered = list(reversed(series))
    ax.boxplot([v for _, v in ordered], vert=False, whis=(0, 100), widths=0.6)
    for index, (_, values) in enumerate(ordered, start=1):
        ax.scatter(values, [index] * len(values), s=6, alpha=0.35, color="tab:blue")
    ax.set_yticks(range(1, len(ordered) + 1), [label for label, _ in ordered], fontsize=8)
    colors = ("tab:red", "tab:green", "tab:purple", "tab:orange")
    for (value, label), color in zip(marks, colors, strict=False):
        ax.axvline(value, ls="--", lw=0.8, color=color, label=label)
    if marks:
        ax.legend(fontsize=7, loc="lower right")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"file": str(path)}


def cdf_plot(
    curves: Sequence[tuple[str, list[float]]],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    marks: Sequence[tuple[float, str]] = (),
) -> dict[str, Any]:
    """Step curves of how many samples are at or below x (counts, not fractions)."""
    plt = _pyplot()
    if plt is None:
        return {"skipped": "matplotlib is not installed in this environment"}
    curves = [(label, sorted(values)) for label, values in curves if values]
    if not curves:
        return {"skipped": "no samples"}
    fig, ax = plt.subplots(figsize=(10, 5))
    for label, values in curves:
        ax.step(values, range(1, len(values) + 1), where="post", label=label)
    for value, label in marks:
        ax.axvline(value, ls="--", lw=0.8, color="tab:red", label=label)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"file": str(path)}


def bars(
    groups: Sequence[tuple[str, dict[str, float]]],
    path: Path,
    title: str,
    ylabel: str,
) -> dict[str, Any]:
    """Grouped bars: one group per label, one bar per key of its dict."""
    plt = _pyplot()
    if plt is None:
        return {"skipped": "matplotlib is not installed in this environment"}
    if not groups:
        return {"skipped": "no figures"}
    keys = list(dict.fromkeys(k for _, values in groups for k in values))
    width = 0.8 / max(1, len(keys))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for index, key in enumerate(keys):
        xs = [g + index * width for g in range(len(groups))]
        ys = [values.get(key, 0.0) for _, values in groups]
        drawn = ax.bar(xs, ys, width, label=key)
        ax.bar_label(drawn, fmt="%.1f", fontsize=7)
    ax.set_xticks(
        [g + width * (len(keys) - 1) / 2 for g in range(len(groups))],
        [label for label, _ in groups],
        fontsize=8,
    )
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"file": str(path)}

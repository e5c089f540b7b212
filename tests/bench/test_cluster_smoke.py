"""The cluster bench, through ``python -m bench cluster``: it runs a real topology (each
worker in a network namespace of its own, with its own address), reports every figure,
and leaves no namespace, link or process behind, whether it ends or is interrupted.

No timing thresholds: this checks the harness, not how fast the cluster is.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kindling.worker.sandbox.process import tree_pids

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="network namespaces and bridges need root (CAP_NET_ADMIN)"
)


def _bench_hosts() -> set[str]:
    """The bench's namespaces and host-side links (prefix "kb", bench/hostnet.py)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found = {line.split()[0] for line in names.splitlines() if line.startswith("kindling-kb")}
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found |= {
        line.split(":")[1].strip().split("@")[0]
        for line in links.splitlines()
        if line.split(":")[1].strip().startswith("kb")
    }
    return found


def _command(out: Path, workers: int) -> list[str]:
    return [
        *(sys.executable, "-m", "bench", "cluster", "--workers", str(workers)),
        *("--requests", "30", "--warmup", "5", "--duration", "0.5"),
        *("--cold-samples", "1", "--events", "20", "--out", str(out)),
    ]


def test_the_cluster_bench_puts_each_worker_on_a_host_of_its_own(tmp_path: Path) -> None:
    before = _bench_hosts()
    out = tmp_path / "results"
    done = subprocess.run(
        _command(out, workers=2), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "cluster-latest.json").read_text())
    addresses = result["addresses"]
    assert addresses["single"] == "127.0.0.1"
    control = ipaddress.IPv4Address(addresses["control0"])
    # the host's side of the bridge
    assert addresses["control1"] == addresses["hop"] == addresses["control0"]
    hosts = [ipaddress.IPv4Address(addresses[name]) for name in ("w1", "w2")]
    assert control in ipaddress.IPv4Network("172.30.0.0/16")
    assert len({control, *hosts}) == 3  # a host each, and none of them loopback
    assert all(_net(control) == _net(h) for h in hosts)
    for target in ("single", "hop", "cluster"):
        assert result["latency"][target]["errors"] == 0, result["latency"]
        assert result["throughput"][target]["errors"] == 0, result["throughput"]
        assert result["latency"][target]["p50_ms"] > 0
        assert result["throughput"][target]["rps"] > 0
        assert result["cold_ms"][target] > 0
    for target in ("single", "cluster"):
        events = result["async"][target]
        assert events["errors"] == 0, events
        assert events["events_per_s"] > 0 and events["accepted_per_s"] > 0
    assert result["async"]["cluster"]["fronts"] == 2
    assert result["recovery_s"] > 0
    assert result["redis_admission_ms"] > 0
    table = (out / "cluster-latest.md").read_text()
    assert "each in its own network namespace" in table
    assert (
        "| figure | single node | cluster: 1 control, SQLite, counting in process | ratio "
        "| cluster: 2 controls, PostgreSQL, Redis | ratio |"
    ) in table
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + 7, rows  # head, rule; p50, p99, invokes/s, cold, async, Redis, kill
    assert _bench_hosts() <= before  # its namespaces and links are gone


def _net(address: ipaddress.IPv4Address) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"{address}/24", strict=False)


def test_an_interrupted_cluster_bench_removes_its_hosts_and_processes(tmp_path: Path) -> None:
    before = _bench_hosts()
    log = (tmp_path / "bench.log").open("w+")
    bench = subprocess.Popen(
        _command(tmp_path / "results", workers=2),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while "round 1/" not in Path(log.name).read_text():  # the topology is up
            assert bench.poll() is None, Path(log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, Path(log.name).read_text()[-3000:]
            time.sleep(0.1)
        during = _bench_hosts() - before
        assert len([n for n in during if n.startswith("kindling-kb")]) == 2, during
        servers = [pid for pid in tree_pids(bench.pid) if pid != bench.pid]
        assert len(servers) >= 6  # single, three control nodes, two workers, children
        bench.send_signal(signal.SIGINT)  # KeyboardInterrupt, wherever it is
        assert bench.wait(120) != 0
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
        log.close()
    assert _bench_hosts() <= before, _bench_hosts() - before
    assert not [pid for pid in servers if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"

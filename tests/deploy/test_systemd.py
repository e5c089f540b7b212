"""deploy/systemd/: the units pass ``systemd-analyze verify`` and say what ADR 0023
decided: the secret as a credential, restarts, a stop that lets kindling drain and clean
up (KillMode=), stop timeouts above the drain, a hardened control node, and a worker
left with every privilege its sandboxes need."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kindling.limits import SHUTDOWN_GRACE_S
from tests.deploy.units import (
    ENV_EXAMPLE,
    SYSTEMD,
    UNITS,
    commented_keys,
    env_file,
    flag,
    sections,
    value,
    values,
)
from tests.e2e.support import KINDLING

REPO = SYSTEMD.parents[1]
CONTROL, WORKER = (SYSTEMD / name for name in UNITS)
#: Options that give the service a mount namespace of its own, hide devices, make /sys,
#: /proc/sys or the cgroup tree read-only, drop capabilities, filter system calls or
#: forbid namespaces: each breaks a worker's sandboxes (ADR 0014, 0015, 0023).
WORKER_FORBIDDEN = {
    "DynamicUser", "User", "Group", "NoNewPrivileges", "CapabilityBoundingSet",
    "AmbientCapabilities", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
    "PrivateNetwork", "PrivateUsers", "PrivateMounts", "PrivateIPC", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
    "ProtectHostname", "ProtectProc", "ProcSubset", "RestrictNamespaces", "RestrictSUIDSGID",
    "RestrictAddressFamilies", "SystemCallFilter", "SystemCallArchitectures",
    "MemoryDenyWriteExecute", "LockPersonality", "ReadOnlyPaths", "InaccessiblePaths",
    "ReadWritePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths", "RootDirectory",
    "RootImage", "MountAPIVFS", "DevicePolicy", "DeviceAllow", "IPAddressDeny",
    "KillMode=control-group",
}  # fmt: skip


def _seconds(text: str) -> float:
    """A systemd time span as the units write it: ``90``, ``90s``, ``2min``, ``1min 30s``."""
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(min|s|)\b", text):
        total += float(number) * (60 if unit == "min" else 1)
    assert total > 0, f"not a time span: {text!r}"
    return total


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_finds_nothing(name: str, tmp_path: Path) -> None:
    """On a copy whose ExecStart= names a real executable (verify checks that it is one;
    /opt/kindling is not installed here): every setting known to this systemd, no
    warning at all."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: `make test` installs Debian's systemd")
    text = (SYSTEMD / name).read_text()
    assert "/opt/kindling/.venv/bin/kindling " in text
    (tmp_path / name).write_text(text.replace("/opt/kindling/.venv/bin/kindling", str(KINDLING)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )


def test_verify_would_catch_a_bad_setting(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key or a bad value is reported."""
    unit = tmp_path / "kindling-worker.service"
    unit.write_text(
        WORKER.read_text()
        .replace("/opt/kindling/.venv/bin/kindling", str(KINDLING))
        .replace("KillMode=process", "KillMode=drain\nRestartSecs=5")
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "RestartSecs" in done.stderr and "kill mode" in done.stderr, done.stderr


@pytest.mark.parametrize("unit", [CONTROL, WORKER], ids=UNITS)
def test_the_secret_is_a_credential_and_failures_restart(unit: Path) -> None:
    assert value(unit, "Service", "LoadCredential") == "cluster-secret:/etc/kindling/cluster.secret"
    assert "KINDLING_CLUSTER_SECRET_FILE=%d/cluster-secret" in values(
        unit, "Service", "Environment"
    )
    # a worker exits 0 at its --max-lifetime to be started afresh: always, for it
    assert value(unit, "Service", "Restart") == ("always" if unit == WORKER else "on-failure")
    assert value(unit, "Unit", "StartLimitIntervalSec") == "0"  # a store down for long
    assert value(unit, "Service", "EnvironmentFile") == "/etc/kindling/kindling.env"
    text = unit.read_text()
    assert not re.search(r"^[^#]*KINDLING_CLUSTER_SECRET=", text, flags=re.M)
    assert value(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("unit", [CONTROL, WORKER], ids=UNITS)
def test_a_stop_waits_longer_than_the_drain(unit: Path) -> None:
    """TimeoutStopSec= above the grace the env file gives kindling, and above kindling's
    own default (a host whose env file leaves it out)."""
    grace = float(env_file(ENV_EXAMPLE)["KINDLING_SHUTDOWN_GRACE_S"])
    assert grace == SHUTDOWN_GRACE_S
    stop = _seconds(value(unit, "Service", "TimeoutStopSec") or "")
    assert stop >= grace + 20, f"{unit.name}: {stop} s leaves no time to tear down"


def test_the_control_node_is_hardened() -> None:
    conf = dict(sections(CONTROL)["Service"])
    assert conf["KillMode"] == "mixed"  # SIGTERM to kindling alone, then nothing is left
    assert conf["DynamicUser"] == "yes" and conf["NoNewPrivileges"] == "yes"
    assert conf["CapabilityBoundingSet"] == "" and conf["AmbientCapabilities"] == ""
    assert conf["ProtectSystem"] == "strict" and conf["PrivateDevices"] == "yes"
    assert conf["RestrictNamespaces"] == "yes" and conf["ProtectControlGroups"] == "yes"
    assert "@system-service" in values(CONTROL, "Service", "SystemCallFilter")
    data_dir = flag(conf["ExecStart"].split(), "--data-dir")
    assert data_dir == "%S/" + conf["StateDirectory"]  # the only place it can write


def test_the_worker_keeps_what_sandboxes_need() -> None:
    settings = sections(WORKER)["Service"]
    conf = dict(settings)
    present = {k for k, _ in settings} | {f"{k}={v}" for k, v in settings}
    assert not present & WORKER_FORBIDDEN, present & WORKER_FORBIDDEN
    # kindling's cgroups are below its own: they are its to manage
    assert conf["Delegate"] == "yes"
    # SIGTERM to kindling only; its crash supervisor must outlive it (ADR 0016, 0023)
    assert conf["KillMode"] == "process"
    assert conf["TasksMax"] == "infinity"
    assert conf["OOMPolicy"] == "continue"  # a sandbox's OOM kill is the function's error
    argv = conf["ExecStart"].split()
    assert flag(argv, "--role") == "worker"
    assert flag(argv, "--data-dir") == "%S/" + conf["StateDirectory"]


def test_the_env_example_names_only_settings_kindling_reads() -> None:
    """A misspelt key would be ignored without a word: each must be one config.py reads."""
    config = (REPO / "src" / "kindling" / "config.py").read_text()
    active = set(env_file(ENV_EXAMPLE))
    assert {"KINDLING_STORE", "KINDLING_CONTROL", "KINDLING_ADVERTISE"} <= active
    for key in active | commented_keys(ENV_EXAMPLE):
        assert f'"{key}"' in config, key
    assert "KINDLING_CLUSTER_SECRET" not in active
    assert "KINDLING_ROLE" not in active  # each unit says its own --role
    advertised = env_file(ENV_EXAMPLE)["KINDLING_ADVERTISE"]
    assert advertised.endswith(
        ":" + flag(dict(sections(WORKER)["Service"])["ExecStart"].split(), "--port")
    )

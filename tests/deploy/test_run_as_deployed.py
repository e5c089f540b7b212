"""The deployment files' command lines are real: each is run here as a plain process, as
its supervisor would start it, with only the paths, ports and listening address moved
to this test's own (and the placeholders filled in), and the worker must register with
the control nodes, serve an invocation, answer the probes, and stop on SIGTERM within
the time the files give it, leaving no process behind.

- systemd: ExecStart= with the environment the unit builds (EnvironmentFile= from
  kindling.env.example, Environment=, the credential under %d, StateDirectory= under %S);
  the control unit's DynamicUser= as an unprivileged uid, without capabilities.
- Kubernetes: each container's command and args with ``$(POD_IP)`` and ``$(NODE_NAME)``
  from the downward API, its env from the Secrets, the secret volume's file with its
  mode, the control pod as its runAsUser, the worker as PID 1 of a PID namespace of its
  own (the pod's, not the host's); two control processes, as the StatefulSet's two
  replicas, and the worker must register with both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kindling.worker.server import HEALTH_PATH
from tests.deploy import manifests
from tests.deploy.units import ENV_EXAMPLE, SYSTEMD, UNITS, emulate, flag, set_flag, value
from tests.e2e.support import (
    KINDLING,
    ROLE,
    _alive,
    descendants,
    free_port,
    lambda_client,
    make_zip,
    wait_active,
    working_in,
)
from tests.engines import Postgres

#: The first uid systemd gives a DynamicUser= service (systemd.exec(5)).
DYNAMIC_UID = 61184
HANDLER = b"def handler(event, context):\n    return {'hello': event['name']}\n"


@dataclass
class Process:
    """One deployed command, started as its supervisor would start it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    uid: int | None = None
    data_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    children: dict[int, str] = field(default_factory=dict)
    started: float = 0.0
    stopped_in: float = 0.0
    #: As a pod's container: PID 1 of a PID namespace of its own (not hostPID).
    pid_namespace: bool = False

    def start(self) -> None:
        argv = self.argv
        if self.pid_namespace:  # unshare waits for it and exits with its status
            argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
        if self.uid is not None:  # DynamicUser= / runAsUser: no root, no capability
            argv = [
                "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", *argv,
            ]  # fmt: skip
        self.started = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, env=self.env, cwd="/", stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )

    def main_pid(self) -> int:
        """kindling's pid (below unshare, in a PID namespace)."""
        assert self.proc is not None
        if not self.pid_namespace:
            return self.proc.pid
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                pid = self.proc.pid
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                if children:
                    (child,) = map(int, children)
                    status = Path(f"/proc/{child}/status").read_text()
                    # "NSpid: <pid here> 1": PID 1 in its own namespace, as in a pod
                    assert re.search(r"^NSpid:\s+\d+\s+1$", status, flags=re.M), status
                    return child
            assert time.monotonic() < deadline, f"{self.name}: unshare started nothing"
            time.sleep(0.05)

    def check_user(self) -> None:
        """It runs as the user it was started as, with no capability left."""
        assert self.proc is not None
        status = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        )
        assert status["Uid"].split()[0] == str(0 if self.uid is None else self.uid)
        if self.uid is not None:
            assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0

    def tail(self) -> str:
        return f"--- {self.name}:\n" + self.log.read_text(errors="replace")[-3000:]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float) -> int:
        """SIGTERM, as systemd's stop and the kubelet send it; the exit code, or a failure
        if it took longer than ``timeout`` (TimeoutStopSec=, terminationGracePeriodSeconds)."""
        assert self.proc is not None
        main = self.main_pid()
        self.children = descendants(main)
        if self.data_dir is not None:
            self.children.update(working_in(self.data_dir))
        os.kill(main, signal.SIGTERM)  # the container's PID 1 gets it, not unshare
        signalled = time.monotonic()
        try:
            code = self.proc.wait(timeout)
            self.stopped_in = time.monotonic() - signalled
            return code
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self.name} outlived its stop timeout\n{self.tail()}") from None

    def leftovers(self) -> dict[int, str]:
        """Processes it had started still alive a few seconds after it exited (killed, so
        that a failing test leaves nothing either)."""
        deadline = time.monotonic() + 10
        while True:
            left = {p: s for p, s in self.children.items() if _alive(p, s)}
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return left


def _wait(check: Any, what: str, procs: list[Process], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            assert proc.proc is None or proc.running(), f"{proc.name} exited\n{proc.tail()}"
        with contextlib.suppress(OSError, ValueError, subprocess.CalledProcessError):
            found = check()
            if found:
                return found
        assert time.monotonic() < deadline, f"{what}\n" + "\n".join(p.tail() for p in procs)
        time.sleep(0.25)


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return int(answer.status)


def _status(endpoint: str, secret: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(KINDLING), "cluster", "status", "--json", "--endpoint", endpoint],
        env={"KINDLING_CLUSTER_SECRET": secret, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    workers: list[dict[str, Any]] = json.loads(out.stdout)
    return workers


def _registered(endpoint: str, secret: str, worker_id: str, url: str) -> bool:
    return any(
        w["worker_id"] == worker_id and w["url"] == url and w["healthy"]
        for w in _status(endpoint, secret)
    )


def _invoke(endpoint: str, name: str) -> None:
    lam = lambda_client(endpoint)
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    wait_active(lam, name, timeout=60)
    answer = lam.invoke(FunctionName=name, Payload=json.dumps({"name": "deployed"}))
    body = answer["Payload"].read()
    assert "FunctionError" not in answer and json.loads(body) == {"hello": "deployed"}, body


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory the unprivileged control process can reach (tmp_path's parents are
    root's own, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="kindling-deploy-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        if not os.environ.get("KEEP_DEPLOY"):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(postgres: Postgres) -> str:
    """A fresh database, over TCP: the control process is not root, and the test
    server's socket directory is the postgres user's."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres.psql(f"CREATE DATABASE {name}")
    return postgres.url(name, tcp=True)


def _as_user(uid: int | None) -> int | None:
    """``uid`` if kindling's venv is reachable by it; otherwise root, with a warning (a
    checkout below a directory only root may enter, e.g. /root): the command line is
    still checked, the lack of privileges is not."""
    if uid is None:
        return None
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "test", "-x", KINDLING],
        check=False,
    )
    if done.returncode == 0:
        return uid
    warnings.warn(f"{KINDLING} is not reachable by uid {uid}: run as root", stacklevel=2)
    return None


def test_the_systemd_units_run_a_cluster(root: Path, store: str) -> None:
    secret = secrets.token_hex(32)
    secret_file = root / "cluster.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    cport, wport = free_port(), free_port()
    text = ENV_EXAMPLE.read_text()
    for key, new in {
        "KINDLING_STORE": store,
        "KINDLING_CONTROL": f"http://127.0.0.1:{cport}",
        "KINDLING_ADVERTISE": f"http://127.0.0.1:{wport}",
        "#KINDLING_WORKER_ID": "deployed-w1",
    }.items():
        text, count = re.subn(rf"^{key}=.*$", f"{key.lstrip('#')}={new}", text, flags=re.M)
        assert count == 1, f"{key} is not in kindling.env.example"
    env_path = root / "kindling.env"
    env_path.write_text(text)
    env_path.chmod(0o600)
    files = {
        "/etc/kindling/kindling.env": env_path,
        "/etc/kindling/cluster.secret": secret_file,
        "/opt/kindling/.venv/bin/kindling": KINDLING,
    }
    procs: list[Process] = []
    try:
        for unit_name, port in zip(UNITS, (cport, wport), strict=True):
            unit = SYSTEMD / unit_name
            run = emulate(unit, root / unit.stem, files, DYNAMIC_UID)
            assert flag(run.argv, "--host") == "0.0.0.0"
            assert flag(run.argv, "--port") == ("9000" if "control" in unit_name else "9100")
            set_flag(run.argv, "--host", "127.0.0.1")
            set_flag(run.argv, "--port", str(port))
            proc = Process(
                unit.stem, run.argv, run.env, root / f"{unit.stem}.log", _as_user(run.uid),
                Path(flag(run.argv, "--data-dir")),
            )  # fmt: skip
            proc.start()
            procs.append(proc)
            if "control" in unit_name:
                assert run.uid == DYNAMIC_UID  # the control unit runs unprivileged
                _wait(lambda: _get(f"http://127.0.0.1:{cport}/metrics") == 200, "control", procs)
                proc.check_user()
        endpoint = f"http://127.0.0.1:{cport}"
        _wait(
            lambda: _registered(endpoint, secret, "deployed-w1", f"http://127.0.0.1:{wport}"),
            "the worker never registered with the control node",
            procs,
        )
        registered = time.monotonic() - procs[1].started
        _invoke(endpoint, "deployed")
        control, worker = procs
        worker_timeout = float(value(SYSTEMD / UNITS[1], "Service", "TimeoutStopSec") or 0)
        assert worker.stop(worker_timeout) == 0, worker.tail()
        # KillMode=process: after a clean stop nothing of the worker is left to kill
        assert not worker.leftovers(), worker.tail()
        control_timeout = float(value(SYSTEMD / UNITS[0], "Service", "TimeoutStopSec") or 0)
        assert control.stop(control_timeout) == 0, control.tail()
        assert not control.leftovers(), control.tail()
        print(
            f"\nsystemd units: the worker registered {registered:.1f} s after its start; "
            f"SIGTERM stopped the worker in {worker.stopped_in:.1f} s, "
            f"the control node in {control.stopped_in:.1f} s"
        )
    finally:
        for proc in reversed(procs):
            if proc.running():
                with contextlib.suppress(AssertionError):
                    proc.stop(60)
                proc.leftovers()


def test_the_kubernetes_containers_run_a_cluster(root: Path, store: str) -> None:
    """Both control replicas of the StatefulSet and one worker of the DaemonSet."""
    secret = secrets.token_hex(32)
    cluster_secret = manifests.find("Secret", "kindling-cluster")
    assert set(cluster_secret["stringData"]) == {"cluster-secret"}
    values = {("kindling-cluster", "cluster-secret"): secret, ("kindling-control", "store"): store}
    control_set = manifests.find("StatefulSet", "kindling-control")
    worker_set = manifests.find("DaemonSet", "kindling-worker")
    replicas = int(control_set["spec"]["replicas"])
    cports = [free_port() for _ in range(replicas)]
    wport = free_port()
    procs: list[Process] = []

    def env_of(spec: dict[str, Any], downward: dict[str, str]) -> dict[str, str]:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        for name, source in manifests.env_sources(spec).items():
            if "value" in source:
                env[name] = str(source["value"])
                continue
            ref = source["valueFrom"]
            if "fieldRef" in ref:
                env[name] = downward[ref["fieldRef"]["fieldPath"]]
                continue
            key = (ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            if key in values:
                env[name] = values[key]
            else:
                assert ref["secretKeyRef"].get("optional"), f"{name}: no value for {key}"
        return env

    def mounted(pod: dict[str, Any], spec: dict[str, Any], where: Path) -> dict[str, str]:
        """Each volume at a directory of ``where``: emptyDirs root's and 0777 as the kubelet
        makes them, secrets as files with their defaultMode."""
        moved = {}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in spec["volumeMounts"]:
            target = where / mount["name"]
            target.mkdir(parents=True)
            volume = volumes[mount["name"]]
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                for (secret_name, key), val in values.items():
                    if secret_name == name:
                        (target / key).write_text(val)
                        (target / key).chmod(volume["secret"]["defaultMode"])
            else:
                assert "emptyDir" in volume, volume
                target.chmod(0o777)
            moved[mount["mountPath"]] = str(target)
        return moved

    def command(spec: dict[str, Any], env: dict[str, str], moved: dict[str, str]) -> list[str]:
        argv = manifests.expand([str(w) for w in spec["command"] + spec["args"]], env)
        assert argv[0] == "/opt/kindling/.venv/bin/kindling"
        argv[0] = str(KINDLING)
        set_flag(argv, "--host", "127.0.0.1")
        data = flag(argv, "--data-dir")
        for path, new in moved.items():
            if data.startswith(path + "/"):
                set_flag(argv, "--data-dir", new + data[len(path) :])
        return argv

    try:
        pod = control_set["spec"]["template"]["spec"]
        spec = manifests.container(control_set)
        uid = int(pod["securityContext"]["runAsUser"])
        uid = _as_user(uid)
        for index, port in enumerate(cports):
            env = env_of(spec, {})
            moved = mounted(pod, spec, root / f"control-{index}")
            argv = command(spec, env, moved)
            assert flag(argv, "--port") == str(spec["ports"][0]["containerPort"])
            set_flag(argv, "--port", str(port))
            name = f"{control_set['metadata']['name']}-{index}"
            proc = Process(name, argv, env, root / f"{name}.log", uid)
            proc.start()
            procs.append(proc)
        probe = manifests.container(control_set)["readinessProbe"]["httpGet"]["path"]
        for port in cports:
            _wait(
                lambda port=port: _get(f"http://127.0.0.1:{port}{probe}") == 200, "control", procs
            )
        for proc in procs:
            proc.check_user()

        pod = worker_set["spec"]["template"]["spec"]
        spec = manifests.container(worker_set)
        env = env_of(spec, {"status.podIP": "127.0.0.1", "spec.nodeName": "node-a"})
        moved = mounted(pod, spec, root / "worker")
        env["KINDLING_CLUSTER_SECRET_FILE"] = next(
            env["KINDLING_CLUSTER_SECRET_FILE"].replace(path, new, 1)
            for path, new in moved.items()
            if env["KINDLING_CLUSTER_SECRET_FILE"].startswith(path + "/")
        )
        argv = command(spec, env, moved)
        advertised = flag(argv, "--advertise")
        assert advertised == f"http://127.0.0.1:{spec['ports'][0]['containerPort']}"
        set_flag(argv, "--port", str(wport))
        set_flag(argv, "--advertise", f"http://127.0.0.1:{wport}")
        controls = flag(argv, "--control").split(",")
        assert len(controls) == replicas
        set_flag(argv, "--control", ",".join(f"http://127.0.0.1:{p}" for p in cports))
        worker = Process("kindling-worker", argv, env, root / "worker.log", pid_namespace=True)
        worker.data_dir = Path(flag(argv, "--data-dir"))
        worker.start()
        procs.append(worker)
        health = spec["livenessProbe"]["httpGet"]["path"]
        assert health == HEALTH_PATH
        _wait(lambda: _get(f"http://127.0.0.1:{wport}{health}") == 200, "worker probe", procs)
        for port in cports:  # every control node hears it: each can place on it
            _wait(
                lambda port=port: _registered(
                    f"http://127.0.0.1:{port}", secret, "node-a", f"http://127.0.0.1:{wport}"
                ),
                f"the worker never registered with the control node on {port}",
                procs,
            )
        _invoke(f"http://127.0.0.1:{cports[0]}", "deployed-k8s")
        grace = float(worker_set["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        assert worker.stop(grace) == 0, worker.tail()
        assert not worker.leftovers(), worker.tail()
        grace = float(control_set["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        for proc in procs[:-1]:
            assert proc.stop(grace) == 0, proc.tail()
    finally:
        for proc in reversed(procs):
            if proc.running():
                with contextlib.suppress(AssertionError):
                    proc.stop(60)
                proc.leftovers()

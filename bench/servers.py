"""The processes under test: a real ``kindling serve`` and the bare echo server.

Each runs in its own subprocess with the bench's interpreter; the bench only talks to
them over loopback. CPU time is read from /proc so a phase can say how many
microseconds of server (and sandbox) CPU one request cost.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from kindling.worker.sandbox.process import tree_pids

HOST = "127.0.0.1"
ECHO_HANDLER = "def handler(e, c):\n    return e\n"
_TICK = os.sysconf("SC_CLK_TCK")


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(
    port: int, proc: subprocess.Popen[Any], timeout: float, log: Path, host: str = HOST
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; log:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s; log:\n{_tail(log)}")


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process ((0, 0) when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK  # utime, stime


class CpuMeter:
    """CPU seconds (user, system) of a server process and, apart, of its descendants."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: dict[int, tuple[float, float]] = {}

    def _snapshot(self) -> dict[int, tuple[float, float]]:
        return {p: cpu_seconds(p) for p in tree_pids(self.pid)}

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self) -> dict[str, float]:
        """server_user, server_sys, children_user, children_sys seconds since ``start``."""
        end = self._snapshot()
        out = dict.fromkeys(("server_user", "server_sys", "children_user", "children_sys"), 0.0)
        for pid, (user, system) in end.items():
            user0, system0 = self._start.get(pid, (0.0, 0.0))
            who = "server" if pid == self.pid else "children"
            out[f"{who}_user"] += user - user0
            out[f"{who}_sys"] += system - system0
        return out


class Server:
    """A server subprocess; ``stop`` ends it and everything it started."""

    def __init__(
        self, name: str, proc: subprocess.Popen[Any], port: int, log: Path, host: str = HOST
    ) -> None:
        self.name = name
        self.proc = proc
        self.port = port
        self.log = log
        self.host = host

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                for pid in reversed(tree_pids(self.proc.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait(5)


def start_kindling(
    workdir: Path,
    repo: Path,
    cprofile_out: Path | None = None,
    *,
    tag: str | None = None,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    host: str = HOST,
    wrap: tuple[str, ...] = (),
) -> Server:
    """``kindling serve`` on ``host`` (loopback), a free port, with its data under
    ``workdir``.

    With ``cprofile_out`` it runs under ``bench.cprofile_serve`` (SIGUSR1/SIGUSR2);
    ``extra_args``/``extra_env`` make it a cluster's control node or worker, ``wrap``
    runs it elsewhere (``bench.hostnet.HostNet.wrap``: in a host's network namespace).
    """
    port = port or free_port(host)
    tag = tag or ("kindling" if cprofile_out is None else "kindling-cprofile")
    log = workdir / f"{tag}.log"
    env = dict(os.environ)
    env.update(extra_env or {})
    env.pop("AWS_ENDPOINT_URL", None)
    # the operator's switch: bench compares the unisolated process backend too
    env["KINDLING_UNSAFE_PROCESS_BACKEND"] = "1"
    # the bench stops its server with SIGTERM and waits 10 s: drain for less than that
    env["KINDLING_SHUTDOWN_GRACE_S"] = "5"
    # every bench request is signed with the dev key, also on a cluster's non-loopback
    # addresses, where it is off unless named (ADR 0036)
    env.setdefault("KINDLING_DEV_KEYS", "1")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(repo), str(repo / "src"), env.get("PYTHONPATH")])
    )
    entry: tuple[str, ...] = ("-m", "kindling")
    if cprofile_out is not None:
        entry = ("-m", "bench.cprofile_serve", str(cprofile_out))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *wrap,
                *(sys.executable, *entry, "serve", "--host", host),
                *("--port", str(port), "--data-dir", str(workdir / tag)),
                *extra_args,
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = Server(tag, proc, port, log, host)
    try:
        wait_port(port, proc, 30.0, log, host)
    except BaseException:
        server.stop()
        raise
    return server


def start_echo(workdir: Path, repo: Path) -> Server:
    """The bare echo server (``bench.echo_server``) on a port it picks itself."""
    log = workdir / "echo.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(repo), str(repo / "src"), env.get("PYTHONPATH")])
    )
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.echo_server", "--host", HOST],
            cwd=repo,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.isdigit():
        proc.kill()
        proc.wait()
        raise RuntimeError(f"echo server did not start; log:\n{_tail(log)}")
    server = Server("bare", proc, int(line), log)
    wait_port(server.port, proc, 10.0, log)
    return server


#: One full vCPU (Lambda: 1,769 MB): the bench measures the platform, not the CPU share a
#: 128 MB function gets (7 % of a core caps one sandbox near 700 invokes/s).
ECHO_MEMORY_MB = 1769


def deploy_echo(port: int, name: str, runtime: str = "python3.11", host: str = HOST) -> None:
    """Creates the echo function with botocore and waits until it is Active."""
    import botocore.session

    session = botocore.session.Session()
    client = session.create_client(
        "lambda",
        region_name="us-east-1",
        endpoint_url=f"http://{host}:{port}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", ECHO_HANDLER)
    client.create_function(
        FunctionName=name,
        Runtime=runtime,
        Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/bench",
        Code={"ZipFile": buffer.getvalue()},
        MemorySize=ECHO_MEMORY_MB,
        Timeout=30,
    )
    client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )

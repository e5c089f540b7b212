"""Fixtures of the break-out suite.

One real ``kindling serve`` for the session, listening on every host address (so that
reaching it from a sandbox would succeed if the network let it). Each attack is a
deployed python3.11 function, once per isolating backend, whose handler tries the attack
and returns what it saw. Beside it runs a victim function on the same backend: after
every attack it must still answer, from the same sandbox (its ``/tmp`` secret intact),
with its own code, hostname and clock, and the server must still be up.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from kindling.control.models import NETWORK_TAG, SANDBOX_TAG
from kindling.worker.sandbox.gvisor import RUNSC
from tests.e2e.support import REGION, ROLE, Server, make_zip, wait_active
from tests.hostcheck import host_cmdlines, processes_with

BACKENDS = ("namespace", "gvisor")

#: Helpers every attacker's handler starts with: outcomes are errno names, or "ok".
PRELUDE = '''
import ctypes, errno, json, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)

def errname(code):
    return errno.errorcode.get(code, str(code))

def c_result(ret):
    """'ok' when a libc call succeeded, else the name of its errno."""
    return errname(ctypes.get_errno()) if ret == -1 else "ok"

def attempt(fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        return errname(exc.errno)
    return "ok"

def in_child(fn):
    """Runs fn() in a forked child; returns what it returned (JSON through a pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(w, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)
'''

#: The victim: keeps a secret in its /tmp and one in its code, reports who it is.
VICTIM = """
import os, secrets, socket, time
TOKEN = "KINDLING" + "-SECRET-TMP-" + secrets.token_hex(16)
with open("/tmp/victim-secret", "w") as fh:
    fh.write(TOKEN)

def own_address():
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))
            return sock.getsockname()[0]
    except OSError:
        return None

def handler(event, context):
    time.sleep(event.get("hold", 0))
    with open("/tmp/victim-secret") as fh:
        tmp = fh.read()
    with open("/var/task/secret.txt") as fh:
        code = fh.read()
    return {
        "token": TOKEN, "tmp": tmp, "code": code, "hostname": socket.gethostname(),
        "time": time.time(), "request_id": context.aws_request_id, "ip": own_address(),
        "echo": event.get("echo"),
    }
"""


def unavailable(backend: str) -> str | None:
    """Why a backend cannot run here, or None."""
    if os.geteuid() != 0:
        return f"the {backend} backend needs root"
    if backend == "gvisor" and not os.access(RUNSC, os.X_OK):
        return f"runsc is not installed at {RUNSC} (Debian package 'runsc')"
    return None


@dataclass
class Outcome:
    """One invocation: the decoded payload, the FunctionError header and the log tail."""

    payload: Any
    error: str | None
    log: str

    @property
    def error_type(self) -> str | None:
        return self.payload.get("errorType") if isinstance(self.payload, dict) else None


@dataclass
class Fleet:
    """Deploys functions on the shared server (each once per key and backend)."""

    server: Server
    lam: Any
    deployed: dict[tuple[str, str], str] = field(default_factory=dict)
    #: The running test: what each invocation saw is kept in its ``user_properties``.
    node: pytest.Item | None = None

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def server_pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def deploy(
        self,
        key: str,
        backend: str,
        files: dict[str, Any],
        *,
        network: str = "allowed",
        **params: Any,
    ) -> str:
        found = self.deployed.get((key, backend))
        if found:
            return found
        name = f"sec-{key}-{backend}-{uuid.uuid4().hex[:6]}"
        # Lambda's default of 3 s is too short for an attacker that forks on gVisor at
        # 128 MB (7 % of a CPU) on a loaded CI machine: a test that needs a timeout
        # names its own
        params.setdefault("Timeout", 30)
        self.lam.create_function(
            FunctionName=name,
            Runtime=params.pop("Runtime", "python3.11"),
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": make_zip(files)},
            Tags={SANDBOX_TAG: backend, NETWORK_TAG: network},
            **params,
        )
        self.deployed[(key, backend)] = name
        wait_active(self.lam, name)
        return name

    def attacker(self, key: str, backend: str, code: str, **params: Any) -> str:
        """An attacker: ``code`` defines ``handler``; the PRELUDE's helpers come first."""
        return self.deploy(key, backend, {"app.py": PRELUDE + code}, **params)

    def invoke(self, name: str, event: Any = None) -> Outcome:
        response = self.lam.invoke(
            FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail"
        )
        body = response["Payload"].read()
        log = base64.b64decode(response.get("LogResult", "")).decode("utf-8", "replace")
        outcome = Outcome(json.loads(body) if body else None, response.get("FunctionError"), log)
        if self.node is not None:
            self.node.user_properties.append((name, json.dumps(outcome.payload)))
        return outcome

    def run(self, name: str, event: Any = None) -> Any:
        """Invokes an attacker that is expected to return normally; its payload."""
        outcome = self.invoke(name, event)
        assert outcome.error is None, (outcome.payload, outcome.log)
        return outcome.payload

    def code_tree(self, name: str) -> Path:
        """The host path of a function's unpacked code."""
        config = self.lam.get_function_configuration(FunctionName=name)
        digest = base64.b64decode(config["CodeSha256"]).hex()
        return self.data_dir / "code" / "trees" / digest

    def delete_all(self) -> None:
        for name in self.deployed.values():
            with contextlib.suppress(ClientError):
                self.lam.delete_function(FunctionName=name)
        self.deployed.clear()


@dataclass
class Victim:
    backend: str
    name: str
    code_secret: str
    code_dir: Path
    token: str = ""
    last: dict[str, Any] = field(default_factory=dict)


def sandbox_pids(fleet: Fleet, backend: str, function: str) -> set[int]:
    """Host processes of a function's sandboxes: for ``namespace`` the runtime and all it
    started (they carry its environment), for ``gvisor`` runsc's processes of its
    sandboxes (their command lines name the sandbox id)."""
    found: set[int] = set()
    if backend == "gvisor":
        marker = f"AWS_LAMBDA_FUNCTION_NAME={function}"
        ids = []
        for config in (fleet.data_dir / "sandboxes-gvisor").glob("*/config.json"):
            with contextlib.suppress(OSError):
                if marker in config.read_text():
                    ids.append(config.parent.name.encode())
        for pid, cmdline in host_cmdlines().items():
            if any(sandbox_id in cmdline for sandbox_id in ids):
                found.add(pid)
        return found
    needle = f"AWS_LAMBDA_FUNCTION_NAME={function}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if needle in Path(f"/proc/{entry}/environ").read_bytes():
                    found.add(int(entry))
    return found


def zombies(parent: int) -> list[int]:
    """Children of ``parent`` that died and were never waited for."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{entry}/stat").read_text()
                fields = raw[raw.rfind(")") + 2 :].split()
                if fields[0] == "Z" and int(fields[1]) == parent:
                    found.append(int(entry))
    return found


def with_marker(marker: str) -> list[int]:
    """Host processes whose command line contains ``marker``."""
    return processes_with(marker)


def host_addresses() -> list[str]:
    """The host's addresses, IPv4 and IPv6 (link-local and sandbox links left out)."""
    text = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    found = set()
    for line in text.splitlines():
        match = re.match(r"\d+: (\S+)\s+inet6? ([0-9a-f.:]+)/\d+ .*?scope (\w+)", line)
        if match and match.group(3) != "link" and not match.group(1).startswith("kv"):
            found.add(match.group(2))
    return sorted(found)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("kindling-security")
    # The victim must keep its sandbox for the whole suite. The adaptive keep-alive learns
    # its few-second gaps between checks and would, rightly, reap it during one slow
    # attack; reaping is not what the suite tests, so the window here is fixed and long.
    srv = Server(
        data_dir=root / "data",
        log_path=root / "server.log",
        extra_args=("--host", "0.0.0.0"),
        env={"KINDLING_KEEP_ALIVE_POLICY": "fixed", "KINDLING_KEEP_ALIVE_S": "7200"},
    )
    srv.start()
    yield srv
    srv.stop_cleanly()


@pytest.fixture(scope="session")
def lam(server: Server) -> Any:
    return boto3.session.Session().client(
        "lambda",
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=90,
            max_pool_connections=16,
        ),
    )


@pytest.fixture(scope="session")
def fleet(server: Server, lam: Any) -> Iterator[Fleet]:
    deployed = Fleet(server, lam)
    yield deployed
    deployed.delete_all()


@pytest.fixture(autouse=True)
def _observed(request: pytest.FixtureRequest, fleet: Fleet) -> Iterator[None]:
    fleet.node = request.node
    yield
    fleet.node = None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    reason = unavailable(name)
    if reason:
        pytest.skip(f"backend {name} skipped: {reason}")
    return name


@pytest.fixture(scope="session")
def victims(fleet: Fleet) -> dict[str, Victim]:
    return {}


@pytest.fixture
def victim(backend: str, fleet: Fleet, victims: dict[str, Victim]) -> Iterator[Victim]:
    """The victim of this backend; afterwards it must answer as before, from the same
    sandbox, and the server must still be up."""
    found = victims.get(backend)
    if found is None:
        secret = "KINDLING" + "-SECRET-CODE-" + secrets.token_hex(16)
        name = fleet.deploy("victim", backend, {"app.py": VICTIM, "secret.txt": secret})
        found = Victim(backend, name, secret, fleet.code_tree(name))
        found.last = fleet.run(name)
        found.token = found.last["token"]
        victims[backend] = found
    yield found
    assert fleet.server.proc is not None and fleet.server.proc.poll() is None, (
        f"the server died:\n{fleet.server.log_tail()}"
    )
    check_victim(fleet, found)


def clock_slack(backend: str) -> float:
    """How far a sandbox's clock may read from the host's, in seconds. A namespace
    sandbox reads the host's own clock (a float of it: one second covers rounding). A
    gVisor sandbox keeps a clock of its own, calibrated from the host's now and then: on
    a loaded CI machine it read 1.3 s ahead of the host's. A clock an attacker set would
    be off by far more than a minute."""
    return 60.0 if backend == "gvisor" else 1.0


def check_victim(
    fleet: Fleet,
    victim: Victim,
    answer: dict[str, Any] | None = None,
    asked_at: float | None = None,
) -> None:
    """The victim answers with its own code and the /tmp of the sandbox it started in,
    and its clock reads a time between the asking and the answer (a bracket, not a
    tolerance around now: a loaded CI run once took 21 s to answer a gVisor invoke).
    ``asked_at`` is when a given ``answer`` was asked for."""
    if answer is None:
        asked_at = time.time()
        answer = fleet.run(victim.name)
    assert asked_at is not None, "an answer given without the time it was asked for"
    assert answer["token"] == victim.token, "the victim's sandbox was killed or replaced"
    assert answer["tmp"] == victim.token, "the victim's /tmp was changed"
    assert answer["code"] == victim.code_secret
    assert answer["hostname"] == "sandbox"
    slack = clock_slack(victim.backend)
    assert asked_at - slack <= answer["time"] <= time.time() + slack, "the victim's clock moved"
    victim.last = answer

"""A SnapStart function's init runs in the interpreter that later forks its restored
copies, so it can change the code that hardens them (forkserver.py). Whatever it
changes, a restored invocation never runs with a capability: the start fails cleanly,
or every process the copy has reports no capability and cannot get one back."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from kindling.runtimes.catalog import find_python
from tests.e2e.support import ROLE, function_log, make_zip, wait_active, wait_for

from .conftest import Fleet, unavailable
from .test_host_details import HOST_FIGURES, _host, _lines_shared

pytestmark = pytest.mark.skipif(
    find_python("3.12") is None, reason="SnapStart needs python3.12, not on this host"
)

#: Init code reaching the fork server through the runtime client's globals.
TAMPER_PRELUDE = """
import ctypes, marshal, os, socket, struct, sys, time
import __main__

SERVER = __main__.KINDLING_SNAPSHOT
SERVE = type(SERVER)
G = SERVE._become_copy.__globals__
LINUX = G["linux"]
ALLOW_ALL = struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000)  # BPF: return SECCOMP_RET_ALLOW
"""

#: The start of a fork server's loop that init puts in place of the real one: it takes
#: each order, forks the copy, enters the copy's namespaces and maps its ids as the real
#: loop does, and forks once more; a tampering goes on from there, in the loop's body.
OWN_FORK_LOOP = """
def own_serve():
    control = SERVER._control
    control.send(b"ready")
    while True:
        data, fds, _flags, _addr = socket.recv_fds(control, 4096, 2)
        if not data:
            os._exit(0)
        if os.fork() != 0:
            for fd in fds:
                os.close(fd)
            continue
        control.close()
        order = marshal.loads(data)
        status = socket.socket(fileno=fds[1])
        os.dup2(fds[0], 1)
        os.dup2(fds[0], 2)
        LINUX.unshare(G["RESTORE_FLAGS"])
        for name, text in (("uid_map", "993 993 1"), ("setgroups", "deny"),
                           ("gid_map", "990 990 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text + "\\n")
        if os.fork() != 0:
            os._exit(0)
"""

TAMPERINGS = {
    "none": "",
    "no-drop": """
LINUX.drop_capabilities = lambda: None
LINUX.drop_bounding_capabilities = lambda: None
""",
    "no-seccomp": """
LINUX.load_seccomp = lambda program: None
""",
    "no-drop-fake-filter": """
real_load = LINUX.load_seccomp
LINUX.drop_capabilities = lambda: None
LINUX.load_seccomp = lambda program: real_load(ALLOW_ALL)
""",
    "drop-then-fake-filter": """
real_load = LINUX.load_seccomp
LINUX.load_seccomp = lambda program: real_load(ALLOW_ALL)
""",
    "own-fork-loop": OWN_FORK_LOOP
    + """        status.send(b"pid")
        status.recv(16)  # the host mounted its /proc, /tmp and /dev/shm meanwhile
        real_load(ALLOW_ALL)  # one more filter, as an honest copy has
        status.close()
        os.environ.update(order["env"])
        return

real_load = LINUX.load_seccomp
SERVER.serve = own_serve
""",
    # reports a child's pid as its own (SCM_CREDENTIALS: it may, with CAP_SYS_ADMIN in
    # its namespaces), so the host moves and checks the child, a clean decoy, while the
    # copy itself stays in the template's cgroup with the template's filter only
    "decoy-pid": OWN_FORK_LOOP
    + """        decoy = os.fork()
        if decoy == 0:
            LINUX.drop_bounding_capabilities()
            LINUX.drop_capabilities()
            LINUX.load_seccomp(SERVER._program)
            while True:
                time.sleep(3600)
        time.sleep(0.2)  # let the decoy harden first
        creds = struct.pack("iII", decoy, 993, 990)
        status.sendmsg([b"pid"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
        LINUX.drop_bounding_capabilities()  # clean-looking in the template's cgroup;
        LINUX.drop_capabilities()  # no own /proc and /tmp then, but unshare gets them back
        status.recv(16)
        status.close()
        os.environ.update(order["env"])
        return

SERVER.serve = own_serve
""",
    "grandchild-before-report": """
real_fork, real_unshare = os.fork, LINUX.unshare
STATE = {"copy": False, "spawned": False}

def unshare(flags):
    real_unshare(flags)
    STATE["copy"] = True

def fork():
    pid = real_fork()
    if pid == 0 and STATE["copy"] and not STATE["spawned"]:
        STATE["spawned"] = True
        if real_fork() == 0:  # stays in the template's cgroup, with every capability
            while True:
                time.sleep(3600)
    return pid

LINUX.unshare = unshare
os.fork = fork
""",
}

HANDLER = """
CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
RESTORE_FLAGS = 0x10000000 | 0x00020000 | 0x40000000 | 0x20000000 | 0x08000000 | 0x04000000
libc = ctypes.CDLL(None, use_errno=True)

def status_of(path):
    found = {}
    with open(path) as fh:
        for line in fh:
            key, _, value = line.partition(":")
            found[key] = value.strip()
    return found

def capabilities():
    \"\"\"Every task this copy can see: its capability sets, or a read error.\"\"\"
    seen = {}
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                got = status_of(f"/proc/{pid}/task/{tid}/status")
            except OSError:
                continue
            if got.get("State", "").startswith("Z"):
                continue
            seen[f"{pid}/{tid}"] = {k: got.get(k, "?") for k in CAP_FIELDS}
    return seen

def after_unshare():
    \"\"\"A child asks for new namespaces again, and reports what it then holds.\"\"\"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = "refused"
        if libc.unshare(RESTORE_FLAGS) == 0:
            out = status_of("/proc/self/status")["CapEff"]
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    got = os.read(r, 100).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return got

def handler(event, context):
    return {"tasks": capabilities(), "after_unshare": after_unshare(),
            "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"""


def _deploy(fleet: Fleet, tampering: str, code: str | None = None) -> tuple[str, str]:
    name = f"sec-tamper-{tampering}-{uuid.uuid4().hex[:6]}"
    if code is None:
        code = TAMPER_PRELUDE + TAMPERINGS[tampering] + HANDLER
    fleet.lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": code})},
        SnapStart={"ApplyOn": "PublishedVersions"},
        Timeout=30,
    )
    fleet.deployed[(name, "")] = name
    wait_active(fleet.lam, name)
    version = str(fleet.lam.publish_version(FunctionName=name)["Version"])
    fleet.lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    return name, version


def _restored_invoke(fleet: Fleet, name: str, version: str) -> tuple[str, Any]:
    """("ok", payload) or ("failed", what the caller saw)."""
    try:
        response = fleet.lam.invoke(FunctionName=name, Qualifier=version, Payload=b"{}")
    except ClientError as exc:
        return "failed", exc.response
    body = json.loads(response["Payload"].read())
    if "FunctionError" in response:
        return "failed", body
    return "ok", body


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_a_restored_copy_never_runs_with_a_capability(tampering: str, fleet: Fleet) -> None:
    reason = unavailable("namespace")
    if reason:
        pytest.skip(reason)
    name, version = _deploy(fleet, tampering)
    outcomes = []
    for _attempt in range(2):  # a refused start must not leave a template to reuse
        outcome, seen = _restored_invoke(fleet, name, version)
        outcomes.append(outcome)
        if outcome == "ok":
            assert seen["init_type"] == "snap-start"
            assert seen["tasks"], seen
            for task, caps in seen["tasks"].items():
                assert {k: int(v, 16) for k, v in caps.items()} == dict.fromkeys(caps, 0), (
                    task,
                    caps,
                )
            assert seen["after_unshare"] == "refused", seen
        else:
            assert tampering != "none", seen
            error = seen.get("Error", {}) if isinstance(seen, dict) else {}
            assert error.get("Code") == "ServiceException", seen
            message = str(error.get("Message", ""))
            # the caller gets Lambda's service error words; the detail is in the log
            assert message and "tmpl-" not in message and "/" not in message
    # each of these changes is caught (the check above would pass a copy that hardened
    # itself some other way; none of these does)
    assert outcomes == ["ok", "ok"] if tampering == "none" else ["failed", "failed"]
    if tampering != "none":
        assert "is tampered" in fleet.server.log_tail(200_000)
    assert fleet.server.proc is not None and fleet.server.proc.poll() is None
    assert fleet.run(fleet.deploy("plain", "namespace", {"app.py": HONEST})) == {"ok": True}


HONEST = """
def handler(event, context):
    return {"ok": True}
"""


#: Init code that gives its copies a plain procfs in place of the masked one.
UNMASKINGS = {
    "plain-mount-proc": """
import gc, types
for found in gc.get_objects():  # the masking module, wherever the zygote keeps it
    if isinstance(found, types.ModuleType) and found.__name__.endswith(".procmask"):
        found.mount_proc = lambda proc, memory_mb: LINUX.mount("proc", proc, "proc", 14)
""",
    "plain-proc-over-the-mask": """
real_drop = LINUX.drop_bounding_capabilities

def mount_then_drop():
    try:  # still capable in the copy's own namespaces: a plain procfs over the mask
        LINUX.mount("proc", "/proc", "proc", 14)
    except OSError as exc:
        sys.stderr.write(f"plain procfs: {exc}\\n")
    real_drop()

LINUX.drop_bounding_capabilities = mount_then_drop
""",
}

READ_FIGURES = """
def handler(event, context):
    seen = {}
    for path in event["paths"]:
        try:
            with open(path) as fh:
                seen[path] = fh.read()
        except OSError as exc:
            seen[path] = f"error {exc.errno}"
    seen["init_type"] = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")
    return seen
"""


@pytest.mark.parametrize("tampering", list(UNMASKINGS))
def test_a_restored_copy_never_sees_an_unmasked_proc(tampering: str, fleet: Fleet) -> None:
    reason = unavailable("namespace")
    if reason:
        pytest.skip(reason)
    code = TAMPER_PRELUDE + UNMASKINGS[tampering] + READ_FIGURES
    name, version = _deploy(fleet, tampering, code)
    response = fleet.lam.invoke(
        FunctionName=name, Qualifier=version, Payload=json.dumps({"paths": HOST_FIGURES})
    )
    seen = json.loads(response["Payload"].read())
    if "FunctionError" in response:  # a restore that fails must fail cleanly
        assert seen.get("errorType"), seen
        return
    assert seen["init_type"] == "snap-start"
    for path in HOST_FIGURES:
        host = _host(path)
        if host:
            assert seen[path] != host, path
            assert not _lines_shared(seen[path], host), (path, _lines_shared(seen[path], host))
    assert seen["/proc/meminfo"].split()[1] == str(128 * 1024), seen["/proc/meminfo"]


#: Init leaves files in /tmp; each copy must get them, with their modes and as its own
#: files, in a /tmp (and /dev/shm) no other copy shares.
TMP_KEPT = """
import os, time

os.makedirs("/tmp/kept/sub")
os.chmod("/tmp/kept/sub", 0o750)
with open("/tmp/kept/sub/data.bin", "wb") as fh:
    fh.write(b"x" * 100_000)
os.chmod("/tmp/kept/sub/data.bin", 0o640)
with open("/tmp/kept/run.sh", "w") as fh:
    fh.write("#!/bin/sh\\n")
os.chmod("/tmp/kept/run.sh", 0o755)
os.symlink("/etc/hostname", "/tmp/kept/link")

def handler(event, context):
    mark = event["mark"]
    for where in ("/tmp", "/dev/shm"):
        with open(f"{where}/{mark}", "w") as fh:
            fh.write(mark)
    time.sleep(event["hold"])
    kept = {}
    for path in ("/tmp/kept", "/tmp/kept/sub", "/tmp/kept/sub/data.bin", "/tmp/kept/run.sh"):
        st = os.stat(path)
        kept[path] = [oct(st.st_mode & 0o7777), st.st_size if path.endswith(".bin") else 0,
                      st.st_uid, st.st_gid]
    with open("/tmp/kept/sub/data.bin", "ab") as fh:  # the copy's own: writable
        fh.write(b"y")
    os.remove("/tmp/kept/run.sh")
    link = os.readlink("/tmp/kept/link") if os.path.islink("/tmp/kept/link") else "no link"
    sizes = {w: os.statvfs(w).f_blocks * os.statvfs(w).f_frsize for w in ("/tmp", "/dev/shm")}
    return {"tmp": sorted(os.listdir("/tmp")), "shm": sorted(os.listdir("/dev/shm")),
            "kept": kept, "link": link, "sizes": sizes,
            "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""


def test_restored_copies_keep_inits_tmp_and_share_none(fleet: Fleet) -> None:
    reason = unavailable("namespace")
    if reason:
        pytest.skip(reason)
    name, version = _deploy(fleet, "tmp-kept", TMP_KEPT)

    def invoke(mark: str) -> Any:
        response = fleet.lam.invoke(
            FunctionName=name,
            Qualifier=version,
            Payload=json.dumps({"mark": mark, "hold": 3}),
        )
        body = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, body
        return body

    with ThreadPoolExecutor(2) as pool:
        seen = dict(zip(("a", "b"), pool.map(invoke, ["a", "b"]), strict=True))
    for mark, got in seen.items():
        assert got["init_type"] == "snap-start"
        assert got["tmp"] == sorted(["kept", mark]), got["tmp"]
        assert got["shm"] == [mark], got["shm"]
        assert got["kept"] == {
            "/tmp/kept": ["0o755", 0, 993, 990],
            "/tmp/kept/sub": ["0o750", 0, 993, 990],
            "/tmp/kept/sub/data.bin": ["0o640", 100_000, 993, 990],
            "/tmp/kept/run.sh": ["0o755", 0, 993, 990],
        }, got["kept"]
        assert got["link"] == "/etc/hostname"  # a symlink stays one (never followed)
        assert got["sizes"] == {"/tmp": 512 * 1024 * 1024, "/dev/shm": 64 * 1024 * 1024}


TMP_PAST_BOUNDS = """
import os

os.makedirs("/tmp/many")
for n in range(10_001):  # one past SNAPSHOT_TMP_COPY_ENTRIES (with the directory)
    open(f"/tmp/many/{n}", "w").close()

def handler(event, context):
    return {"tmp": sorted(os.listdir("/tmp")),
            "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""


def test_a_tmp_past_its_bounds_is_not_copied_and_the_log_says_so(fleet: Fleet) -> None:
    reason = unavailable("namespace")
    if reason:
        pytest.skip(reason)
    name, version = _deploy(fleet, "tmp-bounds", TMP_PAST_BOUNDS)
    response = fleet.lam.invoke(FunctionName=name, Qualifier=version)
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    assert body == {"tmp": [], "init_type": "snap-start"}
    wait_for(
        lambda: (
            "/tmp after init is past the snapshot's bounds"
            in function_log(fleet.server.endpoint, name)
        ),
        30,
    )

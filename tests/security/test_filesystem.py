"""Break-out attempts through the filesystem: other functions' code and /tmp, kindling's
own data, the host's files, and writes where a function may not write."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import Fleet, Victim, sandbox_pids

#: Reads a file or lists a directory: "ok:<what it saw>" or the errno's name.
PROBE = """
def probe(path):
    try:
        if os.path.isdir(path):
            return "ok:" + ",".join(sorted(os.listdir(path)))
        with open(path, "rb") as fh:
            return "ok:" + fh.read(300).decode("utf-8", "replace")
    except OSError as exc:
        return errname(exc.errno)
"""

SPY = (
    PROBE
    + '''
SKIP = {"/proc", "/sys", "/dev", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

def hunt():
    """Every file it can see (the host's shared runtime files aside) holding a secret."""
    needle = ("KINDLING" + "-SECRET-").encode()
    found = []
    for dirpath, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in SKIP]
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as fh:
                    if needle in fh.read(1 << 20):
                        found.append(path)
            except OSError:
                pass
    return found

def handler(event, context):
    with open("/tmp/own", "w") as fh:
        fh.write("mine")
    return {
        "paths": {path: probe(path) for path in event["paths"]},
        "found": hunt(),
        "own tmp": probe("/tmp/own"),
        "own code": sorted(os.listdir("/var/task")),
    }
'''
)


def test_other_functions_code_tmp_and_kindling_data_are_out_of_reach(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    data = fleet.data_dir
    digest = victim.code_dir.name
    server_pid = fleet.server_pid
    host_paths = [
        victim.code_dir / "secret.txt",
        victim.code_dir,
        data / "code" / "zips" / f"{digest}.zip",
        data / "code",
        data / "kindling.db",
        data,
        data / f"sandboxes-{backend}",
        Path(f"/proc/{server_pid}/environ"),
    ]
    for path in host_paths:  # the attack aims at real things
        assert path.exists(), path
    paths = [str(p) for p in host_paths] + [
        "/tmp/victim-secret",
        f"/proc/{server_pid}/root{data / 'kindling.db'}",
        f"/proc/{server_pid}/cwd",
    ]
    victim_pids = sandbox_pids(fleet, backend, victim.name)
    assert victim_pids, "the victim's sandbox is not found on the host"
    for pid in victim_pids:
        paths += [
            f"/proc/{pid}/root/tmp/victim-secret",
            f"/proc/{pid}/root/var/task/secret.txt",
            f"/proc/{pid}/cwd/secret.txt",
            f"/proc/{pid}/environ",
        ]

    if backend == "namespace":  # from the host, these paths do lead to the victim's secret
        secrets = [Path(f"/proc/{pid}/root/tmp/victim-secret") for pid in victim_pids]
        assert victim.token in [p.read_text() for p in secrets if p.exists()]

    name = fleet.attacker("spy", backend, SPY, MemorySize=1769, Timeout=30)
    seen = fleet.run(name, {"paths": paths})

    assert seen["paths"] == {path: "ENOENT" for path in paths}
    assert seen["found"] == [], "a secret of another function is readable"
    assert seen["own tmp"] == "ok:mine"
    assert seen["own code"] == ["app.py"]
    text = str(seen)
    assert victim.token not in text and victim.code_secret not in text


ESCAPE = (
    PROBE
    + """
def same_as_root(path):
    a, b = os.stat(path), os.stat("/")
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

def handler(event, context):
    views = {}
    for path in (
        "/proc/self/root", "/proc/1/root", "/proc/self/root/..", "/proc/1/root/../../..",
        "/../../..", "/proc/1/cwd/../../../..", "/var/task/../../../..", "/tmp/../..",
    ):
        views[path] = [sorted(os.listdir(path)), same_as_root(path)]
    os.chdir("/var/task")
    for _ in range(12):
        os.chdir("..")
    cwd = [os.getcwd(), sorted(os.listdir(".")), same_as_root(".")]
    os.chdir("/var/task")
    links = {}
    for name, target in (
        ("up", "../../../../../../../.."),
        ("shadow", "/etc/shadow"),
        ("via-proc", "/proc/1/root/../../../../etc/shadow"),
        ("data", event["data"]),
    ):
        link = "/tmp/" + name
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)
        links[name] = probe(link)
    return {
        "root": sorted(os.listdir("/")),
        "views": views,
        "cwd": cwd,
        "links": links,
        "host only": {path: probe(path) for path in event["host_only"]},
    }
"""
)

#: What a sandbox's root may hold: the runtime's files from the host and its own mounts.
SANDBOX_TOP = {
    "bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "root", "sbin",
    "sys", "tmp", "usr", "var",
}  # fmt: skip


def test_proc_root_symlinks_and_dotdot_stay_inside(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    host_only = sorted(set(os.listdir("/")) - SANDBOX_TOP)
    assert "work" in host_only  # the project's own directory is on the host, never inside
    data_db = str(fleet.data_dir / "kindling.db")
    name = fleet.attacker("escape", backend, ESCAPE)
    seen = fleet.run(
        name, {"host_only": ["/" + d for d in host_only] + ["/etc/shadow"], "data": data_db}
    )

    root = seen["root"]
    assert set(root) <= SANDBOX_TOP, f"host directories in the sandbox: {set(root) - SANDBOX_TOP}"
    assert {"usr", "tmp", "var", "proc"} <= set(root)
    for path, (listing, same) in seen["views"].items():
        assert listing == root and same, f"{path} leads out of the sandbox's root: {listing}"
    assert seen["cwd"] == ["/", root, True]
    assert seen["links"] == {
        "up": "ok:" + ",".join(root),
        "shadow": "ENOENT",
        "via-proc": "ENOENT",
        "data": "ENOENT",
    }
    assert seen["host only"] == {path: "ENOENT" for path in seen["host only"]}
    assert len(seen["host only"]) == len(host_only) + 1


READ_ONLY = """
def handler(event, context):
    return {
        "append to code": attempt(open, "/var/task/app.py", "a"),
        "create in code": attempt(open, "/var/task/new.py", "w"),
        "mkdir in code": attempt(os.mkdir, "/var/task/d"),
        "unlink code": attempt(os.unlink, "/var/task/app.py"),
        "rename code": attempt(os.rename, "/var/task/app.py", "/var/task/x.py"),
        "chmod code": attempt(os.chmod, "/var/task/app.py", 0o777),
        "create in opt": attempt(open, "/opt/new", "w"),
        "mkdir in opt": attempt(os.mkdir, "/opt/d"),
        "append to runtime": attempt(open, "/var/runtime/" + os.listdir("/var/runtime")[0], "a"),
        "create in runtime": attempt(open, "/var/runtime/evil.py", "w"),
        "create in /": attempt(open, "/evil", "w"),
        "append to /etc/passwd": attempt(open, "/etc/passwd", "a"),
        "create in /usr": attempt(open, "/usr/bin/evil", "w"),
        "create in /tmp": attempt(open, "/tmp/fine", "w"),
    }
"""


def test_code_opt_and_system_files_are_read_only(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    name = fleet.attacker("readonly", backend, READ_ONLY)
    tree = fleet.code_tree(name)
    before = {p.name: p.read_bytes() for p in tree.iterdir()}
    seen = fleet.run(name)
    assert seen.pop("create in /tmp") == "ok"  # the one place it may write
    assert seen.pop("chmod code") in ("EROFS", "EPERM")
    refused = {k: v for k, v in seen.items() if v not in ("EROFS", "EACCES")}
    assert not refused, f"writes that were not refused with EROFS/EACCES: {refused}"
    assert {p.name: p.read_bytes() for p in tree.iterdir()} == before

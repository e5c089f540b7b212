"""What a sandbox forked from a runtime zygote inherits: nothing of another function.

Sandboxes of one account's Python functions are forks of one zygote process. A secret
another function holds (in its environment and in its memory) must not be found
anywhere in an attacker's own memory, and it must start with no descriptors but its own
and fresh randomness.
"""

from __future__ import annotations

import re
import secrets

import pytest

from .conftest import Fleet

HOLDER = """
import os
KEPT = os.environ["MEM_SECRET"] * 4  # in the environment and on the heap

def handler(event, context):
    return {"pid": os.getpid(), "kept": len(KEPT)}
"""

SCANNER = r"""
import random, re, uuid

PATTERN = re.compile(rb"MEMSECRET" + rb"-([0-9a-f]{32})")

def own_memory_matches():
    found, scanned = set(), 0
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] == "[vvar]"):
                continue
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue
            scanned += len(chunk)
            found.update(m.group(1).decode() for m in PATTERN.finditer(chunk))
    return sorted(found), scanned

def handler(event, context):
    matches, scanned = own_memory_matches()
    with open("/proc/self/environ", "rb") as fh:
        environ = fh.read().decode(errors="replace")
    return {
        "matches": matches,
        "scanned": scanned,
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "environ_secret": "MEMSECRET" in environ,
        "random": random.random(),
        "uuid": str(uuid.uuid4()),
        "urandom": os.urandom(16).hex(),
    }
"""


def test_a_fork_holds_nothing_of_another_function(backend: str, fleet: Fleet) -> None:
    if backend != "namespace":
        pytest.skip("only the namespace backend forks sandboxes from zygotes")
    secret = secrets.token_hex(16)
    holder = fleet.deploy(
        f"memholder-{secret[:6]}",
        backend,
        {"app.py": HOLDER},
        Environment={"Variables": {"MEM_SECRET": f"MEMSECRET-{secret}"}},
    )
    assert fleet.run(holder)["kept"] == 4 * len(f"MEMSECRET-{secret}")
    # two scanners, started after the holder: both forks of the same zygote
    first = fleet.attacker(f"memscan-a-{secret[:6]}", backend, SCANNER)
    second = fleet.attacker(f"memscan-b-{secret[:6]}", backend, SCANNER)
    seen = [fleet.run(first), fleet.run(second)]

    for result in seen:
        assert result["scanned"] > 1_000_000, result  # it did read its own memory
        assert secret not in result["matches"], result
        assert not result["environ_secret"]
        # stdin, stdout, stderr, and the runtime's connection to the Runtime API
        assert len(result["fds"]) <= 5, result["fds"]
    assert seen[0]["random"] != seen[1]["random"]
    assert seen[0]["uuid"] != seen[1]["uuid"]
    assert seen[0]["urandom"] != seen[1]["urandom"]
    assert re.fullmatch(r"[0-9a-f-]{36}", seen[0]["uuid"])

"""What the host holds: processes by command line, and sandbox resources left behind."""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
from pathlib import Path

NUL = bytes(1)


def leftovers() -> list[str]:
    """Sandbox resources that outlived the tests that made them."""
    found = [
        path
        for path in glob.glob("/sys/fs/cgroup/**/kindling/*/*", recursive=True)
        if os.path.isdir(path)
    ]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line.split(":")[1].strip() for line in links.splitlines() if ": kv" in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [line for line in tables.splitlines() if "inet kindling" in line]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read()
            except OSError:
                continue
            runtime = b"/var/runtime/" in cmdline and b"bootstrap" in cmdline
            if runtime or b"kindling/worker/sandbox/nsinit" in cmdline:
                shown = cmdline.replace(NUL, b" ").decode(errors="replace")[:80]
                found.append(f"process {entry}: {shown}")
    return found


def host_cmdlines() -> dict[int, bytes]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes()
    return found


def processes_with(marker: str) -> list[int]:
    """Host processes whose command line contains ``marker``."""
    return [pid for pid, cmd in host_cmdlines().items() if marker.encode() in cmd]

"""A network namespace standing in for a host's uplink, for egress tests that send nothing
off the machine.

The namespace's only way out is an ``ifb`` interface (this kernel has no ``dummy``
driver; ``ifb`` drops whatever is routed to it just the same) with a default route via
it. A counting table there sees, per destination, every packet that would have left the
host: a packet counted at the uplink is one the egress policy let out; zero means it was
stopped. A kindling server or an ``Egress`` runs inside this namespace, so every address
a test sends to, public ones included, ends at the ``ifb`` device.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from kindling.worker.sandbox import linux

T = TypeVar("T")

#: The uplink's own address (a documentation block: it exists only in the namespace).
UPLINK_ADDRESS = "198.51.100.7"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def run_in_netns(netns: str | int, fn: Callable[[], T]) -> T:
    """Runs ``fn`` in a thread that entered the network namespace (a path, or an open
    descriptor); the caller's own thread never moves."""
    found: list[T] = []
    failed: list[BaseException] = []

    def body() -> None:
        fd = os.open(netns, os.O_RDONLY) if isinstance(netns, str) else netns
        try:
            linux.setns(fd, linux.CLONE_NEWNET)
            found.append(fn())
        except BaseException as exc:
            failed.append(exc)
        finally:
            if isinstance(netns, str):
                os.close(fd)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return found[0]


@dataclass
class Uplink:
    """The namespace ``name`` with ``ifb`` uplink ``device``, and its counters."""

    name: str
    device: str
    counted: dict[str, int] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def nft(self, script: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", "-f", "-"],
            input=script.encode(),
            check=True,
            capture_output=True,
        )

    def count(self, probes: list[tuple[str, str, int]]) -> None:
        """Counts, from now on, packets leaving by the uplink to each (protocol, address,
        port); the source is not looked at (a forged one counts too)."""
        rules = "\n".join(
            f'oifname "{self.device}" ip daddr {address} {proto} dport {port} counter '
            f'comment "{proto} {address} {port}"'
            for proto, address, port in probes
        )
        self.nft(
            "table ip netlab\ndelete table ip netlab\n"
            "table ip netlab { chain out { type filter hook postrouting priority 300; "
            f"policy accept;\n{rules}\n}}\n}}\n"
        )

    def left(self) -> dict[str, int]:
        """Packets seen leaving per probe, keyed ``"proto address port"``."""
        listed = subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", "-j", "list", "table", "ip", "netlab"],
            check=True,
            capture_output=True,
        ).stdout
        found: dict[str, int] = {}
        for item in json.loads(listed)["nftables"]:
            rule = item.get("rule")
            if rule is None:
                continue
            packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            found[rule["comment"]] = packets
        return found


@contextmanager
def uplink() -> Iterator[Uplink]:
    """A fresh namespace with loopback up and an ``ifb`` default route; removed after."""
    tag = uuid.uuid4().hex[:6]
    made = Uplink(f"kup{tag}", f"ifb{tag}")
    _ip("netns", "add", made.name)
    try:
        _ip("-n", made.name, "link", "set", "lo", "up")
        _ip("-n", made.name, "link", "add", made.device, "type", "ifb")
        _ip("-n", made.name, "addr", "add", f"{UPLINK_ADDRESS}/24", "dev", made.device)
        _ip("-n", made.name, "link", "set", made.device, "up")
        _ip("-n", made.name, "route", "add", "default", "dev", made.device)
        yield made
    finally:
        subprocess.run(["ip", "netns", "del", made.name], capture_output=True)

"""Network namespaces for sandboxes, each with its own Runtime API socket inside.

The worker makes the namespace from a helper thread (a thread can switch network
namespace alone), brings its loopback up and binds ``127.0.0.1:9001`` there. The
socket stays in that namespace for good, so the worker serves it from its own event
loop, while inside the sandbox ``127.0.0.1:9001`` reaches it and nothing else of the
host does. The same goes for ``127.0.0.1:9000``: kindling's own API, as the sandbox's
``AWS_ENDPOINT_URL`` (ADR 0035), reached without any route out of the namespace, so
it works with no network at all and never opens the host's other services. With
egress, the namespace also gets ``eth0`` (see ``egress.py``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass

from kindling.worker.sandbox import linux
from kindling.worker.sandbox.egress import Egress, Lease
from kindling.worker.sandbox.rtnl import LOOPBACK_INDEX, Rtnl

RUNTIME_API_PORT = 9001
#: Where kindling's API answers inside every sandbox (its ``AWS_ENDPOINT_URL``).
PLATFORM_API_PORT = 9000


@dataclass(slots=True)
class NetworkSlot:
    netns_fd: int
    runtime_api: socket.socket
    lease: Lease | None = None
    platform_api: socket.socket | None = None

    def close(self, egress: Egress | None) -> None:
        with contextlib.suppress(OSError):
            self.runtime_api.close()
        if self.platform_api is not None:
            with contextlib.suppress(OSError):
                self.platform_api.close()
        if self.lease is not None and egress is not None:
            egress.release(self.lease)
            self.lease = None
        if self.netns_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.netns_fd)
            self.netns_fd = -1


def _listening(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    sock.setblocking(False)
    return sock


def create_slot(
    egress: Egress | None, port: int = RUNTIME_API_PORT, existing: int | None = None
) -> NetworkSlot:
    """Runs in an executor thread; always returns the thread to the host namespace.

    ``existing``: a network namespace made by someone else (a snapshot's copy makes its
    own), to set up rather than make; the slot owns the descriptor from then on."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    netns = -1 if existing is None else existing
    lease = None
    sockets: list[socket.socket] = []
    try:
        if existing is None:
            linux.unshare(linux.CLONE_NEWNET)
            netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        else:
            linux.setns(existing, linux.CLONE_NEWNET)
        with Rtnl() as rtnl:
            rtnl.link_up(LOOPBACK_INDEX)
        sock = _listening(port)
        sockets.append(sock)
        platform = _listening(PLATFORM_API_PORT)
        sockets.append(platform)
        if egress is not None:
            lease = egress.lease()
            linux.setns(home, linux.CLONE_NEWNET)
            egress.attach(lease, netns)
            linux.setns(netns, linux.CLONE_NEWNET)
            egress.configure_inside(lease)
        return NetworkSlot(netns, sock, lease, platform)
    except BaseException:
        for made in sockets:
            made.close()
        if lease is not None and egress is not None:
            egress.release(lease)
        if netns >= 0:
            os.close(netns)
        raise
    finally:
        linux.setns(home, linux.CLONE_NEWNET)
        os.close(home)

"""Kernel interfaces a sandbox must not have: socket families beyond what Lambda offers
(AF_VSOCK reaches the hypervisor of a virtual machine; packet and raw sockets forge
traffic), and file-change notification, which on the read-only mounts a sandbox shares
with the host and other tenants would show their file activity."""

from __future__ import annotations

import os
import threading
import time

import pytest

from .conftest import Fleet, Victim

#: What Lambda offers (docs/adr/0014): Unix, IPv4, IPv6 and route netlink, no raw types.
SOCKETS = """
AF = {"UNIX": 1, "INET": 2, "KEY": 15, "NETLINK": 16, "PACKET": 17, "RDS": 21,
      "CAN": 29, "TIPC": 30, "BLUETOOTH": 31, "ALG": 38, "VSOCK": 40, "XDP": 44,
      "MCTP": 45, "INET6": 10, "APPLETALK": 5, "X25": 9, "SMC": 43, "QIPCRTR": 42}
STREAM, DGRAM, RAW, SEQPACKET, PACKET = 1, 2, 3, 5, 10
NONBLOCK = 0o4000

def open_socket(family, kind, proto=0):
    try:
        socket.socket(AF[family], kind, proto).close()
    except OSError as exc:
        return errname(exc.errno)
    return "ok"

def pair(family, kind):
    try:
        a, b = socket.socketpair(AF[family], kind)
    except OSError as exc:
        return errname(exc.errno)
    a.close()
    b.close()
    return "ok"

def handler(event, context):
    refused = {
        "vsock stream": open_socket("VSOCK", STREAM),
        "vsock dgram": open_socket("VSOCK", DGRAM),
        "vsock seqpacket nonblocking": open_socket("VSOCK", SEQPACKET | NONBLOCK),
        "vsock pair": pair("VSOCK", STREAM),
        "packet raw": open_socket("PACKET", RAW),
        "packet dgram": open_socket("PACKET", DGRAM),
        "inet packet": open_socket("INET", PACKET),
        "inet raw": open_socket("INET", RAW, 1),
        "inet raw nonblocking": open_socket("INET", RAW | NONBLOCK, 255),
        "inet6 raw": open_socket("INET6", RAW, 58),
        "key": open_socket("KEY", RAW, 2),
        "alg": open_socket("ALG", SEQPACKET),
        "rds": open_socket("RDS", SEQPACKET),
        "can": open_socket("CAN", RAW, 1),
        "tipc": open_socket("TIPC", SEQPACKET),
        "bluetooth": open_socket("BLUETOOTH", RAW, 1),
        "xdp": open_socket("XDP", RAW),
        "mctp": open_socket("MCTP", DGRAM),
        "smc": open_socket("SMC", STREAM),
        "qipcrtr": open_socket("QIPCRTR", DGRAM),
        "appletalk": open_socket("APPLETALK", DGRAM),
        "x25": open_socket("X25", SEQPACKET),
        "netlink uevents": open_socket("NETLINK", DGRAM, 15),
        "netlink audit": open_socket("NETLINK", RAW, 9),
        "netlink generic": open_socket("NETLINK", RAW, 16),
    }
    allowed = {
        "unix stream": open_socket("UNIX", STREAM),
        "unix dgram": open_socket("UNIX", DGRAM),
        "unix seqpacket": open_socket("UNIX", SEQPACKET),
        "unix pair": pair("UNIX", STREAM),
        "inet stream": open_socket("INET", STREAM),
        "inet dgram nonblocking": open_socket("INET", DGRAM | NONBLOCK),
        "inet6 stream": open_socket("INET6", STREAM),
        "netlink route": open_socket("NETLINK", RAW, 0),
    }
    return {"refused": refused, "allowed": allowed}
"""

REFUSALS = {"EAFNOSUPPORT", "EPERM", "EACCES", "EPROTONOSUPPORT", "ESOCKTNOSUPPORT"}


@pytest.mark.parametrize("network", ["allowed", "none"])
def test_only_lambdas_socket_families(
    backend: str, network: str, victim: Victim, fleet: Fleet
) -> None:
    name = fleet.attacker(f"sockets-{network}", backend, SOCKETS, network=network)
    seen = fleet.run(name)
    assert seen["allowed"] == {key: "ok" for key in seen["allowed"]}
    refused = seen["refused"]
    assert {key: outcome in REFUSALS for key, outcome in refused.items()} == {
        key: True for key in refused
    }, refused
    if backend == "namespace":  # our filter's answer, the one a kernel without it gives
        assert refused["vsock stream"] == "EAFNOSUPPORT"
        assert refused["packet raw"] == "EAFNOSUPPORT"
        assert refused["inet raw"] == "EPERM"


#: Watches a host file every sandbox sees (read-only, shared with the host) while the
#: test reads it on the host; reports what the kernel let it see.
WATCH = """
IN_ACCESS, IN_OPEN, IN_CLOSE_NOWRITE = 0x1, 0x20, 0x10
FAN_CLASS_NOTIF, FAN_REPORT_FID = 0, 0x200

def handler(event, context):
    out = {
        "inotify_init": c_result(libc.syscall(253)),
        "fanotify_init": c_result(libc.syscall(300, FAN_CLASS_NOTIF | FAN_REPORT_FID, 0)),
    }
    fd = libc.inotify_init1(os.O_NONBLOCK)
    out["inotify_init1"] = c_result(fd)
    events = 0
    if fd >= 0:
        for path in event["paths"]:
            libc.inotify_add_watch(fd, path.encode(), IN_ACCESS | IN_OPEN | IN_CLOSE_NOWRITE)
        deadline = time.time() + event["seconds"]
        while time.time() < deadline:
            try:
                events += len(os.read(fd, 65536)) and 1
            except BlockingIOError:
                time.sleep(0.05)
    out["events"] = events
    out["dnotify"], out["dnotify events"] = dnotify(event["dirs"], event["seconds"])
    out["page cache probe"] = cache_probe(event["paths"][0])
    return out

def cache_probe(path):
    # preadv2(RWF_NOWAIT) reads only cached pages: EAGAIN says nobody read them lately
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(16)], 0, os.RWF_NOWAIT)
    except OSError as exc:
        return errname(exc.errno)
    finally:
        os.close(fd)
    return "ok"

def dnotify(dirs, seconds):
    # fcntl(F_NOTIFY): the older directory notification, with a signal per event
    import fcntl, signal
    seen = []
    signal.signal(signal.SIGIO, lambda signum, frame: seen.append(signum))
    outcome = "ok"
    fds = []
    for path in dirs:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        fds.append(fd)
        try:
            fcntl.fcntl(fd, fcntl.F_NOTIFY, fcntl.DN_ACCESS | fcntl.DN_MULTISHOT)
        except OSError as exc:
            outcome = errname(exc.errno)
    time.sleep(seconds)
    for fd in fds:
        os.close(fd)
    return outcome, len(seen)
"""

#: Shared read-only files of every sandbox (host /usr and /etc's bound subset).
SHARED = ("/usr/lib/os-release", "/etc/ssl/certs/ca-certificates.crt")


def test_file_activity_on_shared_mounts_is_not_observable(
    backend: str, victim: Victim, fleet: Fleet
) -> None:
    paths = list(SHARED)
    assert all(os.path.isfile(path) for path in paths)
    name = fleet.attacker("inotify", backend, WATCH, Timeout=15)
    stop = threading.Event()

    def touch_on_the_host() -> None:
        while not stop.is_set():
            for path in paths:
                with open(path, "rb") as fh:
                    fh.read(1)
            time.sleep(0.02)

    toucher = threading.Thread(target=touch_on_the_host)
    toucher.start()
    try:
        dirs = sorted({os.path.dirname(path) for path in paths})
        seen = fleet.run(name, {"paths": paths, "dirs": dirs, "seconds": 2.0})
    finally:
        stop.set()
        toucher.join()
    assert seen["events"] == 0, seen
    assert seen["dnotify events"] == 0, seen
    if backend == "namespace":  # refused as "not implemented": libraries fall back to polling
        assert seen["inotify_init"] == "ENOSYS"
        assert seen["inotify_init1"] == "ENOSYS"
        assert seen["fanotify_init"] in ("ENOSYS", "EPERM")
        assert seen["dnotify"] == "EINVAL"  # what a kernel without dnotify answers
        assert seen["page cache probe"] == "ENOTSUP"  # EOPNOTSUPP, the same number

"""The few rtnetlink requests a network slot needs, on a plain netlink socket.

Each request is packed here with ``struct``: five message kinds with fixed layouts
(rtnetlink's ABI), a few attributes each. pyroute2's own IPRoute ran an asyncio loop
per request (~1 ms of Python each, ~8 ms a slot); its message classes, which encoded
them next, still cost ~1 ms of Python a slot in generic attribute machinery, a tenth of
a sandbox's whole start in a burst (bench burst, cProfile). pyroute2 stays the
reference: tests/worker/sandbox/test_rtnl.py checks every message packed here byte for
byte against what its ``ifinfmsg``/``ifaddrmsg``/``rtmsg`` encode. A netlink socket
talks to the network namespace its thread was in when it was made.
"""

from __future__ import annotations

import os
import socket
import struct

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_GATEWAY = 5

IFF_UP = 1
LOOPBACK_INDEX = 1
_HEADER = struct.Struct("=IHHII")
_ERROR = struct.Struct("=i")
#: ifinfomsg: family, pad, type, index, flags, change
_IFINFO = struct.Struct("=BxHiII")
#: ifaddrmsg: family, prefixlen, flags, scope, index
_IFADDR = struct.Struct("=BBBBI")
#: rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
_ATTR = struct.Struct("=HH")
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1


def _attr(kind: int, payload: bytes) -> bytes:
    """One rtattr: length, type, payload, padded to 4 bytes."""
    length = _ATTR.size + len(payload)
    return _ATTR.pack(length, kind) + payload + bytes(-length % 4)


def _name(value: str) -> bytes:
    return value.encode() + b"\0"


def _ipv4(address: str) -> bytes:
    return socket.inet_aton(address)


def link_message(index: int = 0, flags: int = 0, change: int = 0, attrs: bytes = b"") -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change) + attrs


def veth_message(name: str, peer: str, peer_netns_fd: int) -> bytes:
    peer_attrs = _attr(IFLA_IFNAME, _name(peer)) + _attr(
        IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd)
    )
    info = _attr(IFLA_INFO_KIND, _name("veth")) + _attr(
        IFLA_INFO_DATA, _attr(VETH_INFO_PEER, link_message(attrs=peer_attrs))
    )
    return link_message(attrs=_attr(IFLA_IFNAME, _name(name)) + _attr(IFLA_LINKINFO, info))


def address_message(index: int, address: str, prefixlen: int) -> bytes:
    packed = _ipv4(address)
    return _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index) + (
        _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
    )


def route_message(gateway: str) -> bytes:
    head = _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
    return head + _attr(RTA_GATEWAY, _ipv4(gateway))


def frame(body: bytes, kind: int, flags: int, seq: int) -> bytes:
    """A whole netlink message: the header, then ``body``."""
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body


class Rtnl:
    """One rtnetlink socket in the calling thread's network namespace."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def _request(self, body: bytes, kind: int, flags: int = 0) -> None:
        """Sends one request and waits for its acknowledgement; raises OSError on a
        refusal (e.g. EEXIST for a link name in use)."""
        self._seq += 1
        self._sock.send(frame(body, kind, NLM_F_REQUEST | NLM_F_ACK | flags, self._seq))
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind_seen, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
                if kind_seen == NLMSG_ERROR and seq == self._seq:
                    (error,) = _ERROR.unpack_from(data, offset + _HEADER.size)
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return
                offset += (length + 3) & ~3 if length else len(data)

    def link_up(self, index: int) -> None:
        self._request(link_message(index, IFF_UP, IFF_UP), RTM_NEWLINK)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int) -> int:
        """A veth pair whose peer is made in another network namespace; its index."""
        body = veth_message(name, peer, peer_netns_fd)
        self._request(body, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
        return socket.if_nametoindex(name)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        body = address_message(index, address, prefixlen)
        self._request(body, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, gateway: str) -> None:
        self._request(route_message(gateway), RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)

    def delete_link(self, name: str) -> None:
        """Deletes a link by name; a link already gone is not an error."""
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            return
        try:
            self._request(link_message(index), RTM_DELLINK)
        except OSError as exc:
            if exc.errno != 19:  # ENODEV: its namespace took it with it
                raise

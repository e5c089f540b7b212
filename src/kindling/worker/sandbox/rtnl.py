"""The few rtnetlink requests a network slot needs, on a plain netlink socket.

pyroute2 encodes the messages (its ``ifinfmsg``/``ifaddrmsg``/``rtmsg`` classes know
the attribute layouts, nested veth peers included); the requests are sent here,
synchronously, one socket per namespace. pyroute2's own IPRoute runs an asyncio loop
per request: ~1 ms of Python each, nine per slot, which made a slot cost ~8 ms of CPU and
capped a burst of starts (bench burst: half of the server's samples were in it). This
way a slot costs ~2 ms. A netlink socket talks to the network namespace its thread was
in when it was made.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

IFF_UP = 1
LOOPBACK_INDEX = 1
_HEADER = struct.Struct("=IHHII")
_ERROR = struct.Struct("=i")
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1


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

    def _request(self, msg: Any, kind: int, flags: int = 0) -> None:
        """Sends one request and waits for its acknowledgement; raises OSError on a
        refusal (e.g. EEXIST for a link name in use)."""
        self._seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
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
        msg = ifinfmsg()
        msg["index"] = index
        msg["flags"] = IFF_UP
        msg["change"] = IFF_UP
        self._request(msg, RTM_NEWLINK)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int) -> int:
        """A veth pair whose peer is made in another network namespace; its index."""
        msg = ifinfmsg()
        peer_attrs = {"attrs": [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd)]}
        info = {
            "attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_attrs)]}),
            ]
        }
        msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", info)]
        self._request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
        return socket.if_nametoindex(name)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        msg = ifaddrmsg()
        msg["family"] = socket.AF_INET
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        self._request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, gateway: str) -> None:
        msg = rtmsg()
        msg["family"] = socket.AF_INET
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_BOOT
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway)]
        self._request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)

    def delete_link(self, name: str) -> None:
        """Deletes a link by name; a link already gone is not an error."""
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            return
        msg = ifinfmsg()
        msg["index"] = index
        try:
            self._request(msg, RTM_DELLINK)
        except OSError as exc:
            if exc.errno != 19:  # ENODEV: its namespace took it with it
                raise

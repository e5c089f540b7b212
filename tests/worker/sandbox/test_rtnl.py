"""rtnl.py packs its five rtnetlink messages by hand (for speed); pyroute2 is the
reference: each message must be byte for byte what pyroute2's classes encode."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from kindling.worker.sandbox import rtnl


def _encoded(msg: Any, kind: int, flags: int, seq: int) -> bytes:
    msg["header"]["type"] = kind
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def _ours(body: bytes, kind: int, flags: int, seq: int) -> bytes:
    return rtnl.frame(body, kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq)


@pytest.mark.parametrize("index", [1, 7, 65535, 2**31 - 1])
def test_link_up_and_delete_link_match_pyroute2(index: int) -> None:
    up = ifinfmsg()
    up["index"], up["flags"], up["change"] = index, rtnl.IFF_UP, rtnl.IFF_UP
    assert _ours(rtnl.link_message(index, rtnl.IFF_UP, rtnl.IFF_UP), RTM_NEWLINK, 0, 3) == (
        _encoded(up, RTM_NEWLINK, 0, 3)
    )
    gone = ifinfmsg()
    gone["index"] = index
    assert _ours(rtnl.link_message(index), RTM_DELLINK, 0, 9) == _encoded(gone, RTM_DELLINK, 0, 9)


@pytest.mark.parametrize(
    ("name", "peer", "fd"), [("kv0f5a7", "eth0", 5), ("kvabcdef01234", "eth0", 1023), ("a", "b", 0)]
)
def test_a_veth_pair_matches_pyroute2(name: str, peer: str, fd: int) -> None:
    msg = ifinfmsg()
    peer_attrs = {"attrs": [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", fd)]}
    info = {
        "attrs": [
            ("IFLA_INFO_KIND", "veth"),
            ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_attrs)]}),
        ]
    }
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", info)]
    flags = NLM_F_CREATE | NLM_F_EXCL
    assert _ours(rtnl.veth_message(name, peer, fd), RTM_NEWLINK, flags, 4) == _encoded(
        msg, RTM_NEWLINK, flags, 4
    )


@pytest.mark.parametrize(
    ("address", "prefixlen", "index"), [("10.128.0.1", 30, 12), ("10.255.255.254", 30, 4000)]
)
def test_an_address_matches_pyroute2(address: str, prefixlen: int, index: int) -> None:
    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, prefixlen, index
    msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
    flags = NLM_F_CREATE | NLM_F_EXCL
    ours = _ours(rtnl.address_message(index, address, prefixlen), RTM_NEWADDR, flags, 5)
    assert ours == _encoded(msg, RTM_NEWADDR, flags, 5)


def test_a_default_route_matches_pyroute2() -> None:
    msg = rtmsg()
    msg["family"], msg["table"] = socket.AF_INET, rtnl.RT_TABLE_MAIN
    msg["proto"], msg["type"] = rtnl.RTPROT_BOOT, rtnl.RTN_UNICAST
    msg["attrs"] = [("RTA_GATEWAY", "10.128.0.1")]
    flags = NLM_F_CREATE | NLM_F_EXCL
    ours = _ours(rtnl.route_message("10.128.0.1"), RTM_NEWROUTE, flags, 6)
    assert ours == _encoded(msg, RTM_NEWROUTE, flags, 6)


def test_the_flag_and_type_numbers_are_the_kernels() -> None:
    from pyroute2.netlink import NLMSG_ERROR

    assert (rtnl.NLM_F_REQUEST, rtnl.NLM_F_ACK) == (NLM_F_REQUEST, NLM_F_ACK)
    assert (rtnl.NLM_F_CREATE, rtnl.NLM_F_EXCL, rtnl.NLMSG_ERROR) == (
        NLM_F_CREATE,
        NLM_F_EXCL,
        NLMSG_ERROR,
    )
    assert (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK, rtnl.RTM_NEWADDR, rtnl.RTM_NEWROUTE) == (
        RTM_NEWLINK,
        RTM_DELLINK,
        RTM_NEWADDR,
        RTM_NEWROUTE,
    )

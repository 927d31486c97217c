"""The DHCP and router guards, told frame by frame (memory ports; as root again on veth cables on
each datapath): a rogue's server replies and router advertisements go nowhere and are never
learned, the clients' own messages flood as before, tagged or not."""

from __future__ import annotations

import struct

import pytest
from memswitch import Factory

from guard_frames import dhcp4, dhcp6, eth, icmp4, icmp6
from l2frames import BROADCAST, mac
from vswitch.core.guards import GUARD_DHCP, GUARD_ROUTER
from vswitch.core.policy import PortPolicy

pytestmark = pytest.mark.timeout(60)

BCAST = bytes.fromhex(BROADCAST.replace(":", ""))
ALL_NODES = bytes.fromhex("333300000001")
GUARDED = {"R": PortPolicy(guards=GUARD_DHCP | GUARD_ROUTER), "C": None, "V": None}


def test_a_guarded_port_serves_no_dhcp_and_advertises_no_router(switch: Factory) -> None:
    sw = switch(GUARDED)
    rogue, client = mac("r"), mac("c")
    sw.expect(eth(BCAST, rogue, dhcp4(2, 2)), on="R", arrives_on=[], not_on=["C", "V"],
              why="a DHCPOFFER from the guarded port R reaches nobody")
    sw.expect(eth(BCAST, rogue, dhcp6(7)), on="R", arrives_on=[], not_on=["C", "V"],
              why="nor does a DHCPv6 REPLY")
    sw.expect(eth(ALL_NODES, rogue, icmp6(134, (0,))), on="R", arrives_on=[], not_on=["C", "V"],
              why="a router advertisement behind a hop-by-hop header is dropped by the router guard")
    sw.expect(eth(BCAST, rogue, icmp4(5)), on="R", arrives_on=[], not_on=["C", "V"],
              why="and so is an ICMPv4 redirect")
    assert sw.fdb_port(rogue) is None, "a frame the guards dropped is never learned"
    assert sw.counters("R")["drops"] == {"drop_dhcp_guard": 2, "drop_router_guard": 2}
    sw.expect(eth(BCAST, client, dhcp4(1, 1)), on="C", arrives_on=["R", "V"],
              why="a client's DHCPDISCOVER floods as before (R's guards are about what R sends)")
    sw.expect(eth(BCAST, rogue, dhcp4(1, 3)), on="R", arrives_on=["C", "V"],
              why="the guarded port may still be a DHCP client: its DHCPREQUEST floods")
    sw.expect(eth(ALL_NODES, rogue, icmp6(133)), on="R", arrives_on=["C", "V"],
              why="and it may solicit routers")
    assert sw.fdb_port(rogue) == "R", "its own client traffic is learned as usual"


def test_the_guards_read_past_a_vlan_tag(switch: Factory) -> None:
    sw = switch({"T": PortPolicy.trunk([10, 20], guards=GUARD_ROUTER), "A10": PortPolicy.access(10),
                 "U": PortPolicy.trunk([10, 20])})
    tag = struct.pack("!HH", 0x8100, 10)
    sw.expect(eth(ALL_NODES, mac("t"), icmp6(134), tag=tag), on="T", arrives_on=[], not_on=["A10", "U"],
              why="an RA tagged VLAN 10 from the guarded trunk reaches neither VLAN 10 port")
    offer = eth(BCAST, mac("t"), dhcp4(2, 2), tag=tag)
    sw.expect(offer, on="T", arrives_on={"A10": eth(BCAST, mac("t"), dhcp4(2, 2)), "U": offer},
              why="the trunk has only the router guard: its tagged OFFER reaches VLAN 10 (untagged on A10)")

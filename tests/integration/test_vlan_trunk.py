"""A VLAN trunk between two switches on real kernels: tagged frames cross a veth "cable".

Two private switches, each with a VM on VLAN 10 and a VM on VLAN 20 (access TAP ports), are joined
by a veth whose ends are trunk link ports (VLANs 10 and 20). All four VMs share one subnet, so
only the switches' VLANs keep them apart. The kernel strips a received 802.1Q tag into metadata
before any packet socket sees the frame: every frame crossing the cable must take the link port's
tagged path (PACKET_AUXDATA, tag re-inserted), and every frame entering it must get its tag pushed.
Ping between the two VLAN 10 VMs works only if both directions are right.

On the kernel datapath (`auto`) the same switches are mixed: the trunk is on the fast path (the tag
arrives as skb metadata there), the access TAPs are served by Python through the upcall TAP — a
tagged frame goes up with the S-tag pushed in front of its own tag, and down with the tag the core gave it.
"""

from __future__ import annotations

import pytest
from pyroute2 import IPRoute
from switchlab import delete_link, move_and_address, veth_pair

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import DatapathMode, PortKind, PortSpec, SwitchSpec, SwitchType

pytestmark = pytest.mark.root


@pytest.mark.parametrize("datapath", [DatapathMode.PYTHON, DatapathMode.AUTO])
def test_a_trunk_between_two_switches_carries_each_vlan_to_its_own_vms_only(netns, datapath):
    m = SwitchManager()
    cable = (ns_helpers.unique_name("tka"), ns_helpers.unique_name("tkb"))
    try:
        switches = (ns_helpers.unique_name("swa"), ns_helpers.unique_name("swb"))
        veth_pair(*cable)
        with IPRoute() as ipr:
            for end in cable:
                ipr.link("set", index=ipr.link_lookup(ifname=end)[0], state="up")
        vms: dict[tuple[int, int], str] = {}
        for i, (sw, end) in enumerate(zip(switches, cable, strict=True)):
            m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=datapath))
            m.add_port(sw, PortSpec("trunk", PortKind.LINK, end, trunk=(10, 20)))
            for vid in (10, 20):
                ns = vms[i, vid] = netns(f"t{i}v{vid}")
                tap = ns_helpers.unique_name(f"t{i}{vid}")
                m.add_port(sw, PortSpec(f"vm{vid}", PortKind.TAP, tap, vlan=vid))
                move_and_address(tap, ns, f"10.82.0.{10 * i + vid // 10}/24")

        # addresses: switch 0 → .1 (VLAN 10) .2 (VLAN 20); switch 1 → .11 (VLAN 10) .12 (VLAN 20)
        assert ns_helpers.ping(vms[0, 10], "10.82.0.11"), "VLAN 10 crosses the trunk both ways"
        assert ns_helpers.ping(vms[1, 20], "10.82.0.2"), "VLAN 20 crosses the trunk both ways"
        assert not ns_helpers.ping(vms[0, 20], "10.82.0.11", count=2, deadline=2), \
            "a VLAN 20 VM never reaches a VLAN 10 VM, even in the same subnet"
        assert not ns_helpers.ping(vms[1, 10], "10.82.0.2", count=2, deadline=2), \
            "nor the other way round"

        for sw in switches:
            stats = {s.port: s for s in m.stats(sw)}
            if datapath == DatapathMode.PYTHON:
                trunk = m.port_object(sw, "trunk")
                assert trunk.rx_vlan_reinserted >= 3, f"{sw}'s trunk received tagged frames and kept their tags"
                assert stats["trunk"].rx_frames >= trunk.rx_vlan_reinserted
            else:
                assert m.get_switch(sw).datapath == "kernel (tc-bpf), 1 port; python: 2 ports (tap)"
                assert stats["trunk"].rx_frames >= 3
    finally:
        m.shutdown()
        delete_link(cable[0])

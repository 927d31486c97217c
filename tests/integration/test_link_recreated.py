"""A link port whose link is deleted and created again (a VM's veth rebuilt, a NIC driver reloaded).

AF_PACKET sockets are bound to an interface index: after the link is deleted they stay dead even
when a link of the same name comes back. The switch must treat the deletion as a failed port,
keep the other ports forwarding, and reopen the port by name once the link exists again.

It runs on both datapaths (a switch of a link port and a TAP port: on the kernel one a mixed switch,
its link port a program slot with no socket, the TAP served by Python);
tests/integration/test_kernel_switch.py has the kernel datapath's all-link case (the program's filter
follows the new ifindex).
"""

from __future__ import annotations

import pytest
from pyroute2 import IPRoute
from switchlab import address_in, delete_link, move_and_address, veth_pair

import datapaths
import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import DatapathMode, PortKind, PortSpec, SwitchSpec, SwitchType
from waiting import wait_until

pytestmark = pytest.mark.root


def _cable(side: str, inner: str, ns: str) -> None:
    veth_pair(side, inner, None, ns)
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=side)[0], state="up")
    address_in(ns, inner, "10.83.0.1/24")


def test_a_deleted_and_recreated_link_comes_back_as_the_same_port(netns, datapath):
    m = SwitchManager()
    side, inner = ns_helpers.unique_name("rc"), ns_helpers.unique_name("ri")
    try:
        sw = ns_helpers.unique_name("sw")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode(datapath)))
        ns_a, ns_b = netns("rca"), netns("rcb")
        _cable(side, inner, ns_a)
        m.add_port(sw, PortSpec("a", PortKind.LINK, side))
        tap = ns_helpers.unique_name("rt")
        m.add_port(sw, PortSpec("b", PortKind.TAP, tap))
        move_and_address(tap, ns_b, "10.83.0.2/24")
        datapaths.assert_runs_on(m.get_switch(sw).datapath, datapath)
        assert ns_helpers.ping(ns_a, "10.83.0.2"), "A reaches B over the link port"

        delete_link(side)  # takes its peer in A with it
        assert not ns_helpers.ping(ns_b, "10.83.0.1", count=2, deadline=2), "A is gone"
        # Python's socket fails (the tick reopens it); the kernel datapath has none: the link watch tells it
        state = wait_until(lambda: side in (st := m.datapath(sw).port_state("a"))["error"] and st,
                           what="the switch to see port a's link deleted")
        assert not state["up"] and "was deleted" in state["error"], "a deleted link is a port down, named"
        info = {p.name: p for p in m.list_ports(sw)}["a"]
        assert not info.up and side in info.details["down_reason"], "port list says why it is down"
        assert {p.name: p for p in m.list_ports(sw)}["b"].up, "the other port is untouched"

        _cable(side, inner, ns_a)
        wait_until(lambda: m.datapath(sw).port_state("a")["up"],
                   what="port a to be reopened on the new link of the same name")
        assert ns_helpers.ping(ns_a, "10.83.0.2", count=3, deadline=10), "and to forward again"
        assert m.datapath(sw).port_state("a")["up"]
        datapaths.assert_runs_on(m.get_switch(sw).datapath, datapath)
    finally:
        m.shutdown()
        delete_link(side)

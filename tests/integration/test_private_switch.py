"""A private switch on real TAP devices: two namespaces ping each other and move TCP both ways.

Each namespace's NIC is a TAP owned by the switch (`tap` port) and moved into the namespace,
the way a VM's NIC is a TAP on the host.
"""

from __future__ import annotations

import pytest
from switchlab import datapath_cpu_share, move_and_address

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType

pytestmark = pytest.mark.root

TCP_BYTES = 50_000_000


@pytest.fixture
def manager():
    m = SwitchManager()
    try:
        yield m
    finally:
        m.shutdown()


def _tap_vm(manager: SwitchManager, netns, switch: str, tag: str, cidr: str) -> tuple[str, str]:
    ns = netns(tag)
    tap = ns_helpers.unique_name("tp" + tag)
    manager.add_port(switch, PortSpec(tag, PortKind.TAP, tap))
    move_and_address(tap, ns, cidr)
    return ns, tap


def test_two_namespaces_on_tap_ports_ping_and_move_tcp(manager, netns):
    sw = ns_helpers.unique_name("sw")
    manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
    ns1, _ = _tap_vm(manager, netns, sw, "vm1", "10.77.0.1/24")
    ns2, _ = _tap_vm(manager, netns, sw, "vm2", "10.77.0.2/24")

    assert ns_helpers.ping(ns1, "10.77.0.2"), "vm1 must reach vm2 through the private switch"

    macs = {e.port: e.mac for e in manager.fdb_show(sw)}
    assert set(macs) == {"vm1", "vm2"}, f"both VMs' MACs must be learned on their own ports: {macs}"

    ns_helpers.tcp_transfer(ns1, ns2, "10.77.0.2", TCP_BYTES)
    ns_helpers.tcp_transfer(ns2, ns1, "10.77.0.1", TCP_BYTES)

    stats = {s.port: s for s in manager.stats(sw)}
    assert stats["vm1"].rx_frames > 0 and stats["vm2"].tx_frames > 0


def test_removing_a_port_deletes_its_tap_and_keeps_the_others_forwarding(manager, netns):
    sw = ns_helpers.unique_name("sw")
    manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
    ns1, _ = _tap_vm(manager, netns, sw, "vm1", "10.78.0.1/24")
    ns2, _ = _tap_vm(manager, netns, sw, "vm2", "10.78.0.2/24")
    ns3, tap3 = _tap_vm(manager, netns, sw, "vm3", "10.78.0.3/24")
    assert ns_helpers.ping(ns1, "10.78.0.3")
    manager.remove_port(sw, "vm3")
    links = ns_helpers.run(ns3, ["ip", "-o", "link"]).stdout
    assert tap3 not in links, "a removed tap port's device must disappear"
    assert all(e.port != "vm3" for e in manager.fdb_show(sw)), "no FDB entry may point to a removed port"
    assert ns_helpers.ping(ns1, "10.78.0.2"), "the other ports must keep forwarding"


def test_busy_poll_forwards_and_sleeps_when_idle(netns):
    m = SwitchManager(busy_poll_us=2000)
    try:
        sw = ns_helpers.unique_name("sw")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
        ns1, _ = _tap_vm(m, netns, sw, "vm1", "10.79.0.1/24")
        _tap_vm(m, netns, sw, "vm2", "10.79.0.2/24")
        assert ns_helpers.ping(ns1, "10.79.0.2"), "a busy-polling switch must forward like any other"
        # the busy-poll window is 2 ms after the last frame: the 2 s window is almost all idle
        share = datapath_cpu_share(m.datapath(sw))
        assert share < 0.15, f"an idle switch must sleep, not spin: its datapath used {share:.0%} of a CPU"
    finally:
        m.shutdown()

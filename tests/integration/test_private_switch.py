"""A private switch on real TAP devices: two namespaces ping each other and run iperf3 TCP.

Each namespace's NIC is a TAP owned by the switch (`tap` port) and moved into the namespace,
the way a VM's NIC is a TAP on the host.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from switchlab import move_and_address

import netns as ns_helpers
from conftest import require_tool
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType

pytestmark = pytest.mark.root


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
    require_tool("iperf3")
    sw = ns_helpers.unique_name("sw")
    manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
    ns1, _ = _tap_vm(manager, netns, sw, "vm1", "10.77.0.1/24")
    ns2, _ = _tap_vm(manager, netns, sw, "vm2", "10.77.0.2/24")

    assert ns_helpers.ping(ns1, "10.77.0.2"), "vm1 must reach vm2 through the private switch"

    macs = {e.port: e.mac for e in manager.fdb_show(sw)}
    assert set(macs) == {"vm1", "vm2"}, f"both VMs' MACs must be learned on their own ports: {macs}"

    server = ns_helpers.popen(ns2, ["iperf3", "-s", "-1", "-B", "10.77.0.2"])
    try:
        time.sleep(0.5)
        out = ns_helpers.run(ns1, ["iperf3", "-c", "10.77.0.2", "-t", "5", "-J"], timeout=60)
        result = json.loads(out.stdout)
        bps = result["end"]["sum_received"]["bits_per_second"]
        assert bps > 50e6, f"TCP through the switch should move far more than 50 Mb/s, got {bps / 1e6:.1f}"
    finally:
        server.kill()
        server.wait()

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


def _thread_cpu_s(native_id: int) -> float:
    fields = open(f"/proc/self/task/{native_id}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_busy_poll_forwards_and_sleeps_when_idle(netns):
    m = SwitchManager(busy_poll_us=2000)
    try:
        sw = ns_helpers.unique_name("sw")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
        ns1, _ = _tap_vm(m, netns, sw, "vm1", "10.79.0.1/24")
        _tap_vm(m, netns, sw, "vm2", "10.79.0.2/24")
        assert ns_helpers.ping(ns1, "10.79.0.2"), "a busy-polling switch must forward like any other"
        thread = m.datapath(sw)._thread
        assert thread is not None and thread.native_id is not None
        time.sleep(0.2)  # past the busy-poll window
        before = _thread_cpu_s(thread.native_id)
        time.sleep(1.0)
        used = _thread_cpu_s(thread.native_id) - before
        assert used < 0.3, f"an idle switch must sleep, not spin: its datapath used {used:.2f} s of CPU in 1 s"
    finally:
        m.shutdown()

"""The two-nics story: the host keeps NIC1 (eth1); the External switch owns NIC2 (eth2), no management OS.

The host's own traffic never touches the switch; a VM talking to the host hairpins: out through
eth2, across the physical switch, back in on eth1 — observed with the switch's counters and the
kernel's counters on eth1 and on the physical switch's ports.
"""

from __future__ import annotations

import pytest
from labkit import binding, kernel_counters, ping, running_lab, stats

import datapaths
from vswitch.lab import builtin_topology

pytestmark = pytest.mark.root


@pytest.fixture(scope="module", params=datapaths.DATAPATHS)
def lab(request):
    """The lab with every switch on each datapath in turn."""
    with running_lab(builtin_topology("two-nics"), "two", request.param) as lab:
        yield lab


def test_bindings_nic1_for_the_host_nic2_only_for_the_switch(lab):
    nic1, nic2 = binding(lab, "host", "eth1"), binding(lab, "host", "eth2")
    assert nic1["addresses"] == ["10.0.0.10/24"] and "default via 10.0.0.1" in nic1["routes"]
    assert nic1["role"] == "carries host protocols"
    assert nic2["addresses"] == [] and nic2["role"] == "carries only the switch (uplink of ext)"
    assert binding(lab, "host", "vs-ext") is None, "without management OS the host gets no vNIC"


def test_host_pings_server_via_nic1_and_the_uplink_carries_none_of_it(lab):
    assert ping(lab, "host", "server", count=1), "warm-up: ARP resolved"
    s0, k0 = stats(lab, "ext"), kernel_counters(lab, "host", "eth1")
    assert ping(lab, "host", "server", count=10, interval=0.05), "the host must reach the server"
    s1, k1 = stats(lab, "ext"), kernel_counters(lab, "host", "eth1")
    assert k1[1] - k0[1] >= 10 and k1[0] - k0[0] >= 10, "the echoes and replies cross eth1 (NIC1)"
    rx, tx = (s1["uplink"].rx_frames - s0["uplink"].rx_frames, s1["uplink"].tx_frames - s0["uplink"].tx_frames)
    assert rx <= 2 and tx <= 2, f"the switch's uplink (eth2) must carry none of the host's ping (rx {rx}, tx {tx})"


def test_vm_to_host_leaves_through_nic2_crosses_the_physical_switch_and_comes_back_on_nic1(lab):
    assert ping(lab, "vm1", "host", count=1), "warm-up: ARP resolved, MACs learned"
    points = [("host", "eth1"), ("psw", "p-host-eth1"), ("psw", "p-host-eth2")]
    s0 = stats(lab, "ext")
    k0 = {p: kernel_counters(lab, *p) for p in points}
    assert ping(lab, "vm1", "host", count=10, interval=0.05), "the VM must reach the host"
    s1 = stats(lab, "ext")
    k1 = {p: kernel_counters(lab, *p) for p in points}
    rx, tx = ({p: k1[p][i] - k0[p][i] for p in points} for i in (0, 1))

    assert s1["vm1"].rx_frames - s0["vm1"].rx_frames >= 10
    assert s1["uplink"].tx_frames - s0["uplink"].tx_frames >= 10, "the VM's echoes leave through the uplink (eth2)"
    assert rx[("psw", "p-host-eth2")] >= 10, "the physical switch receives them from eth2's cable"
    assert tx[("psw", "p-host-eth1")] >= 10, "and sends them down eth1's cable"
    assert rx[("host", "eth1")] >= 10, "the host receives them on eth1 (NIC1)"
    assert tx[("host", "eth1")] >= 10, "the host answers on eth1"
    assert s1["uplink"].rx_frames - s0["uplink"].rx_frames >= 10, "the replies come back in through the uplink"
    assert s1["vm1"].tx_frames - s0["vm1"].tx_frames >= 10, "and reach the VM"

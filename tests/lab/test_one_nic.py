"""The one-nic story: one physical NIC shared by the host and a VM through an External switch.

The lab is built in two phases so the host's bindings can be compared before and after the
External switch exists; then the host, the VM and the server talk, and the switch's counters show
where the frames went.
"""

from __future__ import annotations

import pytest
from labkit import api_factory, binding, fdb, lab_name, mac, ping, stats

import datapaths
from vswitch.control.model import DatapathMode
from vswitch.lab import build_network, builtin_topology, create_switches, down

pytestmark = pytest.mark.root


@pytest.fixture(scope="module", params=datapaths.DATAPATHS)
def story(request):
    """The one-nic lab with its External switch on each datapath in turn."""
    datapaths.require(request.param)
    lab = build_network(builtin_topology("one-nic").with_datapath(DatapathMode(request.param)), lab_name("one"))
    try:
        before = {b["name"]: b for b in lab.bindings("host")}
        create_switches(lab, api_factory)
        datapaths.assert_runs_on(api_factory(lab.socket("host")).get_switch("ext").datapath, request.param)
        yield lab, before
    finally:
        down(lab.name)


def test_bindings_move_from_the_nic_to_the_host_vnic(story):
    lab, before = story
    assert set(before) == {"eth1"}, f"before the switch the host has only its NIC: {before}"
    nic_before = before["eth1"]
    assert nic_before["addresses"] == ["10.0.0.10/24"] and "default via 10.0.0.1" in nic_before["routes"], \
        f"before the switch, eth1 holds the host's address and default route: {nic_before}"
    assert nic_before["role"] == "carries host protocols"

    nic, vnic = binding(lab, "host", "eth1"), binding(lab, "host", "vs-ext")
    assert vnic is not None, "the External switch with management OS gives the host a vNIC vs-ext"
    assert vnic["addresses"] == ["10.0.0.10/24"] and "default via 10.0.0.1" in vnic["routes"], \
        f"after the switch, the host's address and routes are on the vNIC: {vnic}"
    assert vnic["mac"] == nic_before["mac"], "the host vNIC takes the NIC's MAC"
    assert vnic["role"].startswith("carries host protocols")
    assert nic["addresses"] == [] and nic["routes"] == [], f"the NIC keeps no address or route: {nic}"
    assert nic["role"] == "carries only the switch (uplink of ext)"


def test_host_pings_server_through_the_switch(story):
    lab, _ = story
    s0 = stats(lab, "ext")
    assert ping(lab, "host", "server"), "the host must reach the server"
    s1 = stats(lab, "ext")
    assert s1["host"].rx_frames - s0["host"].rx_frames >= 3, "the host's echoes enter the switch at its vNIC"
    assert s1["uplink"].tx_frames - s0["uplink"].tx_frames >= 3, "and leave through the uplink (eth1)"
    assert s1["uplink"].rx_frames - s0["uplink"].rx_frames >= 3, "the replies come back in on the uplink"
    assert s1["host"].tx_frames - s0["host"].tx_frames >= 3, "and leave the switch at the host's vNIC"


def test_vm_pings_server(story):
    lab, _ = story
    s0 = stats(lab, "ext")
    assert ping(lab, "vm1", "server"), "the VM must reach the server through the External switch"
    s1 = stats(lab, "ext")
    assert s1["vm1"].rx_frames - s0["vm1"].rx_frames >= 3
    assert s1["uplink"].tx_frames - s0["uplink"].tx_frames >= 3


def test_vm_to_host_stays_inside_the_switch_once_learned(story):
    lab, _ = story
    assert ping(lab, "vm1", "host", count=1), "the VM must reach the host (first echo: ARP, learning)"
    table = fdb(lab, "ext")
    assert table.get(mac(lab, "vm1", "eth0")) == "vm1" and table.get(mac(lab, "host", "vs-ext")) == "host", \
        f"both MACs are learned on their own ports: {table}"

    s0 = stats(lab, "ext")
    assert ping(lab, "vm1", "host", count=10, interval=0.05)
    s1 = stats(lab, "ext")
    assert s1["vm1"].rx_frames - s0["vm1"].rx_frames >= 10 and s1["host"].tx_frames - s0["host"].tx_frames >= 10, \
        "the echoes go from the VM's port to the host's port"
    grew = s1["uplink"].tx_frames - s0["uplink"].tx_frames
    assert grew <= 2, f"10 known-unicast echoes VM → host must not leave through the uplink (it sent {grew})"

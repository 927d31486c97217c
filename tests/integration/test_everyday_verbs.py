"""The everyday verbs on a real switch: `port set` applied live while two other ports keep talking,
static MAC entries that survive a restart and are never moved by a frame from elsewhere, `nic list`.

VMs are namespaces whose NIC is a TAP owned by the switch (a `tap` port moved into the namespace) on
the Python datapath, or the far end of a veth whose switch end is a `link` port on the kernel one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from switchlab import delete_link, move_and_address, veth_pair

import datapaths
import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    DatapathMode,
    PortKind,
    PortSettings,
    PortSpec,
    StaticEntry,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    host_vnic_name,
)
from vswitch.control.store import ConfigStore
from waiting import wait_until

pytestmark = pytest.mark.root

PINGS = 100
SEND_FROM = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((sys.argv[1], 0))
src = bytes.fromhex(sys.argv[2].replace(":", ""))
for _ in range(int(sys.argv[3])):
    s.send(b"\\xff" * 6 + src + b"\\x88\\xb5" + bytes(46))
"""


#: (datapath, the VMs' port kind): TAP ports on Python; veth cables (link ports) on the kernel fast path
SETUPS = [("python", "tap"), ("kernel", "link")]


class Vms:
    """VMs of one test: namespaces whose NIC is a TAP port moved there, or the far end of a veth whose
    switch end is a link port; `cleanup` deletes the cables (a TAP goes with its namespace)."""

    def __init__(self, netns, kind: str) -> None:
        self.netns, self.kind, self.sides = netns, kind, []

    def add(self, m: SwitchManager, sw: str, tag: str, cidr: str, mac: str) -> tuple[str, str]:
        """A VM on port `tag`: (its namespace, its NIC's name there)."""
        ns = self.netns(tag)
        nic = ns_helpers.unique_name("ev" + tag)
        if self.kind == "tap":
            m.add_port(sw, PortSpec(tag, PortKind.TAP, nic))
        else:
            side = ns_helpers.unique_name("es" + tag)
            veth_pair(side, nic)
            self.sides.append(side)
            ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{side}.disable_ipv6=1"])
            ns_helpers.run(None, ["ip", "link", "set", side, "up"])
            m.add_port(sw, PortSpec(tag, PortKind.LINK, side))
        move_and_address(nic, ns, cidr, mac=mac)
        return ns, nic

    def cleanup(self) -> None:
        for side in self.sides:
            delete_link(side)


@pytest.fixture(params=SETUPS, ids=[f"{d}-{k}" for d, k in SETUPS])
def vms(request, netns):
    """(datapath, Vms) for each setup; the kernel one skipped, saying why, where it cannot load."""
    datapath, kind = request.param
    datapaths.require(datapath)
    made = Vms(netns, kind)
    try:
        yield datapath, made
    finally:
        made.cleanup()


def _tx(m: SwitchManager, sw: str, port: str) -> int:
    return {s.port: s.tx_frames for s in m.stats(sw)}[port]


def test_port_set_applies_live_and_the_other_ports_lose_nothing(vms):
    datapath, vm = vms
    m = SwitchManager()
    try:
        sw = ns_helpers.unique_name("ev")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode(datapath)))
        ns1, _ = vm.add(m, sw, "vm1", "10.93.0.1/24", "02:93:00:00:00:01")
        vm.add(m, sw, "vm2", "10.93.0.2/24", "02:93:00:00:00:02")
        vm.add(m, sw, "vm3", "10.93.0.3/24", "02:93:00:00:00:03")
        datapaths.assert_runs_on(m.get_switch(sw).datapath, datapath)
        assert ns_helpers.ping(ns1, "10.93.0.3"), "vm1 reaches vm3 before any change"

        before = _tx(m, sw, "vm2")
        ping = ns_helpers.popen(ns1, ["ping", "-n", "-q", "-c", str(PINGS), "-i", "0.05", "-W", "5",
                                      "10.93.0.2"], stdout=subprocess.PIPE)
        try:
            wait_until(lambda: _tx(m, sw, "vm2") >= before + 5, what="vm1's pings to reach vm2")
            for settings in (PortSettings(vlan=10), PortSettings(admin_up=False), PortSettings(learning=False),
                             PortSettings(trunk=tuple(range(1, 4095)), native=20), PortSettings(flooding=False),
                             PortSettings(vlan=30, admin_up=True, learning=True, flooding=True)):
                m.set_port(sw, "vm3", settings)
            assert ping.poll() is None, "the changes were made while vm1 pinged vm2"
            out, _ = ping.communicate(timeout=60)
        finally:
            if ping.poll() is None:
                ping.kill()
                ping.wait()
        assert f"{PINGS} packets transmitted, {PINGS} received" in out, \
            f"vm1 ↔ vm2 lose nothing while vm3 is reconfigured six times: {out}"

        info = m.get_port(sw, "vm3")
        assert (info.vlan_mode, info.up) == ("access 30", True)
        assert not ns_helpers.ping(ns1, "10.93.0.3", count=2, deadline=2), "vm3 in VLAN 30 is cut off from VLAN 1"
        m.set_port(sw, "vm3", PortSettings(vlan=1))
        assert ns_helpers.ping(ns1, "10.93.0.3"), "back in VLAN 1, vm3 answers again"
        m.set_port(sw, "vm3", PortSettings(admin_up=False))
        assert m.get_port(sw, "vm3").details["down_reason"] == "administratively down"
        assert not ns_helpers.ping(ns1, "10.93.0.3", count=2, deadline=2), "an admin-down port forwards nothing"
    finally:
        m.shutdown()


def test_a_static_entry_survives_a_rename_and_a_restart_and_a_frame_from_elsewhere_does_not_move_it(
        vms, tmp_path: Path):
    datapath, vm = vms
    db = tmp_path / "config.sqlite"
    m = SwitchManager(ConfigStore(db))
    mac1 = "02:94:00:00:00:01"
    try:
        sw = ns_helpers.unique_name("es")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode(datapath)))
        vm.add(m, sw, "vm1", "10.94.0.1/24", mac1)
        ns2, _ = vm.add(m, sw, "vm2", "10.94.0.2/24", "02:94:00:00:00:02")
        ns3, tap3 = vm.add(m, sw, "vm3", "10.94.0.3/24", "02:94:00:00:00:03")
        m.fdb_add(sw, StaticEntry(mac1, "vm1"))
        m.set_port(sw, "vm3", PortSettings(trunk=tuple(range(1, 4095)), native=1))
        m.set_switch(sw, SwitchSettings(ageing_s=60, max_entries=100))
        renamed = ns_helpers.unique_name("er")
        m.set_switch(sw, SwitchSettings(name=renamed))  # its ports, their settings and facts go along
        sw = renamed
    finally:
        m.shutdown()

    m = SwitchManager(ConfigStore(db))
    try:
        m.restore()
        assert m.restore_errors == []
        assert [s.name for s in m.list_switches()] == [sw], "the switch came back under its new name"
        datapaths.assert_runs_on(m.get_switch(sw).datapath, datapath)
        assert m.get_port(sw, "vm3").vlan_mode == "trunk 1-4094 native 1", "port settings are stored"
        info = m.get_switch(sw)
        assert (info.ageing_s, info.max_entries) == (60, 100), "switch settings are stored"
        fdb = m.datapath(sw).core.fdb  # the kernel datapath's program has the core's limits too
        assert (fdb.ageing_s, fdb.max_entries) == (60, 100), "and applied to the restored MAC table"
        statics = [(e.mac, e.vlan, e.port) for e in m.fdb_show(sw) if e.static]
        assert statics == [(mac1, 1, "vm1")], "the static entry came back with the switch"

        proc = ns_helpers.run(ns3, [sys.executable, "-c", SEND_FROM, tap3, mac1, "5"], check=False)
        assert proc.returncode == 0, proc.stderr
        wait_until(lambda: {s.port: s.static_refused for s in m.stats(sw)}["vm3"] >= 5,
                   what="vm3's frames from vm1's MAC to be counted")
        entry = next(e for e in m.fdb_show(sw) if e.mac == mac1)
        assert (entry.port, entry.static) == ("vm1", True), "a frame from elsewhere never moves a static entry"
        assert {s.port: s.moved for s in m.stats(sw)}["vm3"] == 0
        assert ns_helpers.ping(ns2, "10.94.0.1"), "frames to the static MAC still reach vm1"

        m.fdb_del(sw, mac1)
        assert all(not e.static for e in m.fdb_show(sw))
    finally:
        m.shutdown()
    with ConfigStore(db) as store:
        assert store.statics(sw) == [], "a deleted static entry is gone from the store too"


def _mac_in(ns: str, ifname: str) -> str:
    out = ns_helpers.run(ns, ["ip", "-br", "link", "show", ifname]).stdout.split()
    return out[2]


def test_port_set_mac_gives_the_vms_nic_its_mac_live_and_again_after_a_restart(netns, tmp_path: Path):
    db = tmp_path / "config.sqlite"
    new_mac = "02:95:00:00:00:aa"
    m = SwitchManager(ConfigStore(db))
    try:
        sw = ns_helpers.unique_name("em")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
        taps = Vms(netns, "tap")  # port set --mac is for TAP ports (vswitch holds the NIC's descriptor)
        ns1, tap1 = taps.add(m, sw, "vm1", "10.95.0.1/24", "02:95:00:00:00:01")
        ns2, _ = taps.add(m, sw, "vm2", "10.95.0.2/24", "02:95:00:00:00:02")
        assert ns_helpers.ping(ns1, "10.95.0.2")
        info = m.set_port(sw, "vm1", PortSettings(mac=new_mac))
        assert info.mac == new_mac and _mac_in(ns1, tap1) == new_mac, \
            "the TAP in the VM's namespace has the new MAC, while up"
        ns_helpers.run(ns2, ["ip", "neigh", "flush", "dev", "all"], check=False)
        assert ns_helpers.ping(ns2, "10.95.0.1"), "vm2 reaches vm1 at its new MAC"
        assert any(e.mac == new_mac and e.port == "vm1" for e in m.fdb_show(sw)), "the switch learned it"
    finally:
        m.shutdown()
    ns_helpers.run(ns1, ["ip", "link", "set", tap1, "address", "02:95:00:00:00:bb"])
    m = SwitchManager(ConfigStore(db))
    try:
        m.restore()
        assert m.restore_errors == []
        assert _mac_in(ns1, tap1) == new_mac, "on re-attach the stored MAC is given again"
        assert m.get_port(sw, "vm1").mac == new_mac
    finally:
        m.shutdown()


def test_nic_list_offers_a_free_veth_but_not_taps_vnics_or_ports(netns):
    m = SwitchManager()
    free, peer = ns_helpers.unique_name("nf"), ns_helpers.unique_name("np")
    held, held_peer = ns_helpers.unique_name("nh"), ns_helpers.unique_name("nq")
    ns = netns("nic")
    tap, sw = ns_helpers.unique_name("nt"), ns_helpers.unique_name("nl")
    try:
        veth_pair(free, peer, None, ns)
        veth_pair(held, held_peer)
        info = m.create_switch(SwitchSpec(sw, SwitchType.INTERNAL))
        m.add_port(sw, PortSpec("vm", PortKind.LINK, held))
        m.add_port(sw, PortSpec("t", PortKind.TAP, tap))
        ns_helpers.run(None, ["ip", "addr", "add", "192.0.2.77/32", "dev", free])
        nics = {n.name: n for n in m.list_nics()}
        assert free in nics and nics[free].kind == "veth" and "192.0.2.77/32" in nics[free].addresses
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", nics[free].mac)
        assert nics[free].speed_mbps == 10000, "a veth reports 10 Gb/s through ethtool"
        for name, why in ((held, "a port"), (held_peer, "the peer of a veth port"), (tap, "a TAP port"),
                          (info.host_vnic, "a host vNIC"), ("lo", "loopback")):
            assert name not in nics, f"{name} is {why}: never an uplink"
        assert all(isinstance(n.default_route, bool) for n in nics.values())
    finally:
        m.shutdown()  # a TAP port's netdev outlives it (it persists for the VM): ours to delete
        for name in (free, held, tap, host_vnic_name(sw)):
            delete_link(name)

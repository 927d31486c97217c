"""A VXLAN port against the Linux kernel's own VXLAN driver (issue 15, item 1): two hosts on an underlay.

Host A is a namespace running vswitchd with a private switch: a "VM" behind a veth link port and a
VXLAN port towards host B. Host B is a namespace whose kernel VTEP (`ip link add … type vxlan`, VNI
100, dstport 4789, the kernel's defaults otherwise) carries an address of the VM's subnet. Between
them, a veth underlay of 1500 bytes. Real ping, ARP and TCP (payload SHA-256 by `tcp_transfer`),
both ways, on both datapaths (the veth on the kernel fast path, the VXLAN port through the upcall path).
What is asserted is what a user relies on: the overlay works with a kernel peer, its MAC is learned
behind that VTEP, other VNIs and strangers do not get in, and an oversize frame is counted, not lost
without a trace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from switchlab import Daemon, address_in, veth_pair

import netns as ns_helpers
from datapaths import assert_runs_on
from waiting import wait_until

pytestmark = pytest.mark.root

TCP_BYTES = 20_000_000
VNI = 100


@dataclass
class Overlay:
    d: Daemon
    sw: str
    a: str            # host A's namespace (vswitchd)
    b: str            # host B's namespace (the kernel VTEP)
    vm: str           # the VM's namespace behind A's switch
    vtep_a: str
    vtep_b: str
    vm_ip: str
    b_ip: str
    b_mac: str        # the kernel vxlan device's MAC: what A's table learns behind vtep_b
    underlay_b: str   # host B's underlay link

    def stats(self, port: str) -> dict:
        rows = json.loads(self.d.cli("stats", self.sw, "--json").stdout)
        return next(r for r in rows if r["port"] == port)

    def drops(self, port: str, reason: str) -> int:
        return int(self.stats(port)["drops"].get(reason, 0))

    def in_b(self, code: str, *args: str) -> None:
        """Run a small Python sender in host B's namespace (raw datagrams at A's VXLAN socket)."""
        ns_helpers.run(self.b, [sys.executable, "-c", code, *args])


def _mac_in(ns: str, ifname: str) -> str:
    return json.loads(ns_helpers.run(ns, ["ip", "-j", "link", "show", ifname]).stdout)[0]["address"]


@pytest.fixture
def overlay(netns, datapath: str) -> Iterator[Overlay]:
    a, b, vm = netns("vxa"), netns("vxb"), netns("vxv")
    n = int(ns_helpers.unique_name("")[-4:], 16) % 200 + 20  # a subnet of its own per run
    vtep_a, vtep_b = f"10.{n}.77.1", f"10.{n}.77.2"
    vm_ip, b_ip = f"10.{n}.78.1", f"10.{n}.78.2"
    ua, ub = ns_helpers.unique_name("vxu"), ns_helpers.unique_name("vxu")
    side, inner = ns_helpers.unique_name("vxs"), ns_helpers.unique_name("vxi")
    veth_pair(ua, ub, a, b)
    address_in(a, ua, f"{vtep_a}/24")
    address_in(b, ub, f"{vtep_b}/24")
    # The kernel leaves an encapsulated frame's inner checksum to the NIC (tunnel checksum offload); a
    # veth has no hardware to fill it and hands the datagram over as it is, so a user-space VTEP would
    # read inner TCP segments with their checksums never computed. Off, the kernel computes them, as a
    # physical underlay NIC would (Open vSwitch's userspace datapath over veth needs the same).
    ns_helpers.run(b, ["ethtool", "-K", ub, "tx", "off"])
    # over `dev`, the kernel's device takes the underlay's MTU minus 50 (1450), as vswitch's port does
    ns_helpers.run(b, ["ip", "link", "add", "vx100", "type", "vxlan", "id", str(VNI), "local", vtep_b,
                       "remote", vtep_a, "dstport", "4789", "dev", ub])
    address_in(b, "vx100", f"{b_ip}/24")
    veth_pair(side, inner, a, vm)
    address_in(vm, inner, f"{vm_ip}/24")
    ns_helpers.run(a, ["ip", "link", "set", side, "up"])
    d = Daemon(a)
    try:
        d.start()
        sw = ns_helpers.unique_name("vx")
        d.cli("switch", "create", sw, "--private", "--datapath", datapath)
        d.cli("port", "add", sw, "vm", "--link", side)
        d.cli("port", "add", sw, "vx", "--vxlan", vtep_b, "--vni", str(VNI), "--local", vtep_a)
        shown = json.loads(d.cli("switch", "show", sw, "--json").stdout)
        assert_runs_on(shown["datapath"], datapath)
        yield Overlay(d, sw, a, b, vm, vtep_a, vtep_b, vm_ip, b_ip, _mac_in(b, "vx100"), ub)
    finally:
        d.cleanup()  # a stopped daemon leaves no socket; the namespaces (and their links) go with the fixture


def test_ping_arp_and_tcp_both_ways_with_the_kernel_vtep(overlay: Overlay) -> None:
    o = overlay
    assert ns_helpers.ping(o.vm, o.b_ip, count=3), "the VM cannot reach the kernel VTEP's address across the overlay"
    assert ns_helpers.ping(o.b, o.vm_ip, count=3), "the kernel VTEP's host cannot reach the VM"
    # ARP crossed: each side holds the other's MAC, learned from the tunnel
    neigh = json.loads(ns_helpers.run(o.vm, ["ip", "-j", "neigh", "show", o.b_ip]).stdout)
    assert neigh and neigh[0].get("lladdr") == o.b_mac
    fdb = json.loads(o.d.cli("fdb", "show", o.sw, "--json").stdout)
    entry = next((e for e in fdb if e["mac"] == o.b_mac), None)
    assert entry is not None and entry["port"] == "vx" and entry["remote"] == o.vtep_b, fdb
    assert o.vtep_b in o.d.cli("fdb", "show", o.sw).stdout  # the table shows the VTEP column
    # the kernel's fdb learned the VM's MAC behind our VTEP address, as it would behind another kernel
    kfdb = ns_helpers.run(o.b, ["bridge", "fdb", "show", "dev", "vx100"]).stdout
    assert _mac_in(o.vm, _vm_ifnames(o.vm)[0]) in kfdb and o.vtep_a in kfdb, kfdb
    ns_helpers.tcp_transfer(o.vm, o.b, o.b_ip, TCP_BYTES)
    ns_helpers.tcp_transfer(o.b, o.vm, o.vm_ip, TCP_BYTES)


def _vm_ifnames(ns: str) -> list[str]:
    return [link["ifname"] for link in json.loads(ns_helpers.run(ns, ["ip", "-j", "link", "show"]).stdout)
            if link["ifname"] != "lo"]


def test_an_oversize_frame_is_counted_and_the_overlay_mtu_shown(overlay: Overlay) -> None:
    o = overlay
    port = json.loads(o.d.cli("port", "show", o.sw, "vx", "--json").stdout)
    assert port["details"]["mtu"] == 1450  # a 1500-byte underlay, as the kernel's own vxlan device offers
    assert ns_helpers.ping(o.vm, o.b_ip, count=1)
    before = o.drops("vx", "drop_oversize")
    # 1472 bytes of ICMP payload: a 1500-byte packet that does not fit the tunnel, DF set
    subprocess.run(["ip", "netns", "exec", o.vm, "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", o.b_ip],
                   capture_output=True, timeout=30)
    wait_until(lambda: o.drops("vx", "drop_oversize") > before, timeout=10,
               what="the frame too large for the tunnel counted as drop_oversize on the VXLAN port")
    assert ns_helpers.ping(o.vm, o.b_ip, count=1, interval=0.2), "a frame that fits still crosses"


_SEND = """
import socket, sys
src, dst, payload = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.sendto(payload, (dst, 4789))
"""

_BCAST_ARP = ("ffffffffffff" "020000000099" "0806" + "0001080006040001" + "020000000099" + "0a000063"
              + "000000000000" + "0a000001")


def test_other_vnis_strangers_and_bad_headers_are_dropped_by_name(overlay: Overlay) -> None:
    o = overlay
    assert ns_helpers.ping(o.vm, o.b_ip, count=1)
    cases = [
        # (source address, datagram, the reason it must be counted under)
        (o.vtep_b, "08000000" + f"{200:06x}00" + _BCAST_ARP, "drop_vxlan_vni"),
        (o.vtep_b, "00000000" + f"{VNI:06x}00" + _BCAST_ARP, "drop_vxlan_flags"),
        (o.vtep_b, "0800", "drop_vxlan_truncated"),
        (o.vtep_b, "08000000" + f"{VNI:06x}00" + "ffffffff", "drop_runt"),
        (f"{o.vtep_b.rsplit('.', 1)[0]}.9", "08000000" + f"{VNI:06x}00" + _BCAST_ARP, "drop_vxlan_unknown_vtep"),
    ]
    for src, payload, reason in cases:
        if src.endswith(".9"):
            ns_helpers.run(o.b, ["ip", "addr", "add", f"{src}/24", "dev", o.underlay_b])
        before = o.drops("vx", reason)
        o.in_b(_SEND, src, o.vtep_a, payload)
        wait_until(lambda r=reason, b=before: o.drops("vx", r) > b, timeout=10,
                   what=f"a datagram counted as {reason} on the VXLAN port")
    # a real second VNI on host B: its broadcasts reach A's socket and are refused there
    ns_helpers.run(o.b, ["ip", "link", "add", "vx200", "type", "vxlan", "id", "200", "local", o.vtep_b,
                         "remote", o.vtep_a, "dstport", "4789", "dev", o.underlay_b])
    address_in(o.b, "vx200", "10.255.78.2/24")
    before = o.drops("vx", "drop_vxlan_vni")
    assert not ns_helpers.ping(o.b, "10.255.78.1", count=1, deadline=3)
    wait_until(lambda: o.drops("vx", "drop_vxlan_vni") > before, timeout=10,
               what="VNI 200's ARP counted as drop_vxlan_vni")
    fdb = json.loads(o.d.cli("fdb", "show", o.sw, "--json").stdout)
    assert "02:00:00:00:00:99" not in {e["mac"] for e in fdb}, "a refused datagram's frame reached the switch"
    assert ns_helpers.ping(o.vm, o.b_ip, count=1), "VNI 100 still works"


def test_the_tunnel_comes_back_after_vswitchd_is_killed(overlay: Overlay) -> None:
    """SIGKILL, then a new vswitchd on the same state: the VXLAN port is re-created from the store
    (its VNI, remotes and local address) and the overlay works again."""
    o = overlay
    assert ns_helpers.ping(o.vm, o.b_ip, count=1)
    o.d.stop(signal.SIGKILL)
    o.d.start()
    port = json.loads(o.d.cli("port", "show", o.sw, "vx", "--json").stdout)
    assert (port["kind"], port["target"], port["details"]["vni"], port["details"]["local"]) == \
        ("vxlan", o.vtep_b, VNI, o.vtep_a)
    assert ns_helpers.ping(o.vm, o.b_ip, count=3), "the overlay did not come back after the restart"
    ns_helpers.tcp_transfer(o.vm, o.b, o.b_ip, 2_000_000)

"""Port features with a real QEMU guest on its own TAP (QEMU opened it: a `link` port, so the kernel
fast path serves it too), on both datapaths, against namespaces behind veth link ports:

- a guest that bridges inside itself (a nested VM's switch: its address on a bridge whose MAC is not
  its NIC's) is cut off with MAC spoofing off — every frame of the bridged MAC dropped, never learned —
  and works with it on (issue 13: "a QEMU guest bridging inside itself works with spoofing on");
- a guest with VLAN sub-interfaces (its kernel's 8021q) on a trunk port exchanges traffic with an
  access port of each VLAN, each VLAN learned apart.

The guest is Debian's kernel with a busybox initramfs (vswitch.lab.guest), under QEMU's software
emulation; its image loads the bridge and 8021q modules at boot."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from test_dhcp_router_guards import Lab, lab  # noqa: F401  (the fixture: a private switch and its VMs)

import netns as ns_helpers
from vswitch.control.model import PortKind, PortSettings, PortSpec
from vswitch.lab.guest import GuestImage, QemuGuest
from waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

NIC_MAC, BRIDGED_MAC = "52:54:00:96:00:05", "52:54:00:96:00:99"


@contextmanager
def guest_on_its_own_tap(image: GuestImage, on: Lab, port: str, mac: str, **spec: Any) -> Iterator[QemuGuest]:
    """A booted guest whose NIC is a TAP QEMU made (`-netdev tap`), added to `on`'s switch as link port
    `port` with `spec`'s settings; QEMU stopped (its TAP goes with it) afterwards."""
    tap = ns_helpers.unique_name("gq")
    tmp = tempfile.TemporaryDirectory(prefix="vsq-")
    guest = QemuGuest(image, os.path.join(tmp.name, "console.sock"))
    try:
        guest.start(f"-netdev tap,id=n0,ifname={tap},script=no,downscript=no", mac,
                    log_path=os.path.join(tmp.name, "qemu.log"))
        ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{tap}.disable_ipv6=1"])
        ns_helpers.run(None, ["ip", "link", "set", tap, "up"])
        on.m.add_port(on.sw, PortSpec(port, PortKind.LINK, tap, **spec))
        yield guest
    finally:
        guest.stop()
        tmp.cleanup()


def _ok(guest: QemuGuest, command: str) -> str:
    rc, out = guest.exec(command)
    assert rc == 0, f"{command}: {out}"
    return out


def _learned(on: Lab) -> set[tuple[str, int, str]]:
    return {(e.mac, e.vlan, e.port) for e in on.m.fdb_show(on.sw)}


def test_a_guest_bridging_inside_itself_needs_mac_spoofing_on(lab: Lab, guest_image: GuestImage) -> None:  # noqa: F811
    peer_ns, _ = lab.vm("peer", "10.96.0.1/24", "02:96:00:00:00:01")
    with guest_on_its_own_tap(guest_image, lab, "vm", NIC_MAC, mac_spoofing=False, port_mac=NIC_MAC) as guest:
        # the guest's own switch: its NIC a port of bridge br0, its address on br0, whose MAC is another
        _ok(guest, f"ip link add br0 type bridge && ip link set br0 address {BRIDGED_MAC} && "
                   "ip link set eth0 master br0 && ip link set br0 up && ip addr add 10.96.0.5/24 dev br0")
        assert lab.m.get_port(lab.sw, "vm").port_mac == NIC_MAC

        def one_ping() -> bool:
            return ns_helpers.run(peer_ns, ["ping", "-c", "1", "-W", "1", "10.96.0.5"], check=False).returncode == 0

        assert not one_ping(), "spoofing off: the bridged MAC's ARP reply is dropped"
        wait_until(lambda: lab.drops("vm", "drop_spoofed_mac") > 0, what="the bridged MAC's frames counted as dropped")
        assert not any(mac == BRIDGED_MAC for mac, _, _ in _learned(lab)), "and never learned"

        info = lab.m.set_port(lab.sw, "vm", PortSettings(mac_spoofing=True))
        assert info.mac_spoofing
        wait_until(one_ping, what="with spoofing on the peer to reach the guest's bridged address")
        assert (BRIDGED_MAC, 1, "vm") in _learned(lab), "the bridged MAC is learned on the guest's port"
        _ok(guest, "ping -c 1 -W 5 10.96.0.1")


def test_a_guest_with_vlan_subinterfaces_on_a_trunk_port_reaches_each_access_port(
        lab: Lab, guest_image: GuestImage) -> None:  # noqa: F811
    macs = {10: "02:97:00:00:00:10", 20: "02:97:00:00:00:20"}
    access = {}
    for vid, mac in macs.items():
        ns, _ = lab.vm(f"a{vid}", f"10.97.{vid}.2/24", mac)
        lab.m.set_port(lab.sw, f"a{vid}", PortSettings(vlan=vid))
        access[vid] = ns
    with guest_on_its_own_tap(guest_image, lab, "vm", NIC_MAC, trunk=(10, 20)) as guest:
        for vid in macs:
            _ok(guest, f"ip link add link eth0 name eth0.{vid} type vlan id {vid} && ip link set eth0.{vid} up && "
                       f"ip addr add 10.97.{vid}.5/24 dev eth0.{vid}")
        for vid, ns in access.items():
            assert ns_helpers.ping(ns, f"10.97.{vid}.5"), f"access VLAN {vid} reaches the guest's eth0.{vid}"
            _ok(guest, f"ping -c 1 -W 5 10.97.{vid}.2")
        learned = _learned(lab)
        assert {(NIC_MAC, 10, "vm"), (NIC_MAC, 20, "vm")} <= learned, "the guest learned in each of its VLANs"
        assert {(mac, vid, f"a{vid}") for vid, mac in macs.items()} <= learned
        assert not any(mac == macs[10] and vlan != 10 for mac, vlan, _ in learned), "VLAN 10 stays in VLAN 10"
        assert lab.m.get_port(lab.sw, "vm").vlan_mode == "trunk 10,20"

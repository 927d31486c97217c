"""A mixed switch: a veth link port on the kernel fast path, a TAP port moved into a namespace and a
qemu-stream port (a stand-in QEMU client) served by Python, the two kinds crossing through the
switch's upcall TAP (frames up with an S-tag naming the in-port, back down naming the out-port).

Real namespaces, veth, TAP, ping and TCP (payload SHA-256 compared by `tcp_transfer`).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fakeqemu import FakeQemu
from kernel_fastpath import require_fastpath
from pyroute2 import IPRoute
from switchlab import delete_link, move_and_address, veth_pair

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.datapath.fastpath import KernelDatapath
from vswitch.datapath.kernel import libbpf, tc
from vswitch.datapath.upcall import upcall_ifname
from waiting import wait_until

pytestmark = pytest.mark.root

TCP_BYTES = 20_000_000
MTU_FRAME = 1514


@dataclass
class Mixed:
    m: SwitchManager
    sw: str
    side: str                  # the link port's switch end (here)
    ns: dict[str, str]         # port → its namespace
    ip: dict[str, str]
    mac: dict[str, str]
    guest: FakeQemu


def _mac_in(ns: str, ifname: str) -> str:
    return json.loads(ns_helpers.run(ns, ["ip", "-j", "link", "show", ifname]).stdout)[0]["address"]


def _sys_rx(ifname: str) -> int:
    with open(f"/sys/class/net/{ifname}/statistics/rx_packets") as f:
        return int(f.read())


@pytest.fixture
def mixed(netns) -> Iterator[Mixed]:
    require_fastpath()
    m = SwitchManager()
    tmp = tempfile.TemporaryDirectory(prefix="vsmx-")
    side, inner = ns_helpers.unique_name("mxs"), ns_helpers.unique_name("mxi")
    guest = None
    try:
        sw = ns_helpers.unique_name("mx")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
        ns = {"vml": netns("mxl"), "vmt": netns("mxt"), "vmq": netns("mxq")}
        ip = {"vml": "10.97.0.1", "vmt": "10.97.0.2", "vmq": "10.97.0.3"}
        veth_pair(side, inner)
        ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{side}.disable_ipv6=1"], check=False)
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=side)[0], state="up")
        move_and_address(inner, ns["vml"], f"{ip['vml']}/24")
        m.add_port(sw, PortSpec("vml", PortKind.LINK, side))
        tap = ns_helpers.unique_name("mxt")
        m.add_port(sw, PortSpec("vmt", PortKind.TAP, tap))
        move_and_address(tap, ns["vmt"], f"{ip['vmt']}/24")
        path = os.path.join(tmp.name, "vmq.sock")
        m.add_port(sw, PortSpec("vmq", PortKind.QEMU_STREAM, path))
        guest = FakeQemu(ns_helpers.unique_name("mxq"), path).connect()
        move_and_address(guest.ifname, ns["vmq"], f"{ip['vmq']}/24")
        mac = {"vml": _mac_in(ns["vml"], inner), "vmt": _mac_in(ns["vmt"], tap),
               "vmq": _mac_in(ns["vmq"], guest.ifname)}
        yield Mixed(m, sw, side, ns, ip, mac, guest)
    finally:
        if guest is not None:
            guest.close()
        m.shutdown()
        delete_link(side)
        tmp.cleanup()


def _leftovers(side: str, upcall_tap: str, prog_ids: set[int], map_ids: frozenset[int]) -> list[str]:
    left = [f"clsact on {side}"] if tc.has_clsact(socket.if_nametoindex(side)) else []
    try:
        socket.if_nametoindex(upcall_tap)
        left.append(f"upcall TAP {upcall_tap}")
    except OSError:
        pass
    left += [f"program {i}" for i in prog_ids & set(libbpf.program_ids())]
    left += [f"map {i}" for i in map_ids & set(libbpf.map_ids())]
    return left


def test_link_tap_and_qemu_ports_reach_each_other_through_the_upcall_path(mixed: Mixed) -> None:
    m, sw = mixed.m, mixed.sw
    dp = m.datapath(sw)
    assert isinstance(dp, KernelDatapath) and dp.program is not None, "the switch stays on the kernel datapath"
    assert m.get_switch(sw).datapath == "kernel (tc-bpf), 1 port; python: 2 ports (qemu-stream, tap)", \
        m.get_switch(sw).datapath
    upcall_tap = upcall_ifname(sw)
    assert tc.ingress_filters(socket.if_nametoindex(mixed.side)) == ["vs_ingress"], "the link is on the fast path"
    assert tc.ingress_filters(socket.if_nametoindex(upcall_tap)) == ["vs_downcall"], "one upcall TAP, downcall on it"
    assert dp._ports["vml"].port.fileno() < 0, "no socket on the fast path's link"

    ns, ip = mixed.ns, mixed.ip
    for a, b in (("vml", "vmt"), ("vml", "vmq"), ("vmt", "vmq"), ("vmt", "vml"), ("vmq", "vml")):
        assert ns_helpers.ping(ns[a], ip[b]), f"{a} reaches {b}"

    rows = [(e.mac, e.port) for e in m.fdb_show(sw) if e.mac in mixed.mac.values()]
    assert sorted(rows) == sorted((mac, port) for port, mac in mixed.mac.items()), \
        f"fdb show lists each MAC once, behind its port, whichever path learned it: {rows}"

    rx_sys0 = _sys_rx(mixed.side)
    rx_sw0 = {s.port: s for s in m.stats(sw)}["vml"].rx_frames
    ns_helpers.tcp_transfer(ns["vmt"], ns["vml"], ip["vml"], TCP_BYTES)   # TAP → Python → down → veth
    ns_helpers.tcp_transfer(ns["vml"], ns["vmt"], ip["vmt"], TCP_BYTES)   # veth → up → Python → TAP
    ns_helpers.tcp_transfer(ns["vmq"], ns["vml"], ip["vml"], TCP_BYTES // 4)
    ns_helpers.tcp_transfer(ns["vml"], ns["vmq"], ip["vmq"], TCP_BYTES // 4)

    stats = {s.port: s for s in m.stats(sw)}
    assert stats["vmt"].rx_bytes / stats["vmt"].rx_frames > MTU_FRAME, \
        f"the TAP's TSO super-frames crossed whole: {stats['vmt']}"
    up = dp.program.counters("vml")
    assert up["upcall"] > 0 and up["upcall_fail"] == 0, f"the link's frames to Python ports went up: {up}"
    assert stats["vml"].rx_bytes > stats["vml"].rx_frames * MTU_FRAME // 2, \
        f"and the veth's super-frames went up whole: {stats['vml']}"
    # every frame the link received is counted once: by the program (decided there) or by the core
    # (sent up: the program counts it only as an upcall)
    wait_until(lambda: ({s.port: s for s in m.stats(sw)}["vml"].rx_frames - rx_sw0
                        == _sys_rx(mixed.side) - rx_sys0),
               what="the link port's rx to equal what its link received (each frame counted once)")
    assert not any(s.drops for s in m.stats(sw)), f"no drops: {[s.drops for s in m.stats(sw)]}"

    prog_ids = {dp.program.kernel_ids()[0], dp.program.downcall_id()}
    map_ids = dp.program.kernel_ids()[1]
    m.delete_switch(sw)
    wait_until(lambda: not _leftovers(mixed.side, upcall_tap, prog_ids, map_ids),
               what="switch delete to leave no qdisc, upcall TAP, program or map")

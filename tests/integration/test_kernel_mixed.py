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
from vswitch.control.model import (
    DatapathMode,
    PortKind,
    PortSpec,
    StaticEntry,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
)
from vswitch.core.mac import format_mac
from vswitch.datapath.fastpath import KernelDatapath
from vswitch.datapath.kernel import libbpf, tc
from vswitch.datapath.upcall import upcall_ifname
from vswitch.ports.link import LinkPort
from vswitch.ports.netns import run_in
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


def _raw_sender(ns: str, ifname: str) -> LinkPort:
    """An AF_PACKET socket on a VM's own NIC (in its namespace), to send frames from any source MAC."""
    port = LinkPort(ifname, ifname, vnet=False)
    run_in(ns, port.open)
    return port


def _from(src: bytes) -> bytes:
    return b"\xff" * 6 + src + b"\x88\xb5" + bytes(46)


def test_one_mac_table_whichever_path_learned_moves_statics_eviction_and_ageing(mixed: Mixed) -> None:
    """A MAC learned behind the TAP port (by Python) is in the program's map; it moves to the link port
    (the program) and back (Python), each move counted once and told once; a static entry behind the
    Python port is refused elsewhere (counted once); at the cap the core's fair eviction keeps the
    map's count right; ageing removes what Python learned from the map too."""
    m, sw = mixed.m, mixed.sw
    dp = m.datapath(sw)
    assert isinstance(dp, KernelDatapath) and dp.program is not None
    inner = json.loads(ns_helpers.run(mixed.ns["vml"], ["ip", "-j", "link"]).stdout)
    veth_in = next(link["ifname"] for link in inner if link["ifname"] != "lo")
    tap = next(link["ifname"] for link in json.loads(ns_helpers.run(mixed.ns["vmt"], ["ip", "-j", "link"]).stdout)
               if link["ifname"] != "lo")
    on_link, on_tap = _raw_sender(mixed.ns["vml"], veth_in), _raw_sender(mixed.ns["vmt"], tap)
    x, y = bytes((2, 0, 0, 0x5A, 0, 1)), bytes((2, 0, 0, 0x5A, 0, 2))
    slot = {p: dp.program.slot(p) for p in ("vml", "vmt")}

    def where(mac: bytes) -> tuple[list[str], set[int]]:
        shown = [e.port for e in m.fdb_show(sw) if e.mac == format_mac(mac)]
        in_map = {r.slot for r in dp.program.tables.fdb_entries() if r.mac == mac}
        return shown, in_map

    def stats(port: str):
        return {s.port: s for s in m.stats(sw)}[port]

    def moves() -> list[tuple[str | None, str | None]]:
        return [(e.old_port, e.port) for e in m.events(sw, limit=1000).events
                if e.kind == "mac-moved" and e.mac == format_mac(x)]

    try:
        assert on_tap.write(_from(x))
        wait_until(lambda: where(x) == (["vmt"], {slot["vmt"]}),
                   what="a MAC Python learned behind the TAP port to be in the program's map, shown once")
        moved_l, moved_t = stats("vml").moved, stats("vmt").moved
        assert on_link.write(_from(x))
        wait_until(lambda: where(x) == (["vml"], {slot["vml"]}), what="the program to learn the move")
        wait_until(lambda: moves() == [("vmt", "vml")], what="the move told once")
        assert on_tap.write(_from(x))
        wait_until(lambda: where(x) == (["vmt"], {slot["vmt"]}), what="Python to learn the move back, into the map")
        wait_until(lambda: moves() == [("vmt", "vml"), ("vml", "vmt")], what="the move back told once")
        assert (stats("vml").moved - moved_l, stats("vmt").moved - moved_t) == (1, 1), "each move counted once"

        m.fdb_add(sw, StaticEntry(format_mac(y), "vmt"))
        refused = stats("vml").static_refused
        assert on_link.write(_from(y))
        wait_until(lambda: stats("vml").static_refused > refused, what="a frame from a MAC static elsewhere")
        assert stats("vml").static_refused == refused + 1, "refused once (the program; not the core again)"
        assert [(e.port, e.static) for e in m.fdb_show(sw) if e.mac == format_mac(y)] == [("vmt", True)]
        m.fdb_del(sw, format_mac(y))

        m.set_switch(sw, SwitchSettings(max_entries=16))
        for i in range(24):
            assert on_tap.write(_from(bytes((2, 0, 0, 0x5B, 0, i))))

        def counts_agree() -> bool:
            rows = [e for e in m.fdb_show(sw) if not e.static]
            return len(rows) <= 16 and dp.program.tables.dynamic_count() == len(rows) \
                and any(e.mac == format_mac(bytes((2, 0, 0, 0x5B, 0, 23))) for e in rows)
        wait_until(counts_agree, what="the core's fair eviction at the cap to leave the map at most full, "
                                      "its count right, the newest MAC in")

        m.set_switch(sw, SwitchSettings(ageing_s=10, max_entries=8192))
        assert on_tap.write(_from(x))
        wait_until(lambda: where(x) == (["vmt"], {slot["vmt"]}), what="x behind the TAP port again")
        wait_until(lambda: where(x) == ([], set()), timeout=30,
                   what="ageing to remove what Python learned from the map too")
    finally:
        on_link.close()
        on_tap.close()


def test_a_watch_keeps_a_mixed_switch_on_the_kernel_datapath_and_sees_pythons_decisions(mixed: Mixed) -> None:
    """A watch turns on the program's decision events and leaves the switch where it is: frames the
    upcall path serves are reported by Python (which decided them), the upcall TAP stays the same."""
    m, sw, ns, ip = mixed.m, mixed.sw, mixed.ns, mixed.ip
    upcall_tap = upcall_ifname(sw)
    before, label = socket.if_nametoindex(upcall_tap), m.get_switch(sw).datapath
    assert label.startswith("kernel (tc-bpf), 1 port; python: 2 ports"), label
    with ns_helpers.PacedPing(ns["vmt"], ip["vml"], interval=0.1) as ping:
        ping.wait_reply()
        events = m.watch(sw, seconds=2.0)
        assert m.get_switch(sw).datapath == label, "the watch did not move the switch"
    requests = [e for e in events if e.in_port == "vmt" and e.out_ports == ["vml"]]
    replies = [e for e in events if e.in_port == "vml" and e.out_ports == ["vmt"]]
    assert requests and replies, f"the watch saw the pings both ways: {events}"
    assert {e.path for e in requests + replies} == {"python"}, "the upcall path's decisions are Python's"
    assert socket.if_nametoindex(upcall_tap) == before and tc.ingress_filters(before) == ["vs_downcall"], \
        "the same upcall TAP, the program still on it"
    for a, b in (("vml", "vmt"), ("vmq", "vml"), ("vmt", "vmq")):
        assert ns_helpers.ping(ns[a], ip[b]), f"{a} reaches {b}"


def test_a_stale_tap_of_the_upcall_taps_name_is_replaced(netns) -> None:
    """A TAP left under the name the switch's upcall TAP takes (another owner's, a persistent one) is
    deleted and made again: the switch gets its own, and delete leaves none."""
    require_fastpath()
    sw = ns_helpers.unique_name("mxst")
    name = upcall_ifname(sw)
    ns_helpers.run(None, ["ip", "tuntap", "add", "mode", "tap", "name", name])
    stale = socket.if_nametoindex(name)
    m = SwitchManager()
    try:
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode.KERNEL))
        ours = socket.if_nametoindex(name)
        assert ours != stale and tc.ingress_filters(ours) == ["vs_downcall"], "the switch made its own"
        m.delete_switch(sw)
        with pytest.raises(OSError):
            socket.if_nametoindex(name)
    finally:
        m.shutdown()
        ns_helpers.run(None, ["ip", "link", "del", name], check=False)

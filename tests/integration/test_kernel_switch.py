"""A switch on the kernel datapath (`--datapath kernel|auto`): link ports between namespaces forwarded by
the tc-bpf fast path, the control plane reading the program's tables, and the program's lifecycle.

Real veths and namespaces, real ping, TCP (payload SHA-256) and iperf3. Every switch end is in this
process's namespace (the manager's), every VM end in a namespace of its own.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kernel_fastpath import require_fastpath
from pyroute2 import IPRoute
from switchlab import Daemon, delete_link, move_and_address, veth_pair

import netns as ns_helpers
from conftest import require_tool
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    DatapathMode,
    InvalidRequest,
    PortKind,
    PortSettings,
    PortSpec,
    StaticEntry,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
)
from vswitch.core.mac import format_mac
from vswitch.datapath import kernel
from vswitch.datapath.fastpath import KERNEL_LABEL, KernelDatapath, headroom
from vswitch.datapath.kernel import libbpf, tc
from vswitch.ports.link import LinkPort
from vswitch.ports.netns import run_in
from waiting import wait_until

pytestmark = pytest.mark.root

TCP_BYTES = 50_000_000


@dataclass
class Vm:
    port: str
    side: str      # the switch's end (here)
    ns: str
    inner: str     # the VM's end (in ns)
    ip: str
    mac: str


def _mac_in(ns: str, ifname: str) -> str:
    out = ns_helpers.run(ns, ["ip", "-j", "link", "show", ifname]).stdout
    return json.loads(out)[0]["address"]


@pytest.fixture
def cables(netns) -> Iterator[list[Vm]]:
    """Three VMs, each a namespace behind a veth whose switch end is here (up, no IPv6 chatter)."""
    require_fastpath()
    vms: list[Vm] = []
    try:
        for i in range(3):
            ns = netns(f"kv{i}")
            side, inner = ns_helpers.unique_name(f"ks{i}"), ns_helpers.unique_name(f"ki{i}")
            veth_pair(side, inner)
            vms.append(Vm(f"vm{i}", side, ns, inner, f"10.93.0.{i + 1}", ""))
            ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{side}.disable_ipv6=1"], check=False)
            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname=side)[0], state="up")
            move_and_address(inner, ns, f"10.93.0.{i + 1}/24")
            vms[-1].mac = _mac_in(ns, inner)
        yield vms
    finally:
        for vm in vms:
            delete_link(vm.side)


@pytest.fixture
def manager() -> Iterator[SwitchManager]:
    m = SwitchManager()
    try:
        yield m
    finally:
        m.shutdown()


def _ifindex(name: str) -> int:
    return socket.if_nametoindex(name)


def _our_filters(vms: list[Vm]) -> dict[str, list[str]]:
    return {vm.side: tc.ingress_filters(_ifindex(vm.side)) for vm in vms}


def _leftovers(vms: list[Vm], ids: tuple[int, frozenset[int]]) -> list[str]:
    """What of the fast path is still in the kernel: clsact qdiscs on the links, the program, its maps."""
    left = [f"clsact on {vm.side}" for vm in vms if tc.has_clsact(_ifindex(vm.side))]
    if ids[0] in libbpf.program_ids():
        left.append(f"program {ids[0]}")
    left += [f"map {i}" for i in ids[1] & set(libbpf.map_ids())]
    return left


def test_a_kernel_switch_forwards_between_namespaces_and_reads_back_as_one_switch(manager, cables):
    require_tool("iperf3")
    sw = ns_helpers.unique_name("ksw")
    info = manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode.KERNEL))
    for vm in cables:
        manager.add_port(sw, PortSpec(vm.port, PortKind.LINK, vm.side))
    dp = manager.datapath(sw)
    assert isinstance(dp, KernelDatapath) and dp.program is not None
    assert manager.get_switch(sw).datapath == KERNEL_LABEL == info.datapath, "switch show says which datapath"
    assert all(fds == ["vs_ingress"] for fds in _our_filters(cables).values()), "the program is on every link"
    assert all(ps.port.fileno() < 0 for ps in dp._ports.values()), "no AF_PACKET socket on a fast-path link"
    a, b, c = cables

    assert ns_helpers.ping(a.ns, b.ip) and ns_helpers.ping(c.ns, a.ip), "every VM reaches the others"
    fdb = {(e.mac, e.port) for e in manager.fdb_show(sw)}
    assert {(vm.mac, vm.port) for vm in cables} <= fdb, f"fdb show lists the MACs the program learned: {fdb}"

    def learned() -> set[tuple[str | None, str | None]]:
        return {(e.mac, e.port) for e in manager.events(sw, limit=1000).events if e.kind == "mac-learned"}
    wait_until(lambda: {(vm.mac, vm.port) for vm in cables} <= learned(),
               what="`events` to tell the MACs the program learned (on the next tick)")

    ns_helpers.tcp_transfer(a.ns, b.ns, b.ip, TCP_BYTES)
    stats = {s.port: s for s in manager.stats(sw)}
    # 50 MB in frames of at most 1514 bytes would be >= 33,000 frames: fewer means super-frames crossed
    assert stats[a.port].rx_bytes / stats[a.port].rx_frames > 1514, \
        f"TSO/GSO super-frames cross the fast path intact: {stats[a.port]}"
    assert stats[b.port].tx_frames > 0 and stats[a.port].learned >= 1

    server = ns_helpers.popen(b.ns, ["iperf3", "-s", "-1", "-B", b.ip])
    try:
        wait_until(lambda: "iperf3" in ns_helpers.run(b.ns, ["ss", "-ltnp"]).stdout, what="iperf3 to listen")
        out = json.loads(ns_helpers.run(a.ns, ["iperf3", "-c", b.ip, "-t", "1", "-J"], timeout=30).stdout)
    finally:
        server.kill()
        server.wait()
    assert out["end"]["sum_received"]["bytes"] > 0, "iperf3 TCP crosses the kernel switch"

    d = manager.trace(sw, a.port, a.mac, b.mac)
    assert (d.reason, d.out_ports) == ("FORWARD_LEARNED", [b.port]), "trace answers from the program's table"

    manager.set_port(sw, c.port, PortSettings(vlan=20))
    assert not ns_helpers.ping(a.ns, c.ip, count=2, deadline=2), "a port moved to VLAN 20 is isolated at once"
    assert ns_helpers.ping(a.ns, b.ip), "the others in VLAN 1 keep forwarding"
    assert all(e.port != c.port for e in manager.fdb_show(sw)), "its learned entries went with its VLAN"
    manager.set_port(sw, c.port, PortSettings(vlan=1))
    assert ns_helpers.ping(a.ns, c.ip), "and it is back in VLAN 1"

    ids = dp.program.kernel_ids()
    manager.delete_switch(sw)
    wait_until(lambda: not _leftovers(cables, ids), what="switch delete to leave no qdisc, program or map")
    assert not ns_helpers.ping(a.ns, b.ip, count=1, deadline=1), "nothing forwards after delete"


def _sender(vm: Vm) -> LinkPort:
    """An AF_PACKET socket on the VM's end, to send frames from any source MAC (close it after)."""
    port = LinkPort(vm.inner, vm.inner, vnet=False)
    run_in(vm.ns, port.open)
    return port


def _from(src: bytes) -> bytes:
    return b"\xff" * 6 + src + b"\x88\xb5" + bytes(46)


def test_the_fast_path_keeps_room_for_new_macs_and_applies_table_settings(manager, cables):
    """Cap 16: 20 source MACs from A fill the program's table (it cannot evict; the rest go up, where
    the core learns them by its fair eviction and the map gets the result); the tick evicts by the
    core's fair rule (A holds the most), so B's new MAC is learned soon after.
    Static entries pin and are refused elsewhere; a smaller cap evicts at once; ageing removes."""
    a, b, _ = cables
    sw = ns_helpers.unique_name("kfl")
    manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, max_entries=16, datapath=DatapathMode.KERNEL))
    for vm in (a, b):
        manager.add_port(sw, PortSpec(vm.port, PortKind.LINK, vm.side))
    dp = manager.datapath(sw)
    assert isinstance(dp, KernelDatapath)
    room = 16 - headroom(16)
    macs_a = [bytes((2, 0, 0, 0xA, 0, i)) for i in range(20)]
    new_b = bytes((2, 0, 0, 0xB, 0, 1))
    pa, pb = _sender(a), _sender(b)
    try:
        for mac in macs_a:
            assert pa.write(_from(mac))
        # a frame sent up is counted only as an upcall (with its cause)
        wait_until(lambda: sum(map(dp.program.counters(a.port).get, ("rx_frames", "upcall"))) >= 20,
                   what="the program to see A's frames")
        wait_until(lambda: len(manager.fdb_show(sw)) <= room, what="the tick to make room in a full table")
        assert pb.write(_from(new_b))
        wait_until(lambda: any(e.mac == format_mac(new_b) for e in manager.fdb_show(sw)),
                   what="B's new MAC to be learned in the full table")
        wait_until(lambda: len(manager.fdb_show(sw)) <= room, what="the tick to make room again")
        left = {e.mac: e.port for e in manager.fdb_show(sw)}
        assert left.get(format_mac(new_b)) == b.port, "the fair rule evicts from A, which holds the most"
        assert format_mac(macs_a[0]) not in left, "A's least recently seen entry went first"
        sa = {s.port: s for s in manager.stats(sw)}[a.port]
        assert (sa.rx_frames, sa.learned, sa.drops) == (20, 20, {}), \
            f"each frame counted once; those the cap sent up were served (the core learned them): {sa}"

        static = format_mac(macs_a[19])
        manager.fdb_add(sw, StaticEntry(static, b.port))
        assert pa.write(_from(macs_a[19]))
        wait_until(lambda: {s.port: s for s in manager.stats(sw)}[a.port].static_refused >= 1,
                   what="a frame from a MAC static elsewhere to be refused")
        rows = {e.mac: e for e in manager.fdb_show(sw)}
        assert rows[static].static and rows[static].port == b.port, "a static entry never moves"
        manager.fdb_del(sw, static)
        assert static not in {e.mac for e in manager.fdb_show(sw) if e.static}

        manager.fdb_add(sw, StaticEntry(static, b.port))
        old_ids = dp.program.kernel_ids()
        manager.set_switch(sw, SwitchSettings(max_entries=100_000))  # over the map's room: a new program
        assert dp.program.kernel_ids()[0] != old_ids[0]
        assert _our_filters([a, b]) == {a.side: ["vs_ingress"], b.side: ["vs_ingress"]}, "one filter per link"
        assert {(e.mac, e.port, e.static) for e in manager.fdb_show(sw)} == {(static, b.port, True)}, \
            "the static entry comes along; learned ones are learned again"
        assert pa.write(_from(macs_a[0]))
        wait_until(lambda: len(manager.fdb_show(sw)) == 2, what="the new program to learn")
        wait_until(lambda: old_ids[0] not in libbpf.program_ids(), what="the old program to be unloaded")
        manager.fdb_del(sw, static)

        manager.set_switch(sw, SwitchSettings(max_entries=16, ageing_s=10))
        assert manager.fdb_flush(sw) >= 1 and manager.fdb_show(sw) == [], "fdb flush empties the map"
        assert pb.write(_from(new_b))
        wait_until(lambda: manager.fdb_show(sw), what="B's MAC to be learned again")
        wait_until(lambda: not manager.fdb_show(sw), timeout=30, what="the 10 s ageing to remove it on a tick")
    finally:
        pa.close()
        pb.close()


def test_a_tap_or_qemu_port_keeps_the_switch_on_the_kernel_datapath_through_the_upcall_path(manager, cables, netns,
                                                                                         tmp_path):
    """A port only Python serves no longer moves an `auto` switch to Python nor is refused by a `kernel`
    one: its frames cross through the upcall TAP (tests/integration/test_kernel_mixed.py has the whole
    story)."""
    a, b, _ = cables
    auto, strict = ns_helpers.unique_name("kau"), ns_helpers.unique_name("kst")
    manager.create_switch(SwitchSpec(auto, SwitchType.PRIVATE))
    manager.add_port(auto, PortSpec(a.port, PortKind.LINK, a.side))
    assert manager.get_switch(auto).datapath == KERNEL_LABEL, "auto with link ports only is on the fast path"
    ids = manager.datapath(auto).program.kernel_ids()  # type: ignore[attr-defined]

    tap, ns = ns_helpers.unique_name("kt"), netns("ktap")
    manager.add_port(auto, PortSpec("vmt", PortKind.TAP, tap))
    move_and_address(tap, ns, "10.93.0.9/24")
    info = manager.get_switch(auto)
    assert info.datapath == "kernel (tc-bpf), 1 port; python: 1 port (tap)", f"switch show says which: {info.datapath}"
    assert manager.datapath(auto).program.kernel_ids() == ids, "the same program, still on the link"  # type: ignore[attr-defined]
    assert _our_filters([a]) == {a.side: ["vs_ingress"]}
    assert ns_helpers.ping(a.ns, "10.93.0.9") and ns_helpers.ping(ns, a.ip), "link ↔ tap through the upcall path"
    manager.remove_port(auto, "vmt")
    assert manager.get_switch(auto).datapath == KERNEL_LABEL, "without the tap port: the fast path alone"

    manager.create_switch(SwitchSpec(strict, SwitchType.PRIVATE, datapath=DatapathMode.KERNEL))
    manager.add_port(strict, PortSpec(b.port, PortKind.LINK, b.side))
    manager.add_port(strict, PortSpec("vmq", PortKind.QEMU_STREAM, str(tmp_path / "vmq.sock")))
    info = manager.get_switch(strict)
    assert info.datapath == "kernel (tc-bpf), 1 port; python: 1 port (qemu-stream)", info.datapath
    assert [p.name for p in info.ports] == [b.port, "vmq"]


def test_python_datapath_keeps_sockets_and_no_program(manager, cables):
    a, b, c = cables
    sw = ns_helpers.unique_name("kpy")
    manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode.PYTHON))
    for vm in (a, b):
        manager.add_port(sw, PortSpec(vm.port, PortKind.LINK, vm.side))
    assert manager.get_switch(sw).datapath == "python (--datapath python)"
    assert not any(_our_filters([a, b]).values()), "--datapath python puts no program on a link"
    assert ns_helpers.ping(a.ns, b.ip)

    daemon_default = SwitchManager(datapath=DatapathMode.PYTHON)  # vswitchd --datapath python
    try:
        other = ns_helpers.unique_name("kpd")
        daemon_default.create_switch(SwitchSpec(other, SwitchType.PRIVATE))
        daemon_default.add_port(other, PortSpec(c.port, PortKind.LINK, c.side))
        assert daemon_default.get_switch(other).datapath == "python (vswitchd --datapath python)"
        assert not _our_filters([c])[c.side]
    finally:
        daemon_default.shutdown()


def test_a_watch_sees_each_ping_decided_by_the_program_while_the_switch_stays_on_the_kernel(manager, cables):
    """The program reports each decision through its ring buffer while a watch runs: the switch stays on
    the kernel datapath (same program, links' sockets closed), and every echo request and reply of a
    real ping is one event, decided by the kernel fast path, with its ICMP identity, length and time."""
    a, b, _ = cables
    sw = ns_helpers.unique_name("kwt")
    manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
    for vm in (a, b):
        manager.add_port(sw, PortSpec(vm.port, PortKind.LINK, vm.side))
    assert ns_helpers.ping(a.ns, b.ip)
    dp = manager.datapath(sw)
    ids = dp.program.kernel_ids()  # type: ignore[attr-defined]
    box: dict[str, object] = {}
    watcher = threading.Thread(target=lambda: box.update(events=manager.watch(sw, seconds=4.0)), daemon=True)
    t0 = time.time()
    watcher.start()
    wait_until(lambda: manager.get_switch(sw).watches == 1, what="the watch to be recording")
    during = manager.get_switch(sw).datapath
    assert ns_helpers.ping(a.ns, b.ip, count=5, interval=0.1)
    program_during = dp.program.kernel_ids()  # type: ignore[attr-defined]
    sockets_closed = all(ps.port.fileno() < 0 for ps in dp._ports.values())
    watcher.join(timeout=30)
    events = box["events"]
    assert during == KERNEL_LABEL, f"switch show says kernel while the watch runs: {during}"
    assert program_during == ids and sockets_closed, "the same program forwards; no socket on the links"
    echoes = [e for e in events if e.icmp is not None]  # type: ignore[attr-defined]
    requests = {e.icmp.seq for e in echoes if e.icmp.type == 8 and e.in_port == a.port
                and e.reason == "FORWARD_LEARNED" and e.out_ports == [b.port]}
    replies = {e.icmp.seq for e in echoes if e.icmp.type == 0 and e.in_port == b.port
               and e.reason == "FORWARD_LEARNED" and e.out_ports == [a.port]}
    assert len(requests) >= 5 and len(replies) >= 5, f"each ping's request and reply decided: {echoes}"
    assert all(e.path == "kernel fast path" and e.length == 98 and e.vlan == 1 for e in echoes), echoes
    assert all(t0 <= e.t <= time.time() for e in echoes), "times are the decisions' (wall clock)"
    assert all((e.src, e.dst) == (a.mac, b.mac) for e in echoes if e.icmp.type == 8), echoes
    assert manager.get_switch(sw).watch_events_lost == 0
    assert dp.call(lambda: dp._feed) is None, "the watch is over: decision events off"
    assert dp.call(lambda: set(dp._fd_handlers) == {dp._fdb_feed.fileno()}), \
        "the decision ring out of the loop (the MAC table's events stay)"
    assert ns_helpers.ping(a.ns, b.ip), "and it forwards"


def test_switch_set_datapath_moves_a_running_switch_both_ways_with_frames_flowing(manager, cables, monkeypatch,
                                                                                  request):
    """`switch set --datapath python|kernel` live: ports, static and learned entries and counters kept,
    a ping going on throughout; `kernel` refused, naming why, when the fast path cannot be had (a port
    only Python serves no longer stops it: it joins through the upcall path), the switch unchanged; a
    dry run changes nothing."""
    a, b, _ = cables
    sw = ns_helpers.unique_name("kdp")
    manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
    for vm in (a, b):
        manager.add_port(sw, PortSpec(vm.port, PortKind.LINK, vm.side))
    static = "02:00:00:00:5e:01"
    manager.fdb_add(sw, StaticEntry(static, a.port))
    assert ns_helpers.ping(a.ns, b.ip)
    want = {(a.mac, a.port, False), (b.mac, b.port, False), (static, a.port, True)}

    def table() -> set[tuple[str, str, bool]]:
        return {(e.mac, e.port, e.static) for e in manager.fdb_show(sw)}

    def rx() -> dict[str, int]:
        return {s.port: s.rx_frames for s in manager.stats(sw)}

    steps = manager.set_switch(sw, SwitchSettings(datapath=DatapathMode.PYTHON), dry_run=True)
    assert any("to the Python datapath" in step for step in steps), steps
    assert manager.get_switch(sw).datapath == KERNEL_LABEL, "a dry run changes nothing"
    with ns_helpers.PacedPing(a.ns, b.ip, interval=0.05) as ping:
        ping.wait_reply()
        before = rx()
        info = manager.set_switch(sw, SwitchSettings(datapath=DatapathMode.PYTHON))
        assert info.datapath == "python (--datapath python)", info.datapath  # type: ignore[union-attr]
        assert not any(_our_filters([a, b]).values()), "no program on the links"
        assert want <= table(), f"learned and static entries kept: {table()}"
        moved = time.time()
        ping.wait_reply(after=moved, what="a reply on the Python datapath")
        on_python = rx()
        assert all(on_python[p] >= before[p] for p in before), f"counters go on: {before} → {on_python}"
        assert manager.datapath(sw).label == info.datapath and manager.datapath(sw).program is None  # type: ignore[attr-defined]

        info = manager.set_switch(sw, SwitchSettings(datapath=DatapathMode.KERNEL))
        assert info.datapath == KERNEL_LABEL, info.datapath  # type: ignore[union-attr]
        assert _our_filters([a, b]) == {a.side: ["vs_ingress"], b.side: ["vs_ingress"]}
        assert all(ps.port.fileno() < 0 for ps in manager.datapath(sw)._ports.values())
        ping.wait_reply(after=time.time(), what="a reply on the kernel datapath")
        back = rx()
        assert all(back[p] >= on_python[p] for p in back), f"counters go on: {on_python} → {back}"
    assert want <= table(), f"entries kept on the way back: {table()}"

    # the learned entries go into the program's map itself (not learned again): quiet switch, no frame
    manager.set_switch(sw, SwitchSettings(datapath=DatapathMode.PYTHON))
    manager.set_switch(sw, SwitchSettings(datapath=DatapathMode.KERNEL))
    assert want <= table(), f"learned entries carried into the new program: {table()}"

    manager.set_switch(sw, SwitchSettings(datapath=DatapathMode.AUTO))
    tap = ns_helpers.unique_name("kt")
    request.addfinalizer(lambda: delete_link(tap))  # a TAP port's netdev outlives the switch (it persists)
    manager.add_port(sw, PortSpec("vmt", PortKind.TAP, tap))
    label = manager.get_switch(sw).datapath
    assert label == "kernel (tc-bpf), 2 ports; python: 1 port (tap)", "a tap port joins through the upcall path"
    manager.set_switch(sw, SwitchSettings(datapath=DatapathMode.PYTHON))
    monkeypatch.setattr(kernel, "unavailable_reason", lambda: "the fast path is not built (as a test says)")
    for dry_run in (True, False):
        with pytest.raises(InvalidRequest, match="the fast path is not built"):
            manager.set_switch(sw, SwitchSettings(datapath=DatapathMode.KERNEL), dry_run=dry_run)
    info = manager.get_switch(sw)
    assert info.datapath == "python (--datapath python)" and [p.name for p in info.ports] == [a.port, b.port, "vmt"], \
        "a refused kernel leaves the switch unchanged"
    assert manager._switches[sw].spec.datapath == DatapathMode.PYTHON, "the stored setting unchanged"
    assert ns_helpers.ping(a.ns, b.ip)


def test_sigkill_leaves_the_kernel_forwarding_and_a_restart_replaces_the_programs(cables):
    """The daemon runs here (its links are ours); SIGKILL: the programs stay and forward; the next
    start puts exactly one filter of ours on each link; SIGTERM leaves none."""
    a, b, _ = cables
    d = Daemon(None)
    try:
        d.start()
        sw = ns_helpers.unique_name("kdm")
        d.cli("switch", "create", sw, "--private")
        for vm in (a, b):
            d.cli("port", "add", sw, vm.port, "--link", vm.side)
        shown = json.loads(d.cli("switch", "show", sw, "--json").stdout)
        assert shown["datapath"] == KERNEL_LABEL, shown
        assert ns_helpers.ping(a.ns, b.ip)
        before = _prog_ids([a, b])
        assert len(before) == 1, f"one program per switch, on both links: {before}"

        d.stop(signal.SIGKILL)
        assert _our_filters([a, b]) == {a.side: ["vs_ingress"], b.side: ["vs_ingress"]}
        assert ns_helpers.ping(b.ns, a.ip), "with vswitchd killed, the kernel keeps forwarding"

        d.start()
        wait_until(lambda: _prog_ids([a, b]) and not _prog_ids([a, b]) & before,
                   what="the restarted daemon to replace its programs")
        assert _our_filters([a, b]) == {a.side: ["vs_ingress"], b.side: ["vs_ingress"]}, "one filter each"
        assert ns_helpers.ping(a.ns, b.ip), "the new programs forward"
        wait_until(lambda: not set(libbpf.program_ids()) & before, what="the old programs to be unloaded")

        after = _prog_ids([a, b])
        assert d.stop(signal.SIGTERM) == 0
        assert not any(tc.has_clsact(_ifindex(vm.side)) for vm in (a, b)), "SIGTERM leaves no clsact qdisc"
        wait_until(lambda: not set(libbpf.program_ids()) & after, what="SIGTERM to unload the programs")
    finally:
        d.cleanup()


def _prog_ids(vms: list[Vm]) -> set[int]:
    """Kernel ids of the bpf programs on the links' tc ingress (as `tc filter show` prints them:
    pyroute2 does not decode TCA_BPF_ID)."""
    ids = set()
    for vm in vms:
        out = ns_helpers.run(None, ["tc", "filter", "show", "dev", vm.side, "ingress"], check=False).stdout
        ids |= {int(n) for n in re.findall(r"\bid (\d+)", out)}
    return ids


def test_a_python_switch_takes_off_the_fast_path_a_killed_vswitchd_left(cables):
    """A kernel switch's programs outlive its daemon; a switch on the Python datapath opening those links
    later removes them first, or the old program and Python would both forward every frame."""
    a, b, _ = cables
    first, second = SwitchManager(), SwitchManager(datapath=DatapathMode.PYTHON)
    try:
        sw = ns_helpers.unique_name("kst")
        first.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode.KERNEL))
        for vm in (a, b):
            first.add_port(sw, PortSpec(vm.port, PortKind.LINK, vm.side))
        left = first.datapath(sw).program  # type: ignore[attr-defined]
        left.hand_over_links()  # as SIGKILL leaves it: attached, forgotten by any vswitchd
        first.datapath(sw).program = None  # type: ignore[attr-defined]
        assert _our_filters([a, b]) == {a.side: ["vs_ingress"], b.side: ["vs_ingress"]}

        again = ns_helpers.unique_name("kpy")
        second.create_switch(SwitchSpec(again, SwitchType.PRIVATE))
        for vm in (a, b):
            second.add_port(again, PortSpec(vm.port, PortKind.LINK, vm.side))
        assert _our_filters([a, b]) == {a.side: [], b.side: []}, "the stale program is off the links"
        out = ns_helpers.run(a.ns, ["ping", "-c", "5", "-i", "0.2", "-W", "2", b.ip], check=False).stdout
        assert " 0% packet loss" in out and "DUP!" not in out, f"each frame forwarded once:\n{out}"
    finally:
        second.shutdown()
        first.shutdown()
        if "left" in locals():
            left.close()


def test_an_add_port_killed_after_attaching_is_undone_with_its_filter(cables):
    """SIGKILL right after the program went on the link, before the port was stored: the next start
    undoes the add (the port is not there) and takes the filter off the link."""
    a, _, _ = cables
    crashing = Daemon(None, env={"VSWITCH_CRASH_AT": "add-port.attached"})
    restarted = Daemon(None, state_dir=crashing.state_dir)
    try:
        crashing.start()
        sw = ns_helpers.unique_name("kcr")
        crashing.cli("switch", "create", sw, "--private")
        assert crashing.cli("port", "add", sw, a.port, "--link", a.side, check=False).returncode != 0
        crashing.stop()
        assert _our_filters([a]) == {a.side: ["vs_ingress"]}, "killed with the program on the link"
        restarted.start()
        shown = json.loads(restarted.cli("switch", "show", sw, "--json").stdout)
        assert shown["ports"] == [], "the interrupted add is undone"
        assert _our_filters([a]) == {a.side: []} and not tc.has_clsact(_ifindex(a.side)), \
            "and its filter and qdisc are gone from the link"
    finally:
        restarted.cleanup()
        crashing.cleanup()


def test_a_link_deleted_and_created_again_gets_the_program_back(manager, cables):
    """A VM's veth rebuilt under the same name: a new ifindex, no filter on it; the link watch reports
    it up and the program goes on the new link (SwitchProgram.relink)."""
    a, b, _ = cables
    sw = ns_helpers.unique_name("krl")
    manager.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode.KERNEL))
    for vm in (a, b):
        manager.add_port(sw, PortSpec(vm.port, PortKind.LINK, vm.side))
    assert ns_helpers.ping(a.ns, b.ip)
    old = _ifindex(a.side)
    delete_link(a.side)  # takes the VM's end with it
    wait_until(lambda: not {p.name: p for p in manager.list_ports(sw)}[a.port].up, what="port a to go down")
    veth_pair(a.side, a.inner)
    ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{a.side}.disable_ipv6=1"], check=False)
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=a.side)[0], state="up")
    move_and_address(a.inner, a.ns, f"{a.ip}/24")
    assert _ifindex(a.side) != old
    wait_until(lambda: _our_filters([a]) == {a.side: ["vs_ingress"]}, what="the program on the new link")
    assert ns_helpers.ping(a.ns, b.ip), "the rebuilt link forwards on the fast path"
    assert manager.get_switch(sw).datapath == KERNEL_LABEL

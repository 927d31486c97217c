"""Events: what the core records (learned, moved, aged, evicted, static refused, port up/down), the
rate limiter and its bounds, the daemon's ring (sequence numbers, dropped count, long poll), and the
manager's configuration-change and takeover events. No root: injected clocks, memory ports, the
in-memory kernel (tests/unit/memkernel.py).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from memkernel import MemKernel

from l2frames import BROADCAST, frame, mac
from vswitch.control.events import EventLog
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    EventKind,
    InvalidRequest,
    PortKind,
    PortSettings,
    PortSpec,
    StaticEntry,
    SwitchEvent,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
)
from vswitch.core import events as ce
from vswitch.core.events import CoreEvent, EventRecorder
from vswitch.core.fdb import MacTable
from vswitch.core.policy import PortPolicy
from vswitch.core.switch import SwitchCore
from waiting import wait_until


def switch(*ports: str, max_entries: int = 8192, ageing_s: float = 300) -> SwitchCore:
    sw = SwitchCore(max_entries=max_entries, ageing_s=ageing_s)
    for p in ports:
        sw.add_port(p)
    return sw


def drained(sw: SwitchCore) -> list[CoreEvent]:
    events, dropped = sw.events.drain()
    assert dropped == 0
    return events


def facts(events: list[CoreEvent]) -> list[tuple[object, ...]]:
    return [(e.kind, e.mac, e.vlan, e.old_port, e.port, e.count) for e in events]


# -- what the core records ------------------------------------------------------------------------

def test_a_new_mac_is_learned_once_and_known_unicast_records_nothing() -> None:
    sw = switch("A", "B")
    sw.process("A", frame("b", "a"), 0, 0)
    sw.process("B", frame("a", "b"), 0, 0)
    assert facts(drained(sw)) == [(ce.MAC_LEARNED, mac("a"), 1, None, "A", 1),
                                  (ce.MAC_LEARNED, mac("b"), 1, None, "B", 1)]
    before = sw.events.pending()
    for now in range(1, 50):  # refreshes on a new `now` and known unicast both ways
        sw.process("A", frame("b", "a"), 0, now)
        sw.process("B", frame("a", "b"), 0, now)
    assert sw.events.pending() == before and not sw.events.out, "the normal case records nothing"


def test_a_move_is_recorded_with_old_and_new_port() -> None:
    sw = switch("A", "B", "C")
    sw.process("A", frame(BROADCAST, "m", vlan=None), 0, 0)
    sw.process("C", frame(BROADCAST, "m"), 0, 1)
    assert facts(drained(sw))[-1] == (ce.MAC_MOVED, mac("m"), 1, "A", "C", 1)


def test_an_entry_that_ages_out_is_recorded() -> None:
    sw = switch("A", "B", ageing_s=10)
    sw.process("A", frame("b", "a"), 0, 0)
    drained(sw)
    sw.expire(10)
    assert drained(sw) == [], "alive at exactly the ageing time"
    sw.expire(11)
    assert facts(drained(sw)) == [(ce.MAC_AGED, mac("a"), 1, None, "A", 1)]


def test_a_full_table_evicts_from_the_port_holding_most_and_says_so() -> None:
    sw = switch("A", "B", "C", max_entries=16)
    for i in range(12):
        sw.process("A", frame(BROADCAST, f"a{i:x}"), 0, i)
    for i in range(4):
        sw.process("B", frame(BROADCAST, f"b{i:x}"), 0, 20 + i)
    drained(sw)
    sw.process("C", frame(BROADCAST, "c"), 0, 30)
    (evicted, learned) = drained(sw)  # the room is made first
    assert facts([learned]) == [(ce.MAC_LEARNED, mac("c"), 1, None, "C", 1)]
    assert facts([evicted]) == [(ce.MAC_EVICTED, mac("a0"), 1, None, "A", 1)], \
        "A holds the most entries: its oldest goes (the fair policy of core/fdb.py)"


def test_a_frame_from_a_static_mac_on_another_port_is_a_refusal_event() -> None:
    sw = switch("A", "B", "C")
    sw.fdb.add_static(mac("m"), 1, "A")
    sw.process("C", frame(BROADCAST, "m"), 0, 5)
    sw.process("A", frame(BROADCAST, "m"), 0, 6)
    assert facts(drained(sw)) == [(ce.STATIC_REFUSED, mac("m"), 1, "A", "C", 1)], \
        "seen on C (port) while static on A (old_port); its own port is no refusal"


def test_port_admin_and_link_changes_are_recorded_with_the_reason() -> None:
    sw = switch("A", "B")
    sw.set_policy("A", PortPolicy.access(1, admin_up=False))
    sw.set_policy("A", PortPolicy.access(10, admin_up=False))  # a VLAN change alone is no port event
    sw.set_policy("A", PortPolicy.access(1))
    sw.set_oper_up("B", False, "link")
    sw.set_oper_up("B", False, "link")  # no change: no event
    sw.set_oper_up("B", True, "reopened")
    assert [(e.kind, e.port, e.reason) for e in drained(sw)] == [
        (ce.PORT_DOWN, "A", "admin"), (ce.PORT_UP, "A", "admin"), (ce.PORT_DOWN, "B", "link"),
        (ce.PORT_UP, "B", "reopened")]


def test_trace_records_nothing() -> None:
    sw = switch("A", "B", "C", max_entries=16)
    for i in range(16):
        sw.process("A", frame(BROADCAST, f"a{i:x}"), 0, 0)
    sw.fdb.add_static(mac("s"), 1, "A")
    drained(sw)
    before = sw.events.pending()
    for in_port, src in [("B", "n"), ("B", "a0"), ("C", "s")]:  # a learn with eviction, a move, a refusal
        sw.trace(in_port, frame("a1", src), 1)
    assert sw.events.pending() == before and not sw.events.out


def test_every_core_kind_is_an_event_kind() -> None:
    assert set(ce.KINDS) <= {k.value for k in EventKind}


# -- the rate limiter -----------------------------------------------------------------------------

def test_a_flap_of_1000_moves_a_second_for_30_s_is_a_few_events_whose_counts_sum_to_the_moves() -> None:
    t = MacTable()
    macs = [mac("x"), mac("y")]
    for m in macs:
        t.learn(m, 1, "p0", 0.0)
    t.events.drain()
    moves = 0
    for ms in range(1, 30_001):  # 30 s of injected time, 1 ms apart, ticked every 0.5 s as the datapath does
        now = ms / 1000
        for m in macs:
            t.learn(m, 1, "p1" if ms % 2 else "p0", now)
            moves += 1
        if ms % 500 == 0:
            t.events.tick(now)
    t.events.tick(45.0)  # the flap stopped: the last window closes, the one after is quiet
    events, dropped = t.events.drain()
    assert dropped == 0 and t.moves == moves
    for m in macs:
        mine = [e for e in events if e.mac == m]
        assert all(e.kind == ce.MAC_MOVED for e in mine)
        assert len(mine) <= 4, f"at most one event per 10 s: {[(e.at, e.count) for e in mine]}"
        assert sum(e.count for e in mine) == moves // 2, "every move is counted in some event"
        assert mine[0].count == 1 and mine[0].window_s is None, "the first move is told at once"
        gaps = [b.at - a.at for a, b in zip(mine, mine[1:], strict=False)]
        assert all(g >= 10 for g in gaps), gaps
        assert all(e.window_s is not None and e.window_s >= 10 for e in mine[1:]), "a summary covers its window"
    t.events.tick(100.0)
    t.learn(macs[0], 1, "p1" if t.get(macs[0], 1).port == "p0" else "p0", 100.0)
    assert [e.count for e in t.events.drain()[0]] == [1], "after a quiet window a move is told at once again"


def test_a_flood_of_new_macs_is_a_burst_then_one_summary_per_port() -> None:
    t = MacTable(max_entries=100_000)
    for i in range(8000):
        t.learn(i.to_bytes(6, "big"), 1, "uplink", 1.0)
    t.learn(mac("v"), 1, "vm1", 1.0)
    t.events.tick(11.0)
    events, dropped = t.events.drain()
    uplink = [e for e in events if e.port == "uplink"]
    assert dropped == 0 and len(uplink) == ce.BULK_BURST + 1
    assert sum(e.count for e in uplink) == 8000
    summary = uplink[-1]
    assert (summary.mac, summary.count, summary.window_s) == (None, 8000 - ce.BULK_BURST, 10.0)
    assert [(e.mac, e.count) for e in events if e.port == "vm1"] == [(mac("v"), 1)], \
        "another port's first MAC is still told on its own"


def test_the_recorder_is_bounded_and_counts_what_it_dropped() -> None:
    r = EventRecorder(capacity=3, max_keys=4)
    for i in range(6):
        r.moved(bytes([2, 0, 0, 0, 0, i]), 1, "a", "b", 0.0)
    events, dropped = r.drain()
    assert len(events) == 3 and dropped == 3, "3 kept; the 4th key's event found the queue full, 2 more no key"
    assert r.drain() == ([], 0), "drain resets both"


# -- the daemon's ring ----------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1
        return self.t


def test_the_ring_keeps_the_newest_numbers_them_and_tells_a_reader_what_it_missed() -> None:
    log = EventLog(capacity=5, clock=Clock())
    for i in range(8):
        log.emit("lan" if i % 2 else "wan", EventKind.FDB_FLUSH, removed=i)
    page = log.read(None, 0, 100)
    assert [e.seq for e in page.events] == [4, 5, 6, 7, 8] and page.missed == 3
    assert [e.t for e in page.events] == [1004.0, 1005.0, 1006.0, 1007.0, 1008.0]
    assert (page.next_since, page.latest) == (8, 8)
    lan = log.read("lan", 0, 100)
    assert [e.seq for e in lan.events] == [4, 6, 8] and lan.missed == 3
    assert log.read(None, 5, 100).missed == 0 and [e.seq for e in log.read(None, 5, 2).events] == [6, 7]
    assert log.read(None, 8, 100).events == []
    assert [e.seq for e in log.read(None, 99, 100).events] == [4, 5, 6, 7, 8], \
        "a `since` from before a restart reads from the start"


def test_a_waiting_reader_wakes_for_its_switch_and_close_ends_every_wait() -> None:
    log = EventLog()
    got: list[list[SwitchEvent]] = []
    reader = threading.Thread(target=lambda: got.append(log.read("lan", 0, 10, wait_s=30).events))
    reader.start()
    log.emit("wan", EventKind.FDB_FLUSH, removed=0)  # not the reader's switch: it goes on waiting
    log.emit("lan", EventKind.FDB_FLUSH, removed=1)
    reader.join(30)
    assert not reader.is_alive() and [e.detail for e in got[0]] == [{"removed": 1}]
    waiter = threading.Thread(target=lambda: got.append(log.read("lan", log.latest, 10, wait_s=30).events))
    waiter.start()
    log.close()
    waiter.join(30)
    assert not waiter.is_alive() and got[1] == []


def test_each_event_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog()
    sink = log.sink(lambda: "lan")
    with caplog.at_level(logging.INFO, logger="vswitch.events"):
        sink([CoreEvent(ce.MAC_MOVED, 5.0, "vm2", mac("m"), 10, "vm1", 37, 10.0)], 2)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "vswitch.events"]
    assert lines == [(logging.INFO, "switch lan: mac moved  02:00:00:00:00:6d vlan 10  vm1 → vm2  (×37 in 10 s) [#1]"),
                     (logging.INFO, "switch lan: events dropped  2 lost before they reached the ring [#2]")]


# -- the manager: configuration changes, ports, frames, takeover ----------------------------------

@pytest.fixture
def manager(tmp_path: Path) -> Iterator[SwitchManager]:
    m = SwitchManager(port_socket_dir=str(tmp_path / "ports"))
    yield m
    m.shutdown()


def kinds(m: SwitchManager, since: int = 0, switch: str | None = None) -> list[tuple[str, str | None]]:
    return [(e.kind, e.port) for e in m.events(switch, since=since).events]


def test_every_configuration_change_is_an_event(manager: SwitchManager) -> None:
    m = manager
    m.create_switch(SwitchSpec("lan", SwitchType.PRIVATE))
    m.add_port("lan", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    m.add_port("lan", PortSpec("vm2", PortKind.MEMORY, "vm2"))
    m.set_port("lan", "vm1", PortSettings(trunk=tuple(range(1, 4095)), native=1))
    m.fdb_add("lan", StaticEntry("02:00:00:00:0a:01", "vm2"))
    m.fdb_del("lan", "02:00:00:00:0a:01")
    m.fdb_flush("lan")
    m.set_switch("lan", SwitchSettings(ageing_s=60))
    m.set_switch("lan", SwitchSettings(name="lan2"))
    m.remove_port("lan2", "vm2")
    m.delete_switch("lan2")
    got = m.events().events
    assert [(e.switch, e.kind, e.port) for e in got] == [
        ("lan", "switch-created", None), ("lan", "port-added", "vm1"), ("lan", "port-added", "vm2"),
        ("lan", "port-set", "vm1"), ("lan", "fdb-add", "vm2"), ("lan", "fdb-del", None), ("lan", "fdb-flush", None),
        ("lan", "switch-set", None), ("lan2", "switch-set", None), ("lan2", "port-removed", "vm2"),
        ("lan2", "switch-deleted", None)]
    assert got[3].detail == {"trunk": "1-4094", "native": 1}, "a trunk is told as ranges"
    assert (got[4].mac, got[4].vlan) == ("02:00:00:00:0a:01", 1) and got[6].detail == {"removed": 0}
    assert got[8].detail == {"name": "lan2", "old_name": "lan"}


def test_frames_and_admin_down_reach_the_events_of_their_switch(manager: SwitchManager) -> None:
    m = manager
    m.create_switch(SwitchSpec("lan", SwitchType.PRIVATE))
    for p in ("vm1", "vm2", "vm3"):
        m.add_port("lan", PortSpec(p, PortKind.MEMORY, p))
    start = m.events().latest
    m.port_object("lan", "vm1").inject(frame(BROADCAST, "m"))  # type: ignore[attr-defined]
    page = m.events("lan", since=start, wait_s=30)
    assert [(e.kind, e.mac, e.port) for e in page.events] == [("mac-learned", "02:00:00:00:00:6d", "vm1")]
    m.port_object("lan", "vm2").inject(frame(BROADCAST, "m"))  # type: ignore[attr-defined]
    page = m.events("lan", since=page.next_since, wait_s=30)
    assert [(e.kind, e.mac, e.vlan, e.old_port, e.port) for e in page.events] == [
        ("mac-moved", "02:00:00:00:00:6d", 1, "vm1", "vm2")]
    m.set_port("lan", "vm3", PortSettings(admin_up=False))
    down, change = m.events("lan", since=page.next_since).events
    assert (down.kind, down.port, down.reason) == ("port-down", "vm3", "admin")
    assert (change.kind, change.port, change.detail) == ("port-set", "vm3", {"admin_up": False}), \
        "the effect is told before the change that caused it returns"


def test_events_of_an_unknown_switch_are_refused(manager: SwitchManager) -> None:
    from vswitch.control.model import NotFound
    with pytest.raises(NotFound, match="no switch named 'nope'"):
        manager.events("nope")


def test_takeover_steps_confirm_and_revert_are_events(tmp_path: Path) -> None:
    from test_manager_kernel import EXT, _host_kernel

    kernel: MemKernel = _host_kernel()
    m = SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds, port_socket_dir=str(tmp_path / "ports"))
    try:
        m.create_switch(EXT)
        steps = [e for e in m.events("ext").events if e.kind == "takeover-step"]
        assert steps and all(e.reason == "done" for e in steps)
        assert steps[0].detail["step"].startswith("set vs-ext MAC to "), steps[0]
        assert m.events("ext").events[-1].kind == "switch-created", "told once the switch is there"
        mark = m.events().latest
        m.delete_switch("ext")
        undone = [e for e in m.events("ext", since=mark).events if e.kind == "takeover-step"]
        assert len(undone) == len(steps) and all(e.reason == "undone" for e in undone)
        assert [e.detail["step"] for e in undone] == [e.detail["step"] for e in reversed(steps)]
        assert m.events("ext", since=mark).events[-1].kind == "switch-deleted"

        timed = SwitchSpec("ext", SwitchType.EXTERNAL, nic=EXT.nic, confirm_timeout_s=30)
        m.create_switch(timed)
        mark = m.events().latest
        m.confirm_switch("ext")
        assert kinds(m, mark) == [("switch-confirmed", None)]
        m.delete_switch("ext")
        m.create_switch(SwitchSpec("ext", SwitchType.EXTERNAL, nic=EXT.nic, confirm_timeout_s=0.01))
        mark = m.events().latest
        wait_until(lambda: ("switch-reverted", None) in kinds(m, mark), what="the automatic revert")
        (revert,) = [e for e in m.events("ext", since=mark).events if e.kind == "switch-reverted"]
        assert revert.reason == "not confirmed in time"
    finally:
        m.shutdown()


def test_a_takeover_that_fails_midway_tells_each_step_done_and_undone(tmp_path: Path) -> None:
    from test_manager_kernel import EXT, _host_kernel

    kernel: MemKernel = _host_kernel()
    m = SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds, port_socket_dir=str(tmp_path / "ports"),
                      takeover_fail_at=3)
    try:
        with pytest.raises(InvalidRequest, match="rolled back"):
            m.create_switch(EXT)
        told = [(e.reason, e.detail["key"]) for e in m.events("ext").events]
        done = [key for outcome, key in told if outcome == "done"]
        assert len(done) == 3 and told == [("done", k) for k in done] + [("undone", k) for k in reversed(done)], \
            "three steps done, then undone in reverse; no switch-created"
    finally:
        m.shutdown()


def test_a_port_features_drops_are_one_event_then_one_summary_per_window_whose_counts_sum_up() -> None:
    sw = switch("vm1", "vm2")
    sw.set_policy("vm1", PortPolicy(mac_spoofing=False, mac=mac("02:00:00:00:00:01")))
    forged = frame(BROADCAST, "02:00:00:00:00:66")
    drained(sw)
    for i in range(5000):  # a forging VM at 1,000 frames a second for 5 s
        assert sw.process("vm1", forged, 0, 100.0 + i / 1000).reason.name == "DROP_SPOOFED_MAC"
    sw.trace("vm1", forged, 106.0)
    first = drained(sw)
    assert [(e.kind, e.port, e.reason, e.mac, e.vlan, e.count) for e in first] == [
        (ce.FRAME_DROPPED, "vm1", "drop_spoofed_mac", mac("02:00:00:00:00:66"), 1, 1)], \
        "the first drop names its source; trace records nothing"
    sw.expire(111.0)
    (summary,) = drained(sw)
    assert (summary.kind, summary.port, summary.reason, summary.count, summary.mac) == \
        (ce.FRAME_DROPPED, "vm1", "drop_spoofed_mac", 4999, None)
    assert sum(e.count for e in first + [summary]) == 5000 == sw.counters["vm1"].snapshot()["drops"]["drop_spoofed_mac"]
    sw.process("vm2", forged, 0, 112.0)
    assert [e.kind for e in drained(sw)] == [ce.MAC_LEARNED], "a port without the feature: learned, no drop"


def test_the_kernel_fast_paths_counts_are_events_too() -> None:
    rec = EventRecorder()
    rec.frame_dropped("vm1", "drop_dhcp_guard", None, None, 10.0, count=40)  # a second's count, no frame
    rec.frame_dropped("vm1", "drop_dhcp_guard", None, None, 11.0, count=2)
    rec.frame_dropped("vm1", "drop_router_guard", None, None, 11.0, count=1)  # another reason: its own key
    rec.tick(21.0)
    events, _ = rec.drain()
    assert [(e.reason, e.count, e.window_s is not None) for e in events] == [
        ("drop_dhcp_guard", 40, False), ("drop_router_guard", 1, False), ("drop_dhcp_guard", 2, True)]


def test_the_human_words_of_an_event() -> None:
    ev = SwitchEvent(1, 0.0, "lan", "mac-moved", port="vm2", mac="52:54:00:aa:bb:cc", vlan=10, old_port="vm1",
                     count=37, window_s=10.0)
    assert ev.summary() == "mac moved  52:54:00:aa:bb:cc vlan 10  vm1 → vm2  (×37 in 10 s)"
    bulk = SwitchEvent(2, 0.0, "lan", "mac-learned", port="uplink", count=7984, window_s=10.0)
    assert bulk.summary() == "mac learned  7984 MACs  on uplink  (in 10 s)"
    down = SwitchEvent(3, 0.0, "lan", "port-down", port="vm1", reason="admin")
    assert down.summary() == "port down  vm1 (admin)"
    step = SwitchEvent(4, 0.0, "ext", "takeover-step", reason="done", detail={"step": "bring vs-ext up"})
    assert step.summary() == "takeover step  done: bring vs-ext up"
    created = SwitchEvent(5, 0.0, "lan", "switch-created", detail={"type": "private", "nic": None})
    assert created.summary() == "switch created  type=private", "what a switch does not have is not said"
    dropped = SwitchEvent(6, 0.0, "lan", "frame-dropped", port="vm2", mac="02:00:00:00:00:66", vlan=1,
                          reason="drop_dhcp_guard")
    assert dropped.summary() == ("frame dropped  1 frame at vm2: a DHCP server's message from a port with the "
                                 "DHCP guard on  (source 02:00:00:00:00:66 vlan 1)")
    folded = SwitchEvent(7, 0.0, "lan", "frame-dropped", port="vm2", reason="drop_spoofed_mac", count=4999,
                         window_s=10.0)
    assert folded.summary() == ("frame dropped  at vm2: a source other than the port's MAC from a port with MAC "
                                "spoofing off  (×4999 in 10 s)")
    assert Counter(k.value for k in EventKind).most_common(1)[0][1] == 1, "each kind once"

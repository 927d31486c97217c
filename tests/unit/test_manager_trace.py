"""`SwitchManager.trace` and `watch` return typed records: the steps of the one decision function,
the classified VLAN (for drops too), and nothing learned or counted by a trace.

Runs without root: a Private switch with memory ports touches no kernel object.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from l2frames import BROADCAST, frame, mac
from vswitch.control.manager import SwitchManager
from vswitch.control.model import FrameEvent, PortKind, PortSpec, SwitchSpec, SwitchType, TraceInfo, TraceStepInfo
from waiting import wait_until

A, B = mac("a").hex(":"), mac("b").hex(":")


@pytest.fixture
def manager() -> Iterator[SwitchManager]:
    m = SwitchManager()
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        for name, vlan in (("p1", 10), ("p2", 10), ("p3", 20)):
            m.add_port("s", PortSpec(name, PortKind.MEMORY, name, vlan=vlan))
        yield m
    finally:
        m.shutdown()


def learn(m: SwitchManager, port: str, src: str) -> None:
    m.port_object("s", port).inject(frame(BROADCAST, src))  # type: ignore[attr-defined]
    wait_until(lambda: any(e.mac == mac(src).hex(":") for e in m.fdb_show("s")), what=f"{src} learned")


def test_trace_is_typed_and_changes_nothing(manager: SwitchManager) -> None:
    learn(manager, "p2", "b")
    fdb, stats = manager.fdb_show("s"), manager.stats("s")
    t = manager.trace("s", "p1", A, B)
    assert isinstance(t, TraceInfo) and all(isinstance(s, TraceStepInfo) for s in t.steps)
    assert (t.reason, t.out_ports, t.vlan, t.tag) == ("FORWARD_LEARNED", ["p2"], 10, None)
    assert [s.stage for s in t.steps] == ["parse", "ingress", "learn", "decide", "egress"]
    assert t.steps[2].detail["action"] == "learn" and t.steps[3].reason == "FORWARD_LEARNED"
    after = manager.fdb_show("s")
    # the entries' age goes on with the clock (10 ms steps); a trace that learned would add an entry or
    # move one, and one that refreshed would take its age back
    assert [(e.mac, e.vlan, e.port, e.static) for e in after] == [(e.mac, e.vlan, e.port, e.static) for e in fdb], \
        "a trace learns nothing"
    assert all(a.age_s >= b.age_s for a, b in zip(after, fdb, strict=True)), "and refreshes nothing"
    assert [s.rx_frames for s in manager.stats("s")] == [s.rx_frames for s in stats], "and counts nothing"


def test_trace_shows_the_classified_vlan_of_a_drop(manager: SwitchManager) -> None:
    learn(manager, "p1", "a")
    t = manager.trace("s", "p1", B, A)
    assert (t.reason, t.vlan, t.out_ports) == ("DROP_SAME_PORT", 10, [])
    t = manager.trace("s", "p1", A, B, vlan=20)
    assert (t.reason, t.vlan, t.tag) == ("DROP_VLAN_INGRESS", None, 20), "dropped before classification"
    assert "tag VID 20 not admitted on access 10" in t.steps[-1].result
    t = manager.trace("s", "p3", "02:00:00:00:00:33", "ff:ff:ff:ff:ff:ff")
    assert (t.reason, t.vlan, t.out_ports) == ("FLOOD_BROADCAST", 20, [])
    assert "no other port is up, floods and is a member of VLAN 20" in t.steps[-1].result


def test_watch_returns_frame_events_with_the_classified_vlan(manager: SwitchManager) -> None:
    learn(manager, "p1", "a")
    box: dict[str, list[FrameEvent]] = {}
    watching = threading.Thread(target=lambda: box.update(events=manager.watch("s", 30, limit=2)))
    watching.start()
    dp = manager.datapath("s")
    wait_until(lambda: dp.frame_observers, what="the watch registered")
    manager.port_object("s", "p1").inject(frame("a", "b"))  # type: ignore[attr-defined]
    manager.port_object("s", "p3").inject(frame(BROADCAST, "c"))  # type: ignore[attr-defined]
    manager.port_object("s", "p2").inject(frame(BROADCAST, "d"))  # type: ignore[attr-defined]  # past the limit: ends it
    watching.join(35)
    same, flood = box["events"]
    assert isinstance(same, FrameEvent) and same.switch == "s"
    assert (same.in_port, same.reason, same.vlan, same.out_ports) == ("p1", "DROP_SAME_PORT", 10, [])
    assert (flood.in_port, flood.reason, flood.vlan, flood.icmp) == ("p3", "FLOOD_BROADCAST", 20, None)

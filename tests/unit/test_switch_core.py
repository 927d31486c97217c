"""SwitchCore: every forwarding outcome with its reason, VLAN admit/tag/untag, and counters.

Ports are opaque ids ("A", "B", ...); `now` is a parameter. The core decides; applying the tag
edits is `egress_frame`, checked here too.
"""

from __future__ import annotations

import pytest

from l2frames import BROADCAST, frame, mac
from vswitch.core.events import MAC_MOVED, STATIC_REFUSED
from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import EDIT_KEEP, EDIT_POP, EDIT_PUSH, EDIT_RETAG, SwitchCore, egress_frame

MCAST = "01:00:5e:00:00:fb"


def switch(*ports: str, **policies: PortPolicy) -> SwitchCore:
    sw = SwitchCore()
    for p in ports:
        sw.add_port(p)
    for p, pol in policies.items():
        sw.add_port(p, pol)
    return sw


def drops(sw: SwitchCore, port: str) -> dict[Reason, int]:
    return dict(sw.counters[port].drops)


# -- the learning switch ------------------------------------------------------------------------------

def test_unknown_unicast_floods_every_other_port() -> None:
    sw = switch("A", "B", "C", "D")
    d = sw.process("A", frame("b", "a"), 0, 0)
    assert d.reason is Reason.FLOOD_UNKNOWN
    assert set(d.out_ports) == {"B", "C", "D"}
    assert d.vlan == 1 and d.edits is None


def test_reply_goes_only_to_the_learned_port() -> None:
    sw = switch("A", "B", "C")
    sw.process("A", frame("b", "a"), 0, 0)
    d = sw.process("B", frame("a", "b"), 0, 1)
    assert (d.out_ports, d.reason) == (("A",), Reason.FORWARD_LEARNED)
    d = sw.process("A", frame("b", "a"), 0, 2)
    assert (d.out_ports, d.reason) == (("B",), Reason.FORWARD_LEARNED), "C sees nothing once both are learned"


def test_broadcast_floods() -> None:
    sw = switch("A", "B", "C")
    d = sw.process("B", frame(BROADCAST, "b"), 0, 0)
    assert d.reason is Reason.FLOOD_BROADCAST and set(d.out_ports) == {"A", "C"}


def test_multicast_floods_even_when_a_port_learned_the_address() -> None:
    sw = switch("A", "B", "C")
    d = sw.process("A", frame(MCAST, "a"), 0, 0)
    assert d.reason is Reason.FLOOD_MULTICAST and set(d.out_ports) == {"B", "C"}


def test_destination_on_the_ingress_port_is_dropped() -> None:
    sw = switch("A", "B")
    sw.process("A", frame("x", "b"), 0, 0)  # b lives on A (e.g. behind a hub)
    d = sw.process("A", frame("b", "a"), 0, 0)
    assert (d.out_ports, d.reason) == ((), Reason.DROP_SAME_PORT)
    assert drops(sw, "A") == {Reason.DROP_SAME_PORT: 1}


def test_frame_to_itself_is_a_same_port_drop() -> None:
    sw = switch("A", "B")
    d = sw.process("A", frame("a", "a"), 0, 0)
    assert d.reason is Reason.DROP_SAME_PORT, "the source is learned before the destination is looked up"


def test_learned_entry_ages_then_floods_again() -> None:
    sw = SwitchCore(ageing_s=10)
    for p in "ABC":
        sw.add_port(p)
    sw.process("B", frame(BROADCAST, "b"), 0, 100)
    assert sw.process("A", frame("b", "a"), 0, 110).reason is Reason.FORWARD_LEARNED
    assert sw.process("A", frame("b", "a"), 0, 111).reason is Reason.FLOOD_UNKNOWN
    assert sw.expire(111) == 1


def test_move_is_learned_at_once_and_counted_on_the_new_port() -> None:
    sw = switch("A", "B", "C")
    sw.process("A", frame(BROADCAST, "m"), 0, 0)
    sw.process("C", frame(BROADCAST, "m"), 0, 1)
    d = sw.process("B", frame("m", "b"), 0, 2)
    assert d.out_ports == ("C",)
    assert sw.counters["C"].moved == 1 and sw.counters["A"].learned == 1
    ev, _ = sw.events.drain()
    assert [(e.mac, e.vlan, e.old_port, e.port) for e in ev if e.kind == MAC_MOVED] == [(mac("m"), 1, "A", "C")]


def test_a_static_mac_seen_elsewhere_is_counted_not_learned_and_not_moved() -> None:
    sw = switch("A", "B", "C")
    sw.fdb.add_static(mac("m"), 1, "A")
    d = sw.process("C", frame(BROADCAST, "m"), 0, 5)
    assert d.reason is Reason.FLOOD_BROADCAST, "the frame itself is forwarded as any other"
    assert sw.counters["C"].static_refused == 1 and sw.counters["C"].moved == 0 and sw.counters["C"].learned == 0
    sw.process("A", frame(BROADCAST, "m"), 0, 6)
    assert sw.counters["A"].static_refused == 0, "frames on its own port are not refused"
    assert sw.process("B", frame("m", "b"), 0, 10_000).out_ports == ("A",), "still pinned, long after ageing"
    assert [e.kind for e in sw.events.drain()[0] if e.mac == mac("m")] == [STATIC_REFUSED], \
        "refused: no move, no learning"


# -- ingress drops ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [BROADCAST, MCAST, "00:00:00:00:00:00", "01:80:c2:00:00:21"])
def test_invalid_source_is_dropped_and_never_learned(src: str) -> None:
    sw = switch("A", "B")
    d = sw.process("A", frame("b", mac(src)), 0, 0)
    assert (d.out_ports, d.reason) == ((), Reason.DROP_INVALID_SRC)
    assert len(sw.fdb) == 0 and sw.counters["A"].learned == 0
    assert drops(sw, "A") == {Reason.DROP_INVALID_SRC: 1}


@pytest.mark.parametrize("last", range(16))
def test_reserved_group_is_not_forwarded(last: int) -> None:
    sw = switch("A", "B")
    d = sw.process("A", frame(bytes((1, 0x80, 0xC2, 0, 0, last)), "a"), 0, 0)
    assert (d.out_ports, d.reason) == ((), Reason.DROP_RESERVED_GROUP)
    assert len(sw.fdb) == 0, "a link-local control frame teaches the switch nothing"


def test_01_80_c2_00_00_10_is_ordinary_multicast() -> None:
    sw = switch("A", "B")
    assert sw.process("A", frame("01:80:c2:00:00:10", "a"), 0, 0).reason is Reason.FLOOD_MULTICAST


def test_group_fwd_mask_allows_some_reserved_groups_but_never_00_to_02() -> None:
    sw = SwitchCore(group_fwd_mask=1 << 0xE)  # LLDP
    sw.add_port("A")
    sw.add_port("B")
    assert sw.process("A", frame("01:80:c2:00:00:0e", "a"), 0, 0).out_ports == ("B",)
    assert sw.process("A", frame("01:80:c2:00:00:03", "a"), 0, 0).reason is Reason.DROP_RESERVED_GROUP
    for bit in (0, 1, 2):
        with pytest.raises(ValueError, match="can never be forwarded"):
            sw.set_group_fwd_mask(1 << bit)
    with pytest.raises(ValueError, match="16-bit"):
        sw.set_group_fwd_mask(1 << 16)


@pytest.mark.parametrize("n", [0, 1, 13])
def test_runt_is_malformed(n: int) -> None:
    sw = switch("A", "B")
    d = sw.process("A", frame("b", "a")[:n], 0, 0)
    assert (d.out_ports, d.reason) == ((), Reason.DROP_MALFORMED)
    assert drops(sw, "A") == {Reason.DROP_MALFORMED: 1}


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8])
@pytest.mark.parametrize("n", [14, 17])
def test_truncated_tag_is_malformed(tpid: int, n: int) -> None:
    sw = switch("A", "B")
    d = sw.process("A", frame("b", "a", vlan=1, tpid=tpid)[:n], 0, 0)
    assert d.reason is Reason.DROP_MALFORMED and len(sw.fdb) == 0


def test_minimal_frames_are_forwarded() -> None:
    sw = switch("A", "B")
    assert sw.process("A", frame("b", "a")[:14], 0, 0).reason is Reason.FLOOD_UNKNOWN
    sw2 = switch(T=PortPolicy.trunk([5]), U=PortPolicy.access(5))
    assert sw2.process("T", frame("b", "a", vlan=5)[:18], 0, 0).out_ports == ("U",)


def test_offset_skips_a_vnet_header() -> None:
    sw = switch("A", "B")
    f = bytes(10) + frame("b", "a")
    d = sw.process("A", f, 10, 0)
    assert d.reason is Reason.FLOOD_UNKNOWN and sw.fdb.lookup(mac("a"), 1, 0) == "A"
    assert sw.counters["A"].rx_bytes == len(f) - 10
    assert sw.process("A", bytes(10) + frame("b", "a")[:13], 10, 0).reason is Reason.DROP_MALFORMED


def test_non_bytes_buffers_are_accepted() -> None:
    sw = switch("A", "B")
    sw.process("A", bytearray(frame(BROADCAST, "a")), 0, 0)
    assert sw.process("B", memoryview(frame("a", "b")), 0, 0).out_ports == ("A",)


# -- port state and flags ------------------------------------------------------------------------------------

def test_admin_down_port_drops_its_ingress_and_is_left_out_of_floods() -> None:
    sw = switch("A", "B", C=PortPolicy(admin_up=False))
    assert sw.process("C", frame(BROADCAST, "c"), 0, 0).reason is Reason.DROP_PORT_DOWN
    assert sw.process("A", frame(BROADCAST, "a"), 0, 0).out_ports == ("B",)
    assert not sw.is_up("C")


def test_oper_down_port_is_left_out_of_floods_and_its_entries_flushed() -> None:
    sw = switch("A", "B", "C")
    sw.process("C", frame(BROADCAST, "c"), 0, 0)
    sw.set_oper_up("C", False)
    assert sw.fdb.lookup(mac("c"), 1, 0) is None
    d = sw.process("A", frame("c", "a"), 0, 0)
    assert d.reason is Reason.FLOOD_UNKNOWN and d.out_ports == ("B",)
    sw.set_oper_up("C", True)
    assert set(sw.process("A", frame("c", "a"), 0, 0).out_ports) == {"B", "C"}


def test_static_entry_on_a_down_port_drops_with_egress_down() -> None:
    sw = switch("A", "B")
    sw.fdb.add_static(mac("b"), 1, "B")
    sw.set_oper_up("B", False)
    for _ in range(2):
        assert sw.process("A", frame("b", "a"), 0, 0).reason is Reason.DROP_EGRESS_DOWN
    assert drops(sw, "A") == {Reason.DROP_EGRESS_DOWN: 2}


def test_port_that_does_not_flood_gets_no_floods_but_still_known_unicast() -> None:
    sw = switch("A", "B", C=PortPolicy(flooding=False))
    assert sw.process("A", frame(BROADCAST, "a"), 0, 0).out_ports == ("B",)
    assert sw.process("A", frame("c", "a"), 0, 0).out_ports == ("B",)
    sw.process("C", frame("a", "c"), 0, 0)
    assert sw.process("A", frame("c", "a"), 0, 0).out_ports == ("C",)


def test_port_that_does_not_learn() -> None:
    sw = switch("A", B=PortPolicy(learning=False))
    sw.process("B", frame(BROADCAST, "b"), 0, 0)
    assert sw.fdb.lookup(mac("b"), 1, 0) is None and sw.counters["B"].learned == 0
    assert sw.process("A", frame("b", "a"), 0, 0).reason is Reason.FLOOD_UNKNOWN


def test_static_entry_is_used_and_never_moved_by_traffic() -> None:
    sw = switch("A", "B", "C")
    sw.fdb.add_static(mac("s"), 1, "B")
    sw.process("C", frame(BROADCAST, "s"), 0, 0)  # spoofed from C
    assert sw.process("A", frame("s", "a"), 0, 10**6).out_ports == ("B",)
    assert sw.counters["C"].moved == 0 and sw.fdb.moves == 0


def test_policy_change_flushes_the_ports_entries() -> None:
    sw = switch("A", "B")
    sw.process("B", frame(BROADCAST, "b"), 0, 0)
    sw.set_policy("B", PortPolicy(flooding=False))
    assert sw.fdb.lookup(mac("b"), 1, 0) == "B", "a change that keeps the VLANs keeps the entries"
    sw.set_policy("B", PortPolicy.access(2))
    assert sw.fdb.lookup(mac("b"), 1, 0) is None
    assert sw.process("A", frame(BROADCAST, "a"), 0, 0).out_ports == ()


def test_remove_port_forgets_its_entries_and_floods() -> None:
    sw = switch("A", "B", "C")
    sw.process("B", frame(BROADCAST, "b"), 0, 0)
    sw.fdb.add_static(mac("s"), 1, "B")
    sw.remove_port("B")
    assert len(sw.fdb) == 0 and "B" not in sw.counters
    assert sw.process("A", frame("b", "a"), 0, 0).out_ports == ("C",)


def test_add_port_twice_is_refused() -> None:
    sw = switch("A")
    with pytest.raises(ValueError, match="already exists"):
        sw.add_port("A")


# -- VLANs ------------------------------------------------------------------------------------------------------

def vlan_switch() -> SwitchCore:
    return switch(A10=PortPolicy.access(10), B10=PortPolicy.access(10), C20=PortPolicy.access(20),
                  T=PortPolicy.trunk([10, 20]), N=PortPolicy.trunk([10, 20], native=20))


def test_access_vlans_are_isolated_and_trunks_carry_them_tagged() -> None:
    sw = vlan_switch()
    d = sw.process("A10", frame(BROADCAST, "a"), 0, 0)
    assert d.vlan == 10 and set(d.out_ports) == {"B10", "T", "N"}
    edits = dict(zip(d.out_ports, d.edits or (), strict=True))
    assert edits == {"B10": EDIT_KEEP, "T": EDIT_PUSH, "N": EDIT_PUSH}
    d = sw.process("C20", frame(BROADCAST, "c"), 0, 0)
    assert d.vlan == 20 and set(d.out_ports) == {"T", "N"}
    edits = dict(zip(d.out_ports, d.edits or (), strict=True))
    assert edits == {"T": EDIT_PUSH, "N": EDIT_KEEP}, "VLAN 20 is N's native VLAN: it leaves untagged"


def test_unicast_does_not_cross_vlans() -> None:
    sw = vlan_switch()
    sw.process("C20", frame(BROADCAST, "c"), 0, 0)
    d = sw.process("A10", frame("c", "a"), 0, 0)
    assert d.reason is Reason.FLOOD_UNKNOWN and "C20" not in d.out_ports


def test_tagged_trunk_frame_is_untagged_towards_access() -> None:
    sw = vlan_switch()
    d = sw.process("T", frame(BROADCAST, "t", vlan=20), 0, 0)
    assert d.vlan == 20 and set(d.out_ports) == {"C20", "N"}
    edits = dict(zip(d.out_ports, d.edits or (), strict=True))
    assert edits == {"C20": EDIT_POP, "N": EDIT_POP}
    d = sw.process("T", frame(BROADCAST, "t", vlan=10), 0, 0)
    assert set(d.out_ports) == {"A10", "B10", "N"}
    assert dict(zip(d.out_ports, d.edits or (), strict=True))["N"] == EDIT_KEEP


def test_learned_unicast_carries_the_edit() -> None:
    sw = vlan_switch()
    sw.process("A10", frame(BROADCAST, "a"), 0, 0)
    d = sw.process("T", frame("a", "t", vlan=10), 0, 0)
    assert (d.out_ports, d.reason, d.edits) == (("A10",), Reason.FORWARD_LEARNED, (EDIT_POP,))
    d = sw.process("T", frame("a", "t", vlan=10), 0, 1)  # from the decision cache
    assert (d.out_ports, d.edits) == (("A10",), (EDIT_POP,))
    d = sw.process("B10", frame("t", "b"), 0, 1)
    assert (d.out_ports, d.edits) == (("T",), (EDIT_PUSH,))


@pytest.mark.parametrize(("port", "f"), [
    ("A10", frame(BROADCAST, "a", vlan=10)),   # access ports take untagged frames only
    ("A10", frame(BROADCAST, "a", vlan=20)),
    ("T", frame(BROADCAST, "t")),              # a trunk without native VLAN refuses untagged
    ("T", frame(BROADCAST, "t", vlan=30)),     # a VLAN not allowed on the trunk
    ("T", frame(BROADCAST, "t", vlan=4095)),
])
def test_vlan_not_admitted_is_dropped(port: str, f: bytes) -> None:
    sw = vlan_switch()
    d = sw.process(port, f, 0, 0)
    assert (d.out_ports, d.reason) == ((), Reason.DROP_VLAN_INGRESS)
    assert len(sw.fdb) == 0 and drops(sw, port) == {Reason.DROP_VLAN_INGRESS: 1}


def test_native_vlan_untagged_in() -> None:
    sw = vlan_switch()
    d = sw.process("N", frame(BROADCAST, "n"), 0, 0)
    assert d.vlan == 20 and set(d.out_ports) == {"C20", "T"}
    assert dict(zip(d.out_ports, d.edits or (), strict=True)) == {"C20": EDIT_KEEP, "T": EDIT_PUSH}


def test_priority_tag_is_classified_and_retagged() -> None:
    sw = vlan_switch()
    d = sw.process("A10", frame(BROADCAST, "a", vlan=0, pcp=5), 0, 0)
    assert d.vlan == 10
    edits = dict(zip(d.out_ports, d.edits or (), strict=True))
    assert edits == {"B10": EDIT_POP, "T": EDIT_RETAG, "N": EDIT_RETAG}
    out = egress_frame(frame(BROADCAST, "a", vlan=0, pcp=5), 0, EDIT_RETAG, 10)
    assert out == frame(BROADCAST, "a", vlan=10, pcp=5), "retagging keeps the priority"


def test_8021ad_tag_is_treated_as_the_outer_tag() -> None:
    sw = vlan_switch()
    d = sw.process("T", frame(BROADCAST, "t", vlan=10, tpid=0x88A8), 0, 0)
    assert d.vlan == 10 and "A10" in d.out_ports


def test_learning_is_per_vlan() -> None:
    sw = vlan_switch()
    sw.process("T", frame(BROADCAST, "x", vlan=10), 0, 0)
    sw.process("C20", frame(BROADCAST, "x"), 0, 0)
    assert sw.fdb.lookup(mac("x"), 10, 0) == "T" and sw.fdb.lookup(mac("x"), 20, 0) == "C20"
    assert sw.fdb.moves == 0


@pytest.mark.parametrize(("edit", "vlan_in", "expected"), [
    (EDIT_KEEP, None, frame("b", "a")),
    (EDIT_PUSH, None, frame("b", "a", vlan=10)),
    (EDIT_POP, 10, frame("b", "a")),
    (EDIT_RETAG, 0, frame("b", "a", vlan=10)),
])
def test_egress_frame_applies_the_edit(edit: int, vlan_in: int | None, expected: bytes) -> None:
    vnet = b"H" * 10
    assert egress_frame(vnet + frame("b", "a", vlan=vlan_in), 10, edit, 10) == vnet + expected


# -- counters ----------------------------------------------------------------------------------------------------

def test_per_port_counters() -> None:
    sw = switch("A", "B", "C")
    f1 = frame(BROADCAST, "a")
    sw.process("A", f1, 0, 0)                        # flood, learn a
    sw.process("B", frame("a", "b"), 0, 0)           # forward, learn b
    sw.process("A", frame("b", "a")[:10], 0, 0)      # malformed
    sw.process("A", frame("01:80:c2:00:00:00", "a"), 0, 0)
    sw.process("C", frame("c", "b"), 0, 0)           # b moves to C, unknown c floods
    a, b, c = (sw.counters[p].snapshot() for p in "ABC")
    assert a["rx_frames"] == 3 and a["rx_bytes"] == len(f1) + 10 + len(f1)
    assert a["learned"] == 1 and a["floods"] == 1
    assert a["drops"] == {"drop_malformed": 1, "drop_reserved_group": 1}
    assert b["rx_frames"] == 1 and b["learned"] == 1 and b["floods"] == 0 and b["drops"] == {}
    assert c["moved"] == 1 and c["learned"] == 0 and c["floods"] == 1
    assert a["tx_frames"] == 0, "tx is counted by the datapath, which actually writes"


# -- trace --------------------------------------------------------------------------------------------------------

def test_trace_explains_without_learning_or_counting() -> None:
    sw = switch("A", "B", "C")
    d, stages = sw.trace("A", frame("b", "a"), 0)
    assert d.reason is Reason.FLOOD_UNKNOWN and set(d.out_ports) == {"B", "C"}
    assert [s.stage for s in stages] == ["parse", "ingress", "learn", "decide", "egress", "egress"]
    assert stages[1].detail["vlan"] == 1 and "admitted to VLAN 1" in stages[1].result
    assert "would learn" in stages[2].result and stages[2].detail["action"] == "learn"
    assert stages[3].detail["lookup"] == "miss" and stages[3].detail["out_ports"] == list(d.out_ports)
    assert len(sw.fdb) == 0 and sw.counters["A"].rx_frames == 0 and sw.counters["A"].floods == 0


def fdb_state(sw: SwitchCore) -> tuple[object, ...]:
    """Everything a trace must leave alone: entries (port, seen, static), LRU order, counters, events."""
    entries = sorted((e.mac, e.vlan, str(e.port), e.seen, e.static) for t in sw.fdb.by_vlan.values()
                     for e in t.values())
    victim = sw.fdb.next_victim()
    return (entries, victim and (victim.mac, victim.vlan), sw.fdb.moves, sw.fdb.evictions, sw.events.pending(),
            {p: c.snapshot() for p, c in sw.counters.items()})


def test_trace_of_a_move_moves_nothing() -> None:
    sw = switch("A", "B")
    sw.process("A", frame(BROADCAST, "a"), 0, 0)
    before = fdb_state(sw)
    d, stages = sw.trace("B", frame("a", "a"), 1)
    assert d.reason is Reason.DROP_SAME_PORT, "after the move a is on B, the ingress port"
    (learn,) = [s for s in stages if s.stage == "learn"]
    assert learn.detail["action"] == "move" and learn.detail["old_port"] == "A", learn
    assert fdb_state(sw) == before, "no move, no move event, no counter"
    assert sw.process("B", frame("a", "a"), 0, 1) == d and sw.fdb.moves == 1


def test_trace_of_a_drop_shows_the_classified_vlan() -> None:
    sw = switch(T=PortPolicy.trunk([10, 20]), U=PortPolicy.trunk([10]), A10=PortPolicy.access(10))
    sw.process("T", frame(BROADCAST, "a", vlan=10), 0, 0)
    d, stages = sw.trace("T", frame("a", "b", vlan=10), 0)
    assert (d.reason, d.vlan) == (Reason.DROP_SAME_PORT, 10), "a drop after classification keeps its VLAN"
    assert stages[1].detail["vlan"] == 10 and "VLAN 10" in stages[-1].result
    d, stages = sw.trace("A10", frame("b", "a", vlan=20), 0)
    assert d.reason is Reason.DROP_VLAN_INGRESS
    assert stages[-1].stage == "ingress" and "tag VID 20 not admitted on access 10" in stages[-1].result
    d, stages = sw.trace("U", frame(BROADCAST, "c", vlan=20), 0)
    assert d.reason is Reason.DROP_VLAN_INGRESS and "VID 20" in stages[-1].result
    d, stages = sw.trace("T", frame(BROADCAST, "c", vlan=20), 0)
    assert (d.reason, d.out_ports, d.vlan) == (Reason.FLOOD_BROADCAST, (), 20)
    assert "no other port is up, floods and is a member of VLAN 20" in stages[-1].result


def test_trace_reports_each_output_ports_tag_edit() -> None:
    sw = switch(A=PortPolicy.access(10), T=PortPolicy.trunk([10]), N=PortPolicy.trunk([10], native=10))
    d, stages = sw.trace("A", frame(BROADCAST, "a"), 0)
    edits = {s.detail["port"]: s.detail["edit"] for s in stages if s.stage == "egress"}
    assert edits == {"T": "push", "N": "keep"}
    assert d.edits == (EDIT_PUSH, EDIT_KEEP) or d.edits == (EDIT_KEEP, EDIT_PUSH)


@pytest.mark.parametrize(("port", "f", "reason"), [
    ("A", frame("b", "a")[:13], Reason.DROP_MALFORMED),
    ("A", frame("01:80:c2:00:00:02", "a"), Reason.DROP_RESERVED_GROUP),
    ("A", frame("b", BROADCAST), Reason.DROP_INVALID_SRC),
    ("A", frame("b", "a", vlan=7), Reason.DROP_VLAN_INGRESS),
    ("A", frame("b", "a"), Reason.FORWARD_LEARNED),
    ("A", frame("a", "b"), Reason.DROP_SAME_PORT),
    ("D", frame("b", "d"), Reason.DROP_PORT_DOWN),
    ("A", frame(MCAST, "a"), Reason.FLOOD_MULTICAST),
    ("A", frame("c", "c"), Reason.DROP_SAME_PORT),  # learned first, then looked up
    ("D", frame("b", "d", vlan=5)[:16], Reason.DROP_PORT_DOWN),  # process checks the tag last
    ("A", frame("01:80:c2:00:00:00", "a", vlan=5)[:15], Reason.DROP_RESERVED_GROUP),
    ("A", frame("b", "a", vlan=5)[:17], Reason.DROP_MALFORMED),
], ids=["runt", "reserved", "bad-src", "vlan", "learned", "same-port", "down", "multicast", "to-itself",
        "down-truncated-tag", "reserved-truncated-tag", "truncated-tag"])
def test_trace_agrees_with_process(port: str, f: bytes, reason: Reason) -> None:
    sw = switch("A", "B", D=PortPolicy(admin_up=False))
    sw.process("B", frame(BROADCAST, "b"), 0, 0)
    sw.process("A", frame(BROADCAST, "b2"), 0, 0)
    sw.fdb.add_static(mac("a"), 1, "A")
    before = fdb_state(sw)
    traced, stages = sw.trace(port, f, 0)
    assert traced.reason is reason
    assert [s.reason for s in stages if s.reason is not None] == [reason], "one step gives the verdict"
    assert fdb_state(sw) == before
    assert sw.process(port, f, 0, 0) == traced


def test_trace_knows_learning_into_a_full_table_evicts_the_destination() -> None:
    sw = SwitchCore(max_entries=16)
    for p in "AB":
        sw.add_port(p)
    sw.process("B", frame(BROADCAST, "b"), 0, 0)  # the oldest entry of the biggest (only) port
    others = [bytes((2, 0, 0, 0, 9, i)) for i in range(15)]
    for x in others:
        sw.process("B", frame(BROADCAST, x), 0, 1)
    moved, _ = sw.trace("A", frame("b", others[0]), 2)
    assert moved.reason is Reason.FORWARD_LEARNED, "a move evicts nothing: b is still on B"
    f = frame("b", "n")
    before = fdb_state(sw)
    traced, stages = sw.trace("A", f, 2)
    assert traced.reason is Reason.FLOOD_UNKNOWN, "learning n into the full table evicts b first"
    assert stages[2].detail["evicts"] == {"mac": mac("b").hex(":"), "vlan": 1, "port": "B"}, stages[2]
    assert "would be evicted" in stages[3].result
    assert fdb_state(sw) == before, "the trace evicted nothing"
    assert sw.process("A", f, 0, 2) == traced

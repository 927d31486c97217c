"""The learning story, told with in-memory ports on a running datapath.

Each expectation carries the sentence it proves; when it fails, that sentence is the message.
"""

from __future__ import annotations

import pytest
from memswitch import FakeClock

from conftest import Factory
from l2frames import BROADCAST, frame, mac
from vswitch.core.policy import PortPolicy

pytestmark = pytest.mark.timeout(60)


def test_first_frame_floods_then_traffic_goes_only_to_the_owner(switch: Factory) -> None:
    sw = switch("ABC")
    sw.expect(frame("b", "a"), on="A", arrives_on=["B", "C"], not_on=["A"],
              why="the first frame to an unknown MAC floods every other port")
    sw.expect(frame("a", "b"), on="B", arrives_on=["A"], not_on=["B", "C"],
              why="the reply goes only to A, where the switch learned a")
    sw.expect(frame("b", "a"), on="A", arrives_on=["B"], not_on=["A", "C"],
              why="after the reply, traffic to b goes only to B: the third port sees nothing")
    sw.expect(frame("a", "b"), on="B", arrives_on=["A"], not_on=["C"],
              why="and so does traffic back to a")
    assert sw.counters("C")["tx_frames"] == 1, "C saw only the first, flooded frame"


def test_broadcast_reaches_everyone_but_the_sender(switch: Factory) -> None:
    sw = switch("ABCD")
    sw.expect(frame(BROADCAST, "a"), on="A", arrives_on=["B", "C", "D"], not_on=["A"],
              why="a broadcast from A must reach B, C and D but not A")
    sw.expect(frame("01:00:5e:00:00:fb", "c"), on="C", arrives_on=["A", "B", "D"], not_on=["C"],
              why="a multicast from C floods every other port too")


def test_a_moved_host_is_found_on_its_new_port(switch: Factory) -> None:
    sw = switch("ABC")
    sw.expect(frame(BROADCAST, "m"), on="A", arrives_on=["B", "C"], why="m announces itself on A")
    sw.expect(frame("m", "b"), on="B", arrives_on=["A"], not_on=["C"], why="frames to m go to A")
    sw.later()
    sw.expect(frame(BROADCAST, "m"), on="C", arrives_on=["A", "B"], why="m (a migrated VM) speaks from C")
    sw.expect(frame("m", "b"), on="B", arrives_on=["C"], not_on=["A"],
              why="once m is seen on C, frames to m go to C at once, not to A any more")
    events = sw.events()
    moves = [(e.mac, e.vlan, e.old_port, e.port) for e in events if e.kind == "mac-moved"]
    assert moves == [(mac("m"), 1, "A", "C")], \
        "the move is recorded with MAC, VLAN, old and new port"
    assert sw.counters("C")["moved"] == 1


def test_destination_behind_the_ingress_port_is_dropped(switch: Factory) -> None:
    sw = switch("ABC")
    sw.expect(frame(BROADCAST, "h"), on="A", arrives_on=["B", "C"], why="h sits behind A (a hub, say)")
    sw.expect(frame("h", "a"), on="A", arrives_on=[], not_on=["A", "B", "C"],
              why="a frame from A to h, which lives on A, goes nowhere: h already has it")
    assert sw.counters("A")["drops"] == {"drop_same_port": 1}


@pytest.mark.parametrize("dst", ["01:80:c2:00:00:00", "01:80:c2:00:00:02", "01:80:c2:00:00:0e"])
def test_reserved_group_frames_are_not_forwarded(switch: Factory, dst: str) -> None:
    sw = switch("ABC")
    sw.expect(frame(dst, "a"), on="A", arrives_on=[], not_on=["B", "C"],
              why=f"{dst} (STP, LACP, LLDP...) is link-local: a switch never relays it")
    assert sw.fdb_port(mac("a")) is None, "and learns nothing from it"


def test_invalid_sources_and_runts_go_nowhere(switch: Factory) -> None:
    sw = switch("ABC")
    sw.expect(frame(BROADCAST, BROADCAST), on="A", arrives_on=[], not_on=["B", "C"],
              why="a broadcast source address is invalid: dropped, never learned")
    drops = {"drop_invalid_src": 1}
    if sw.carries_runts:
        sw.expect(frame(BROADCAST, "a")[:13], on="A", arrives_on=[], not_on=["B", "C"],
                  why="a 13-byte runt has no Ethernet header: dropped")
        drops["drop_malformed"] = 1
    assert sw.counters("A")["drops"] == drops


def test_short_frames_are_forwarded_intact(switch: Factory) -> None:
    sw = switch("AB")
    sw.expect(frame(BROADCAST, "a")[:14], on="A", arrives_on=["B"],
              why="a 14-byte frame is a frame: forwarded unpadded and unchanged")


VLANS = {"A10": PortPolicy.access(10), "B10": PortPolicy.access(10), "C20": PortPolicy.access(20),
         "D20": PortPolicy.access(20), "T": PortPolicy.trunk([10, 20])}


def test_access_vlans_never_see_each_other_and_the_trunk_carries_both_tagged(switch: Factory) -> None:
    sw = switch(VLANS)
    sw.expect(frame(BROADCAST, "a"), on="A10",
              arrives_on={"B10": frame(BROADCAST, "a"), "T": frame(BROADCAST, "a", vlan=10)},
              not_on=["C20", "D20"],
              why="a broadcast in VLAN 10 reaches VLAN 10 untagged and the trunk tagged 10, never VLAN 20")
    sw.expect(frame(BROADCAST, "c"), on="C20",
              arrives_on={"D20": frame(BROADCAST, "c"), "T": frame(BROADCAST, "c", vlan=20)},
              not_on=["A10", "B10"],
              why="a broadcast in VLAN 20 reaches VLAN 20 and the trunk tagged 20, never VLAN 10")
    sw.expect(frame("c", "a"), on="A10", arrives_on={"B10": frame("c", "a"), "T": frame("c", "a", vlan=10)},
              not_on=["C20", "D20"],
              why="c is known in VLAN 20 only: from VLAN 10 it is unknown and floods within VLAN 10")


def test_trunk_frames_are_untagged_into_their_access_vlan(switch: Factory) -> None:
    sw = switch(VLANS)
    sw.expect(frame(BROADCAST, "t", vlan=20), on="T",
              arrives_on={"C20": frame(BROADCAST, "t"), "D20": frame(BROADCAST, "t")},
              not_on=["A10", "B10"], why="a frame tagged 20 on the trunk reaches VLAN 20's ports untagged")
    sw.expect(frame("t", "c"), on="C20", arrives_on={"T": frame("t", "c", vlan=20)}, not_on=["D20", "A10"],
              why="the reply to t goes only to the trunk, tagged 20")
    sw.expect(frame(BROADCAST, "t", vlan=30), on="T", arrives_on=[], not_on=list(VLANS),
              why="VLAN 30 is not allowed on the trunk: dropped at ingress")
    sw.expect(frame(BROADCAST, "a", vlan=10), on="A10", arrives_on=[], not_on=list(VLANS),
              why="an access port takes untagged frames only")
    assert sw.counters("T")["drops"] == {"drop_vlan_ingress": 1}


def test_learned_host_is_forgotten_after_the_ageing_time(switch: Factory) -> None:
    clock = FakeClock()
    sw = switch("ABC", ageing_s=10, clock=clock)
    sw.expect(frame(BROADCAST, "b"), on="B", arrives_on=["A", "C"], why="b speaks once")
    clock.advance(10)
    sw.expect(frame("b", "a"), on="A", arrives_on=["B"], not_on=["C"],
              why="10 s later (exactly the ageing time) b is still known")
    clock.advance(11)
    sw.expect(frame("b", "a"), on="A", arrives_on=["B", "C"],
              why="11 s of silence from b later it is forgotten: frames to b flood again")


def test_a_port_that_is_detached_leaves_floods_and_the_table(switch: Factory) -> None:
    sw = switch("ABC")
    sw.expect(frame(BROADCAST, "c"), on="C", arrives_on=["A", "B"], why="c is learned on C")
    sw.dp.detach("C").close()
    sw.expect(frame("c", "a"), on="A", arrives_on=["B"], why="with C gone, c is unknown and floods to B only")


def test_counters_tell_the_story(switch: Factory) -> None:
    sw = switch("ABC")
    f = frame("b", "a")
    sw.send(f, on="A")
    sw.send(frame("a", "b"), on="B")
    a, b, c = sw.counters("A"), sw.counters("B"), sw.counters("C")
    assert (a["rx_frames"], a["rx_bytes"], a["floods"], a["learned"]) == (1, len(f), 1, 1), \
        "A received one frame, flooded it, and its source was learned"
    assert (b["tx_frames"], c["tx_frames"], a["tx_frames"]) == (1, 1, 1), \
        "the flood went out on B and C, the reply on A"
    assert b["tx_bytes"] == len(f) and b["floods"] == 0

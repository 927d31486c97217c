"""The MAC table: learn / lookup / expire / flush, ageing bounds, fair eviction, statics, moves.

Time is the `now` argument: a 300 s ageing test runs in microseconds.
"""

from __future__ import annotations

import pytest

from l2frames import mac
from vswitch.core.events import MAC_MOVED, CoreEvent, EventRecorder
from vswitch.core.fdb import LEARN_MOVED, LEARN_NEW, LEARN_REFRESHED, LEARN_STATIC_KEPT, MacTable

A, B, C = mac("a"), mac("b"), mac("c")


def m(i: int) -> bytes:
    """The i-th distinct unicast MAC."""
    return bytes((2, 0)) + i.to_bytes(4, "big")


# -- learn / lookup -------------------------------------------------------------------------------

def test_learn_then_lookup() -> None:
    t = MacTable()
    assert t.lookup(A, 1, 0) is None
    assert t.learn(A, 1, "p1", 0) == LEARN_NEW
    assert t.lookup(A, 1, 0) == "p1"
    assert len(t) == t.dynamic_count == 1 and t.port_count("p1") == 1


def test_the_key_is_mac_and_vlan() -> None:
    t = MacTable()
    t.learn(A, 10, "p1", 0)
    t.learn(A, 20, "p2", 0)
    assert t.lookup(A, 10, 0) == "p1" and t.lookup(A, 20, 0) == "p2"
    assert t.lookup(A, 30, 0) is None
    assert t.moves == 0, "the same MAC in another VLAN is another entry, not a move"


def test_learning_again_on_the_same_port_refreshes() -> None:
    t = MacTable(ageing_s=10)
    t.learn(A, 1, "p1", 0)
    assert t.learn(A, 1, "p1", 8) == LEARN_REFRESHED
    assert t.lookup(A, 1, 18) == "p1", "refreshed at 8: alive until 18"
    assert t.lookup(A, 1, 19) is None
    assert len(t) == 1


def test_ports_are_opaque_hashables() -> None:
    t = MacTable()
    t.learn(A, 1, ("vm", 3), 0)
    t.learn(B, 1, 7, 0)
    assert t.lookup(A, 1, 0) == ("vm", 3) and t.lookup(B, 1, 0) == 7


# -- ageing ---------------------------------------------------------------------------------------

def test_default_ageing_is_300_s_present_at_exactly_t_gone_at_t_plus_1() -> None:
    t = MacTable()
    assert t.ageing_s == 300
    t.learn(A, 1, "p1", 1000)
    assert t.lookup(A, 1, 1300) == "p1", "an entry is still there exactly 300 s after its last frame"
    assert t.expire(1300) == [] and len(t) == 1
    assert t.lookup(A, 1, 1301) is None, "and gone one second later"
    gone = t.expire(1301)
    assert [(e.mac, e.vlan, e.port) for e in gone] == [(A, 1, "p1")]
    assert len(t) == 0 and t.get(A, 1) is None and t.port_count("p1") == 0


@pytest.mark.parametrize("ageing", [10, 45, 3600])
def test_configured_ageing_at_t_and_t_plus_1(ageing: int) -> None:
    t = MacTable(ageing_s=ageing)
    t.learn(A, 1, "p1", 0)
    assert t.lookup(A, 1, ageing) == "p1"
    assert [e.mac for e in t.entries(ageing)] == [A]
    assert t.lookup(A, 1, ageing + 1) is None
    assert t.entries(ageing + 1) == []


def test_aged_entry_is_ignored_before_expire_removes_it() -> None:
    t = MacTable(ageing_s=10)
    t.learn(A, 1, "p1", 0)
    assert t.lookup(A, 1, 11) is None
    assert t.get(A, 1) is not None, "get shows the raw entry until expire runs"


def test_expire_removes_only_what_aged() -> None:
    t = MacTable(ageing_s=10)
    t.learn(A, 1, "p1", 0)
    t.learn(C, 2, "p2", 1)
    t.learn(B, 1, "p1", 2)
    t.learn(A, 1, "p1", 4)  # refresh: A is now younger than C and B
    assert [e.mac for e in t.expire(12)] == [C]
    assert t.lookup(A, 1, 12) == "p1" and t.lookup(B, 1, 12) == "p1"
    assert [e.mac for e in t.expire(13)] == [B]
    assert t.expire(14) == [] and t.lookup(A, 1, 14) == "p1"
    assert [e.mac for e in t.expire(15)] == [A]


def test_bounds_themselves_are_accepted() -> None:
    assert MacTable(ageing_s=10, max_entries=16).max_entries == 16
    assert MacTable(ageing_s=3600, max_entries=1_000_000).ageing_s == 3600
    assert MacTable().max_entries == 8192


# -- flush ----------------------------------------------------------------------------------------

def _three_entries() -> MacTable:
    t = MacTable()
    t.learn(A, 10, "p1", 0)
    t.learn(B, 10, "p2", 0)
    t.learn(C, 20, "p1", 0)
    return t


def test_flush_all() -> None:
    t = _three_entries()
    assert t.flush() == 3
    assert len(t) == 0 and all(t.lookup(x, v, 0) is None for x, v in ((A, 10), (B, 10), (C, 20)))


def test_flush_by_port() -> None:
    t = _three_entries()
    assert t.flush(port="p1") == 2
    assert t.lookup(B, 10, 0) == "p2" and t.lookup(A, 10, 0) is None and t.lookup(C, 20, 0) is None
    assert t.port_count("p1") == 0 and t.port_count("p2") == 1


def test_flush_by_vlan() -> None:
    t = _three_entries()
    assert t.flush(vlan=10) == 2
    assert t.lookup(C, 20, 0) == "p1" and len(t) == 1


def test_flush_by_port_and_vlan() -> None:
    t = _three_entries()
    assert t.flush(port="p1", vlan=20) == 1
    assert t.lookup(A, 10, 0) == "p1" and t.lookup(C, 20, 0) is None


def test_flush_keeps_statics_unless_asked() -> None:
    t = _three_entries()
    t.add_static(mac("s"), 10, "p1")
    assert t.flush(port="p1") == 2
    assert t.lookup(mac("s"), 10, 0) == "p1"
    assert t.flush(include_static=True) == 2
    assert len(t) == 0


def test_table_works_after_flush() -> None:
    t = _three_entries()
    t.flush()
    assert t.learn(A, 10, "p3", 1) == LEARN_NEW and t.lookup(A, 10, 1) == "p3"


# -- capacity and fair eviction ---------------------------------------------------------------------

def test_eviction_is_fair_the_noisy_port_evicts_its_own_lru() -> None:
    """Capacity 16: 10 entries over 5 ports, then 16 new MACs on a 6th port."""
    t = MacTable(max_entries=16)
    old = {}
    for i in range(10):
        port = f"p{i % 5}"
        t.learn(m(i), 1, port, i)
        old[m(i)] = port
    noisy = [m(100 + i) for i in range(16)]
    for i, x in enumerate(noisy):
        t.learn(x, 1, "noisy", 20 + i)
    assert t.dynamic_count == 16
    for x, port in old.items():
        assert t.lookup(x, 1, 40) == port, "the older ports keep every entry when one port floods the table"
    assert t.port_count("noisy") == 6
    assert [x for x in noisy if t.lookup(x, 1, 40)] == noisy[-6:], "the 6th port evicts its own least recent"
    assert t.evictions == 10


def test_eviction_takes_the_least_recently_used_not_the_first_learned() -> None:
    t = MacTable(max_entries=16)
    for i in range(16):
        t.learn(m(i), 1, "p", i)
    t.learn(m(0), 1, "p", 100)  # m(0) is fresh again; m(1) is now the least recently seen
    t.learn(m(99), 1, "p", 101)
    assert t.lookup(m(0), 1, 101) == "p"
    assert t.get(m(1), 1) is None
    assert t.dynamic_count == 16


def test_eviction_hits_the_port_with_most_entries() -> None:
    t = MacTable(max_entries=16)
    for i in range(12):
        t.learn(m(i), 1, "big", i)
    for i in range(4):
        t.learn(m(50 + i), 1, "small", 20 + i)
    t.learn(m(99), 1, "small", 30)
    assert t.port_count("big") == 11 and t.port_count("small") == 5
    assert t.get(m(0), 1) is None, "the biggest port's least recent entry goes, even if another port learns"


def test_statics_do_not_count_and_are_never_evicted() -> None:
    t = MacTable(max_entries=16)
    statics = [m(1000 + i) for i in range(20)]
    for x in statics:
        t.add_static(x, 1, "p0")
    for i in range(40):
        t.learn(m(i), 1, "p0", i)
    assert t.dynamic_count == 16 and len(t) == 36
    assert all(t.lookup(x, 1, 50) == "p0" for x in statics)


# -- static entries ---------------------------------------------------------------------------------

def test_static_entries_never_age() -> None:
    t = MacTable(ageing_s=10)
    t.add_static(A, 1, "p1")
    assert t.expire(10**9) == []
    assert t.lookup(A, 1, 10**9) == "p1"
    assert [e.mac for e in t.entries(10**9)] == [A]


def test_static_entries_never_move() -> None:
    t = MacTable()
    t.add_static(A, 1, "p1")
    assert t.learn(A, 1, "p2", 5) == LEARN_STATIC_KEPT
    assert t.lookup(A, 1, 5) == "p1" and t.moves == 0 and not [e for e in t.events.out if e.kind == MAC_MOVED]


def test_static_replaces_a_dynamic_entry_and_can_be_removed() -> None:
    t = MacTable()
    t.learn(A, 1, "p1", 0)
    t.add_static(A, 1, "p2")
    e = t.get(A, 1)
    assert e is not None and e.static and e.port == "p2"
    assert t.dynamic_count == 0 and len(t) == 1 and t.port_count("p1") == 0
    t.add_static(A, 1, "p3")
    assert t.lookup(A, 1, 0) == "p3" and len(t) == 1
    assert t.remove_static(A, 1) is True
    assert t.remove_static(A, 1) is False and len(t) == 0
    t.learn(B, 1, "p1", 0)
    assert t.remove_static(B, 1) is False, "remove_static leaves dynamic entries alone"


# -- moves --------------------------------------------------------------------------------------------

def test_a_move_happens_at_once_and_is_recorded() -> None:
    t = MacTable()
    t.learn(A, 7, "p1", 0)
    assert t.learn(A, 7, "p2", 3) == LEARN_MOVED
    assert t.lookup(A, 7, 3) == "p2"
    assert t.moves == 1
    assert list(t.events.out)[-1] == CoreEvent(MAC_MOVED, 3, "p2", A, 7, "p1")
    assert t.port_count("p1") == 0 and t.port_count("p2") == 1 and len(t) == 1


def test_flapping_counts_every_move_and_drain_empties() -> None:
    t = MacTable()
    t.learn(A, 1, "p1", 0)
    for i in range(1, 5):
        t.learn(A, 1, "p2" if i % 2 else "p1", i)
    assert t.moves == 4
    events, _ = t.events.drain()
    # the rate limit (tests/unit/test_event_recording.py): the first move is told, the next three are folded
    assert [(e.kind, e.old_port, e.port) for e in events if e.kind == MAC_MOVED] == [(MAC_MOVED, "p1", "p2")]
    assert t.events.drain() == ([], 0) and t.moves == 4


def test_moved_entry_ages_from_the_move() -> None:
    t = MacTable(ageing_s=10)
    t.learn(A, 1, "p1", 0)
    t.learn(A, 1, "p2", 5)
    assert t.expire(15) == [] and t.lookup(A, 1, 15) == "p2"
    assert len(t.expire(16)) == 1


def test_eviction_that_empties_the_learning_vlan_keeps_the_new_entry() -> None:
    t = MacTable(max_entries=16)
    t.learn(m(0), 2, "big", 0)  # the only entry of VLAN 2, and the biggest port's least recent
    for i in range(1, 16):
        t.learn(m(i), 1, "big", i)
    t.learn(A, 2, "q", 20)
    assert t.get(m(0), 2) is None
    assert t.lookup(A, 2, 20) == "q", "the entry learned while evicting its VLAN's last entry is kept"
    assert len(t.expire(10**6)) == 16 and len(t) == 0


@pytest.mark.parametrize(("seen", "now"), [(41.3, 341.3), (78.65213345498266, 378.6521334549827), (0.1, 300.1)])
def test_lookup_entries_and_expire_agree_on_fractional_times(seen: float, now: float) -> None:
    t = MacTable(ageing_s=300)
    t.learn(A, 1, "p1", seen)
    alive = t.lookup(A, 1, now) is not None
    assert bool(t.entries(now)) == alive
    assert (t.expire(now) == []) == alive, "an entry lookup still answers must not be expired, and vice versa"


def test_set_limits_changes_ageing_and_a_smaller_capacity_evicts_fairly_down_to_it() -> None:
    t = MacTable(ageing_s=300, max_entries=32)
    for i in range(24):
        t.learn(m(i), 1, "A" if i < 16 else "B", float(i))
    t.add_static(m(100), 1, "B")
    assert t.set_limits(60, 16) == 8
    assert (t.ageing_s, t.max_entries, t.dynamic_count) == (60, 16, 16)
    assert t.port_count("A") == 8 and t.port_count("B") == 8, "the port with the most entries paid"
    assert t.get(m(100), 1) is not None and t.get(m(15), 1) is not None and t.get(m(0), 1) is None
    assert t.lookup(m(15), 1, 15 + 61) is None, "the new ageing time applies at once"


def test_evict_down_to_returns_the_fair_victims_and_keeps_the_capacity() -> None:
    """What a second holder of the table (the kernel fast path) removes too: the same entries, in the
    same order, as learning at the cap would have evicted."""
    t = MacTable(ageing_s=300, max_entries=32)
    for i in range(12):
        t.learn(m(i), 1, "A" if i < 8 else "B", float(i))
    gone = t.evict_down_to(9)
    assert [(e.mac, e.port) for e in gone] == [(m(0), "A"), (m(1), "A"), (m(2), "A")]
    assert (t.max_entries, t.dynamic_count, t.evictions) == (32, 9, 3)
    assert t.evict_down_to(9) == []


def test_retain_keeps_what_a_second_holder_kept_and_tells_only_the_aged_ones() -> None:
    events = EventRecorder()
    t = MacTable(ageing_s=10, events=events)
    for i, seen in enumerate((0.0, 5.0, 8.0)):
        t.learn(bytes([2, 0, 0, 0, 0, i]), 1, f"p{i}", seen)
    t.add_static(bytes([2, 0, 0, 0, 0, 9]), 1, "p9")
    events.drain()
    t.retain({(bytes([2, 0, 0, 0, 0, 2]), 1)}, now=12.0)
    assert sorted((e.mac[-1], e.port, e.static) for e in t.entries(12.0)) == [(2, "p2", False), (9, "p9", True)]
    told = [(e.kind, e.port) for e in events.drain()[0]]
    assert told == [("mac-aged", "p0")], "entry p0 (12 s old) aged; p1 (7 s) was flushed quietly; statics stay"

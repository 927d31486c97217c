"""The storm limit and the maximum bandwidth, told frame by frame on memory ports with the story's
own clock (on real links the clock is real: the in-memory story tells it; the real-part tests are
tests/integration/test_storm_limit.py and test_bandwidth.py): a limited port's floods beyond its
burst go nowhere until its bucket refills, its known unicast always arrives; a policed port's frames
beyond its bytes go nowhere, whatever their destination."""

from __future__ import annotations

import pytest
from memswitch import Factory, FakeClock

from guard_frames import eth
from l2frames import BROADCAST, mac
from vswitch.core.policy import PortPolicy

pytestmark = pytest.mark.timeout(60)

BCAST = bytes.fromhex(BROADCAST.replace(":", ""))


def frame(dst: bytes, src: bytes, size: int = 60) -> bytes:
    return eth(dst, src, bytes(size - 14), ethertype=b"\x88\xb5")


def test_a_storm_limited_port_floods_its_burst_then_its_rate(switch: Factory) -> None:
    clock = FakeClock()
    sw = switch({"S": PortPolicy(storm_limit=10), "A": None, "B": None}, clock=clock)
    s, a = mac("s"), mac("a")
    sw.expect(frame(BCAST, a), on="A", arrives_on=["S", "B"], why="a is learned on A")
    for i in range(10):
        sw.expect(frame(BCAST, s), on="S", arrives_on=["A", "B"], why=f"broadcast {i + 1} of S's burst of 10")
    sw.expect(frame(BCAST, s), on="S", arrives_on=[], not_on=["A", "B"], why="the 11th at once is over 10 pps")
    sw.expect(frame(mac("n"), s), on="S", arrives_on=[], not_on=["A", "B"],
              why="an unknown unicast takes a token too: dropped")
    sw.expect(frame(a, s), on="S", arrives_on=["A"], not_on=["B"], why="a known unicast is never metered")
    clock.advance(0.1)
    sw.expect(frame(BCAST, s), on="S", arrives_on=["A", "B"], why="a tenth of a second later, one more token")
    sw.expect(frame(BCAST, s), on="S", arrives_on=[], not_on=["A", "B"], why="and only one")
    sw.expect(frame(BCAST, a), on="A", arrives_on=["S", "B"], why="the other ports flood as they like")
    assert sw.counters("S")["drops"] == {"drop_storm_limit": 3}


def test_a_policed_port_sends_its_bytes_and_no_more(switch: Factory) -> None:
    clock = FakeClock()
    sw = switch({"P": PortPolicy(max_bandwidth=80_000, bandwidth_burst=3_000), "A": None}, clock=clock)
    p, a = mac("p"), mac("a")
    sw.expect(frame(BCAST, a), on="A", arrives_on=["P"], why="a is learned on A")
    for i in range(4):
        sw.expect(frame(a, p, 1000), on="P", arrives_on=["A"],
                  why=f"1,000-byte frame {i + 1}: the 3,000-byte bucket holds credit (the last one borrows)")
    sw.expect(frame(BCAST, p, 1000), on="P", arrives_on=[], not_on=["A"], why="the 5th is over 10 kB/s: dropped")
    sw.expect(frame(a, p, 1000), on="P", arrives_on=[], not_on=["A"], why="unicast or not")
    clock.advance(0.2)
    sw.expect(frame(a, p, 1000), on="P", arrives_on=["A"], why="0.2 s later, 2,000 bytes' worth: it passes")
    assert sw.counters("P")["drops"] == {"drop_max_bandwidth": 2}
    assert sw.fdb_port(p) == "P"

"""The sampled decision stream (control/decision_stream.py, `SwitchManager.open_decisions`): a burst
is sampled at the rate and no more while every frame is counted; each reader has its own cursor and
is told what it missed; one observer per switch however many readers, gone with the last one; a
deleted switch ends its streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from l2frames import BROADCAST, frame
from vswitch.control import decision_stream
from vswitch.control.decision_stream import RING, DecisionReader, DecisionSampler
from vswitch.control.manager import SwitchManager
from vswitch.control.model import NotFound, PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.core.reasons import Reason
from waiting import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _decide(sampler: DecisionSampler, reason: Reason, n: int = 1) -> None:
    d = SimpleNamespace(reason=reason, vlan=1, out_ports=("vm2",))
    for _ in range(n):
        sampler.observe("vm1", bytes(60), 0, d)


def test_a_burst_is_sampled_at_the_rate_and_every_frame_is_counted() -> None:
    clock = Clock()
    sampler = DecisionSampler(rate=50, clock=clock)
    reader = DecisionReader(sampler, clock=clock)
    _decide(sampler, Reason.FLOOD_BROADCAST, 30)
    _decide(sampler, Reason.FORWARD_LEARNED, 900)
    _decide(sampler, Reason.DROP_ACL, 70)
    assert len(reader.take()) == 50, "a full bucket: 50 samples, however many frames"
    clock.now += 0.5
    _decide(sampler, Reason.FORWARD_LEARNED, 100)
    assert len(reader.take()) == 25, "half a second refills half the bucket"
    clock.now += 0.5
    summary = reader.summary()
    assert summary is not None
    assert summary["by_kind"] == {"flood": 30, "unicast": 1000, "drop": 70} and summary["frames"] == 1100
    assert summary["sampled"] == 75 and summary["dropped_for_you"] == 0
    assert reader.summary() is None, "once a second"


def test_a_slow_reader_is_told_what_it_missed_and_others_are_not() -> None:
    clock = Clock()
    sampler = DecisionSampler(rate=50, clock=clock)
    slow, quick = DecisionReader(sampler, clock=clock), DecisionReader(sampler, clock=clock)
    for _ in range(10):  # 10 s of samples; the ring holds two seconds of them
        clock.now += 1.0
        _decide(sampler, Reason.FORWARD_LEARNED, 60)
        assert len(quick.take()) == 50
    got = slow.take()
    assert len(got) == RING and slow.missed == 500 - RING
    assert [s[0] for s in got] == list(range(500 - RING + 1, 501)), "oldest first, none twice"
    assert quick.missed == 0
    clock.now += 1.0
    assert slow.summary()["dropped_for_you"] == 500 - RING  # type: ignore[index]


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[SwitchManager]:
    m = SwitchManager(port_socket_dir=str(tmp_path / "ports"))
    m.create_switch(SwitchSpec("ds", SwitchType.PRIVATE))
    for p in ("vm1", "vm2", "vm3"):
        m.add_port("ds", PortSpec(p, PortKind.MEMORY, p))
    yield m
    m.shutdown()


def test_readers_share_one_observer_that_goes_with_the_last(manager: SwitchManager) -> None:
    m = manager
    dp = m.datapath("ds")
    a, b = m.open_decisions("ds"), m.open_decisions("ds")
    assert a.sampler is b.sampler
    assert dp.frame_observers.count(a.sampler.observe) == 1
    m.port_object("ds", "vm1").inject(frame(BROADCAST, "a"))  # type: ignore[attr-defined]
    m.port_object("ds", "vm2").inject(frame("a", "b"))  # type: ignore[attr-defined]
    events: list[dict] = []
    wait_until(lambda: events.extend(m.read_decisions(a)[0]) or len(events) >= 2, what="two decisions")
    flood, unicast = events[:2]
    assert (flood["kind"], flood["reason"], flood["in_port"], sorted(flood["out_ports"])) == (
        "flood", "FLOOD_BROADCAST", "vm1", ["vm2", "vm3"])
    assert (unicast["kind"], unicast["reason"], unicast["in_port"], unicast["out_ports"]) == (
        "unicast", "FORWARD_LEARNED", "vm2", ["vm1"])
    assert flood["src"] == "02:00:00:00:00:61" and flood["path"] == "python" and flood["vlan"] == 1
    assert len(m.read_decisions(b)[0]) == 2, "the other reader sees them too"
    m.close_decisions(a)
    assert dp.frame_observers.count(b.sampler.observe) == 1, "still one reader"
    m.close_decisions(b)
    assert b.sampler.observe not in dp.frame_observers, "no reader, no per-frame work"
    c = m.open_decisions("ds")
    assert c.sampler is not b.sampler and dp.frame_observers.count(c.sampler.observe) == 1
    m.close_decisions(c)


def test_a_deleted_switch_ends_its_streams_and_an_unknown_one_is_refused(manager: SwitchManager) -> None:
    m = manager
    with pytest.raises(NotFound):
        m.open_decisions("nope")
    reader = m.open_decisions("ds")
    assert m.read_decisions(reader)[1] is None
    m.delete_switch("ds")
    events, ended = m.read_decisions(reader)
    assert ended is not None and "deleted" in ended
    m.close_decisions(reader)  # its datapath is gone: closing still works


def test_kinds_follow_the_reasons() -> None:
    assert decision_stream.KINDS[decision_stream.kind_of(Reason.FLOOD_UNKNOWN)] == "flood"
    assert decision_stream.KINDS[decision_stream.kind_of(Reason.FORWARD_LEARNED)] == "unicast"
    assert decision_stream.KINDS[decision_stream.kind_of(Reason.DROP_SAME_PORT)] == "drop"

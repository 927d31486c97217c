"""The sampled decision stream (control/decision_stream.py, `SwitchManager.open_decisions`): a burst
is sampled at the rate and no more, chosen by the datapath before anything is copied, while the
summaries count every frame from the counters; each reader has its own cursor and is told what it
missed; one sampler per switch however many readers, gone with the last one; a deleted switch ends
its streams."""

from __future__ import annotations

import time
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
from vswitch.datapath.loop import SAMPLE_GAP_S
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


def test_a_burst_is_sampled_at_the_rate_and_the_summary_counts_every_frame() -> None:
    clock = Clock()
    sampler = DecisionSampler(rate=50, clock=clock)
    reader = DecisionReader(sampler, clock=clock)
    reader.start([10, 20, 0])
    _decide(sampler, Reason.FORWARD_LEARNED, 1000)
    assert len(reader.take()) == 50, "a full bucket: 50 samples, however many frames are offered"
    clock.now += 0.5
    _decide(sampler, Reason.FORWARD_LEARNED, 100)
    assert len(reader.take()) == 25, "half a second refills half the bucket"
    assert not reader.summary_due()
    clock.now += 0.5
    assert reader.summary_due(), "once a second"
    summary = reader.summary([40, 1020, 70])
    assert summary["by_kind"] == {"flood": 30, "unicast": 1000, "drop": 70} and summary["frames"] == 1100
    assert summary["sampled"] == 75 and summary["dropped_for_you"] == 0
    assert not reader.summary_due()
    clock.now += 1.0
    assert reader.summary([0, 0, 0])["frames"] == 0, "counters gone back (a port removed): nothing, not less"


def test_the_counts_by_kind_come_from_the_ports_counters() -> None:
    ports = [{"rx_frames": 100, "floods": 10, "drops": {"acl": 5}},
             {"rx_frames": 50, "floods": 0, "drops": {}},
             {"rx_frames": 1, "floods": 1, "drops": {"egress link down": 1}}]
    assert decision_stream.totals(ports) == [11, 134, 6]
    assert decision_stream.totals([]) == [0, 0, 0]


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
    assert slow.summary([0, 0, 0])["dropped_for_you"] == 500 - RING


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[SwitchManager]:
    m = SwitchManager(port_socket_dir=str(tmp_path / "ports"))
    m.create_switch(SwitchSpec("ds", SwitchType.PRIVATE))
    for p in ("vm1", "vm2", "vm3"):
        m.add_port("ds", PortSpec(p, PortKind.MEMORY, p))
    yield m
    m.shutdown()


def test_readers_share_one_sampler_that_goes_with_the_last(manager: SwitchManager) -> None:
    m = manager
    dp = m.datapath("ds")
    a, b = m.open_decisions("ds"), m.open_decisions("ds")
    assert a.sampler is b.sampler
    assert dp.frame_samplers.count(a.sampler.observe) == 1 and not dp.frame_observers
    m.port_object("ds", "vm1").inject(frame(BROADCAST, "a"))  # type: ignore[attr-defined]
    events: list[dict] = []
    wait_until(lambda: events.extend(m.read_decisions(a)[0]) or events, what="the broadcast sampled")
    # the datapath samples one frame per SAMPLE_GAP_S: a frame right after the first is not, so
    # vm2 answers until one of its answers is (as a ping goes on)
    vm2 = m.port_object("ds", "vm2")
    wait_until(lambda: vm2.inject(frame("a", "b")) or events.extend(m.read_decisions(a)[0]) or len(events) >= 2,  # type: ignore[attr-defined]
               what="an answer sampled")
    flood, unicast = events[:2]
    assert (flood["kind"], flood["reason"], flood["in_port"], sorted(flood["out_ports"])) == (
        "flood", "FLOOD_BROADCAST", "vm1", ["vm2", "vm3"])
    assert (unicast["kind"], unicast["reason"], unicast["in_port"], unicast["out_ports"]) == (
        "unicast", "FORWARD_LEARNED", "vm2", ["vm1"])
    assert flood["src"] == "02:00:00:00:00:61" and flood["path"] == "python" and flood["vlan"] == 1
    assert m.read_decisions(b)[0][:2] == [flood, unicast], "the other reader sees them too"
    sent = {s.port: s for s in m.stats("ds")}["vm2"].rx_frames
    summary: dict = {}
    wait_until(lambda: summary.update(m.decision_summary(a) or {}) or summary.get("frames") == 1 + sent,
               what="a summary counting every frame, sampled or not (the counters are read twice a second)")
    assert summary["by_kind"] == {"flood": 1, "unicast": sent, "drop": 0}
    m.close_decisions(a)
    assert dp.frame_samplers.count(b.sampler.observe) == 1, "still one reader"
    m.close_decisions(b)
    assert b.sampler.observe not in dp.frame_samplers, "no reader, no per-frame work"
    c = m.open_decisions("ds")
    assert c.sampler is not b.sampler and dp.frame_samplers.count(c.sampler.observe) == 1
    m.close_decisions(c)


def test_the_datapath_samples_before_anything_is_copied(manager: SwitchManager) -> None:
    """A burst of frames: the sampler sees at most one per SAMPLE_GAP_S of the run, the counters see all."""
    m = manager
    dp = m.datapath("ds")
    seen: list[object] = []
    dp.call(lambda: dp.add_sampler(lambda *a, **k: seen.append(a[3])))
    start = time.monotonic()
    vm1 = m.port_object("ds", "vm1")
    for i in range(2000):
        vm1.inject(frame(BROADCAST, "a", payload=i.to_bytes(4, "big")))  # type: ignore[attr-defined]
    wait_until(lambda: {s.port: s for s in m.stats("ds")}["vm1"].rx_frames == 2000, what="every frame decided")
    elapsed = time.monotonic() - start
    assert 1 <= len(seen) <= 1 + elapsed / SAMPLE_GAP_S + 1, (
        f"{len(seen)} samples of 2000 frames in {elapsed:.2f} s: one per {SAMPLE_GAP_S} s at most")


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

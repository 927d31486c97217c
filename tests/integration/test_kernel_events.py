"""The program's decision events (the `vs_events` ring buffer) against SwitchCore, frame by frame.

Random frames over the differential test's ports and policies go through the program
(BPF_PROG_TEST_RUN, test mode) with events on, and through `SwitchCore.process`: each frame the
program decides gives exactly one event, read through libbpf's ring_buffer and decoded as a watch
gets it (events.DecisionFeed): in-port, reason, VLAN, output ports in order, length, first bytes.
With events off the ring stays empty. A full ring loses events — counted — and the program goes on
deciding (the verdicts do not change). Real receives (metadata tags) are test_kernel_switch.py's.
"""

from __future__ import annotations

import os
import random

import pytest
from kernel_fastpath import require_fastpath
from test_kernel_diff import NS, POLICIES, _build, _random_frame

from vswitch.datapath.kernel import layout
from vswitch.datapath.kernel.events import KERNEL_PATH, SAMPLE_GAP_NS, DecisionFeed

pytestmark = pytest.mark.root

N_FRAMES = 4000


class _Seen:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, pid, buf, hdr, d, *, length, t, path) -> None:
        self.calls.append((pid, bytes(buf), hdr, d, length, t, path))


def test_each_decision_is_one_event_with_the_cores_decision() -> None:
    require_fastpath()
    core, prog = _build(POLICIES)
    rng = random.Random(7)
    seen = _Seen()
    names = list(POLICIES)
    now = 1_000 * NS
    mismatches: list[str] = []
    with prog:
        prog.set_test_clock(now)
        prog.run(names[0], b"\xff" * 6 + bytes((2, 0, 0, 0, 0xEB, 0)) + b"\x08\x00" + bytes(46))
        core.process(names[0], b"\xff" * 6 + bytes((2, 0, 0, 0, 0xEB, 0)) + b"\x08\x00" + bytes(46), 0, now)
        feed = DecisionFeed(prog, [seen])
        assert feed.drain() == 0, "events off before the feed: the ring was empty"
        try:
            for i in range(N_FRAMES):
                now += rng.choice((0, 1, 1000, 300_000_000))
                prog.set_test_clock(now)
                port, frame = rng.choice(names), _random_frame(rng)
                d = core.process(port, frame, 0, now)
                r = prog.run(port, frame)
                seen.calls.clear()
                feed.drain()
                if r.reason.startswith("upcall"):
                    if seen.calls:
                        mismatches.append(f"#{i}: an upcall ({r.reason}) reported as decided")
                    continue
                if len(seen.calls) != 1:
                    mismatches.append(f"#{i}: {len(seen.calls)} events for one frame")
                    continue
                pid, head, hdr, got, length, _t, path = seen.calls[0]
                # the event's outputs are a bitmap of slots: in slot order (a mirrored unicast's copy to
                # a destination in a lower slot comes after its output in the core's decision)
                outs = tuple(sorted(d.out_ports, key=prog.slot))
                want = (port, frame[:layout.EV_HEAD], 0, d.reason, d.vlan, outs, len(frame), KERNEL_PATH)
                have = (pid, head, hdr, got.reason, got.vlan, got.out_ports, length, path)
                if have != want and len(mismatches) < 20:
                    mismatches.append(f"#{i} on {port}: {frame.hex()}: event {have} (core {want})")
        finally:
            feed.close()
        prog.set_test_clock(now)
        prog.run(names[0], b"\xff" * 6 + bytes((2, 0, 0, 0, 0xEB, 1)) + b"\x08\x00" + bytes(46))
        seen.calls.clear()
        assert feed.drain() == 0 and not seen.calls, "closed: events off"
        assert feed.lost == 0
    assert not mismatches, "\n".join(mismatches)


def test_a_full_ring_loses_events_counted_and_never_changes_a_decision() -> None:
    require_fastpath()
    core, prog = _build(POLICIES)
    seen = _Seen()
    n = layout.EV_RING_BYTES // (layout.EVENT.size + 8) + 200  # more than the ring holds (8: its header)
    frame = b"\xff" * 6 + bytes((2, 0, 0, 0, 0xEB, 3)) + b"\x08\x00" + bytes(46)
    with prog:
        prog.set_test_clock(NS)
        feed = DecisionFeed(prog, [seen])
        try:
            outs = len(core.process("a10", frame, 0, NS).out_ports)
            results = {(r.verdict, r.reason, len(r.outputs)) for r in (prog.run("a10", frame) for _ in range(n))}
            assert results == {(7, "flood_broadcast", outs)}, "every frame decided and sent as without a watch"
            lost = feed.lost
            assert 0 < lost < n, f"{lost} of {n} lost"
            read = 0
            while got := feed.drain(limit=100):
                assert got <= 100, "drain hands over at most its limit"
                read += got
            assert read + lost == n and len(seen.calls) == read
        finally:
            feed.close()


def test_a_sample_is_chosen_in_the_program_and_a_watch_gets_every_decision_meanwhile() -> None:
    """Only samplers (the web UI's stream): the program reports the first decision after each
    SAMPLE_GAP_S on its CPU and makes no event for the others; an observer (a watch) added gets
    every decision, and with it gone the program samples again."""
    require_fastpath()
    _, prog = _build(POLICIES)
    frame = b"\xff" * 6 + bytes((2, 0, 0, 0, 0xEB, 4)) + b"\x08\x00" + bytes(46)
    sampled, watched = _Seen(), _Seen()
    observers: list = []
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # the gate is per CPU: every test run on the same one
    try:
        with prog:
            now = 1_000 * NS
            prog.set_test_clock(now)
            feed = DecisionFeed(prog, observers, [sampled], every=False)
            try:
                step = SAMPLE_GAP_NS // 20
                for i in range(1000):  # 50 gaps' worth of frames, 20 a gap
                    prog.set_test_clock(now + i * step)
                    assert prog.run("a10", frame).reason == "flood_broadcast"
                while feed.drain():
                    pass
                assert len(sampled.calls) == 50, f"{len(sampled.calls)} samples of 1000 frames over 50 gaps"
                assert feed.lost == 0, "the frames not sampled made no event at all"
                assert {c[6] for c in sampled.calls} == {KERNEL_PATH}

                observers.append(watched)
                feed.set_every(True)
                now += 1000 * step
                for i in range(100):
                    prog.set_test_clock(now + i)
                    prog.run("a10", frame)
                while feed.drain():
                    pass
                assert len(watched.calls) == 100, "a watch gets every decision"

                observers.remove(watched)
                feed.set_every(False)
                sampled.calls.clear()
                now += SAMPLE_GAP_NS
                for i in range(100):
                    prog.set_test_clock(now + i)
                    prog.run("a10", frame)
                while feed.drain():
                    pass
                assert len(watched.calls) == 100 and len(sampled.calls) == 1, "sampled again"
            finally:
                feed.close()
    finally:
        os.sched_setaffinity(0, cpus)

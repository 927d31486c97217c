"""The storm limit in the core (no I/O): a port's broadcast, multicast and unknown-unicast frames
beyond its limit per second are dropped (DROP_STORM_LIMIT), known unicast never; the bucket
(core/rates.py); `trace`'s sentence and `trace` agreeing with `process`; the settings (`port set
--storm-limit`, REST fields, the store, the CLI) and a live change on memory ports."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import cast

import pytest
from fake_api import FakeApi, cli_on_one_port, stored_and_loaded
from memkernel import MemKernel

from guard_frames import eth
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    InvalidRequest,
    PortKind,
    PortSettings,
    PortSpec,
    SwitchEvent,
    SwitchSpec,
    SwitchType,
    policy_for,
)
from vswitch.control.store import ConfigStore
from vswitch.core import rates
from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import SwitchCore
from vswitch.ports.memory import MemoryPort
from waiting import wait_until

A, B, C = (bytes.fromhex(f"52540000000{i}") for i in (1, 2, 3))
UNKNOWN = bytes.fromhex("020000000077")
BCAST, MCAST = b"\xff" * 6, bytes.fromhex("01005e000001")
PAYLOAD = b"\x08\x00" + bytes(46)


def frame(dst: bytes, src: bytes) -> bytes:
    return eth(dst, src, PAYLOAD)


def switch(limit: int) -> SwitchCore:
    sw = SwitchCore()
    sw.add_port("vm1", PortPolicy(storm_limit=limit))
    sw.add_port("vm2", PortPolicy())
    sw.add_port("vm3", PortPolicy())
    sw.process("vm2", frame(BCAST, B), 0, 0.0)  # B is known, on vm2
    return sw


# ---- the bucket ---------------------------------------------------------------------------------

def test_the_bucket_passes_its_burst_then_the_rate() -> None:
    assert rates.storm_bucket(1000) == (1_000_000, 99 * 1_000_000), "100 frames deep, one per ms"
    assert rates.storm_burst(1000) == 100 and rates.storm_burst(50) == 10 and rates.storm_burst(3) == 3
    interval, tolerance = rates.storm_bucket(1000)
    tat, now, passed = 0, 10 * rates.NS, 0
    for _ in range(500):  # 500 at once: the burst
        t = rates.take(tat, now, interval, tolerance)
        if t is not None:
            tat, passed = t, passed + 1
    assert passed == 100
    for _ in range(10_000):  # then 10 kpps for 1 s: 1,000 more
        now += 100_000
        t = rates.take(tat, now, interval, tolerance)
        if t is not None:
            tat, passed = t, passed + 1
    assert passed == 1100
    assert rates.take(tat, now + 10 * rates.NS, interval, tolerance) == now + 10 * rates.NS + interval, \
        "an idle bucket is full again"


# ---- the rule in the core -----------------------------------------------------------------------

def test_floods_over_the_limit_are_dropped_and_known_unicast_is_not() -> None:
    sw = switch(20)  # a burst of 10, then 20 a second
    reasons: dict[Reason, int] = {}
    for i in range(60):  # broadcast, multicast, unknown unicast and known unicast, all at t=1 s
        for dst in (BCAST, MCAST, UNKNOWN, B):
            r = sw.process("vm1", frame(dst, A), 0, 1.0 + i * 1e-6).reason
            reasons[r] = reasons.get(r, 0) + 1
    assert reasons[Reason.FORWARD_LEARNED] == 60, "known unicast is never metered"
    assert reasons[Reason.DROP_STORM_LIMIT] == 180 - 10
    assert sum(reasons.get(r, 0) for r in (Reason.FLOOD_BROADCAST, Reason.FLOOD_MULTICAST,
                                          Reason.FLOOD_UNKNOWN)) == 10
    snap = sw.counters["vm1"].snapshot()
    assert snap["drops"] == {"drop_storm_limit": 170} and snap["floods"] == 10
    assert sw.process("vm1", frame(BCAST, A), 0, 1.05).reason is Reason.FLOOD_BROADCAST, "one token per 50 ms"
    assert sw.process("vm1", frame(BCAST, A), 0, 1.05).reason is Reason.DROP_STORM_LIMIT
    assert sw.process("vm2", frame(BCAST, B), 0, 1.05).reason is Reason.FLOOD_BROADCAST, "other ports unlimited"
    assert sw.fdb.lookup(A, 1, 1.05) == "vm1", "a storm drop is decided after learning: the source is learned"


def test_a_new_limit_starts_full_and_zero_is_none() -> None:
    sw = switch(10)
    for _ in range(20):
        sw.process("vm1", frame(BCAST, A), 0, 1.0)
    assert sw.process("vm1", frame(BCAST, A), 0, 1.0).reason is Reason.DROP_STORM_LIMIT
    sw.set_policy("vm1", PortPolicy(storm_limit=11))
    assert sw.process("vm1", frame(BCAST, A), 0, 1.0).reason is Reason.FLOOD_BROADCAST
    sw.set_policy("vm1", PortPolicy())
    assert all(sw.process("vm1", frame(BCAST, A), 0, 1.0).reason is Reason.FLOOD_BROADCAST for _ in range(100))


def test_the_clock_unit_is_the_callers() -> None:
    """`clock_ns`: a core on a nanosecond clock (the program's test clock) meters as one on seconds."""
    for clock_ns, unit in ((rates.NS, 1.0), (1, rates.NS)):
        sw = SwitchCore(clock_ns=clock_ns)
        sw.add_port("vm1", PortPolicy(storm_limit=100))
        sw.add_port("vm2", PortPolicy())
        passed = sum(sw.process("vm1", frame(BCAST, A), 0, (5 + i * 1e-4) * unit).reason is Reason.FLOOD_BROADCAST
                     for i in range(10_000))  # 1 s at 10 kpps
        assert passed == 10 + 100 - 1 or passed == 10 + 100, (clock_ns, passed)


def test_a_storm_is_one_event_then_a_summary_per_window() -> None:
    sw = switch(10)
    sw.events.drain()
    for i in range(500):
        sw.process("vm1", frame(BCAST, A), 0, 1.0 + i * 1e-3)
    events = [e for e in sw.events.drain()[0] if e.kind == "frame-dropped"]
    assert [(e.port, e.reason, e.count) for e in events] == [("vm1", "drop_storm_limit", 1)]
    sw.expire(12.0)
    (summary,) = [e for e in sw.events.drain()[0] if e.kind == "frame-dropped"]
    assert (summary.reason, summary.window_s) == ("drop_storm_limit", pytest.approx(10.99)), "from the first drop"
    assert summary.count == sw.counters["vm1"].snapshot()["drops"]["drop_storm_limit"] - 1
    sw.trace("vm1", frame(BCAST, A), 12.0)
    assert sw.events.drain() == ([], 0), "an explanation records nothing"


def test_trace_tells_the_drop_and_takes_no_token() -> None:
    sw = switch(10)
    for _ in range(10):
        d, _ = sw.trace("vm1", frame(BCAST, A), 1.0)
        assert d.reason is Reason.FLOOD_BROADCAST, "an explanation takes no token"
    for _ in range(10):
        sw.process("vm1", frame(UNKNOWN, A), 0, 1.0)
    d, steps = sw.trace("vm1", frame(MCAST, A), 1.0)
    assert d.reason is Reason.DROP_STORM_LIMIT and steps[-1].reason is Reason.DROP_STORM_LIMIT
    assert steps[-1].stage == "decide"
    assert steps[-1].result == ("storm limit on port vm1 — 10 pps of broadcast/multicast/unknown unicast "
                                "exceeded: dropped")
    assert [s.stage for s in steps] == ["parse", "ingress", "learn", "decide"]
    d, _ = sw.trace("vm1", frame(B, A), 1.0)
    assert d.reason is Reason.FORWARD_LEARNED


def test_trace_and_process_agree_on_random_frames() -> None:
    rng = random.Random(13)
    policies = {"limited": PortPolicy.access(10, storm_limit=2), "trunk": PortPolicy.trunk({10, 20}, storm_limit=50),
                "guarded": PortPolicy.access(10, storm_limit=3, guards=1, mac_limit=4), "plain": PortPolicy.access(10)}
    sw = SwitchCore()
    for name, policy in policies.items():
        sw.add_port(name, policy)
    macs = [A, B, C, UNKNOWN] + [bytes((2, 0, 0, 0, 3, i)) for i in range(8)]
    seen = set()
    now = 0.0
    for _ in range(4000):
        now += rng.choice((0.0, 0.0, 0.0001, 0.001, 0.01, 0.3))
        dst = rng.choice(macs + [BCAST, MCAST])
        tag = rng.choice((b"", b"\x81\x00\x00\x14"))
        f = dst + rng.choice(macs) + tag + PAYLOAD
        port = rng.choice(list(policies))
        explained, _ = sw.trace(port, f, now)
        decided = sw.process(port, f, 0, now)
        assert explained == decided, f"frame {f.hex()} on {port} at {now}"
        seen.add(decided.reason)
    assert {Reason.DROP_STORM_LIMIT, Reason.FLOOD_BROADCAST, Reason.FORWARD_LEARNED, Reason.FLOOD_UNKNOWN} <= seen


# ---- the settings -------------------------------------------------------------------------------

def test_spec_settings_and_policy() -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1")
    assert (spec.storm_limit, policy_for(spec).storm_limit) == (0, 0), "no limit by default (Hyper-V: 0)"
    limited = PortSettings(storm_limit=1000).apply(spec)
    assert policy_for(limited).storm_limit == 1000
    assert PortSettings(learning=False).apply(limited).storm_limit == 1000, "kept by other settings"
    assert PortSpec.parse(limited.to_dict()) == limited
    for bad, needle in ((-1, r"storm_limit: -1 is not a storm limit in frames per second, 0 for none"),
                        (10_000_001, "storm_limit: 10000001 is not"), ("many", "storm_limit: 'many' is not"),
                        (1.5, "storm_limit: 1.5 is not")):
        with pytest.raises(InvalidRequest, match=needle):
            PortSettings.parse({"storm_limit": bad})
    with pytest.raises(InvalidRequest, match="storm_limit"):
        PortSpec.parse({**spec.to_dict(), "storm_limit": -3})


def test_the_storm_limit_is_stored(tmp_path: Path) -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1", storm_limit=250)
    assert stored_and_loaded(tmp_path / "db", spec) == [spec]


def test_cli_port_set_and_show() -> None:
    api = FakeApi()
    run = cli_on_one_port(api)
    out = run("port", "set", "s", "vm1", "--storm-limit", "1000")
    assert "storm limit 1000 pps" in out
    settings = api.calls[-1][1][2]
    assert (settings.storm_limit, settings.learning) == (1000, None)
    assert "1000 pps" in run("port", "show", "s", "vm1")
    assert '"storm_limit": 1000' in run("port", "show", "s", "vm1", "--json")
    bad = run("port", "set", "s", "vm1", "--storm-limit", "-2", ok=False)
    assert bad.exit_code != 0 and "storm_limit" in bad.output, bad.output
    assert api.get_port("s", "vm1").storm_limit == 1000, "a refused value changes nothing"
    run("port", "set", "s", "vm1", "--storm-limit", "0")
    assert api.get_port("s", "vm1").storm_limit == 0


def test_set_live_on_memory_ports_and_counted_in_stats(tmp_path: Path) -> None:
    """`port set --storm-limit 10` on a running switch: of 300 broadcasts injected at once at most the
    burst plus 10 a second of the time they took pass; the rest are `drop_storm_limit` in `stats`;
    unicast to a known MAC all passes. Stored: a restart keeps the limit."""
    def manager() -> SwitchManager:
        kernel = MemKernel()
        return SwitchManager(ConfigStore(tmp_path / "db"), netlink=kernel, port_kinds=kernel.port_kinds,
                             port_socket_dir=str(tmp_path / "p"))

    def stat(m: SwitchManager, port: str, key: str) -> int:
        return next(s.drops.get(key, 0) for s in m.stats("s") if s.port == port)

    m = manager()
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        for name in ("vm", "other"):
            m.add_port("s", PortSpec(name, PortKind.MEMORY, name))
        vm, other = (cast(MemoryPort, m.port_object("s", n)) for n in ("vm", "other"))
        other.inject(frame(BCAST, B))
        wait_until(lambda: vm.sent, what="the other port's broadcast")
        assert m.set_port("s", "vm", PortSettings(storm_limit=10)).storm_limit == 10
        start = time.monotonic()
        for _ in range(300):
            vm.inject(frame(BCAST, A))
        for _ in range(50):
            vm.inject(frame(B, A))
        wait_until(lambda: stat(m, "vm", "drop_storm_limit") + len(other.sent) >= 350,
                   what="every injected frame decided")
        took = time.monotonic() - start
        dropped = stat(m, "vm", "drop_storm_limit")
        passed = 300 - dropped
        assert 0 < passed <= rates.storm_burst(10) + 10 * took + 1, (passed, took)
        assert sum(f[:6] == B for f in other.sent) == 50, "known unicast all passes"
    finally:
        m.shutdown()
    m = manager()
    try:
        m.restore()
        assert m.get_port("s", "vm").storm_limit == 10
    finally:
        m.shutdown()


def test_the_event_in_words() -> None:
    one = SwitchEvent(1, 0.0, "s", "frame-dropped", port="vm1", reason="drop_storm_limit")
    assert one.summary() == ("frame dropped  1 frame at vm1: a broadcast, multicast or unknown unicast over the "
                             "port's storm limit (frames per second)")
    many = SwitchEvent(2, 0.0, "s", "frame-dropped", port="vm1", reason="drop_max_bandwidth", count=5000,
                       window_s=10.0)
    assert many.summary() == ("frame dropped  at vm1: a frame over the port's maximum bandwidth (what it may send "
                              "into the switch)  (×5000 in 10 s)")

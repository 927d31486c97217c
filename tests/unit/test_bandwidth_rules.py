"""The maximum bandwidth in the core (no I/O): the policer on what a port sends into the switch
(core/rates.py; DROP_MAX_BANDWIDTH), `trace`'s sentence and `trace` agreeing with `process`; RATE
parsed once (model.parse_rate); the settings (`port set --max-bandwidth/--burst/--max-bandwidth-in/
--min-bandwidth-weight`, refusals naming the field, the store, the CLI) and the shaper a link port's
--max-bandwidth-in puts on its link (on MemKernel: applied, changed, removed, restored)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fake_api import FakeApi, cli_on_one_port, stored_and_loaded
from memkernel import MemKernel

from guard_frames import eth
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    Conflict,
    FieldError,
    InvalidRequest,
    PortKind,
    PortSettings,
    PortSpec,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    parse_rate,
    policy_for,
)
from vswitch.control.store import ConfigStore
from vswitch.core import rates
from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import SwitchCore

A, B = bytes.fromhex("525400000001"), bytes.fromhex("525400000002")
BCAST = b"\xff" * 6


def frame(dst: bytes, src: bytes, size: int) -> bytes:
    return eth(dst, src, bytes(size - 14), ethertype=b"\x88\xb5")


# ---- the bucket ---------------------------------------------------------------------------------

def test_the_policer_passes_its_burst_then_the_rate() -> None:
    cost, tolerance = rates.police_bucket(8_000_000, 10_000)  # 1 MB/s: 1,000 ns a byte
    assert (cost, tolerance) == (1000 << rates.COST_SHIFT, 10_000_000)
    tat, now, passed = 0, 5 * rates.NS, 0
    for _ in range(100):  # 100 frames of 1,000 bytes at once: the bucket (10,000 bytes) and one more
        t = rates.take_bytes(tat, now, 1000, cost, tolerance)
        if t is not None:
            tat, passed = t, passed + 1000
    assert passed == 11_000, "a frame passes while the bucket holds any credit"
    for _ in range(10_000):  # then 10 MB/s offered for 1 s: 1 MB of it passes
        now += 100_000
        t = rates.take_bytes(tat, now, 1000, cost, tolerance)
        if t is not None:
            tat, passed = t, passed + 1000
    assert 11_000 + 1_000_000 - 1000 <= passed <= 11_000 + 1_000_000
    assert rates.police_burst(100_000_000) == 3_125_000, "a quarter of a second by default"
    assert rates.police_burst(1_000_000) == 128 * 1024, "at least 128 KiB"


def test_parse_rate_once_for_every_front_end() -> None:
    for text, bps in (("100M", 100_000_000), ("1.5G", 1_500_000_000), ("800k", 800_000), ("100Mbit", 100_000_000),
                      ("100mbps", 100_000_000), (" 2g ", 2_000_000_000), ("400G", 400 * 10**9), (0, 0),
                      (12_345, 12_344), (1, 8), ("0", 0), (100_000_000.0, 100_000_000)):
        assert parse_rate(text) == bps, text
    for bad in ("fast", "-1M", "1e9", "100 M bits", True, -8, 400_000_000_008, "401G", "1.5", 1.5, None):
        with pytest.raises(FieldError, match="is not a rate in bits per second"):
            parse_rate(bad)
    assert rates.format_rate(100_000_000) == "100 Mbit/s" and rates.format_rate(1_500_000_000) == "1.5 Gbit/s"


# ---- the rule in the core -----------------------------------------------------------------------

def switch(**policy: object) -> SwitchCore:
    sw = SwitchCore()
    sw.add_port("vm1", PortPolicy(**policy))  # type: ignore[arg-type]
    sw.add_port("vm2", PortPolicy())
    sw.process("vm2", frame(BCAST, B, 60), 0, 0.0)
    return sw


def test_frames_over_the_rate_are_dropped_unicast_and_floods_alike() -> None:
    sw = switch(max_bandwidth=8_000_000, bandwidth_burst=10_000)
    reasons = [sw.process("vm1", frame(B if i % 2 else BCAST, A, 1000), 0, 1.0).reason for i in range(20)]
    assert reasons[:11] == [Reason.FLOOD_BROADCAST, Reason.FORWARD_LEARNED] * 5 + [Reason.FLOOD_BROADCAST]
    assert set(reasons[11:]) == {Reason.DROP_MAX_BANDWIDTH}
    assert sw.counters["vm1"].snapshot()["drops"] == {"drop_max_bandwidth": 9}
    assert sw.fdb.lookup(A, 1, 1.0) == "vm1"
    assert sw.process("vm1", frame(B, A, 1000), 0, 1.001).reason is Reason.FORWARD_LEARNED, "1 ms: 1,000 bytes"
    assert sw.process("vm1", frame(B, A, 1000), 0, 1.001).reason is Reason.DROP_MAX_BANDWIDTH
    assert sw.process("vm2", frame(A, B, 1000), 0, 1.001).reason is Reason.FORWARD_LEARNED, "other ports unlimited"
    sw.set_policy("vm1", PortPolicy(max_bandwidth=8_000_000, bandwidth_burst=20_000))
    assert sw.process("vm1", frame(B, A, 1000), 0, 1.001).reason is Reason.FORWARD_LEARNED, "a new bucket, full"
    sw.set_policy("vm1", PortPolicy())
    assert all(sw.process("vm1", frame(B, A, 1500), 0, 1.001).reason is Reason.FORWARD_LEARNED for _ in range(100))


def test_a_dropped_frame_is_not_learned() -> None:
    sw = switch(max_bandwidth=8_000, bandwidth_burst=1)
    sw.process("vm1", frame(B, A, 1000), 0, 1.0)
    assert sw.process("vm1", frame(B, bytes.fromhex("525400000009"), 1000), 0, 1.0).reason is Reason.DROP_MAX_BANDWIDTH
    assert sw.fdb.lookup(bytes.fromhex("525400000009"), 1, 1.0) is None, "policed before learning"


def test_trace_tells_the_drop_and_takes_no_bytes() -> None:
    sw = switch(max_bandwidth=100_000_000, bandwidth_burst=1)
    for _ in range(5):
        assert sw.trace("vm1", frame(B, A, 1500), 1.0)[0].reason is Reason.FORWARD_LEARNED
    sw.process("vm1", frame(B, A, 1500), 0, 1.0)
    d, steps = sw.trace("vm1", frame(B, A, 1500), 1.0)
    assert d.reason is Reason.DROP_MAX_BANDWIDTH and [s.stage for s in steps] == ["parse", "ingress"]
    assert steps[-1].result == "maximum bandwidth on port vm1 — 100 Mbit/s exceeded (1500 bytes): dropped"


def test_trace_and_process_agree_on_random_frames() -> None:
    rng = random.Random(17)
    policies = {"policed": PortPolicy.access(10, max_bandwidth=80_000, bandwidth_burst=2_000),
                "both": PortPolicy.trunk({10, 20}, native=10, max_bandwidth=800_000, storm_limit=1),
                "plain": PortPolicy.access(10)}
    sw = SwitchCore()
    for name, policy in policies.items():
        sw.add_port(name, policy)
    macs = [A, B] + [bytes((2, 0, 0, 0, 4, i)) for i in range(6)]
    seen = set()
    now = 0.0
    for _ in range(4000):
        now += rng.choice((0.0, 0.0, 0.001, 0.01, 0.2))
        f = frame(rng.choice(macs + [BCAST]), rng.choice(macs), rng.randrange(60, 1515))
        port = rng.choice(list(policies))
        explained, _ = sw.trace(port, f, now)
        decided = sw.process(port, f, 0, now)
        assert explained == decided, f"frame {f.hex()} on {port} at {now}"
        seen.add(decided.reason)
    assert {Reason.DROP_MAX_BANDWIDTH, Reason.DROP_STORM_LIMIT, Reason.FORWARD_LEARNED} <= seen


# ---- the settings -------------------------------------------------------------------------------

def test_spec_settings_and_policy() -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1")
    assert (spec.max_bandwidth, spec.bandwidth_burst, spec.max_bandwidth_in, spec.min_bandwidth_weight) == (0, 0, 0, 0)
    limited = PortSettings.parse({"max_bandwidth": "100M", "bandwidth_burst": 65_536,
                                  "min_bandwidth_weight": 20}).apply(spec)
    pol = policy_for(limited)
    assert (pol.max_bandwidth, pol.bandwidth_burst, limited.min_bandwidth_weight) == (100_000_000, 65_536, 20)
    assert PortSpec.parse(limited.to_dict()) == limited
    for field, bad, needle in (("max_bandwidth", "fast", "max_bandwidth: 'fast' is not a rate"),
                               ("bandwidth_burst", -1, "bandwidth_burst: -1 is not a burst in bytes"),
                               ("min_bandwidth_weight", 101, "min_bandwidth_weight: 101 is not a minimum bandwidth"),
                               ("max_bandwidth_in", "1P", "max_bandwidth_in: '1P' is not a rate")):
        with pytest.raises(InvalidRequest, match=needle):
            PortSettings.parse({field: bad})
    with pytest.raises(Conflict, match="max_bandwidth_in: only a link port's delivery is shaped"):
        PortSettings(max_bandwidth_in=100_000_000).apply(spec)  # the port's kind refuses it: 409
    link = PortSpec("vm2", PortKind.LINK, "veth9", max_bandwidth_in=100_000_000)
    assert link.max_bandwidth_in == 100_000_000


def test_the_bandwidth_settings_are_stored(tmp_path: Path) -> None:
    spec = PortSpec("vm1", PortKind.LINK, "veth9", max_bandwidth=100_000_000, bandwidth_burst=1 << 20,
                    max_bandwidth_in=50_000_000, min_bandwidth_weight=80)
    assert stored_and_loaded(tmp_path / "db", spec) == [spec]


def test_cli_port_set_and_show() -> None:
    api = FakeApi()
    run = cli_on_one_port(api)
    out = run("port", "set", "s", "vm1", "--max-bandwidth", "100M", "--burst", "65536", "--min-bandwidth-weight", "20")
    assert "max bandwidth 100 Mbit/s" in out and "min bandwidth weight 20" in out
    settings = api.calls[-1][1][2]
    assert (settings.max_bandwidth, settings.bandwidth_burst, settings.min_bandwidth_weight) == \
        (100_000_000, 65_536, 20)
    shown = run("port", "show", "s", "vm1")
    assert "100 Mbit/s, burst 65,536 bytes" in shown and "max bandwidth in" in shown
    assert '"max_bandwidth": 100000000' in run("port", "show", "s", "vm1", "--json")
    for args, word in ((["--max-bandwidth", "fast"], "max_bandwidth"), (["--min-bandwidth-weight", "200"],
                                                                         "min_bandwidth_weight"),
                       (["--max-bandwidth-in", "10M"], "max_bandwidth_in: only a link port")):
        bad = run("port", "set", "s", "vm1", *args, ok=False)
        assert bad.exit_code != 0 and word in bad.output, bad.output
    assert api.get_port("s", "vm1").max_bandwidth == 100_000_000, "a refused value changes nothing"


def test_cli_switch_set_uplink_bandwidth() -> None:
    api = FakeApi()
    run = cli_on_one_port(api)
    assert "uplink bandwidth 1 Gbit/s" in run("switch", "set", "s", "--uplink-bandwidth", "1G")
    assert api.calls[-1][1][1].uplink_bandwidth == 1_000_000_000
    assert "uplink bandwidth: 1 Gbit/s" in run("switch", "show", "s")
    bad = run("switch", "set", "s", "--uplink-bandwidth", "lots", ok=False)
    assert bad.exit_code != 0 and "uplink_bandwidth: 'lots' is not a rate" in bad.output, bad.output


def test_a_link_ports_max_bandwidth_in_is_a_shaper_on_its_link(tmp_path: Path) -> None:
    kernel = MemKernel()

    def manager() -> SwitchManager:
        return SwitchManager(ConfigStore(tmp_path / "db"), netlink=kernel, port_kinds=kernel.port_kinds,
                             port_socket_dir=str(tmp_path / "p"))

    kernel.add_link("vmlink1")
    m = manager()
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        info = m.add_port("s", PortSpec("vm", PortKind.LINK, "vmlink1", max_bandwidth_in=100_000_000))
        assert info.max_bandwidth_in == 100_000_000 and kernel().shaper_rate("vmlink1") == 100_000_000
        assert m.set_port("s", "vm", PortSettings(max_bandwidth_in=50_000_000)).max_bandwidth_in == 50_000_000
        assert kernel().shaper_rate("vmlink1") == 50_000_000
        m.set_port("s", "vm", PortSettings(max_bandwidth=10_000_000))
        assert kernel().shaper_rate("vmlink1") == 50_000_000, "another setting leaves the shaper"
    finally:
        m.shutdown()
    m = manager()
    try:
        m.restore()
        assert m.get_port("s", "vm").max_bandwidth_in == 50_000_000
        assert kernel().shaper_rate("vmlink1") == 50_000_000
        m.set_port("s", "vm", PortSettings(max_bandwidth_in=0))
        assert kernel().shaper_rate("vmlink1") is None
        m.set_port("s", "vm", PortSettings(max_bandwidth_in=20_000_000))
        m.remove_port("s", "vm")
        assert kernel().shaper_rate("vmlink1") is None, "the link as it was before the port"
    finally:
        m.shutdown()


def test_weights_share_an_external_uplink_on_memkernel(tmp_path: Path) -> None:
    """An External switch with --uplink-bandwidth and weighted ports: an htb of a class per weighted
    port (weight / (sum + 1) of the capacity) and the rest; each port's policy marks its frames for its
    class; a weight of 0, or no capacity, takes the htb away; deleting the switch gives the NIC back
    without it; a restart rebuilds it."""
    kernel = MemKernel()
    kernel.add_link("eth7", mac="52:54:00:12:34:57", up=True)
    for name in ("va", "vb"):
        kernel.add_link(name)

    def manager() -> SwitchManager:
        return SwitchManager(ConfigStore(tmp_path / "db"), netlink=kernel, port_kinds=kernel.port_kinds,
                             port_socket_dir=str(tmp_path / "p"))

    m = manager()
    try:
        m.create_switch(SwitchSpec("x", SwitchType.EXTERNAL, nic="eth7", allow_management_os=False))
        m.add_port("x", PortSpec("a", PortKind.LINK, "va", min_bandwidth_weight=20))
        m.add_port("x", PortSpec("b", PortKind.LINK, "vb", min_bandwidth_weight=80))
        assert kernel().uplink_shares("eth7") is None, "no capacity yet: no sharing"
        info = m.set_switch("x", SwitchSettings.parse({"uplink_bandwidth": "100M"}))
        assert info.uplink_bandwidth == 100_000_000  # type: ignore[union-attr]
        assert kernel().uplink_shares("eth7") == {0x100: 19_801_980, 0x101: 79_207_920, 0xFFFF: 1_000_000}
        core = m.datapath("x").core
        assert (core.policies["a"].uplink_class, core.policies["b"].uplink_class) == (0x10100, 0x10101)
        m.set_port("x", "a", PortSettings(min_bandwidth_weight=0))
        assert kernel().uplink_shares("eth7") == {0x100: 98_765_432, 0xFFFF: 1_234_568}
        assert (core.policies["a"].uplink_class, core.policies["b"].uplink_class) == (0, 0x10100)
        m.set_port("x", "a", PortSettings(min_bandwidth_weight=20))
    finally:
        m.shutdown()
    m = manager()
    try:
        m.restore()
        assert set(kernel().uplink_shares("eth7") or {}) == {0x100, 0x101, 0xFFFF}, "rebuilt at start"
        m.set_switch("x", SwitchSettings(uplink_bandwidth=0))
        assert kernel().uplink_shares("eth7") is None
        m.set_switch("x", SwitchSettings(uplink_bandwidth=50_000_000))
        m.delete_switch("x")
        assert kernel().uplink_shares("eth7") is None, "the NIC given back without it"
    finally:
        m.shutdown()

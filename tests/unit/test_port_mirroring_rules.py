"""Port mirroring in the core (no I/O): Hyper-V's -PortMirroring Source/Destination. Every forwarded
frame received from or delivered to a source port is copied once to every destination port that is
up (never back to the port it came from, never a second time to a port that is an output already),
with the tag the destination takes; dropped frames are not mirrored; the counters; `trace`'s
sentences and `trace` agreeing with `process`; the cached decisions equal to freshly built ones."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import cast

import pytest
from fake_api import FakeApi, cli_on_one_port, stored_and_loaded
from memkernel import MemKernel

from guard_frames import eth
from vswitch.control.manager import SwitchManager
from vswitch.control.model import InvalidRequest, PortKind, PortSettings, PortSpec, SwitchSpec, SwitchType, policy_for
from vswitch.control.store import ConfigStore
from vswitch.core.policy import PortMirroring, PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import EDIT_KEEP, EDIT_POP, EDIT_PUSH, SwitchCore
from vswitch.ports.memory import MemoryPort
from waiting import wait_until

SRC, DST = PortMirroring.SOURCE, PortMirroring.DESTINATION
MAC = {n: bytes((2, 0, 0, 0, 0x4D, i)) for i, n in enumerate(("vm1", "vm2", "vm3", "mon", "tmon", "vm4", "t1"))}
BCAST = b"\xff" * 6
PEER, OTHER = bytes.fromhex("020000000901"), bytes.fromhex("020000000902")
PAYLOAD = b"\x08\x00" + bytes(46)


def frame(dst: bytes, src: bytes, vid: int | None = None) -> bytes:
    if vid is None:
        return eth(dst, src, PAYLOAD)
    return dst + src + struct.pack("!HH", 0x8100, vid) + PAYLOAD


def lab() -> SwitchCore:
    """vm1 a source; vm2, vm3 plain; mon an access destination, tmon a trunk destination; vm4 a
    second source; every MAC learned (each port sent a broadcast)."""
    sw = SwitchCore()
    sw.add_port("vm1", PortPolicy.access(10, port_mirroring=SRC))
    sw.add_port("vm2", PortPolicy.access(10))
    sw.add_port("vm3", PortPolicy.access(10))
    sw.add_port("mon", PortPolicy.access(10, port_mirroring=DST))
    sw.add_port("tmon", PortPolicy.trunk({10, 20}, port_mirroring=DST))
    sw.add_port("vm4", PortPolicy.access(10, port_mirroring=SRC))
    for name in ("vm1", "vm2", "vm3", "mon", "vm4"):
        sw.process(name, frame(BCAST, MAC[name]), 0, 1.0)
    sw.process("tmon", frame(BCAST, MAC["tmon"], 10), 0, 1.0)
    for c in sw.counters.values():
        c.mirrored = c.mirror_tx = 0
    return sw


def test_a_sources_unicast_is_copied_to_every_destination_in_both_directions() -> None:
    sw = lab()
    out = sw.process("vm1", frame(MAC["vm2"], MAC["vm1"]), 0, 2.0)
    assert (out.reason, out.out_ports) == (Reason.FORWARD_LEARNED, ("vm2", "mon", "tmon"))
    assert out.edits == (EDIT_KEEP, EDIT_KEEP, EDIT_PUSH), "the trunk destination gets the frame tagged VLAN 10"
    assert out.mirror is not None and out.mirror.sources == ("vm1",) and out.mirror.copies == ("mon", "tmon")
    back = sw.process("vm2", frame(MAC["vm1"], MAC["vm2"]), 0, 2.0)
    assert back.out_ports == ("vm1", "mon", "tmon"), "what is delivered to a source is mirrored too"
    assert sw.counters["vm1"].mirrored == 2 and sw.counters["mon"].mirror_tx == 2
    assert sw.counters["tmon"].mirror_tx == 2 and sw.counters["vm2"].mirrored == 0


def test_other_ports_traffic_is_not_mirrored_and_a_destination_keeps_its_own() -> None:
    sw = lab()
    d = sw.process("vm2", frame(MAC["vm3"], MAC["vm2"]), 0, 2.0)
    assert (d.out_ports, d.mirror) == (("vm3",), None)
    own = sw.process("mon", frame(MAC["vm2"], MAC["mon"]), 0, 2.0)
    assert (own.out_ports, own.mirror) == (("vm2",), None), "the monitor still forwards normally"
    to_mon = sw.process("vm3", frame(MAC["mon"], MAC["vm3"]), 0, 2.0)
    assert to_mon.out_ports == ("mon",)
    assert all(c.mirror_tx == 0 and c.mirrored == 0 for c in sw.counters.values())


def test_one_copy_per_destination_never_back_and_never_twice() -> None:
    sw = lab()
    d = sw.process("vm1", frame(MAC["vm4"], MAC["vm1"]), 0, 2.0)
    assert d.out_ports == ("vm4", "mon", "tmon"), "source to source: one copy per destination"
    assert d.mirror is not None and d.mirror.sources == ("vm1", "vm4")
    assert sw.counters["vm1"].mirrored == sw.counters["vm4"].mirrored == 1 and sw.counters["mon"].mirror_tx == 1
    from_mon = sw.process("mon", frame(MAC["vm1"], MAC["mon"]), 0, 2.0)
    assert from_mon.out_ports == ("vm1", "tmon"), "never back to the port it came from"
    flood = sw.process("vm1", frame(BCAST, MAC["vm1"]), 0, 2.0)
    assert flood.out_ports == ("vm2", "vm3", "mon", "tmon", "vm4"), "a flood reaches the destinations once"
    assert flood.mirror is not None and flood.mirror.copies == () and flood.mirror.dests == ("mon", "tmon")
    unknown = sw.process("vm2", frame(bytes.fromhex("02000000ffff"), MAC["vm2"]), 0, 2.0)
    assert unknown.mirror is not None and unknown.mirror.sources == ("vm1", "vm4"), "a flood to sources"
    assert unknown.out_ports == ("vm1", "vm3", "mon", "tmon", "vm4")


def test_tags_a_trunk_destination_keeps_the_vlan_an_access_one_gets_it_untagged() -> None:
    sw = SwitchCore()
    sw.add_port("t1", PortPolicy.trunk({10, 20}, port_mirroring=SRC))
    sw.add_port("a20", PortPolicy.access(20))
    sw.add_port("mon", PortPolicy.access(10, port_mirroring=DST))
    sw.add_port("tmon", PortPolicy.trunk({30}, native=30, port_mirroring=DST))
    sw.process("a20", frame(BCAST, MAC["vm2"]), 0, 1.0)
    d = sw.process("t1", frame(MAC["vm2"], MAC["t1"], 20), 0, 2.0)
    assert d.out_ports == ("a20", "mon", "tmon")
    assert d.edits == (EDIT_POP, EDIT_POP, EDIT_KEEP), \
        "an access destination gets it untagged (any VLAN), a trunk one with its tag (VLAN 20, not its own)"


def test_dropped_frames_are_not_mirrored_nor_copies_to_a_port_that_is_down() -> None:
    sw = lab()
    assert sw.process("vm1", frame(MAC["vm1"], MAC["vm1"]), 0, 2.0).mirror is None  # DROP_SAME_PORT
    d = sw.process("vm1", frame(BCAST, MAC["vm1"], 30), 0, 2.0)
    assert (d.reason, d.out_ports) == (Reason.DROP_VLAN_INGRESS, ())
    assert sw.counters["vm1"].mirrored == 0
    sw.set_oper_up("mon", False)
    d = sw.process("vm1", frame(MAC["vm2"], MAC["vm1"]), 0, 2.0)
    assert d.out_ports == ("vm2", "tmon"), "a destination that is down gets nothing"
    sw.set_oper_up("tmon", False)
    d = sw.process("vm1", frame(MAC["vm2"], MAC["vm1"]), 0, 2.0)
    assert (d.out_ports, d.mirror) == (("vm2",), None), "no destination up: not mirrored"
    sw.set_oper_up("mon", True)
    sw.fdb.add_static(MAC["vm3"], 10, "vm3")
    sw.set_policy("vm3", PortPolicy.access(10, admin_up=False))
    d = sw.process("vm1", frame(MAC["vm3"], MAC["vm1"]), 0, 2.0)
    assert (d.reason, d.mirror) == (Reason.DROP_EGRESS_DOWN, None), "a drop after the lookup is not mirrored either"


def test_a_policy_change_takes_effect_on_the_next_frame() -> None:
    sw = lab()
    first = sw.process("vm2", frame(MAC["vm3"], MAC["vm2"]), 0, 2.0)
    assert sw.process("vm2", frame(MAC["vm3"], MAC["vm2"]), 0, 2.0) is first, "cached: nothing allocated"
    sw.set_policy("vm3", PortPolicy.access(10, port_mirroring=SRC))
    assert sw.process("vm2", frame(MAC["vm3"], MAC["vm2"]), 0, 2.0).out_ports == ("vm3", "mon", "tmon")
    sw.set_policy("vm1", PortPolicy.access(10))
    sw.set_policy("vm3", PortPolicy.access(10))
    sw.set_policy("vm4", PortPolicy.access(10))
    assert sw.process("vm1", frame(MAC["vm2"], MAC["vm1"]), 0, 2.0).out_ports == ("vm2",)
    assert sw.process("vm1", frame(BCAST, MAC["vm1"]), 0, 2.0).mirror is None


def test_trace_says_what_is_mirrored_and_why() -> None:
    sw = lab()
    d, steps = sw.trace("vm2", frame(MAC["vm1"], MAC["vm2"]), 2.0)
    egress = [s.result for s in steps if s.stage == "egress"]
    assert egress == ["port vm1: leaves as it came",
                      "mirrored to port mon (port mirroring: vm1 is a source): leaves as it came",
                      "mirrored to port tmon (port mirroring: vm1 is a source): leaves tagged VLAN 10 (tag pushed)"]
    assert [s for s in steps if s.stage == "decide"][0].detail["mirrored_to"] == ["mon", "tmon"]
    assert all(c.mirrored == 0 and c.mirror_tx == 0 for c in sw.counters.values()), "an explanation counts nothing"
    _, steps = sw.trace("vm1", frame(BCAST, MAC["vm1"]), 2.0)
    assert "port mon gets it already: no mirror copy (port mirroring: vm1, vm4 are sources)" in \
        [s.result for s in steps]


def test_trace_and_process_agree_and_the_caches_equal_fresh_decisions() -> None:
    rng = random.Random(88)
    policies = {"s-a10": PortPolicy.access(10, port_mirroring=SRC),
                "s-t": PortPolicy.trunk({10, 20}, port_mirroring=SRC),
                "a10": PortPolicy.access(10), "a20": PortPolicy.access(20), "t": PortPolicy.trunk({10, 20}, native=10),
                "d-a10": PortPolicy.access(10, port_mirroring=DST),
                "d-t": PortPolicy.trunk({20}, native=20, port_mirroring=DST, guards=1),
                "d-a30": PortPolicy.access(30, port_mirroring=DST, flooding=False)}
    sw, fresh = SwitchCore(), SwitchCore()
    for name, policy in policies.items():
        sw.add_port(name, policy)
        fresh.add_port(name, policy)
    macs = [bytes((2, 0, 0, 0, 3, i)) for i in range(12)]
    seen: set[tuple[int, int]] = set()
    for i in range(3000):
        f = frame(rng.choice([*macs, BCAST]), rng.choice(macs), rng.choice((None, None, 10, 20, 30)))
        port = rng.choice(list(policies))
        if i % 500 == 250:
            for s in (sw, fresh):
                s.set_oper_up("d-a10", i % 1000 != 250)
        now = float(i // 40)
        explained, _ = sw.trace(port, f, now)
        decided = sw.process(port, f, 0, now)
        fresh._invalidate()  # every decision built anew: the caches must not change an answer
        assert explained == decided == fresh.process(port, f, 0, now), f"frame {f.hex()} on {port}"
        if decided.mirror is not None:
            seen.add((len(decided.mirror.sources), len(decided.mirror.copies)))
    assert {(1, 1), (1, 2), (2, 2)} <= seen, seen
    for name in policies:
        a, b = sw.counters[name], fresh.counters[name]
        assert (a.mirrored, a.mirror_tx) == (b.mirrored, b.mirror_tx)
    assert sw.counters["s-a10"].mirrored > 0 and sw.counters["d-a30"].mirror_tx > 0


# ---- the settings -------------------------------------------------------------------------------

def test_spec_settings_and_policy() -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1")
    assert (spec.port_mirroring, policy_for(spec).port_mirroring) == ("none", PortMirroring.NONE)
    src = PortSettings(port_mirroring="SOURCE").apply(spec)
    assert (src.port_mirroring, policy_for(src).port_mirroring) == ("source", SRC)
    dst = PortSettings(port_mirroring="destination").apply(src)
    assert policy_for(dst).port_mirroring is DST
    assert PortSpec.parse(dst.to_dict()) == dst
    assert PortSettings(learning=False).apply(dst).port_mirroring == "destination", "kept by other settings"
    with pytest.raises(InvalidRequest, match=r"port_mirroring: 'mirror' is not a port mirroring mode "
                                             r"\(none, source, destination\)"):
        PortSettings.parse({"port_mirroring": "mirror"})
    with pytest.raises(InvalidRequest, match="port_mirroring"):
        PortSpec.parse({**spec.to_dict(), "port_mirroring": 2})
    assert PortPolicy(port_mirroring=1).port_mirroring is SRC  # type: ignore[arg-type]


def test_the_setting_is_stored(tmp_path: Path) -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1", port_mirroring="destination")
    assert stored_and_loaded(tmp_path / "db", spec) == [spec]


def test_cli_port_set_and_show() -> None:
    api = FakeApi()
    run = cli_on_one_port(api)
    out = run("port", "set", "s", "vm1", "--port-mirroring", "source")
    assert "port mirroring source" in out
    assert api.calls[-1][1][2].port_mirroring == "source"
    shown = run("port", "show", "s", "vm1")
    assert "port mirroring" in shown and "source" in shown
    assert '"port_mirroring": "source"' in run("port", "show", "s", "vm1", "--json")
    bad = run("port", "set", "s", "vm1", "--port-mirroring", "both", ok=False)
    assert bad.exit_code != 0 and "--port-mirroring" in bad.output, bad.output
    assert api.get_port("s", "vm1").port_mirroring == "source", "a refused value changes nothing"


def test_set_live_on_memory_ports_counted_and_kept_across_a_restart(tmp_path: Path) -> None:
    """`port set` on a running switch: the monitor gets a copy of each frame between vm and peer,
    in both directions, nothing of the others' traffic; `stats` counts them; a restart keeps the
    settings."""
    def manager() -> SwitchManager:
        kernel = MemKernel()
        return SwitchManager(ConfigStore(tmp_path / "db"), netlink=kernel, port_kinds=kernel.port_kinds,
                             port_socket_dir=str(tmp_path / "p"))

    names = ("vm", "peer", "other", "mon")
    m = manager()
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        for name in names:
            m.add_port("s", PortSpec(name, PortKind.MEMORY, name))
        ports = {n: cast(MemoryPort, m.port_object("s", n)) for n in names}
        for n in names:  # everyone learned
            ports[n].inject(frame(BCAST, {"vm": MAC["vm1"], "peer": PEER, "other": OTHER, "mon": MAC["mon"]}[n]))
        wait_until(lambda: len(ports["mon"].sent) == 3, what="the three broadcasts at the monitor")
        assert m.set_port("s", "vm", PortSettings(port_mirroring="source")).port_mirroring == "source"
        assert m.set_port("s", "mon", PortSettings(port_mirroring="destination")).port_mirroring == "destination"
        ports["mon"].sent.clear()
        there, back = frame(PEER, MAC["vm1"]), frame(MAC["vm1"], PEER)
        ports["vm"].inject(there)
        ports["peer"].inject(back)
        ports["other"].inject(frame(PEER, OTHER))
        wait_until(lambda: len(ports["peer"].sent) >= 2, what="vm's and other's frames at peer")
        wait_until(lambda: len(ports["mon"].sent) == 2, what="the two mirrored frames")
        assert sorted(map(bytes, ports["mon"].sent)) == sorted([there, back]), "exactly vm's frames, once each"
        stats = {s.port: s for s in m.stats("s")}
        assert (stats["vm"].mirrored, stats["mon"].mirror_tx, stats["peer"].mirrored) == (2, 2, 0)
    finally:
        m.shutdown()
    m = manager()
    try:
        m.restore()
        assert [m.get_port("s", n).port_mirroring for n in names] == ["source", "none", "none", "destination"]
    finally:
        m.shutdown()


def test_a_configuration_file_carries_the_setting() -> None:
    from vswitch.control.config_file import dump_yaml, parse_yaml
    from vswitch.control.config_plan import plan

    text = """\
version: 1
switches:
- switch: {name: lan, type: private}
  ports:
  - {name: vm1, kind: memory, target: vm1, port_mirroring: source}
  - {name: mon, kind: memory, target: mon, port_mirroring: destination}
"""
    want = parse_yaml(text, "mirror.yaml")
    assert [p.port_mirroring for p in want.switches[0].ports] == ["source", "destination"]
    have = parse_yaml(text.replace("port_mirroring: source", "port_mirroring: none"), "have.yaml")
    steps, _ = plan(want, have)
    assert [s.info.text for s in steps] == ["port lan/vm1: port_mirroring none → source"]
    new, _ = plan(want, parse_yaml("version: 1\nswitches: []\n", "empty.yaml"))
    assert "add port lan/vm1 (memory vm1, vlan 1, port mirroring source)" in [s.info.text for s in new]
    with pytest.raises(InvalidRequest, match="port_mirroring: 'span' is not a port mirroring mode"):
        parse_yaml(text.replace("port_mirroring: source", "port_mirroring: span"), "bad.yaml")
    exported = dump_yaml(want)
    assert "port_mirroring: source" in exported and "port_mirroring: destination" in exported
    assert plan(parse_yaml(exported, "export.yaml"), want)[0] == [], "export and apply round trip"

"""Port isolation and private VLANs in the core (no I/O): who reaches whom by flood and by known
unicast, shared learning of a primary and its secondaries, the trunk's tags, `trace`'s sentences and
its agreement with `process`, and the settings (`port set --isolated/--pvlan`, the refusals, the store,
the CLI, a live change and a restart on memory ports)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import cast

import pytest
from fake_api import FakeApi, cli_on_one_port, stored_and_loaded
from memkernel import MemKernel

from guard_frames import eth
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    Conflict,
    InvalidRequest,
    PortKind,
    PortSettings,
    PortSpec,
    StaticEntry,
    SwitchSpec,
    SwitchType,
    policy_for,
    pvlan_conflicts,
)
from vswitch.control.store import ConfigStore
from vswitch.core.frame import push_vlan
from vswitch.core.policy import PortPolicy, PvlanMode
from vswitch.core.reasons import Reason
from vswitch.core.switch import SwitchCore
from vswitch.ports.memory import MemoryPort
from waiting import wait_until

BCAST = b"\xff" * 6
PAYLOAD = b"\x08\x00" + bytes(46)
P, ISO, COM1, COM2 = 100, 101, 102, 103
ISOL, C, PR = PvlanMode.ISOLATED, PvlanMode.COMMUNITY, PvlanMode.PROMISCUOUS

#: the private VLAN of the real-part test: a promiscuous port, two communities of two, two isolated
PVLAN_PORTS = {
    "prom": PortPolicy.private(PR, P, {ISO, COM1, COM2}),
    "c1a": PortPolicy.private(C, P, {COM1}), "c1b": PortPolicy.private(C, P, {COM1}),
    "c2a": PortPolicy.private(C, P, {COM2}), "c2b": PortPolicy.private(C, P, {COM2}),
    "i1": PortPolicy.private(ISOL, P, {ISO}), "i2": PortPolicy.private(ISOL, P, {ISO}),
}
HOSTS = list(PVLAN_PORTS)


def reaches(a: str, b: str) -> bool:
    """The rule as the docs state it: promiscuous reaches all; a community its own and promiscuous;
    an isolated port only promiscuous."""
    if a == "prom" or b == "prom":
        return True
    return a[:2] == b[:2] and a.startswith("c")


def mac(i: int) -> bytes:
    return bytes((2, 0, 0, 0, 0x15, i))


MACS = {p: mac(i) for i, p in enumerate([*HOSTS, "trunk", "a", "b", "n"])}


def frame(dst: bytes, src: bytes) -> bytes:
    return eth(dst, src, PAYLOAD)


def pvlan_switch(**extra: PortPolicy) -> SwitchCore:
    sw = SwitchCore()
    for name, pol in {**PVLAN_PORTS, **extra}.items():
        sw.add_port(name, pol)
        sw.set_oper_up(name, True)
    return sw


def learn_all(sw: SwitchCore, now: float = 1.0) -> None:
    for p in sw.policies:
        if sw.policies[p].mode == "trunk":
            sw.process(p, push_vlan(frame(BCAST, MACS[p]), P), 0, now)
        else:
            sw.process(p, frame(BCAST, MACS[p]), 0, now)


def test_the_private_vlan_matrix_by_flood_and_known_unicast() -> None:
    sw = pvlan_switch()
    for a in HOSTS:
        d = sw.process(a, frame(BCAST, MACS[a]), 0, 1.0)
        assert set(d.out_ports) == {b for b in HOSTS if b != a and reaches(a, b)}, a
    for a in HOSTS:
        for b in HOSTS:
            if a == b:
                continue
            d = sw.process(a, frame(MACS[b], MACS[a]), 0, 2.0)
            if reaches(a, b):
                assert (d.reason, d.out_ports) == (Reason.FORWARD_LEARNED, (b,)), (a, b)
            else:
                assert (d.reason, d.out_ports) == (Reason.DROP_PRIVATE_VLAN, ()), (a, b)
    assert sw.counters["i1"].drops == {Reason.DROP_PRIVATE_VLAN: 5}   # i2 and the four community ports
    assert sw.counters["c1a"].drops == {Reason.DROP_PRIVATE_VLAN: 4}  # the other community and the isolated


def test_a_primary_and_its_secondaries_share_one_learning_domain() -> None:
    """The promiscuous port's answer to an isolated host is known unicast, not a flood: every host's
    MAC is learned under the primary VLAN."""
    sw = pvlan_switch()
    learn_all(sw)
    assert {e.vlan for e in sw.fdb.entries(1.0)} == {P}
    d = sw.process("prom", frame(MACS["i1"], MACS["prom"]), 0, 2.0)
    assert (d.reason, d.out_ports, d.vlan) == (Reason.FORWARD_LEARNED, ("i1",), P)
    d = sw.process("i1", frame(MACS["prom"], MACS["i1"]), 0, 2.0)
    assert (d.reason, d.out_ports, d.vlan) == (Reason.FORWARD_LEARNED, ("prom",), ISO)


def test_a_trunk_carries_the_secondary_from_a_host_and_the_primary_from_promiscuous() -> None:
    sw = pvlan_switch(trunk=PortPolicy.trunk({P, ISO, COM1, COM2}))
    d = sw.process("i1", frame(BCAST, MACS["i1"]), 0, 1.0)
    assert set(d.out_ports) == {"prom", "trunk"} and d.vlan == ISO  # leaves the trunk tagged 101
    assert d.edits is not None and d.edits[d.out_ports.index("trunk")] == 1  # EDIT_PUSH
    assert sw.process("prom", frame(BCAST, MACS["prom"]), 0, 1.0).vlan == P
    # from another switch: its isolated host reaches only promiscuous ports (and trunks), its community
    # its own community, its promiscuous port everyone
    far = mac(0x40)
    assert set(sw.process("trunk", push_vlan(frame(BCAST, far), ISO), 0, 1.0).out_ports) == {"prom"}
    assert set(sw.process("trunk", push_vlan(frame(BCAST, far), COM1), 0, 1.0).out_ports) == {"prom", "c1a", "c1b"}
    assert set(sw.process("trunk", push_vlan(frame(BCAST, far), P), 0, 1.0).out_ports) == set(HOSTS)
    learn_all(sw, 2.0)
    d = sw.process("trunk", push_vlan(frame(MACS["i2"], far), ISO), 0, 3.0)
    assert d.reason is Reason.DROP_PRIVATE_VLAN
    d = sw.process("prom", frame(far, MACS["prom"]), 0, 3.0)
    assert (d.reason, d.out_ports) == (Reason.FORWARD_LEARNED, ("trunk",)), "learned under the primary"


def test_a_change_of_the_learning_domains_forgets_what_was_learned_under_the_old_key() -> None:
    """A trunk's host on secondary 101 is learned under 100; when the private VLAN goes, 101 is its own
    VLAN again and the entry goes (a frame on 100 must not find it on a trunk that may not carry 100)."""
    sw = pvlan_switch(trunk=PortPolicy.trunk({P, ISO}))
    far, other = mac(0x40), mac(0x41)
    sw.process("trunk", push_vlan(frame(BCAST, far), ISO), 0, 1.0)
    sw.process("prom", frame(BCAST, other), 0, 1.0)
    assert sw.fdb.get(far, P) is not None
    sw.take_relearned()  # the domains as the switch was built
    for name in HOSTS:
        sw.remove_port(name)
    assert sw.fdb.get(far, P) is None and sw.fdb.get(far, ISO) is None
    assert sw.take_relearned() == {P, ISO, COM1, COM2} and sw.take_relearned() == set()
    sw.set_policy("trunk", PortPolicy.trunk({P}))
    assert sw.take_relearned() == set(), "no domain change, no flush"


def isolation_switch() -> SwitchCore:
    sw = SwitchCore()
    sw.add_port("a", PortPolicy(isolated=True))
    sw.add_port("b", PortPolicy(isolated=True))
    sw.add_port("n", PortPolicy())
    sw.add_port("t", PortPolicy.trunk({1, 10}, native=1, isolated=True))
    for p in sw.policies:
        sw.set_oper_up(p, True)
    return sw


def test_isolated_ports_never_exchange_frames_and_still_talk_to_the_others() -> None:
    sw = isolation_switch()
    assert sw.process("a", frame(BCAST, MACS["a"]), 0, 1.0).out_ports == ("n",)
    assert sw.process("b", frame(BCAST, MACS["b"]), 0, 1.0).out_ports == ("n",)
    assert set(sw.process("n", frame(BCAST, MACS["n"]), 0, 1.0).out_ports) == {"a", "b", "t"}
    d = sw.process("a", frame(MACS["b"], MACS["a"]), 0, 2.0)
    assert (d.reason, d.out_ports) == (Reason.DROP_ISOLATED, ())
    assert sw.process("a", frame(MACS["b"], MACS["a"]), 0, 2.0).reason is Reason.DROP_ISOLATED, "not cached"
    assert sw.process("a", frame(MACS["n"], MACS["a"]), 0, 2.0).out_ports == ("n",)
    assert sw.process("n", frame(MACS["a"], MACS["n"]), 0, 2.0).out_ports == ("a",)
    assert sw.counters["a"].drops == {Reason.DROP_ISOLATED: 2}
    # the decision to an isolated port depends on who sends: n's cached forward is not a's
    assert sw.process("b", frame(MACS["a"], MACS["b"]), 0, 2.0).reason is Reason.DROP_ISOLATED
    sw.set_policy("b", PortPolicy())
    assert sw.process("b", frame(MACS["a"], MACS["b"]), 0, 3.0).out_ports == ("a",), "off: back to normal"
    assert set(sw.process("a", frame(BCAST, MACS["a"]), 0, 3.0).out_ports) == {"b", "n"}


def test_trace_tells_why() -> None:
    sw = isolation_switch()
    sw.process("b", frame(BCAST, MACS["b"]), 0, 1.0)
    d, steps = sw.trace("a", frame(MACS["b"], MACS["a"]), 2.0)
    assert d.reason is Reason.DROP_ISOLATED
    assert "port isolation: a and b are both isolated: dropped" in steps[-1].result
    _, steps = sw.trace("a", frame(BCAST, MACS["a"]), 2.0)
    assert steps[-2].result.endswith("flooded to port n; not to port b (port isolation: a and b are both "
                                     "isolated); port t (port isolation: a and t are both isolated)")
    assert steps[-2].detail["isolated_from"] == ["b", "t"]
    sw = pvlan_switch()
    learn_all(sw)
    d, steps = sw.trace("i1", frame(MACS["i2"], MACS["i1"]), 2.0)
    assert d.reason is Reason.DROP_PRIVATE_VLAN
    assert "private VLAN 100: isolated secondary 101 reaches only promiscuous ports" in steps[-1].result
    _, steps = sw.trace("c1a", frame(BCAST, MACS["c1a"]), 2.0)
    text = " ".join(s.result for s in steps)
    assert "private VLAN 100: community secondary 102 reaches its community 102 and promiscuous ports" in text
    assert "shared learning" not in text  # already learned: refreshed
    _, steps = sw.trace("i1", frame(BCAST, mac(0x55)), 2.0)
    assert "VLAN 100, the primary of secondary VLAN 101: shared learning" in " ".join(s.result for s in steps)
    assert sw.counters["i1"].drops == {}, "an explanation counts nothing"


def test_trace_and_process_agree_with_isolation_and_private_vlans_on() -> None:
    sw = pvlan_switch(trunk=PortPolicy.trunk({P, ISO, COM1, 10}), a=PortPolicy(isolated=True),
                      b=PortPolicy.access(10, isolated=True), n=PortPolicy())
    rng = random.Random(4)
    names = list(sw.policies)
    pool = [mac(i) for i in range(16)]
    now = 1.0
    for _ in range(3000):
        now += rng.choice((0.0, 0.5, 1.0))
        port = rng.choice(names)
        dst = BCAST if rng.random() < 0.2 else rng.choice(pool)
        f = frame(dst, rng.choice(pool))
        if sw.policies[port].mode == "trunk" and rng.random() < 0.9:
            f = push_vlan(f, rng.choice((P, ISO, COM1, COM2, 10)))
        explained, _ = sw.trace(port, f, now)
        assert sw.process(port, f, 0, now) == explained


# ---- the settings -------------------------------------------------------------------------------

def spec(**kw: object) -> PortSpec:
    return PortSpec("vm1", PortKind.MEMORY, "vm1", **kw)  # type: ignore[arg-type]


def test_the_settings_and_their_policy() -> None:
    s = PortSettings.parse({"pvlan": "isolated", "primary": P, "secondary": ISO}).apply(spec(vlan=5))
    assert (s.vlan, s.pvlan, s.primary, s.secondary) == (None, ISOL, P, ISO)
    pol = policy_for(s)
    assert (pol.access_vlan, pol.egress_vlans(), pol.describe()) == (
        ISO, {P}, "private VLAN isolated, primary 100, secondary 101")
    s = PortSettings.parse({"pvlan": "promiscuous", "primary": P, "secondary_list": "101-103"}).apply(s)
    assert (s.secondary, s.secondary_list) == (None, (101, 102, 103))
    assert policy_for(s).egress_vlans() == {100, 101, 102, 103} and policy_for(s).access_vlan == P
    assert PortSettings.parse({"pvlan": "none"}).apply(s).pvlan is None
    assert PortSettings.parse({"vlan": 7}).apply(s).pvlan is None, "--vlan leaves the private VLAN too"
    assert policy_for(PortSettings(isolated=True).apply(spec())).isolated


@pytest.mark.parametrize(("body", "message"), [
    ({"pvlan": "isolated", "primary": P}, "secondary: an isolated private VLAN port needs its secondary VLAN"),
    ({"pvlan": "promiscuous", "primary": P}, "secondary_list: a promiscuous private VLAN port needs"),
    ({"pvlan": "community", "secondary": 5}, "primary: a community private VLAN port needs its primary"),
    ({"pvlan": "sometimes"}, "pvlan: 'sometimes' is not a private VLAN mode or none"),
    ({"primary": P}, "primary: give pvlan with it"),
    ({"pvlan": "isolated", "primary": P, "secondary": ISO, "vlan": 3}, "pvlan: a private VLAN port is neither"),
    ({"pvlan": "none", "primary": P}, "primary: pvlan none leaves the private VLAN"),
    ({"isolated": "yes"}, "isolated: 'yes' is not true or false"),
    ({"pvlan": "isolated", "primary": 5000, "secondary": ISO}, "primary"),
])
def test_bad_settings_are_refused_naming_the_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(")):
        PortSettings.parse(body).apply(spec())


def test_a_private_vlan_that_contradicts_another_port_is_a_conflict() -> None:
    iso = spec(pvlan=ISOL, primary=P, secondary=ISO)
    others = [PortSpec("x", PortKind.MEMORY, "x", pvlan=C, primary=P, secondary=COM1)]
    assert pvlan_conflicts(iso, others) == []
    assert "secondary VLAN 102 is community (port x), not isolated" in str(
        pvlan_conflicts(spec(pvlan=ISOL, primary=P, secondary=COM1), others)[0])
    assert "belongs to primary 100" in str(pvlan_conflicts(spec(pvlan=C, primary=200, secondary=COM1), others)[0])
    assert "VLAN 100 is the primary" in str(pvlan_conflicts(spec(pvlan=C, primary=P, secondary=P), []))
    assert "is the primary of port x" in str(pvlan_conflicts(spec(pvlan=ISOL, primary=7, secondary=P), others)[0])
    assert pvlan_conflicts(spec(pvlan=PR, primary=P, secondary_list=(ISO, COM1)), others) == []
    plain = PortSpec("h", PortKind.MEMORY, "h", vlan=COM1)
    assert "VLAN 102 is the access VLAN of port h" in str(pvlan_conflicts(spec(pvlan=C, primary=P, secondary=COM1),
                                                                           [plain])[0])
    assert "VLAN 102 is a secondary of private VLAN 100 (port x)" in str(pvlan_conflicts(plain, others)[0])
    assert pvlan_conflicts(PortSpec("t", PortKind.MEMORY, "t", trunk=(P, COM1)), others) == [], "a trunk may"
    assert pvlan_conflicts(spec(pvlan=C, primary=P, secondary=COM1), [spec(pvlan=C, primary=P, secondary=COM2)]) \
        == [], "a port's own old settings are not a conflict"


def test_the_settings_are_stored(tmp_path: Path) -> None:
    for s in (spec(isolated=True, pvlan=PR, primary=P, secondary_list=(101, 102, 103)),
              spec(pvlan=C, primary=P, secondary=COM1)):
        assert stored_and_loaded(tmp_path / f"db{s.pvlan}", s) == [s]


def test_cli_port_set_and_show() -> None:
    api = FakeApi()
    run = cli_on_one_port(api)
    out = run("port", "set", "s", "vm1", "--pvlan", "promiscuous", "--primary", "100", "--secondary-list", "101-103",
              "--isolated", "on")
    assert "private VLAN promiscuous, primary 100, secondary 101-103" in out and "isolated" in out
    shown = run("port", "show", "s", "vm1")
    assert "promiscuous, primary 100, secondary 101-103" in shown
    assert '"pvlan": "promiscuous"' in run("port", "show", "s", "vm1", "--json")
    bad = run("port", "set", "s", "vm1", "--pvlan", "isolated", "--primary", "100", ok=False)
    assert bad.exit_code != 0 and "secondary" in bad.output, bad.output
    assert api.get_port("s", "vm1").pvlan == "promiscuous", "a refused setting changes nothing"
    assert "access 1" in run("port", "set", "s", "vm1", "--pvlan", "none")


def test_set_live_counted_and_kept_across_a_restart(tmp_path: Path) -> None:
    """`port set --isolated on` on two ports of a running switch: their frames no longer meet (the drop
    counted in `stats`), a third port still reaches both; a private VLAN that contradicts another is a
    conflict; a restart keeps the settings."""
    def manager() -> SwitchManager:
        kernel = MemKernel()
        return SwitchManager(ConfigStore(tmp_path / "db"), netlink=kernel, port_kinds=kernel.port_kinds,
                             port_socket_dir=str(tmp_path / "p"))

    def drops(m: SwitchManager) -> int:
        return next(s.drops.get("drop_isolated", 0) for s in m.stats("s") if s.port == "a")

    m = manager()
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        for name in ("a", "b", "n"):
            m.add_port("s", PortSpec(name, PortKind.MEMORY, name))
        a, b, n = (cast(MemoryPort, m.port_object("s", x)) for x in ("a", "b", "n"))
        for x in ("a", "b"):
            assert m.set_port("s", x, PortSettings(isolated=True)).isolated
        b.inject(frame(BCAST, MACS["b"]))
        wait_until(lambda: n.sent, what="b's broadcast at n")
        assert not a.sent, "isolated from b"
        a.inject(frame(MACS["b"], MACS["a"]))
        wait_until(lambda: drops(m) == 1, what="a's unicast to b counted as drop_isolated")
        m.set_port("s", "n", PortSettings(pvlan="community", primary=P, secondary=COM1))
        assert m.fdb_add("s", StaticEntry("02:00:00:00:15:77", "n")).vlan == P, "a static entry goes in the primary"
        with pytest.raises(Conflict, match="secondary VLAN 102 is community"):
            m.set_port("s", "a", PortSettings(pvlan="isolated", primary=P, secondary=COM1))
        assert m.get_port("s", "a").pvlan is None
    finally:
        m.shutdown()
    m = manager()
    try:
        m.restore()
        assert m.get_port("s", "a").isolated and m.get_port("s", "b").isolated
        info = m.get_port("s", "n")
        assert (info.pvlan, info.primary, info.secondary) == ("community", P, [COM1])
    finally:
        m.shutdown()


PVLAN_DOC = """\
version: 1
switches:
- switch: {name: pv, type: private}
  ports:
  - {name: prom, kind: memory, target: prom, pvlan: promiscuous, primary: 100, secondary_list: "101-102"}
  - {name: iso, kind: memory, target: iso, pvlan: isolated, primary: 100, secondary: 101, isolated: true}
  - {name: com, kind: memory, target: com, vlan: 5}
"""


def test_config_export_and_apply_carry_the_private_vlans(tmp_path: Path) -> None:
    from vswitch.control.config_file import dump_yaml, parse_yaml

    kernel = MemKernel()
    m = SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds, port_socket_dir=str(tmp_path / "p"))
    try:
        m.config_apply(parse_yaml(PVLAN_DOC, "pv.yaml"))
        assert m.get_port("pv", "iso").vlan_mode == "private VLAN isolated, primary 100, secondary 101"
        assert m.get_port("pv", "iso").isolated
        exported = dump_yaml(m.config_export())
        assert m.config_apply(parse_yaml(exported, "export")).steps == []
        changed = PVLAN_DOC.replace("vlan: 5}", "pvlan: community, primary: 100, secondary: 102}")
        steps = [s.text for s in m.config_apply(parse_yaml(changed, "pv.yaml")).steps]
        assert steps == ["port pv/com: vlan 5 → pvlan community primary 100 secondary 102"]
        assert m.get_port("pv", "com").pvlan == "community"
        back = [s.text for s in m.config_apply(parse_yaml(PVLAN_DOC, "pv.yaml")).steps]
        assert back == ["port pv/com: pvlan community primary 100 secondary 102 → vlan 5"]
        assert m.get_port("pv", "com").pvlan is None
    finally:
        m.shutdown()


def test_the_fast_path_slot_and_config_of_a_private_vlan() -> None:
    """What the program is given (no I/O): a private VLAN port's slot sends in its secondary and
    receives its receive set; the config's domain table keys a primary and its secondaries by the primary."""
    from vswitch.datapath.kernel import layout as L

    packed = L.PORT.unpack(L.pack_port(PVLAN_PORTS["c1a"], ifindex=7, oper_up=True, kernel=True))
    flags, access, allowed = packed[1], packed[2], packed[5:5 + L.VLAN_WORDS]
    assert flags & L.PF_PVLAN and not flags & L.PF_UPCALL and access == COM1
    assert allowed == L.vlan_bits({P, COM1})
    assert L.upcall_reasons(PVLAN_PORTS["i1"]) == (), "the program runs private VLANs"
    assert L.PORT.unpack(L.pack_port(PortPolicy(isolated=True), ifindex=7, oper_up=True, kernel=True))[1] \
        & L.PF_ISOLATED
    table = L.domain_table({ISO: P, COM1: P})
    assert (table[P], table[ISO], table[COM1], table[COM2], table[1]) == (P, P, P, 0, 0)

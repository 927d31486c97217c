"""MAC address spoofing and the MAC limit in the core (no I/O): a port with spoofing off sends only
its MAC (given, or its first source, adopted and stored), a port with a limit owns at most that many
MACs, `trace` agreeing with `process`, and the settings (`port set --mac-spoofing/--mac-limit`, the
store, a live change and a restart on memory ports)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import cast

import pytest
from fake_api import FakeApi, cli_on_one_port, stored_and_loaded
from memkernel import MemKernel

from guard_frames import eth
from vswitch.control.manager import SwitchManager
from vswitch.control.model import InvalidRequest, PortKind, PortSettings, PortSpec, SwitchSpec, SwitchType, policy_for
from vswitch.control.store import ConfigStore
from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import SwitchCore
from vswitch.ports.memory import MemoryPort
from waiting import wait_until

OWN, VICTIM, FORGED = bytes.fromhex("525400000001"), bytes.fromhex("525400000002"), bytes.fromhex("020000000066")
BCAST = b"\xff" * 6
PAYLOAD = b"\x08\x00" + bytes(46)


def switch(**policy: object) -> SwitchCore:
    sw = SwitchCore()
    sw.add_port("vm1", PortPolicy(**policy))  # type: ignore[arg-type]
    sw.add_port("vm2", PortPolicy())
    sw.add_port("vm3", PortPolicy())
    return sw


def frame(dst: bytes, src: bytes) -> bytes:
    return eth(dst, src, PAYLOAD)


def test_spoofing_off_only_its_mac_passes_and_a_forged_source_is_never_learned() -> None:
    sw = switch(mac_spoofing=False, mac=OWN)
    sw.process("vm2", frame(BCAST, VICTIM), 0, 1.0)
    d = sw.process("vm1", frame(BCAST, VICTIM), 0, 2.0)
    assert d.reason is Reason.DROP_SPOOFED_MAC and d.out_ports == ()
    assert sw.fdb.lookup(VICTIM, 1, 2.0) == "vm2", "the victim's MAC stays where it is"
    assert sw.process("vm1", frame(BCAST, FORGED), 0, 2.0).reason is Reason.DROP_SPOOFED_MAC
    assert sw.fdb.get(FORGED, 1) is None
    assert sw.process("vm1", frame(BCAST, OWN), 0, 3.0).reason is Reason.FLOOD_BROADCAST
    assert sw.fdb.lookup(OWN, 1, 3.0) == "vm1"
    assert sw.counters["vm1"].drops == {Reason.DROP_SPOOFED_MAC: 2}
    # the victim keeps receiving its traffic
    assert sw.process("vm3", frame(VICTIM, bytes.fromhex("525400000003")), 0, 4.0).out_ports == ("vm2",)


def test_spoofing_on_any_source_passes_and_moves() -> None:
    sw = switch()
    sw.process("vm2", frame(BCAST, VICTIM), 0, 1.0)
    assert sw.process("vm1", frame(BCAST, VICTIM), 0, 2.0).reason is Reason.FLOOD_BROADCAST
    assert sw.fdb.lookup(VICTIM, 1, 2.0) == "vm1", "with spoofing on a port may take any source (the default)"


def test_a_port_with_no_mac_adopts_its_first_source() -> None:
    sw = switch(mac_spoofing=False)
    _, steps = sw.trace("vm1", frame(BCAST, FORGED), 1.0)
    assert sw.policies["vm1"].mac is None and not sw.claims, "an explanation adopts nothing"
    assert sw.process("vm1", frame(BCAST, OWN), 0, 1.0).reason is Reason.FLOOD_BROADCAST
    assert sw.policies["vm1"].mac == OWN and sw.take_claims() == [("vm1", OWN)] and not sw.claims
    assert sw.process("vm1", frame(BCAST, FORGED), 0, 2.0).reason is Reason.DROP_SPOOFED_MAC
    # a new policy that keeps spoofing off and gives no MAC keeps the adopted one; on forgets it
    sw.set_policy("vm1", PortPolicy(mac_spoofing=False, guards=1))
    assert sw.policies["vm1"].mac == OWN
    sw.set_policy("vm1", PortPolicy())
    assert sw.process("vm1", frame(BCAST, FORGED), 0, 3.0).reason is Reason.FLOOD_BROADCAST


def test_turning_spoofing_off_flushes_what_the_port_learned() -> None:
    sw = switch()
    sw.process("vm1", frame(BCAST, FORGED), 0, 1.0)
    sw.set_policy("vm1", PortPolicy(mac_spoofing=False, mac=OWN))
    assert sw.fdb.get(FORGED, 1) is None


def test_mac_limit_a_new_source_beyond_it_is_dropped_and_never_learned() -> None:
    sw = switch(mac_limit=2)
    macs = [bytes((2, 0, 0, 0, 1, i)) for i in range(4)]
    assert [sw.process("vm1", frame(BCAST, m), 0, 1.0).reason for m in macs] == \
        [Reason.FLOOD_BROADCAST, Reason.FLOOD_BROADCAST, Reason.DROP_MAC_LIMIT, Reason.DROP_MAC_LIMIT]
    assert sw.fdb.port_count("vm1") == 2 and sw.fdb.get(macs[2], 1) is None
    assert sw.process("vm1", frame(BCAST, macs[0]), 0, 2.0).reason is Reason.FLOOD_BROADCAST, "one it owns"
    d, steps = sw.trace("vm1", frame(BCAST, macs[3]), 2.0)
    assert d.reason is Reason.DROP_MAC_LIMIT
    assert steps[-1].result == ("MAC limit on port vm1 — it owns 2 MACs (limit 2) and 02:00:00:00:01:03 "
                                "is not one of them: dropped")
    sw.fdb.expire(1000.0)  # aged out: the places are free again
    assert sw.process("vm1", frame(BCAST, macs[3]), 0, 1000.0).reason is Reason.FLOOD_BROADCAST


def test_trace_says_whose_mac_the_source_is_not() -> None:
    sw = switch(mac_spoofing=False, mac=OWN)
    d, steps = sw.trace("vm1", frame(BCAST, FORGED), 1.0)
    assert d.reason is Reason.DROP_SPOOFED_MAC and steps[-1].stage == "ingress"
    assert steps[-1].result == ("MAC spoofing off on port vm1 — source 02:00:00:00:00:66 is not its MAC "
                                "52:54:00:00:00:01: dropped")
    assert sw.counters["vm1"].snapshot()["drops"] == {}, "an explanation counts nothing"


def test_trace_and_process_agree_on_random_sources() -> None:
    rng = random.Random(131)
    policies = {"locked": PortPolicy.access(10, mac_spoofing=False, mac=OWN),
                "adopts": PortPolicy.trunk({10, 20}, native=10, mac_spoofing=False),
                "limited": PortPolicy.access(20, mac_limit=3), "plain": PortPolicy.trunk({10, 20})}
    sw = SwitchCore(max_entries=16)
    for name, policy in policies.items():
        sw.add_port(name, policy)
    macs = [OWN, VICTIM, FORGED] + [bytes((2, 0, 0, 0, 2, i)) for i in range(20)]
    seen = set()
    for i in range(3000):
        f = frame(rng.choice(macs + [BCAST]), rng.choice(macs))
        port = rng.choice(list(policies))
        now = float(i // 50)
        explained, _ = sw.trace(port, f, now)
        decided = sw.process(port, f, 0, now)
        assert explained == decided, f"frame {f.hex()} on {port}"
        seen.add(decided.reason)
    assert {Reason.DROP_SPOOFED_MAC, Reason.DROP_MAC_LIMIT, Reason.FLOOD_BROADCAST} <= seen
    assert sw.fdb.port_count("limited") <= 3


# ---- the settings -------------------------------------------------------------------------------

def test_spec_settings_and_policy() -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1")
    pol = policy_for(spec)
    assert (spec.mac_spoofing, spec.mac_limit, pol.mac_spoofing, pol.mac) == (True, 0, True, None), \
        "vswitch's default: on (docs/port-features.md)"
    off = PortSettings(mac_spoofing=False).apply(spec)
    assert (policy_for(off).mac_spoofing, policy_for(off).mac) == (False, None)
    adopted = off.updated({"port_mac": "52:54:00:00:00:01"})
    assert policy_for(adopted).mac == OWN
    assert PortSettings(mac_limit=4).apply(adopted).port_mac == "52:54:00:00:00:01", "kept by other settings"
    assert PortSettings(mac_spoofing=True).apply(adopted).port_mac is None, "spoofing on forgets it"
    tap = PortSpec("t", PortKind.TAP, "tap-x", mac="52:54:00:00:00:02", mac_spoofing=False)
    assert policy_for(tap).mac == VICTIM, "a tap port's --mac is its one MAC"
    assert PortSpec.parse(adopted.to_dict()) == adopted
    with pytest.raises(InvalidRequest, match="mac_spoofing: 'off' is not true or false"):
        PortSettings.parse({"mac_spoofing": "off"})
    with pytest.raises(InvalidRequest, match=r"mac_limit: -1 is not a MAC limit in MACs, 0 for none"):
        PortSettings.parse({"mac_limit": -1})
    with pytest.raises(InvalidRequest, match="mac_limit"):
        PortSpec.parse({**spec.to_dict(), "mac_limit": "many"})


def test_the_source_settings_are_stored(tmp_path: Path) -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1", mac_spoofing=False, mac_limit=3, port_mac="52:54:00:00:00:01")
    assert stored_and_loaded(tmp_path / "db", spec) == [spec]


def test_cli_port_set_and_show() -> None:
    api = FakeApi()
    run = cli_on_one_port(api)

    out = run("port", "set", "s", "vm1", "--mac-spoofing", "off", "--mac-limit", "4")
    assert "mac spoofing off (its first source), mac limit 4" in out
    settings = api.calls[-1][1][2]
    assert (settings.mac_spoofing, settings.mac_limit, settings.learning) == (False, 4, None)
    shown = run("port", "show", "s", "vm1")
    assert "mac spoofing" in shown and "mac limit" in shown
    assert '"mac_spoofing": false' in run("port", "show", "s", "vm1", "--json")
    for args, word in ((["--mac-spoofing", "maybe"], "--mac-spoofing"), (["--mac-limit", "-2"], "mac_limit")):
        bad = run("port", "set", "s", "vm1", *args, ok=False)
        assert bad.exit_code != 0 and word in bad.output, bad.output
    assert api.get_port("s", "vm1").mac_limit == 4, "a refused value changes nothing"


def test_set_live_adopted_and_kept_across_a_restart(tmp_path: Path) -> None:
    """`port set --mac-spoofing off` on a running switch: the port's next source is its MAC, stored;
    a forged one is dropped and counted in `stats`, the victim keeps its MAC; a restart keeps both."""
    def manager() -> SwitchManager:
        kernel = MemKernel()
        return SwitchManager(ConfigStore(tmp_path / "db"), netlink=kernel, port_kinds=kernel.port_kinds,
                             port_socket_dir=str(tmp_path / "p"))

    def drops(m: SwitchManager) -> int:
        return next(s.drops.get("drop_spoofed_mac", 0) for s in m.stats("s") if s.port == "vm")

    m = manager()
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        for name in ("vm", "victim"):
            m.add_port("s", PortSpec(name, PortKind.MEMORY, name))
        vm, victim = (cast(MemoryPort, m.port_object("s", n)) for n in ("vm", "victim"))
        victim.inject(frame(BCAST, VICTIM))
        wait_until(lambda: vm.sent, what="the victim's broadcast")
        info = m.set_port("s", "vm", PortSettings(mac_spoofing=False))
        assert (info.mac_spoofing, info.port_mac) == (False, None)
        vm.inject(frame(BCAST, OWN))
        wait_until(lambda: m.get_port("s", "vm").port_mac == "52:54:00:00:00:01", what="the first source adopted")
        vm.inject(frame(BCAST, VICTIM))
        wait_until(lambda: drops(m) == 1, what="the forged source to be counted")
        store = cast(ConfigStore, m.store)
        wait_until(lambda: [p.port_mac for p in store.load()[0][1] if p.name == "vm"] == ["52:54:00:00:00:01"],
                   what="the adopted MAC to be stored (on the datapath's next tick)")
        assert [e.port for e in m.fdb_show("s") if e.mac == "52:54:00:00:00:02"] == ["victim"]
    finally:
        m.shutdown()
    m = manager()
    try:
        m.restore()
        info = m.get_port("s", "vm")
        assert (info.mac_spoofing, info.port_mac) == (False, "52:54:00:00:00:01"), "stored"
        vm = cast(MemoryPort, m.port_object("s", "vm"))
        vm.inject(frame(BCAST, FORGED))
        wait_until(lambda: drops(m) == 1, what="the forged source after the restart to be dropped")
    finally:
        m.shutdown()

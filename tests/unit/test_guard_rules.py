"""The DHCP guard and the router guard in the core (no I/O): what they drop, what they let through,
tags, IPv6 extension headers, fragments and packets cut short, `trace` agreeing with `process`, and
the settings that switch them on (`port set --dhcp-guard/--router-guard`, REST, the store)."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import cast

import pytest
from fake_api import FakeApi, cli_on_one_port, stored_and_loaded
from memkernel import MemKernel

from guard_frames import GUARDED, PASSING, dhcp4, eth, icmp6, random_l3
from vswitch.control.manager import SwitchManager
from vswitch.control.model import InvalidRequest, PortKind, PortSettings, PortSpec, SwitchSpec, SwitchType, policy_for
from vswitch.control.store import ConfigStore
from vswitch.core.guards import GUARD_DHCP, GUARD_ROUTER, MAX_EXT_HEADERS
from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import SwitchCore
from vswitch.ports.memory import MemoryPort
from waiting import wait_until

BOTH = GUARD_DHCP | GUARD_ROUTER
ROGUE, CLIENT = bytes.fromhex("020000000066"), bytes.fromhex("020000000001")
BCAST = b"\xff" * 6
REASON = {"dhcp": Reason.DROP_DHCP_GUARD, "router": Reason.DROP_ROUTER_GUARD}


def switch(guards: int, **policy: object) -> SwitchCore:
    sw = SwitchCore()
    sw.add_port("vm1", PortPolicy(guards=guards, **policy))  # type: ignore[arg-type]
    sw.add_port("vm2", PortPolicy())
    sw.add_port("vm3", PortPolicy())
    return sw


@pytest.mark.parametrize(("guard", "pkt", "what"), GUARDED, ids=[w for _g, _p, w in GUARDED])
def test_each_server_or_router_message_is_dropped_by_its_guard_only(guard: str, pkt: bytes, what: str) -> None:
    frame = eth(BCAST, ROGUE, pkt)
    for guards in (GUARD_DHCP, GUARD_ROUTER, BOTH):
        sw = switch(guards)
        d = sw.process("vm1", frame, 0, 1.0)
        mine = guard == "any" or guards & (GUARD_DHCP if guard == "dhcp" else GUARD_ROUTER)
        if mine:
            want = REASON.get(guard) or (Reason.DROP_ROUTER_GUARD if guards & GUARD_ROUTER else Reason.DROP_DHCP_GUARD)
            assert (d.reason, d.out_ports, d.vlan) == (want, (), 1), f"{what}: dropped with guards {guards}"
            assert sw.fdb.lookup(ROGUE, 1, 1.0) is None, f"{what}: a dropped frame is never learned"
            assert sw.counters["vm1"].snapshot()["drops"] == {want.label: 1}
        else:
            assert d.reason is Reason.FLOOD_BROADCAST, f"{what}: the other guard lets it through"
    assert switch(0).process("vm1", frame, 0, 1.0).reason is Reason.FLOOD_BROADCAST, \
        f"{what}: with no guard on, it is forwarded"


@pytest.mark.parametrize(("pkt", "what"), PASSING, ids=[w for _p, w in PASSING])
def test_clients_solicitations_echoes_and_later_fragments_pass_both_guards(pkt: bytes, what: str) -> None:
    sw = switch(BOTH)
    d = sw.process("vm1", eth(BCAST, CLIENT, pkt), 0, 1.0)
    assert d.reason is Reason.FLOOD_BROADCAST and d.out_ports == ("vm2", "vm3"), what
    assert sw.fdb.lookup(CLIENT, 1, 1.0) is not None


def test_tagged_frames_are_read_after_their_tag() -> None:
    sw = SwitchCore()
    sw.add_port("trunk", PortPolicy.trunk({10, 20}, guards=BOTH))
    sw.add_port("vm", PortPolicy.access(10, guards=BOTH))
    sw.add_port("other", PortPolicy.trunk({10, 20}))
    offer, ra = dhcp4(2, 2), icmp6(134, (0,))
    for tpid in (0x8100, 0x88A8):
        tag = struct.pack("!HH", tpid, 10)
        assert sw.process("trunk", eth(BCAST, ROGUE, offer, tag=tag), 0, 1.0).reason is Reason.DROP_DHCP_GUARD
        assert sw.process("trunk", eth(BCAST, ROGUE, ra, tag=tag), 0, 1.0).reason is Reason.DROP_ROUTER_GUARD
    priority = struct.pack("!HH", 0x8100, 5 << 13)  # a priority tag on an access port
    d = sw.process("vm", eth(BCAST, ROGUE, offer, tag=priority), 0, 1.0)
    assert (d.reason, d.vlan) == (Reason.DROP_DHCP_GUARD, 10)
    # an inner tag is payload, as everywhere in the core: the ethertype after the outer tag is not IP
    qinq = struct.pack("!HHH", 0x88A8, 10, 0x8100) + struct.pack("!H", 10)
    assert sw.process("trunk", BCAST + ROGUE + qinq + b"\x08\x00" + offer, 0, 1.0).reason is Reason.FLOOD_BROADCAST


def test_the_extension_header_bound_and_packets_cut_short() -> None:
    sw = switch(GUARD_ROUTER)
    echo_behind = icmp6(128, (60,) * (MAX_EXT_HEADERS + 1))
    assert sw.process("vm1", eth(BCAST, ROGUE, icmp6(128, (60,) * MAX_EXT_HEADERS)), 0, 1.0).reason \
        is Reason.FLOOD_BROADCAST, "within the bound an echo is an echo"
    assert sw.process("vm1", eth(BCAST, ROGUE, echo_behind), 0, 1.0).reason is Reason.DROP_ROUTER_GUARD, \
        "beyond the bound the packet is dropped as guarded, whatever it carries"
    assert switch(0).process("vm1", eth(BCAST, ROGUE, echo_behind), 0, 1.0).reason is Reason.FLOOD_BROADCAST
    # an IPv4 first fragment whose own length stops before the BOOTP op: the op comes in the next one
    offer = dhcp4(2, 2)
    first = offer[:2] + struct.pack("!HH", 28, 0x2000) + offer[6:]
    assert switch(GUARD_DHCP).process("vm1", eth(BCAST, ROGUE, first), 0, 1.0).reason is Reason.DROP_DHCP_GUARD
    assert switch(GUARD_ROUTER).process("vm1", eth(BCAST, ROGUE, first), 0, 1.0).reason \
        is Reason.FLOOD_BROADCAST, "a UDP packet is the DHCP guard's only"
    # a request from 68 cut short is no server message: only port 67 is read further
    request = dhcp4(1, 1)
    assert switch(GUARD_DHCP).process("vm1", eth(BCAST, CLIENT, request[:2] + struct.pack("!HH", 28, 0x2000)
                                                + request[6:]), 0, 1.0).reason is Reason.FLOOD_BROADCAST


def test_trace_says_which_guard_dropped_what() -> None:
    sw = switch(BOTH)
    d, steps = sw.trace("vm1", eth(BCAST, ROGUE, dhcp4(2, 2)), 1.0)
    assert d.reason is Reason.DROP_DHCP_GUARD
    assert steps[-1].stage == "ingress" and steps[-1].reason is Reason.DROP_DHCP_GUARD
    assert steps[-1].result == "DHCP guard on port vm1 — DHCPv4 BOOTREPLY (OFFER) from 10.0.0.66: dropped"
    _, steps = sw.trace("vm1", eth(BCAST, ROGUE, icmp6(134, (0,))), 1.0)
    assert steps[-1].result == "router guard on port vm1 — ICMPv6 Router Advertisement from fe80::66: dropped"
    assert sw.counters["vm1"].snapshot()["drops"] == {}, "an explanation counts nothing"


def test_trace_and_process_agree_on_random_guarded_traffic() -> None:
    rng = random.Random(13)
    policies = {"g-dhcp": PortPolicy.access(10, guards=GUARD_DHCP), "g-router": PortPolicy.trunk({10, 20},
                native=10, guards=GUARD_ROUTER), "g-both": PortPolicy.access(20, guards=BOTH),
                "plain": PortPolicy.trunk({10, 20})}
    sw = SwitchCore()
    for name, policy in policies.items():
        sw.add_port(name, policy)
    macs = [bytes((2, 0, 0, 0, 0, i)) for i in range(6)]
    seen = set()
    for i in range(3000):
        ethertype, pkt = random_l3(rng)
        tag = rng.choice((b"", b"", struct.pack("!HH", 0x8100, rng.choice((0, 10, 20)))))
        frame = rng.choice(macs + [BCAST]) + rng.choice(macs) + tag + ethertype + pkt
        port = rng.choice(list(policies))
        explained, _ = sw.trace(port, frame, float(i))
        decided = sw.process(port, frame, 0, float(i))
        assert explained == decided, f"frame {frame.hex()} on {port}"
        seen.add(decided.reason)
    assert {Reason.DROP_DHCP_GUARD, Reason.DROP_ROUTER_GUARD, Reason.FLOOD_BROADCAST} <= seen


def test_a_port_with_no_guard_is_decided_as_before() -> None:
    """The guard stage is one test of the port's flag: a port without guards forwards every
    message a guard would drop."""
    sw = switch(0)
    for _guard, pkt, what in GUARDED:
        assert sw.process("vm1", eth(BCAST, ROGUE, pkt), 0, 1.0).reason is Reason.FLOOD_BROADCAST, what


# ---- the settings -------------------------------------------------------------------------------

def test_spec_settings_and_policy() -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1")
    assert (spec.dhcp_guard, spec.router_guard, policy_for(spec).guards) == (False, False, 0), "off, as Hyper-V"
    guarded = PortSettings(dhcp_guard=True).apply(spec)
    assert policy_for(guarded).guards == GUARD_DHCP
    assert policy_for(PortSettings(router_guard=True).apply(guarded)).guards == BOTH
    assert PortSpec.parse(guarded.to_dict()) == guarded
    with pytest.raises(InvalidRequest, match="dhcp_guard: 'on' is not true or false"):
        PortSettings.parse({"dhcp_guard": "on"})
    with pytest.raises(InvalidRequest, match="router_guard"):
        PortSpec.parse({**spec.to_dict(), "router_guard": 1})


def test_the_guards_are_stored(tmp_path: Path) -> None:
    spec = PortSpec("vm1", PortKind.MEMORY, "vm1", dhcp_guard=True, router_guard=True)
    assert stored_and_loaded(tmp_path / "db", spec) == [spec]


def test_cli_port_set_and_show_the_guards() -> None:
    api = FakeApi()
    run = cli_on_one_port(api)

    out = run("port", "set", "s", "vm1", "--dhcp-guard", "on", "--router-guard", "on")
    assert "dhcp guard on, router guard on" in out
    settings = api.calls[-1][1][2]
    assert (settings.dhcp_guard, settings.router_guard, settings.learning) == (True, True, None)
    shown = run("port", "show", "s", "vm1")
    assert "dhcp guard" in shown and "router guard" in shown
    assert '"dhcp_guard": true' in run("port", "show", "s", "vm1", "--json")
    bad = run("port", "set", "s", "vm1", "--dhcp-guard", "maybe", ok=False)
    assert bad.exit_code != 0 and "--dhcp-guard" in bad.output
    assert api.get_port("s", "vm1").dhcp_guard, "a refused value changes nothing"


def test_set_live_and_kept_across_a_restart(tmp_path: Path) -> None:
    """`port set --dhcp-guard on` on a running switch: the next OFFER from that port is dropped and
    counted in `stats`, the other ports forward on; a restart from the store brings the guard back."""
    def manager() -> SwitchManager:
        kernel = MemKernel()
        m = SwitchManager(ConfigStore(tmp_path / "db"), netlink=kernel, port_kinds=kernel.port_kinds,
                          port_socket_dir=str(tmp_path / "p"))
        return m

    def drops(m: SwitchManager) -> dict[str, int]:
        return {s.port: s.drops.get("drop_dhcp_guard", 0) for s in m.stats("s")}

    offer = eth(BCAST, ROGUE, dhcp4(2, 2))
    m = manager()
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        for name in ("rogue", "client"):
            m.add_port("s", PortSpec(name, PortKind.MEMORY, name))
        rogue, client = (cast(MemoryPort, m.port_object("s", n)) for n in ("rogue", "client"))
        rogue.inject(offer)
        wait_until(lambda: client.sent, what="the OFFER to reach the client while the guard is off")
        info = m.set_port("s", "rogue", PortSettings(dhcp_guard=True))
        assert (info.dhcp_guard, info.router_guard) == (True, False)
        rogue.inject(offer)
        client.inject(eth(BCAST, CLIENT, dhcp4(1, 1)))
        wait_until(lambda: len(rogue.sent) == 1, what="the client's DISCOVER to reach the rogue")
        wait_until(lambda: drops(m)["rogue"] == 1, what="the guarded OFFER to be counted")
        assert len(client.take()) == 1, "the client got the first OFFER only"
    finally:
        m.shutdown()
    m = manager()
    try:
        m.restore()
        assert m.get_port("s", "rogue").dhcp_guard, "the guard is stored"
        rogue, client = (cast(MemoryPort, m.port_object("s", n)) for n in ("rogue", "client"))
        rogue.inject(offer)
        wait_until(lambda: drops(m)["rogue"] == 1, what="the OFFER after the restart to be dropped")
        assert not client.sent
    finally:
        m.shutdown()


def test_trace_with_a_payload_shows_the_guard(tmp_path: Path) -> None:
    """`vswitch trace --payload HEX`: the frame after its MAC addresses, so a user sees a guard's drop."""
    kernel = MemKernel()
    m = SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds, port_socket_dir=str(tmp_path / "p"))
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        for name in ("vm1", "vm2"):
            m.add_port("s", PortSpec(name, PortKind.MEMORY, name, dhcp_guard=name == "vm2"))
        offer = eth(b"", b"", dhcp4(2, 2)).hex()
        t = m.trace("s", "vm2", "02:00:00:00:00:66", "ff:ff:ff:ff:ff:ff", 0, offer)
        assert (t.reason, t.out_ports, t.vlan) == ("DROP_DHCP_GUARD", [], 1)
        assert t.steps[-1].result == "DHCP guard on port vm2 — DHCPv4 BOOTREPLY (OFFER) from 10.0.0.66: dropped"
        assert m.trace("s", "vm1", "02:00:00:00:00:66", "ff:ff:ff:ff:ff:ff", None, offer).reason \
            == "FLOOD_BROADCAST", "vm1 has no guard"
        assert m.trace("s", "vm2", "02:00:00:00:00:66", "ff:ff:ff:ff:ff:ff").reason == "FLOOD_BROADCAST", \
            "the default payload is no DHCP message"
    finally:
        m.shutdown()

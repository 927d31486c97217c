"""Port ACLs and extended ACLs in the core (no I/O): most specific wins (MAC: exact over ANY; IP: the
longest remote prefix, then the longest local one), deny wins a tie, meter counts and never decides,
extended rules by weight, stateful return traffic, idle expiry, the connection table full, IPv6, the
"in" direction filtering floods and unicast per output port, `trace` agreeing with `process` and naming
the rule; and the control plane (`acl add/list/remove`, the store, a restart) on memory ports."""

from __future__ import annotations

import ipaddress
import random
import struct
from pathlib import Path
from typing import cast

import pytest
from fake_api import FakeApi, cli_on_one_port, private
from hypothesis import given, settings
from hypothesis import strategies as st
from memkernel import MemKernel

from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    AclRuleSpec,
    Conflict,
    InvalidRequest,
    NotFound,
    PortKind,
    PortSettings,
    PortSpec,
    SwitchSpec,
    SwitchType,
)
from vswitch.control.store import ConfigStore
from vswitch.core import acl
from vswitch.core.acl import DIR_IN, DIR_OUT, ConnTable, PortAcl, Rule, parse_net
from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import SwitchCore
from vswitch.ports.memory import MemoryPort
from waiting import wait_until

VM1, VM2, VM3 = bytes.fromhex("525400000001"), bytes.fromhex("525400000002"), bytes.fromhex("525400000003")
BCAST = b"\xff" * 6


def ip4(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def ip6(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed


def l4(proto: int, sport: int, dport: int) -> bytes:
    if proto in (6, 17):
        return struct.pack("!HH", sport, dport) + bytes(16)
    return bytes((8, 0, 0, 0)) + bytes(16)   # ICMP echo


def frame(dst: bytes, src: bytes, sip: str, dip: str, proto: int = 6, sport: int = 40000, dport: int = 80,
          pad: int = 0) -> bytes:
    """An Ethernet frame of an IPv4 or IPv6 packet (by the address), checksums zero (nothing reads them)."""
    body = l4(proto, sport, dport) + bytes(pad)
    if ":" in sip:
        hdr = struct.pack("!IHBB16s16s", 0x60000000, len(body), 58 if proto == 1 else proto, 64, ip6(sip), ip6(dip))
        return dst + src + b"\x86\xdd" + hdr + body
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, proto, 0, ip4(sip), ip4(dip))
    return dst + src + b"\x08\x00" + hdr + body


def rule(rid: int, direction: str, action: str, **kw: object) -> Rule:
    return AclRuleSpec(direction, action, id=rid, **kw).rule()  # type: ignore[arg-type]


def core(vm1_rules: tuple[Rule, ...] = (), vm2_rules: tuple[Rule, ...] = ()) -> SwitchCore:
    sw = SwitchCore()
    sw.add_port("vm1", PortPolicy(acl=PortAcl(vm1_rules) if vm1_rules else None))
    sw.add_port("vm2", PortPolicy(acl=PortAcl(vm2_rules) if vm2_rules else None))
    sw.add_port("vm3", PortPolicy())
    for i, (p, mac) in enumerate((("vm1", VM1), ("vm2", VM2), ("vm3", VM3))):  # everyone learned
        sw.process(p, VM1 + mac + b"\x08\x06" + bytes(46) if p != "vm1" else BCAST + mac + b"\x08\x06" + bytes(46),
                   0, 0.1 * i)
    return sw


def out(sw: SwitchCore, port: str, f: bytes, now: float = 1.0) -> tuple[Reason, tuple[object, ...]]:
    """process and trace of `f` on `port`: they agree, and the answer."""
    traced, _ = sw.trace(port, f, now)
    d = sw.process(port, f, 0, now)
    assert (traced.reason, traced.out_ports) == (d.reason, d.out_ports), "trace says what process does"
    return d.reason, d.out_ports


# ---- simple ACLs: most specific wins ------------------------------------------------------------

def test_longest_remote_prefix_wins_either_way() -> None:
    sw = core((rule(1, "out", "deny", remote_ip="10.0.0.0/8"), rule(2, "out", "allow", remote_ip="10.1.0.0/16")))
    assert out(sw, "vm1", frame(VM2, VM1, "192.168.0.1", "10.1.2.3"))[0] is Reason.FORWARD_LEARNED
    assert out(sw, "vm1", frame(VM2, VM1, "192.168.0.1", "10.2.0.1"))[0] is Reason.DROP_ACL
    assert out(sw, "vm1", frame(VM2, VM1, "192.168.0.1", "172.16.0.1"))[0] is Reason.FORWARD_LEARNED, \
        "nothing matching: allowed"
    sw = core((rule(1, "out", "allow", remote_ip="any"), rule(2, "out", "deny", remote_ip="10.1.2.3")))
    assert out(sw, "vm1", frame(VM2, VM1, "192.168.0.1", "10.1.2.3"))[0] is Reason.DROP_ACL
    assert out(sw, "vm1", frame(VM2, VM1, "192.168.0.1", "10.1.2.4"))[0] is Reason.FORWARD_LEARNED


def test_deny_wins_a_tie_and_the_local_prefix_breaks_one() -> None:
    sw = core((rule(1, "out", "allow", remote_ip="10.0.0.0/8"), rule(2, "out", "deny", remote_ip="10.0.0.0/8")))
    assert out(sw, "vm1", frame(VM2, VM1, "192.168.0.1", "10.0.0.1"))[0] is Reason.DROP_ACL
    sw = core((rule(1, "out", "deny", remote_ip="10.0.0.0/8"),
               rule(2, "out", "allow", remote_ip="10.0.0.0/8", local_ip="192.168.0.0/24")))
    assert out(sw, "vm1", frame(VM2, VM1, "192.168.0.1", "10.0.0.1"))[0] is Reason.FORWARD_LEARNED
    assert out(sw, "vm1", frame(VM2, VM1, "192.168.1.1", "10.0.0.1"))[0] is Reason.DROP_ACL


def test_mac_and_ip_lists_decide_apart_and_either_denies() -> None:
    sw = core((rule(1, "out", "deny", remote_mac="any"), rule(2, "out", "allow", remote_mac=":".join(
        f"{b:02x}" for b in VM2))))
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2"))[0] is Reason.FORWARD_LEARNED, "exact MAC wins"
    assert out(sw, "vm1", frame(VM3, VM1, "10.0.0.1", "10.0.0.3"))[0] is Reason.DROP_ACL
    sw = core((rule(1, "out", "allow", remote_mac="any"), rule(2, "out", "deny", remote_ip="10.0.0.3")))
    assert out(sw, "vm1", frame(VM3, VM1, "10.0.0.1", "10.0.0.3"))[0] is Reason.DROP_ACL, "the IP list denies"
    arp = VM3 + VM1 + b"\x08\x06" + bytes(28)
    assert out(sw, "vm1", arp)[0] is Reason.FORWARD_LEARNED, "an IP rule does not match ARP"


def test_meter_counts_bytes_and_never_decides() -> None:
    sw = core((rule(1, "out", "meter", remote_ip="10.0.0.0/8"), rule(2, "out", "meter", remote_ip="10.0.0.2"),
               rule(3, "out", "deny", remote_ip="10.0.0.9")))
    a, b = frame(VM2, VM1, "10.0.0.1", "10.0.0.2", pad=100), frame(VM2, VM1, "10.0.0.1", "10.0.0.5")
    for f in (a, a, b):
        assert sw.process("vm1", f, 0, 1.0).reason is Reason.FORWARD_LEARNED
    assert sw.acl_counts("vm1") == {1: (1, len(b)), 2: (2, 2 * len(a)), 3: (0, 0)}, "the most specific meter counts"
    assert sw.process("vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.9"), 0, 1.0).reason is Reason.DROP_ACL
    assert sw.acl_counts("vm1")[3][0] == 1 and sw.acl_counts("vm1")[1][0] == 2
    sw.trace("vm1", a, 1.0)
    assert sw.acl_counts("vm1")[2] == (2, 2 * len(a)), "trace counts nothing"


def test_direction_in_filters_each_output_port_of_a_flood_and_a_unicast() -> None:
    sw = core(vm2_rules=(rule(1, "in", "deny", remote_ip="10.0.0.66"),))
    f = frame(BCAST, VM3, "10.0.0.66", "10.0.0.255", proto=17)
    assert out(sw, "vm3", f) == (Reason.FLOOD_BROADCAST, ("vm1",)), "vm2 left out, vm1 still gets it"
    assert out(sw, "vm3", frame(BCAST, VM3, "10.0.0.67", "10.0.0.255", proto=17)) == (Reason.FLOOD_BROADCAST,
                                                                                     ("vm1", "vm2"))
    assert out(sw, "vm3", frame(VM2, VM3, "10.0.0.66", "10.0.0.2"))[0] is Reason.DROP_ACL
    assert sw.counters["vm3"].drops[Reason.DROP_ACL] == 1
    assert sw.acl_counts("vm2")[1][0] == 2
    # the rule's "out" side is untouched: vm2 may send to 10.0.0.66
    assert out(sw, "vm2", frame(VM3, VM2, "10.0.0.2", "10.0.0.66"))[0] is Reason.FORWARD_LEARNED


def test_both_directions_and_trace_names_the_rule() -> None:
    sw = core(vm2_rules=(rule(3, "both", "deny", remote_ip="10.0.0.0/8"),))
    assert out(sw, "vm2", frame(VM1, VM2, "192.168.0.2", "10.9.9.9"))[0] is Reason.DROP_ACL
    assert out(sw, "vm1", frame(VM2, VM1, "10.9.9.9", "192.168.0.2"))[0] is Reason.DROP_ACL
    _, steps = sw.trace("vm2", frame(VM1, VM2, "192.168.0.2", "10.9.9.9"), 1.0)
    assert steps[-1].reason is Reason.DROP_ACL
    assert steps[-1].result == ("ACL #3 on port vm2 (both, deny remote 10.0.0.0/8) — most specific match: "
                                "dropped")
    _, steps = sw.trace("vm1", frame(VM2, VM1, "10.9.9.9", "192.168.0.2"), 1.0)
    assert [s.result for s in steps if s.reason is Reason.DROP_ACL] == [
        "port vm2: ACL #3 on port vm2 (both, deny remote 10.0.0.0/8) — most specific match: not delivered"]


def test_ipv6_rules_and_any_matching_both_versions() -> None:
    sw = core((rule(1, "out", "deny", remote_ip="2001:db8::/32"), rule(2, "out", "allow", remote_ip="2001:db8:1::/48"),
               rule(3, "out", "deny", remote_ip="0.0.0.0/0")))
    assert out(sw, "vm1", frame(VM2, VM1, "2001:db8:1::1", "2001:db8:1::2"))[0] is Reason.FORWARD_LEARNED
    assert out(sw, "vm1", frame(VM2, VM1, "2001:db8:1::1", "2001:db8:2::2"))[0] is Reason.DROP_ACL
    assert out(sw, "vm1", frame(VM2, VM1, "fe80::1", "fe80::2"))[0] is Reason.FORWARD_LEARNED, "0.0.0.0/0 is IPv4 only"
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2"))[0] is Reason.DROP_ACL
    sw = core((rule(1, "out", "deny", remote_ip="any"),))
    assert out(sw, "vm1", frame(VM2, VM1, "fe80::1", "fe80::2"))[0] is Reason.DROP_ACL
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2"))[0] is Reason.DROP_ACL


# ---- extended ACLs -------------------------------------------------------------------------------

def test_the_highest_weight_decides() -> None:
    sw = core((rule(1, "out", "deny", weight=1), rule(2, "out", "allow", weight=10, protocol="tcp", remote_port="80"),
               rule(3, "out", "allow", weight=5, protocol="udp", remote_port="53", remote_ip="10.0.0.0/8")))
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 40000, 80))[0] is Reason.FORWARD_LEARNED
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 40000, 81))[0] is Reason.DROP_ACL
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 17, 5353, 53))[0] is Reason.FORWARD_LEARNED
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "192.168.0.2", 17, 5353, 53))[0] is Reason.DROP_ACL
    _, steps = sw.trace("vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 1), 1.0)
    assert steps[-1].result.startswith("ACL #1 on port vm1 (out, weight 1, deny any protocol) — weight 1, the "
                                       "highest matching")
    sw = core((rule(1, "out", "deny", weight=20, protocol="icmp"), rule(2, "out", "allow", weight=30,
                                                                        protocol="icmp", remote_ip="10.0.0.2")))
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 1))[0] is Reason.FORWARD_LEARNED
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.3", 1))[0] is Reason.DROP_ACL
    assert out(sw, "vm1", frame(VM2, VM1, "fe80::1", "fe80::2", 1))[0] is Reason.DROP_ACL, "icmp is ICMPv6 too"


def stateful_switch(timeout: int = 30) -> SwitchCore:
    """vm1 may open TCP to port 80 (stateful) and nothing may come in otherwise."""
    return core((rule(1, "out", "allow", weight=10, protocol="tcp", remote_port="80", stateful=True,
                      idle_timeout=timeout),
                 rule(2, "in", "deny", weight=1)))


def test_stateful_allow_admits_the_return_traffic_of_its_flow_only() -> None:
    sw = stateful_switch()
    reply = frame(VM1, VM2, "10.0.0.2", "10.0.0.1", 6, 80, 40000)
    assert out(sw, "vm2", reply)[0] is Reason.DROP_ACL, "no flow yet"
    assert out(sw, "vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 40000, 80))[0] is Reason.FORWARD_LEARNED
    assert len(sw.conns) == 1
    assert out(sw, "vm2", reply, 2.0)[0] is Reason.FORWARD_LEARNED, "the flow's return traffic"
    assert out(sw, "vm2", frame(VM1, VM2, "10.0.0.2", "10.0.0.1", 6, 80, 40001), 2.0)[0] is Reason.DROP_ACL
    assert out(sw, "vm2", frame(VM1, VM2, "10.0.0.3", "10.0.0.1", 6, 80, 40000), 2.0)[0] is Reason.DROP_ACL
    assert out(sw, "vm2", frame(VM1, VM2, "10.0.0.2", "10.0.0.1", 17, 80, 40000), 2.0)[0] is Reason.DROP_ACL
    assert sw.acl_counts("vm1")[1][0] == 2, "the return traffic counts on the stateful rule"


def test_trace_does_not_open_a_flow() -> None:
    sw = stateful_switch()
    sw.trace("vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 40000, 80), 1.0)
    assert len(sw.conns) == 0


def test_an_idle_flow_expires_on_the_cores_clock_and_traffic_keeps_it() -> None:
    sw = stateful_switch(timeout=30)
    reply = frame(VM1, VM2, "10.0.0.2", "10.0.0.1", 6, 80, 40000)
    sw.process("vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 40000, 80), 0, 1.0)
    assert out(sw, "vm2", reply, 25.0)[0] is Reason.FORWARD_LEARNED
    assert out(sw, "vm2", reply, 50.0)[0] is Reason.FORWARD_LEARNED, "the reply at 25 s kept it alive"
    assert out(sw, "vm2", reply, 80.5)[0] is Reason.DROP_ACL, "idle 30.5 s: gone"
    assert len(sw.conns) == 0
    sw.process("vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 40000, 80), 0, 100.0)
    sw.expire(120.0)
    assert len(sw.conns) == 1
    sw.expire(131.0)
    assert len(sw.conns) == 0 and sw.conns.expired == 2


def test_a_full_table_evicts_the_least_recently_seen_flow() -> None:
    sw = stateful_switch()
    sw.conns = ConnTable(size=3)
    for i in range(3):
        sw.process("vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 40000 + i, 80), 0, 1.0 + i)
    sw.process("vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 40000, 80), 0, 5.0)   # 40000 is fresh again
    sw.process("vm1", frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 6, 41000, 80), 0, 6.0)   # evicts 40001
    assert len(sw.conns) == 3 and sw.conns.evicted == 1

    def back(sport: int) -> Reason:
        return sw.process("vm2", frame(VM1, VM2, "10.0.0.2", "10.0.0.1", 6, 80, sport), 0, 7.0).reason
    assert back(40001) is Reason.DROP_ACL, "the evicted flow's return traffic meets the rules"
    assert [back(p) for p in (40000, 40002, 41000)] == [Reason.FORWARD_LEARNED] * 3


def test_stateful_ipv6_and_removing_the_rule_ends_its_flows() -> None:
    sw = stateful_switch()
    sw.process("vm1", frame(VM2, VM1, "2001:db8::1", "2001:db8::2", 6, 40000, 80), 0, 1.0)
    reply = frame(VM1, VM2, "2001:db8::2", "2001:db8::1", 6, 80, 40000)
    assert out(sw, "vm2", reply)[0] is Reason.FORWARD_LEARNED
    sw.set_policy("vm1", PortPolicy(acl=PortAcl((rule(2, "in", "deny", weight=1),))))
    assert len(sw.conns) == 0
    assert out(sw, "vm2", reply)[0] is Reason.DROP_ACL


def test_a_port_without_acls_keeps_cached_decisions() -> None:
    sw = core()
    f = frame(VM2, VM1, "10.0.0.1", "10.0.0.2")
    assert sw.process("vm1", f, 0, 1.0) is sw.process("vm1", f, 0, 1.0), "the cached Decision, no allocation"
    assert sw._ingress["vm1"][5] is False, "no ACL anywhere: the port is not screened"
    sw = core(vm2_rules=(rule(1, "in", "deny", remote_ip="10.0.0.66"),))
    assert sw._ingress["vm3"][5] is True, "an 'in' ACL anywhere screens every port"
    g = frame(VM1, VM3, "10.0.0.3", "10.0.0.1")
    assert sw.process("vm3", g, 0, 1.0) is sw.process("vm3", g, 0, 1.0), "to a port without ACLs: cached"


_NETS = st.sampled_from(["any", "10.0.0.0/8", "10.0.0.0/24", "10.0.0.2", "0.0.0.0/0", "2001:db8::/32", "::/0"])
_RULES = st.lists(st.tuples(st.sampled_from(["in", "out", "both"]), st.sampled_from(["allow", "deny", "meter"]),
                            _NETS, st.sampled_from([None, "10.0.0.1", "192.168.0.0/16"])), max_size=6)


@settings(max_examples=60, deadline=None)
@given(_RULES, st.lists(st.tuples(st.sampled_from(["vm1", "vm2", "vm3"]), st.integers(0, 2 ** 32 - 1)),
                        max_size=12))
def test_trace_agrees_with_process_with_random_rules(specs: list[tuple[str, str, str, str | None]],
                                                     frames: list[tuple[str, int]]) -> None:
    rules = []
    for i, (d, a, r, loc) in enumerate(specs):
        try:
            rules.append(rule(i + 1, d, a, remote_ip=r, local_ip=loc))
        except InvalidRequest:
            pass  # an IPv4 local with an IPv6 remote
    rules.append(rule(50, "out", "allow", weight=5, protocol="tcp", stateful=True))
    rules.append(rule(51, "in", "deny", weight=4, protocol="tcp"))
    sw = core(tuple(rules), tuple(rules))
    macs = {"vm1": VM1, "vm2": VM2, "vm3": VM3}
    rng = random.Random(0)
    for n, (port, seed) in enumerate(frames):
        rng.seed(seed)
        dst = rng.choice([VM1, VM2, VM3, BCAST])
        v6 = rng.random() < 0.3
        a, b = ("2001:db8::1", "2001:db8::2") if v6 else (f"10.0.0.{rng.randint(1, 3)}",
                                                          f"10.0.0.{rng.randint(1, 3)}")
        f = frame(dst, macs[port], a, b, rng.choice([6, 17, 1]), rng.choice([80, 40000]), rng.choice([80, 40000]))
        out(sw, port, f, 1.0 + n)


# ---- the rule's text, the model ------------------------------------------------------------------

def test_rule_validation_names_the_field() -> None:
    with pytest.raises(InvalidRequest, match="remote_mac: a port ACL names a remote MAC or a remote IP"):
        AclRuleSpec("out", "deny")
    with pytest.raises(InvalidRequest, match="remote_ip: 'x' is not an IP address"):
        AclRuleSpec("out", "deny", remote_ip="x")
    with pytest.raises(InvalidRequest, match="action: a meter rule is IP-based"):
        AclRuleSpec("out", "meter", remote_mac="any")
    with pytest.raises(InvalidRequest, match="remote_port: only a tcp, udp or sctp"):
        AclRuleSpec("out", "allow", weight=3, protocol="icmp", remote_port="80")
    with pytest.raises(InvalidRequest, match="stateful: only an allow rule"):
        AclRuleSpec("out", "deny", weight=3, stateful=True)
    with pytest.raises(InvalidRequest, match="direction: an extended ACL is in or out"):
        AclRuleSpec("both", "allow", weight=3)
    with pytest.raises(InvalidRequest, match="remote_port: '80-70' is not a port"):
        AclRuleSpec("out", "allow", weight=3, protocol="tcp", remote_port="80-70")
    with pytest.raises(InvalidRequest, match="local_ip: .* not the same IP version"):
        AclRuleSpec("out", "allow", remote_ip="10.0.0.0/8", local_ip="2001:db8::1")
    assert AclRuleSpec("out", "allow", weight=3, protocol="6").protocol == "tcp"
    assert parse_net("10.1.2.3/8") == acl.Net(4, 0x0A000000, 8) and str(parse_net("2001:db8::1/32")) == "2001:db8::/32"


def test_port_ranges_and_non_first_fragments() -> None:
    r = rule(1, "out", "deny", weight=3, protocol="udp", remote_port="1000-2000")
    p = acl.read_packet(frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 17, 5, 1500), 0, 14, DIR_OUT)
    assert acl.extended_match(r, p) and (p.lport, p.rport) == (5, 1500)
    f = bytearray(frame(VM2, VM1, "10.0.0.1", "10.0.0.2", 17, 5, 1500))
    f[14 + 6] = 0x00
    f[14 + 7] = 0x10   # fragment offset 16: no ports
    p = acl.read_packet(bytes(f), 0, 14, DIR_IN)
    assert p.rport is None and not acl.extended_match(r, p)
    assert acl.read_packet(b"\x00" * 20, 0, 14, DIR_IN).version == 0, "cut short: not IP, never raises"


# ---- the control plane ---------------------------------------------------------------------------

def test_acl_add_list_remove_stored_live_and_restored(tmp_path: Path) -> None:
    def manager() -> SwitchManager:
        kernel = MemKernel()
        return SwitchManager(ConfigStore(tmp_path / "db"), netlink=kernel, port_kinds=kernel.port_kinds,
                             port_socket_dir=str(tmp_path / "p"))

    def drops(m: SwitchManager) -> int:
        return next(s.drops.get("drop_acl", 0) for s in m.stats("s") if s.port == "a")

    f = frame(VM2, VM1, "192.168.0.1", "10.0.0.2")
    m = manager()
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        for name in ("a", "b"):
            m.add_port("s", PortSpec(name, PortKind.MEMORY, name))
        m.acl_add("s", "a", AclRuleSpec("out", "deny", remote_ip="10.0.0.0/8"))
        m.acl_add("s", "a", AclRuleSpec("out", "allow", weight=100, protocol="tcp", remote_port="22",
                                        stateful=True, idle_timeout=60))
        m.acl_add("s", "b", AclRuleSpec("in", "meter", remote_ip="any"))
        a = cast(MemoryPort, m.port_object("s", "a"))
        a.inject(f)
        wait_until(lambda: drops(m) == 1, what="the denied frame to be counted")
        rows = m.acl_list("s")
        assert [(r.port, r.id, r.hits, r.bytes) for r in rows] == [("a", 1, 1, len(f)), ("a", 2, 0, 0),
                                                                  ("b", 1, 0, 0)]
        assert rows[1].rule == "out, weight 100, allow tcp remote port 22, stateful (idle 60 s)"
        assert m.get_port("s", "a").acl_rules == 2
        with pytest.raises(NotFound):
            m.acl_add("s", "zz", AclRuleSpec("out", "deny", remote_ip="any"))
        with pytest.raises(Conflict, match="#1"):
            m.acl_add("s", "a", AclRuleSpec("out", "deny", remote_ip="10.0.0.0/8"))
        with pytest.raises(Conflict):
            m.acl_add("s", "a", AclRuleSpec("out", "deny", weight=100))
        m.acl_remove("s", "b", "1")
        assert m.acl_list("s", "b") == []
        m.set_port("s", "a", PortSettings(dhcp_guard=True))
        assert [r.id for r in m.acl_list("s", "a")] == [1, 2], "another setting keeps the rules"
        assert [r.hits for r in m.acl_list("s", "a")] == [1, 0], "and their counters"
    finally:
        m.shutdown()
    m = manager()
    try:
        m.restore()
        assert [(r.port, r.id, r.rule) for r in m.acl_list("s")] == [
            ("a", 1, "out, deny remote 10.0.0.0/8"),
            ("a", 2, "out, weight 100, allow tcp remote port 22, stateful (idle 60 s)")]
        cast(MemoryPort, m.port_object("s", "a")).inject(f)
        wait_until(lambda: drops(m) == 1, what="the rule restored live")
        assert m.acl_add("s", "a", AclRuleSpec("in", "deny", remote_mac="any")).id == 3
        t = m.trace("s", "a", "52:54:00:00:00:01", "52:54:00:00:00:02", payload=f[12:].hex())
        assert (t.reason, t.out_ports) == ("DROP_ACL", [])
        assert t.steps[-1].result == "ACL #1 on port a (out, deny remote 10.0.0.0/8) — most specific match: dropped"
        doc = m.config_export()
        assert [len(p.acls) for p in doc.switches[0].ports or ()] == [3, 0], "exported with the ports"
    finally:
        m.shutdown()


def test_cli_acl_add_list_remove_by_selector() -> None:
    api = FakeApi()
    run = cli_on_one_port(api)
    assert "ACL #1" in run("acl", "add", "s", "vm1", "--direction", "out", "--action", "deny", "--remote-ip",
                           "10.0.0.0/8")
    run("acl", "add", "s", "vm1", "--direction", "in", "--action", "allow", "--weight", "10", "--protocol", "tcp",
        "--remote-port", "80", "--stateful")
    assert "out, deny remote 10.0.0.0/8" in run("acl", "list", "s")
    assert "2 rules (vswitch acl list)" in run("port", "show", "s", "vm1")
    assert '"hits": 0' in run("acl", "list", "s", "vm1", "--json")
    run("acl", "remove", "s", "vm1", "--direction", "out", "--action", "deny", "--remote-ip", "10.0.0.0/8")
    run("acl", "remove", "s", "vm1", "--weight", "10", "--direction", "in")
    assert api.acl_list("s") == []
    r = run("acl", "add", "s", "vm1", "--direction", "out", "--action", "deny", ok=False)
    assert r.exit_code != 0 and "remote_mac" in r.output


def test_config_apply_makes_a_ports_acls_what_the_file_lists(tmp_path: Path) -> None:
    from dataclasses import replace

    from vswitch.control.config_file import ConfigDocument, dump_yaml, parse_yaml

    kernel = MemKernel()
    m = SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds, port_socket_dir=str(tmp_path / "p"))
    try:
        m.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        m.add_port("s", PortSpec("a", PortKind.MEMORY, "a"))
        m.acl_add("s", "a", AclRuleSpec("out", "deny", remote_ip="10.0.0.0/8"))
        m.acl_add("s", "a", AclRuleSpec("in", "meter", remote_ip="any"))
        doc = m.config_export()
        text = dump_yaml(doc)
        assert "acls:" in text and "remote_ip: 10.0.0.0/8" in text
        assert parse_yaml(text, "export") == doc, "the exported rules read back the same"
        sw = doc.switches[0]
        (a,) = sw.ports or ()
        assert [r.id for r in a.acls] == [1, 2]
        # the file keeps the meter, drops the deny and adds a rule written without an id
        want_a = a.updated({"acls": [a.acls[1].to_dict(), {"direction": "out", "action": "allow", "weight": 5,
                                                            "protocol": "udp"}]})
        want = ConfigDocument([replace(sw, ports=[want_a])])
        plan = m.config_apply(want, dry_run=True)
        assert [s.action for s in plan.steps] == ["set-acls"]
        assert plan.steps[0].text == ("port s/a: remove ACL #1 (out, deny remote 10.0.0.0/8), add ACL (out, weight 5, "
                                      "allow udp)")
        assert [r.id for r in m.acl_list("s")] == [1, 2], "a dry run changes nothing"
        m.config_apply(want)
        assert [(r.id, r.rule) for r in m.acl_list("s")] == [(2, "in, meter remote any"),
                                                             (3, "out, weight 5, allow udp")]
        assert m.config_apply(want).steps == [], "applying it again changes nothing"
    finally:
        m.shutdown()


@pytest.mark.parametrize(("body", "needle"), [
    ({"direction": "out", "action": "deny"}, "remote_mac: a port ACL names a remote MAC or a remote IP"),
    ({"direction": "sideways", "action": "deny", "remote_ip": "any"}, "direction: 'sideways' is not a direction"),
    ({"direction": "out", "action": "deny", "remote_ip": "10.0.0.300/8"}, "remote_ip: '10.0.0.300/8' is not"),
    ({"direction": "in", "action": "allow", "weight": 0}, "weight: 0 is not a weight (1-65535)"),
    ({"direction": "in", "action": "allow", "weight": 5, "protocol": "gre"}, "protocol: 'gre' is not a protocol"),
    ({"direction": "in", "action": "allow", "weight": 5, "idle_timeout": 9}, "idle_timeout: only a stateful rule"),
    ({"direction": "in", "action": "deny", "remote_ip": "any", "bogus": 1}, "bogus: unknown ACL rule field"),
])
def test_rest_refuses_a_bad_rule_naming_the_field_and_changes_nothing(body: dict[str, object], needle: str) -> None:
    from fastapi.testclient import TestClient

    from vswitch.frontends.rest import make_app

    api = FakeApi()
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    client = TestClient(make_app(api))
    r = client.post("/switches/s/ports/vm1/acls", json=body)
    assert r.status_code == 400 and needle in r.text, r.text
    assert api.acl_list("s") == []
    ok = client.post("/switches/s/ports/vm1/acls", json={"direction": "in", "action": "deny", "remote_ip": "any"})
    assert ok.status_code == 201 and ok.json()["id"] == 1
    assert client.get("/switches/s/acls").json()[0]["rule"] == "in, deny remote any"
    assert client.delete("/switches/s/ports/vm1/acls/x1").status_code in (400, 404, 422)
    assert client.delete("/switches/s/ports/vm1/acls/1").status_code == 204
    assert client.get("/switches/s/ports/vm1").json()["acl_rules"] == 0

"""Port ACLs and extended ACLs, told frame by frame (memory ports; as root again on veth cables on each
datapath): the most specific rule decides what a VM sends, its "in" rules take it out of floods and
unicasts meant for it, a denied frame is never learned, and a stateful rule lets the answers of the
connections it opened in and nothing else."""

from __future__ import annotations

import struct

import pytest
from memswitch import Factory

from l2frames import BROADCAST, mac
from vswitch.control.model import AclRuleSpec
from vswitch.core.acl import PortAcl
from vswitch.core.policy import PortPolicy

pytestmark = pytest.mark.timeout(60)

BCAST = bytes.fromhex(BROADCAST.replace(":", ""))


def ip(dst: bytes, src: bytes, sip: str, dip: str, proto: int = 17, sport: int = 40000, dport: int = 9) -> bytes:
    """An IPv4 frame (checksums zero: the switch reads none; a far end's stack drops it, not ours)."""
    body = struct.pack("!HH", sport, dport) + bytes(24)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, proto, 0,
                      bytes(map(int, sip.split("."))), bytes(map(int, dip.split("."))))
    return dst + src + b"\x08\x00" + hdr + body


def acl(*rules: AclRuleSpec) -> PortAcl:
    return PortAcl(tuple(AclRuleSpec.parse({**r.to_dict(), "id": i + 1}).rule() for i, r in enumerate(rules)))


def hello(sw: object, *names: str) -> None:
    """Each port's VM says hello (a broadcast of an experimental ethertype), so the switch knows its MAC."""
    for n in names:
        sw.send(BCAST + mac(n.lower()) + b"\x88\xb5" + bytes(46), on=n)  # type: ignore[attr-defined]


def test_the_most_specific_rule_decides_and_in_rules_filter_deliveries(switch: Factory) -> None:
    vm = PortPolicy(acl=acl(AclRuleSpec("out", "deny", remote_ip="10.0.0.0/8"),
                            AclRuleSpec("out", "allow", remote_ip="10.0.0.2"),
                            AclRuleSpec("in", "deny", remote_mac="02:00:00:00:00:63")))
    sw = switch({"A": vm, "B": None, "C": None})
    a, b, c = mac("a"), mac("b"), mac("c")
    hello(sw, "B", "C")
    sw.expect(ip(b, a, "10.0.0.1", "10.0.0.2"), on="A", arrives_on=["B"],
              why="A may reach 10.0.0.2: the /32 allow is more specific than the /8 deny")
    sw.expect(ip(c, a, "10.0.0.1", "10.0.0.3"), on="A", arrives_on=[], not_on=["B", "C"],
              why="the rest of 10/8 is denied to A: dropped at ingress")
    sw.expect(ip(c, a, "10.0.0.1", "192.168.0.3"), on="A", arrives_on=["C"], why="outside 10/8: no rule, allowed")
    sw.expect(BCAST + c + b"\x88\xb5" + bytes(46), on="C", arrives_on=["B"], not_on=["A"],
              why="A's in rule denies C's MAC: C's broadcast reaches B, not A")
    sw.expect(BCAST + b + b"\x88\xb5" + bytes(46), on="B", arrives_on=["A", "C"], why="B's reaches both")
    sw.expect(ip(a, c, "10.0.0.3", "10.0.0.1"), on="C", arrives_on=[], not_on=["A", "B"],
              why="a unicast from C to A is dropped: A's in rule")
    stranger = mac("z")
    sw.expect(ip(c, stranger, "10.0.0.1", "10.0.0.3"), on="A", arrives_on=[], not_on=["B", "C"],
              why="denied from a new source")
    assert sw.fdb_port(stranger) is None, "a frame an ACL dropped is never learned"
    assert sw.counters("A")["drops"] == {"drop_acl": 2} and sw.counters("C")["drops"] == {"drop_acl": 1}


def test_a_stateful_rule_lets_in_the_answers_of_its_flows_only(switch: Factory) -> None:
    vm = PortPolicy(acl=acl(AclRuleSpec("out", "allow", weight=10, protocol="udp", remote_port="53", stateful=True),
                            AclRuleSpec("in", "deny", weight=1)))
    sw = switch({"V": vm, "D": None})
    v, d = mac("v"), mac("d")
    hello(sw, "V", "D")
    sw.expect(ip(v, d, "10.0.0.53", "10.0.0.1", sport=53, dport=40000), on="D", arrives_on=[], not_on=["V"],
              why="nothing IP comes in to V that V did not open")
    sw.expect(ip(d, v, "10.0.0.1", "10.0.0.53", sport=40000, dport=53), on="V", arrives_on=["D"],
              why="V asks the resolver: the stateful allow opens the flow")
    sw.expect(ip(v, d, "10.0.0.53", "10.0.0.1", sport=53, dport=40000), on="D", arrives_on=["V"],
              why="the answer is the flow's return traffic: let in")
    sw.expect(ip(v, d, "10.0.0.53", "10.0.0.1", sport=53, dport=40001), on="D", arrives_on=[], not_on=["V"],
              why="an answer to a question V never asked (another port) is denied")

"""The kernel fast path against SwitchCore, frame by frame: the differential test (issue 12, 3a).

20,000 random frames over 7 ports — access, trunk with and without a native VLAN, learning off on
one, flooding off on one, one administratively down, one going oper down and up — go through the
BPF program (BPF_PROG_TEST_RUN, test mode: outputs recorded instead of sent, the clock set by the
test) and through `SwitchCore.process` configured by the same calls. Per frame: the reason, the
VLAN, the output ports in order and each output's bytes (tag pushed / popped / rewritten); at the
end the MAC tables (entries, ports, statics, last-seen times) and every port's counters. The
frames mix unicast from a small pool (so learning, moves and ageing happen), broadcast, multicast,
reserved groups (one forwarded by group_fwd_mask), bad sources, 802.1Q/802.1ad/priority tags,
VLANs not admitted and truncated tags. Three more ports have guards on (DHCP, router, both), and a
third of the frames carry an IPv4/IPv6 packet from tests/guard_frames.py: DHCP server messages,
RAs and redirects (behind extension headers, tagged, fragmented, cut short) and their near misses
(a DHCPDISCOVER, a relay's BOOTREQUEST, a Router Solicitation, an ICMPv6 echo, later fragments).
Two ports have MAC spoofing off with their MAC known (an access and a trunk port): the sources from
the pool are theirs a tenth of the time, forged the rest (DROP_SPOOFED_MAC, never learned).
Port mirroring: two sources (access, trunk) and two destinations (an access port in another VLAN,
which gets every copy untagged; a trunk that does not flood and goes oper down and up): the copies
are outputs after the forwarded ones, compared like them, and the mirrored/mirror_tx counters too.

Two ports have a storm limit (1 and 2 frames per second, on the test clock: their floods are over
it about as often as not, DROP_STORM_LIMIT); test_the_storm_limit_meters_floods_like_the_core
floods one port at 10 kpps of the test clock against a limit of 1,000. Two ports have a maximum
bandwidth (8 kbit/s with a 300-byte bucket, 1.6 kbit/s with 100 bytes and a storm limit: DROP_MAX_BANDWIDTH
often); test_the_policer_meters_bytes_like_the_core sends 1,500-byte frames at 240 Mbit/s into 100.
BPF_PROG_TEST_RUN keeps a tag in the bytes; test_kernel_veth.py covers the metadata tag of a real receive.
"""

from __future__ import annotations

import random
import struct

import pytest
from kernel_fastpath import core_table, program_table, require_fastpath

from guard_frames import random_l3
from vswitch.core.acl import DIR_IN, DIR_OUT, PortAcl, Rule, parse_net
from vswitch.core.guards import GUARD_DHCP, GUARD_ROUTER
from vswitch.core.policy import PortMirroring, PortPolicy, PvlanMode
from vswitch.core.reasons import Reason
from vswitch.core.switch import EDIT_KEEP, SwitchCore, egress_frame
from vswitch.datapath.kernel import layout
from vswitch.datapath.kernel.program import SwitchProgram

pytestmark = pytest.mark.root

N_FRAMES = 20_000
NS = 1_000_000_000
AGEING_S = 20
GROUP_FWD_MASK = 1 << 0x0E           # LLDP's 01:80:C2:00:00:0E is forwarded, the others dropped
TC_ACT_UNSPEC, TC_ACT_SHOT, TC_ACT_REDIRECT = -1, 2, 7  # UNSPEC: the upcall, on to the next filter

POLICIES = {
    "a10": PortPolicy.access(10),
    "a10-nolearn": PortPolicy.access(10, learning=False),
    "a20-noflood": PortPolicy.access(20, flooding=False),
    "t-native10": PortPolicy.trunk({10, 20, 30}, native=10),
    "t-nonative": PortPolicy.trunk({10, 20, 30}),
    "t-native30": PortPolicy.trunk({20, 30}, native=30),
    "a10-down": PortPolicy.access(10, admin_up=False),
    "a10-dhcpguard": PortPolicy.access(10, guards=GUARD_DHCP),
    "t-routerguard": PortPolicy.trunk({10, 20}, native=20, guards=GUARD_ROUTER),
    "a20-guards": PortPolicy.access(20, guards=GUARD_DHCP | GUARD_ROUTER),
    "a10-nospoof": PortPolicy.access(10, mac_spoofing=False, mac=bytes((2, 0, 0, 0, 0xEB, 2))),
    "t-nospoof": PortPolicy.trunk({10, 20, 30}, native=20, mac_spoofing=False, mac=bytes((2, 0, 0, 0, 0xEB, 3))),
    "a10-msrc": PortPolicy.access(10, port_mirroring=PortMirroring.SOURCE),
    "t-msrc": PortPolicy.trunk({10, 20}, native=20, port_mirroring=PortMirroring.SOURCE),
    "a20-mdst": PortPolicy.access(20, port_mirroring=PortMirroring.DESTINATION),
    "t-mdst": PortPolicy.trunk({10, 30}, native=30, flooding=False, port_mirroring=PortMirroring.DESTINATION),
    # port isolation: floods and known unicast never between these three, in any VLAN
    "a10-iso": PortPolicy.access(10, isolated=True),
    "a10-iso2": PortPolicy.access(10, isolated=True),
    "t-iso": PortPolicy.trunk({10, 20, 30}, native=20, isolated=True),
    # a private VLAN: primary 30, isolated secondary 40, community 50 (learned under 30), and a trunk
    # carrying all three as they are tagged
    "pv-prom": PortPolicy.private(PvlanMode.PROMISCUOUS, 30, {40, 50}),
    "pv-iso": PortPolicy.private(PvlanMode.ISOLATED, 30, {40}),
    "pv-iso2": PortPolicy.private(PvlanMode.ISOLATED, 30, {40}, isolated=True),
    "pv-com": PortPolicy.private(PvlanMode.COMMUNITY, 30, {50}),
    "pv-com2": PortPolicy.private(PvlanMode.COMMUNITY, 30, {50}),
    "t-pv": PortPolicy.trunk({30, 40, 50}),
    # an isolated mirroring source, the only source of its VLAN (a flood from an isolated port never
    # reaches it: not mirrored), and an isolated destination (isolation keeps floods from it, not copies)
    "a60-iso-msrc": PortPolicy.access(60, isolated=True, port_mirroring=PortMirroring.SOURCE),
    "a60-iso": PortPolicy.access(60, isolated=True),
    "a60": PortPolicy.access(60),
    "a10-iso-mdst": PortPolicy.access(10, isolated=True, port_mirroring=PortMirroring.DESTINATION),
    "a10-storm": PortPolicy.access(10, storm_limit=1),
    "t-storm": PortPolicy.trunk({10, 20, 30}, native=10, storm_limit=2),
    "a20-police": PortPolicy.access(20, max_bandwidth=8_000, bandwidth_burst=300),
    "t-police": PortPolicy.trunk({10, 20}, native=20, max_bandwidth=1_600, bandwidth_burst=100, storm_limit=3),
}
OPER_FLAPPING = "t-nonative"
OPER_FLAPPING_MIRROR = "t-mdst"

POOL = [bytes((2, 0, 0, 0, 0xEB, i)) for i in range(10)]
GROUPS = [b"\xff" * 6, bytes.fromhex("01005e000001"), bytes.fromhex("333300000001"),
          *(bytes.fromhex("0180c20000") + bytes((i,)) for i in (0, 1, 2, 3, 0x0E, 0x0F, 0x10))]
BAD_SOURCES = [bytes(6), bytes.fromhex("010000000001"), b"\xff" * 6]
STATICS = [(POOL[0], 10, "a10"), (POOL[1], 20, "t-native10")]


def _random_frame(rng: random.Random) -> bytes:
    dst = rng.choice(GROUPS) if rng.random() < 0.25 else rng.choice(POOL)
    src = rng.choice(BAD_SOURCES) if rng.random() < 0.04 else rng.choice(POOL)
    x = rng.random()
    if x < 0.02:  # a truncated tag: 14-17 bytes
        return dst + src + b"\x81\x00" + bytes(rng.randrange(4))
    ethertype, body = (random_l3(rng) if rng.random() < 0.35 else (b"\x08\x00", bytes(rng.randrange(46, 80))))
    if x < 0.45:
        # BPF_PROG_TEST_RUN refuses an untagged IPv4/IPv6 frame shorter than the IP header (EINVAL); a
        # tag in the bytes hides the ethertype from that check, so tagged runts are still in the mix
        return dst + src + ethertype + body.ljust(40 if ethertype == b"\x86\xdd" else 20, b"\0")
    tpid = 0x88A8 if x < 0.50 else 0x8100
    vid = rng.choice((0, 10, 10, 20, 20, 30, 40, 50))
    tci = (rng.randrange(8) << 13) | (rng.randrange(2) << 12) | vid
    return dst + src + struct.pack("!HH", tpid, tci) + ethertype + body


def _expected_outputs(core: SwitchCore, frame: bytes, d) -> list[tuple[str, bytes, int]]:
    outs = []
    for i, port in enumerate(d.out_ports):
        edit = d.edits[i] if d.edits is not None else EDIT_KEEP
        wire = bytes(egress_frame(frame, 0, edit, d.vlan))
        outs.append((port, wire, len(wire)))
    return outs


def _verdict(reason: str, n_out: int) -> int:
    if reason.startswith("upcall"):
        return TC_ACT_UNSPEC
    return TC_ACT_REDIRECT if n_out else TC_ACT_SHOT


def _build(ports: dict[str, PortPolicy]) -> tuple[SwitchCore, SwitchProgram]:
    core = SwitchCore(ageing_s=AGEING_S * NS, group_fwd_mask=GROUP_FWD_MASK, clock_ns=1)  # now: the test's ns
    prog = SwitchProgram(ageing_s=AGEING_S, group_fwd_mask=GROUP_FWD_MASK)
    for i, (name, policy) in enumerate(ports.items()):
        core.add_port(name, policy)
        prog.add_port(name, policy, ifindex=1000 + i)  # test mode sends nothing: any ifindex will do
    for mac, vlan, port in (st for st in STATICS if st[2] in ports):
        core.fdb.add_static(mac, vlan, port)
        prog.add_static(mac, vlan, port)
    return core, prog


def _compare(core: SwitchCore, prog: SwitchProgram, n_frames: int, seed: int) -> tuple[list[str], dict[str, int]]:
    """Run both; the mismatches (first 20, as sentences) and how often each reason was decided."""
    rng = random.Random(seed)
    now = 1_000 * NS
    mismatches: list[str] = []
    tally: dict[str, int] = {}
    names = list(POLICIES)
    for i in range(n_frames):
        now += rng.choice((0, 0, 1, 50, 1000, 300_000_000)) if rng.random() > 0.003 else (AGEING_S + 1) * NS
        if i % 997 == 500:  # a link goes down (its dynamic entries flushed, as the core does) and comes back
            down = i % 2 == 0
            core.set_oper_up(OPER_FLAPPING, not down)
            prog.set_oper_up(OPER_FLAPPING, not down)
            if down:
                prog.tables.flush(slot=prog.slot(OPER_FLAPPING))
        if i % 1499 == 700:  # a mirroring destination goes down and comes back: no copies meanwhile
            down = i % 2 == 0
            core.set_oper_up(OPER_FLAPPING_MIRROR, not down)
            prog.set_oper_up(OPER_FLAPPING_MIRROR, not down)
            if down:
                prog.tables.flush(slot=prog.slot(OPER_FLAPPING_MIRROR))
        prog.set_test_clock(now)
        port = rng.choice(names)
        frame = _random_frame(rng)
        d = core.process(port, frame, 0, now)
        r = prog.run(port, frame)
        want_reason = d.reason.label
        tally[want_reason] = tally.get(want_reason, 0) + 1
        got = [(prog.port_at(o.slot), o.head, o.length) for o in r.outputs]
        want = [(p, wire[:len(h)], n) for (p, wire, n), (_q, h, _m) in zip(_expected_outputs(core, frame, d), got,
                                                                           strict=False)]
        problems = []
        if r.reason != want_reason:
            problems.append(f"reason {r.reason} (core: {want_reason})")
        if r.vlan != d.vlan:
            problems.append(f"VLAN {r.vlan} (core: {d.vlan})")
        if [g[0] for g in got] != list(d.out_ports):
            problems.append(f"out ports {[g[0] for g in got]} (core: {list(d.out_ports)})")
        elif got != want:
            problems.append(f"output frames {[(g[0], g[1].hex(), g[2]) for g in got]} "
                            f"(core: {[(w[0], w[1].hex(), w[2]) for w in want]})")
        if r.verdict != _verdict(r.reason, len(got)):
            problems.append(f"verdict {r.verdict} for {r.reason} with {len(got)} outputs")
        if problems and len(mismatches) < 20:
            mismatches.append(f"frame #{i} on {port} at {now}: {frame.hex()}: " + "; ".join(problems))
        elif problems:
            mismatches.append("...")
    return mismatches, tally


def _counters_differ(core: SwitchCore, prog: SwitchProgram) -> list[str]:
    return _counters_differ_for(core, prog, POLICIES)


def _counters_differ_for(core: SwitchCore, prog: SwitchProgram, ports: dict[str, PortPolicy]) -> list[str]:
    out = []
    for port in ports:
        snap = core.counters[port].snapshot()
        mine = prog.counters(port)
        want = {k: snap[k] for k in (*layout.PORT_COUNTER_FIELDS, "mirrored", "mirror_tx")}
        want.update({r.label: n for r, n in core.counters[port].drops.items()})
        got = {k: v for k, v in mine.items() if k in want or (k.startswith("drop_") and v)}
        if got != want:
            out.append(f"{port}: program {got}, core {want}")
    return out


def test_program_decides_like_the_core() -> None:
    require_fastpath()
    core, prog = _build(POLICIES)
    with prog:
        mismatches, tally = _compare(core, prog, N_FRAMES, seed=12)
        assert not mismatches, f"{len(mismatches)} frames decided differently:\n" + "\n".join(mismatches)
        assert program_table(prog) == core_table(core)
        assert not _counters_differ(core, prog)
        assert prog.tables.dynamic_count() == core.fdb.dynamic_count
        # ageing removes the same entries on both sides, and the cap's count follows: a clock at which
        # the older half of the entries has aged out (whatever the run's random clock left)
        seen = sorted(e.seen for t in core.fdb.by_vlan.values() for e in t.values() if not e.static)
        later = seen[len(seen) // 2] + AGEING_S * NS + 1
        assert prog.expire(later) == core.expire(later) > 0
        assert program_table(prog) == core_table(core)
        assert prog.tables.dynamic_count() == core.fdb.dynamic_count
        # the run covered every decision the core can make here, and nothing went up
        # a port with a MAC limit is served through the upcall path: the program never decides that
        decided = {r.label for r in layout.COUNTER_REASON.values()
                   if r not in (Reason.DROP_MAC_LIMIT, Reason.DROP_ACL)}  # ACLs too: Python runs them
        assert decided <= set(tally), f"never decided: {sorted(decided - set(tally))}"
        assert all(prog.counters(p)["upcall"] == 0 for p in POLICIES)
        assert sum(c["moved"] for c in map(prog.counters, POLICIES)) > 0
        assert sum(c["static_refused"] for c in map(prog.counters, POLICIES)) > 0
        assert all(core.counters[p].mirrored > 0 for p in ("a10-msrc", "t-msrc"))
        assert all(core.counters[p].mirror_tx > 0 for p in ("a20-mdst", "t-mdst"))


def test_a_new_mac_beyond_the_cap_goes_up_and_changes_nothing() -> None:
    """The core evicts fairly when the table is full; the program cannot, so that frame goes up
    (the upcall verdict, counted with its cause) and its table and decision counters stay as they were."""
    require_fastpath()
    with SwitchProgram(max_entries=2) as prog:
        prog.add_port("p0", ifindex=1000)
        prog.add_port("p1", ifindex=1001)
        prog.set_test_clock(NS)
        for i in range(2):
            assert prog.run("p0", b"\xff" * 6 + POOL[i] + b"\x08\x00" + bytes(46)).reason == "flood_broadcast"
        before = program_table(prog)
        r = prog.run("p1", b"\xff" * 6 + POOL[5] + b"\x08\x00" + bytes(46))
        assert (r.verdict, r.reason, r.outputs) == (TC_ACT_UNSPEC, "upcall_table_full", ())
        assert program_table(prog) == before
        c = prog.counters("p1")
        assert (c["upcall"], c["upcall_table_full"], c["rx_frames"], c["flood_broadcast"]) == (1, 1, 0, 0)
        # a MAC already known still refreshes and forwards: only a new one needs the eviction
        assert prog.run("p1", POOL[0] + POOL[1] + b"\x08\x00" + bytes(46)).reason == "forward_learned"


def test_ports_only_python_serves_send_their_frames_up() -> None:
    """A known unicast to a port the program cannot reach, and a flood in a VLAN such a port is a
    member of, go up; a flood in another VLAN stays in the kernel."""
    require_fastpath()
    with SwitchProgram() as prog:
        prog.add_port("k0", PortPolicy.trunk({10, 20}), ifindex=1000)
        prog.add_port("k1", PortPolicy.trunk({10, 20}), ifindex=1001)
        prog.add_port("py", PortPolicy.access(10), kernel=False)
        prog.set_test_clock(NS)
        tag = {v: struct.pack("!HH", 0x8100, v) for v in (10, 20)}
        assert prog.run("k0", b"\xff" * 6 + POOL[0] + tag[10] + bytes(46)).reason == "upcall_flood"
        r = prog.run("k0", b"\xff" * 6 + POOL[0] + tag[20] + bytes(46))
        assert (r.reason, [o.slot for o in r.outputs]) == ("flood_broadcast", [prog.slot("k1")])
        prog.add_static(POOL[3], 10, "py")
        assert prog.run("k1", POOL[3] + POOL[4] + tag[10] + bytes(46)).reason == "upcall_dest"
        assert prog.counters("k1")["upcall_dest"] == 1
        prog.add_port("watched", PortPolicy.access(10), ifindex=1003, upcall=True)
        r = prog.run("watched", POOL[5] + POOL[6] + b"\x08\x00" + bytes(46))
        assert (r.verdict, r.reason) == (TC_ACT_UNSPEC, "upcall_port")
        assert {k: v for k, v in prog.counters("watched").items() if v} == {"upcall": 1, "upcall_port": 1}
        # the source rules Python keeps: spoofing off with no MAC yet (the core adopts the first
        # source), and a MAC limit (the program keeps no count per port)
        prog.add_port("adopts", PortPolicy.access(10, mac_spoofing=False), ifindex=1004)
        prog.add_port("limited", PortPolicy.access(10, mac_limit=2), ifindex=1005)
        for name in ("adopts", "limited"):
            assert prog.run(name, POOL[5] + POOL[7] + b"\x08\x00" + bytes(46)).reason == "upcall_port", name


def test_a_port_with_acls_is_decided_and_delivered_by_python() -> None:
    """Port ACLs run in Python: the port's own frames go up, and so does what the switch delivers to it
    when it has an "in" rule — a known unicast to it (even one whose MAC is in the map), and a flood or
    an unknown unicast in its VLANs; a port with "out" rules only takes its deliveries from the kernel."""
    require_fastpath()
    deny_in = PortAcl((Rule(1, DIR_IN, "deny", remote_ip=parse_net("10.0.0.0/8")),))
    deny_out = PortAcl((Rule(1, DIR_OUT, "deny", remote_ip=parse_net("10.0.0.0/8")),))
    with SwitchProgram() as prog:
        prog.add_port("k0", PortPolicy.access(10), ifindex=1000)
        prog.add_port("k1", PortPolicy.access(20), ifindex=1001)
        prog.add_port("acl", PortPolicy.access(10), ifindex=1002)
        prog.set_test_clock(NS)
        assert prog.run("k0", POOL[1] + POOL[0] + b"\x08\x00" + bytes(46)).reason == "flood_unknown"
        assert prog.run("acl", POOL[0] + POOL[1] + b"\x08\x00" + bytes(46)).reason == "forward_learned"
        prog.set_policy("acl", PortPolicy.access(10, acl=deny_in))
        assert layout.upcall_reasons(PortPolicy(acl=deny_in)) == ("port ACLs (the program does not run them)",)
        assert prog.run("acl", POOL[0] + POOL[1] + b"\x08\x00" + bytes(46)).reason == "upcall_port"
        assert prog.run("k0", POOL[1] + POOL[0] + b"\x08\x00" + bytes(46)).reason == "upcall_dest", \
            "its MAC is in the map, but Python decides what it is delivered"
        assert prog.run("k0", b"\xff" * 6 + POOL[0] + b"\x08\x00" + bytes(46)).reason == "upcall_flood"
        assert prog.run("k0", POOL[7] + POOL[0] + b"\x08\x00" + bytes(46)).reason == "upcall_flood"
        assert prog.run("k1", b"\xff" * 6 + POOL[2] + b"\x08\x00" + bytes(46)).reason == "flood_broadcast", \
            "another VLAN stays in the kernel"
        prog.set_policy("acl", PortPolicy.access(10, acl=deny_out))
        assert prog.run("k0", b"\xff" * 6 + POOL[0] + b"\x08\x00" + bytes(46)).reason == "flood_broadcast"
        assert prog.run("acl", POOL[0] + POOL[1] + b"\x08\x00" + bytes(46)).reason == "upcall_port"


def test_a_flood_reaches_every_slot() -> None:
    """The flood visits all layout.MAX_PORTS (1024) slots: a broadcast from the first port reaches
    the other 1023, each once, in slot order, and the table takes no more ports."""
    require_fastpath()
    with SwitchProgram() as prog:
        for i in range(layout.MAX_PORTS):
            prog.add_port(i, ifindex=10_000 + i)
        with pytest.raises(ValueError, match="1024 port slots"):
            prog.add_port("one too many", ifindex=9_999)
        prog.set_test_clock(NS)
        r = prog.run(0, b"\xff" * 6 + POOL[0] + b"\x08\x00" + bytes(46))
        assert r.verdict == TC_ACT_REDIRECT
        assert [o.slot for o in r.outputs] == list(range(1, layout.MAX_PORTS))
        assert prog.counters(0)["flood_copies"] == layout.MAX_PORTS - 1


def test_a_mirror_copy_for_a_port_only_python_serves_sends_the_frame_up() -> None:
    """The program cannot send a copy to a destination only Python serves: a frame it would mirror
    goes up (the flood's or the unicast's cause) and Python makes every copy; a frame it would not
    mirror stays in the kernel; with that destination down the copies are the program's again."""
    require_fastpath()
    with SwitchProgram() as prog:
        prog.add_port("src", PortPolicy.access(10, port_mirroring=PortMirroring.SOURCE), ifindex=1000)
        prog.add_port("k1", PortPolicy.access(10), ifindex=1001)
        prog.add_port("k2", PortPolicy.access(10), ifindex=1002)
        prog.add_port("kmon", PortPolicy.trunk({10}, port_mirroring=PortMirroring.DESTINATION), ifindex=1003)
        prog.add_port("pymon", PortPolicy.access(20, port_mirroring=PortMirroring.DESTINATION), kernel=False)
        prog.set_test_clock(NS)
        prog.add_static(POOL[1], 10, "k1")
        prog.add_static(POOL[2], 10, "k2")
        assert prog.run("src", b"\xff" * 6 + POOL[0] + b"\x08\x00" + bytes(46)).reason == "upcall_flood"
        assert prog.run("src", POOL[1] + POOL[0] + b"\x08\x00" + bytes(46)).reason == "upcall_dest"
        r = prog.run("k2", POOL[1] + POOL[2] + b"\x08\x00" + bytes(46))
        assert (r.reason, [prog.port_at(o.slot) for o in r.outputs]) == ("forward_learned", ["k1"]), "not mirrored"
        prog.set_oper_up("pymon", False)
        r = prog.run("src", POOL[1] + POOL[0] + b"\x08\x00" + bytes(46))
        assert (r.reason, [prog.port_at(o.slot) for o in r.outputs]) == ("forward_learned", ["k1", "kmon"])
        assert r.outputs[1].head[12:16] == b"\x81\x00\x00\x0a", "the trunk destination's copy carries VLAN 10"
        assert (prog.counters("src")["mirrored"], prog.counters("kmon")["mirror_tx"]) == (1, 1)
def test_the_storm_limit_meters_floods_like_the_core() -> None:
    """A port limited to 1,000 pps sends 3,000 frames at 10 kpps of the test clock — broadcast,
    multicast, unknown and known unicast mixed — on both sides: the same frames pass and drop, known
    unicast is never dropped, the floods that pass are the bucket's burst plus 1,000 a second, and a
    new limit starts with a full bucket on both."""
    require_fastpath()
    ports = {"storm": PortPolicy.access(10, storm_limit=1000), "a": PortPolicy.access(10),
             "b": PortPolicy.access(10)}
    core, prog = _build(ports)
    rng = random.Random(7)
    kinds = {"b": b"\xff" * 6, "m": bytes.fromhex("01005e000001"), "u": bytes((2, 0, 0, 0, 0xEC, 1)),
             "k": POOL[5]}
    with prog:
        now = 1_000 * NS
        for port, src in (("a", POOL[5]), ("storm", POOL[6])):  # POOL[5] is known, on port a
            prog.set_test_clock(now)
            frame = b"\xff" * 6 + src + b"\x08\x00" + bytes(46)
            assert core.process(port, frame, 0, now).reason.label == prog.run(port, frame).reason
        passed = {k: 0 for k in kinds}
        sent = dict(passed)
        mismatches = []
        for i in range(3_000):
            now += 100_000  # 10 kpps
            kind = rng.choice("bbmuk")
            frame = kinds[kind] + POOL[6] + b"\x08\x00" + bytes(46)
            prog.set_test_clock(now)
            want, got = core.process("storm", frame, 0, now).reason.label, prog.run("storm", frame).reason
            if want != got:
                mismatches.append(f"frame #{i} ({kind}) at {now}: program {got}, core {want}")
            sent[kind] += 1
            passed[kind] += got != "drop_storm_limit"
            if i == 1_999:  # a new limit, a full bucket, on both sides
                for side in (core, prog):
                    side.set_policy("storm", PortPolicy.access(10, storm_limit=500))
        assert not mismatches, "\n".join(mismatches[:20])
        assert passed["k"] == sent["k"], "known unicast is never metered"
        floods = sum(passed[k] for k in "bmu")
        # at most: 0.2 s at 1,000 pps after a full bucket of 100, then 0.1 s at 500 pps after a full
        # bucket of 50 (a few less: a token that comes while no flood does waits for the next)
        assert 390 <= floods <= 100 + 200 + 50 + 50, (floods, passed, sent)
        assert not _counters_differ_for(core, prog, ports)
        assert prog.counters("storm")["drop_storm_limit"] == sum(sent[k] - passed[k] for k in "bmu")


def test_the_policer_meters_bytes_like_the_core() -> None:
    """A port with a maximum bandwidth of 100 Mbit/s (a 64 KiB bucket) sends 4,000 frames of 60 to
    1,514 bytes at 20 kpps of the test clock (about 125 Mbit/s), unicast and broadcast: the same
    frames pass and drop on both sides, and the bytes that pass are at most the bucket plus 100
    Mbit/s of the time; a new rate starts with a full bucket on both."""
    require_fastpath()
    ports = {"vm": PortPolicy.access(10, max_bandwidth=100_000_000, bandwidth_burst=65_536),
             "a": PortPolicy.access(10)}
    core, prog = _build(ports)
    rng = random.Random(11)
    with prog:
        now = 1_000 * NS
        prog.set_test_clock(now)
        hello = b"\xff" * 6 + POOL[5] + b"\x08\x00" + bytes(46)
        assert core.process("a", hello, 0, now).reason.label == prog.run("a", hello).reason
        passed = sent = 0
        mismatches = []
        for i in range(4_000):
            now += 50_000  # 20 kpps
            dst = POOL[5] if rng.random() < 0.8 else b"\xff" * 6
            frame = dst + POOL[6] + b"\x08\x00" + bytes(rng.randrange(46, 1501))
            prog.set_test_clock(now)
            want, got = core.process("vm", frame, 0, now).reason.label, prog.run("vm", frame).reason
            if want != got:
                mismatches.append(f"frame #{i} ({len(frame)} bytes) at {now}: program {got}, core {want}")
            if i < 2_000:
                sent += len(frame)
                passed += len(frame) if got != "drop_max_bandwidth" else 0
            if i == 1_999:
                for side in (core, prog):
                    side.set_policy("vm", PortPolicy.access(10, max_bandwidth=50_000_000, bandwidth_burst=65_536))
        assert not mismatches, "\n".join(mismatches[:20])
        bound = 65_536 + 1_514 + 100_000_000 // 8 * 2_000 * 50_000 // NS
        assert bound * 0.9 < passed <= bound < sent, (passed, bound, sent)
        assert not _counters_differ_for(core, prog, ports)
        assert prog.counters("vm")["drop_max_bandwidth"] > 0

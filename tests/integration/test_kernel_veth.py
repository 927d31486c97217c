"""The kernel fast path on real links: tagged frames arriving through a veth (the tag in skb
metadata, as a real receive leaves it — BPF_PROG_TEST_RUN cannot show that), classified and
forwarded as SwitchCore decides, with the tag pushed, popped or rewritten on the way out; and
attaching then closing leaves no program, map or clsact qdisc behind.

Four veth cables in one fresh namespace: the program on the switch ends (`s*`), AF_PACKET
endpoints (LinkPort, which puts a received tag back into the bytes) on the host ends (`h*`).
Ports: A access 10, B trunk {10, 20}, C access 20, D trunk {10} native 20. Frames use a local
ethertype; IPv6 is off so the links send nothing of their own.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kernel_fastpath import require_fastpath

from netns import unique_name
from vswitch.core.policy import PortPolicy
from vswitch.core.switch import EDIT_KEEP, SwitchCore, egress_frame
from vswitch.datapath.kernel import libbpf, tc
from vswitch.datapath.kernel.program import SwitchProgram
from vswitch.lab import netns as lab_netns
from vswitch.ports.link import LinkPort
from vswitch.ports.netns import run_in
from waiting import wait_until

pytestmark = pytest.mark.root

ETHERTYPE = b"\x88\xb5"
POLICIES = {"A": PortPolicy.access(10), "B": PortPolicy.trunk({10, 20}), "C": PortPolicy.access(20),
            "D": PortPolicy.trunk({10}, native=20)}
MAC = {p: bytes((2, 0, 0, 0, 0x4B, i)) for i, p in enumerate(POLICIES)}


def _frame(dst: bytes, src: bytes, *, vid: int | None = None, pcp: int = 0, seq: int = 0) -> bytes:
    tag = b"" if vid is None else struct.pack("!HH", 0x8100, (pcp << 13) | vid)
    return dst + src + tag + ETHERTYPE + seq.to_bytes(4, "big") + bytes(42)


class _Endpoint:
    """The host end of one cable: sends frames, collects those of our ethertype."""

    def __init__(self, ns: str, ifname: str) -> None:
        self.port = LinkPort(ifname, ifname, vnet=False)
        run_in(ns, self.port.open)
        self.got: list[bytes] = []

    def send(self, frame: bytes) -> None:
        assert self.port.write(frame)

    def poll(self) -> list[bytes]:
        for fd in self.port.extra_fds():  # tagged frames wait on their own socket (PACKET_AUXDATA)
            self.port.service(fd)
        while (f := self.port.recv()) is not None:
            if f[12:14] == ETHERTYPE or f[16:18] == ETHERTYPE:
                self.got.append(f)
        return self.got


@pytest.fixture
def switch_ns(netns):
    require_fastpath()  # before any namespace is made
    ns = netns("kfp")
    lab_netns.sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})
    links = {}
    for p in POLICIES:
        sw, host = unique_name("s" + p), unique_name("h" + p)
        lab_netns.veth(ns, sw, ns, host)
        lab_netns.set_up(ns, sw)
        lab_netns.set_up(ns, host)
        links[p] = (sw, host)
    return ns, links


@contextmanager
def _switch(ns: str, links: dict[str, tuple[str, str]]) -> Iterator[tuple[SwitchCore, SwitchProgram,
                                                                           dict[str, _Endpoint]]]:
    """The program on every switch end, SwitchCore with the same ports, an endpoint on every host
    end; afterwards no filter, qdisc, program or map of ours is left."""
    core = SwitchCore()
    prog = SwitchProgram()
    ids = prog.kernel_ids()
    endpoints: dict[str, _Endpoint] = {}
    ifindex = {p: run_in(ns, lambda name=sw: socket.if_nametoindex(name)) for p, (sw, _h) in links.items()}
    try:
        for p, policy in POLICIES.items():
            core.add_port(p, policy)
            prog.add_port(p, policy, ifindex=ifindex[p])
            prog.attach(p, netns=ns)
            assert tc.ingress_filters(ifindex[p], netns=ns) == ["vs_ingress"]
            endpoints[p] = _Endpoint(ns, links[p][1])
        yield core, prog, endpoints
    finally:
        for e in endpoints.values():
            e.port.close()
        prog.close()
    assert not any(tc.has_clsact(i, netns=ns) for i in ifindex.values()), "a clsact qdisc outlived close"
    assert ids[0] not in libbpf.program_ids(), "the BPF program outlived SwitchProgram.close"
    # the program's references to its maps go after an RCU grace period
    wait_until(lambda: not ids[1] & set(libbpf.map_ids()), what="the program's maps to be freed")


def _send_all(core: SwitchCore, endpoints: dict[str, _Endpoint], sent: list[tuple[str, bytes]]) -> None:
    """Send each frame and wait until every port got what the core sends it; then each port must
    have received exactly that, in order."""
    expected: dict[str, list[bytes]] = {p: [] for p in POLICIES}
    for in_port, frame in sent:
        d = core.process(in_port, frame, 0, 0.0)
        for i, out in enumerate(d.out_ports):
            edit = d.edits[i] if d.edits is not None else EDIT_KEEP
            expected[out].append(bytes(egress_frame(frame, 0, edit, d.vlan)))
        endpoints[in_port].send(frame)
        # each frame reaches every port it should before the next is sent: no ordering doubt
        for p in POLICIES:
            wait_until(lambda p=p: len(endpoints[p].poll()) >= len(expected[p]),
                       what=f"port {p} to receive {len(expected[p])} frames (frame {frame.hex()})")
    for p in POLICIES:
        assert endpoints[p].poll() == expected[p], f"port {p} received other frames than the core sends"


def _ingress_counts_agree(core: SwitchCore, prog: SwitchProgram) -> None:
    """The core's ingress counts, as the program counted them from real frames."""
    for p in POLICIES:
        snap, mine = core.counters[p].snapshot(), prog.counters(p)
        fields = ("rx_frames", "rx_bytes", "floods", "learned", "moved", "static_refused")
        assert {k: mine[k] for k in fields} == {k: snap[k] for k in fields}, p
        assert {k: v for k, v in mine.items() if k.startswith("drop_") and v} == snap["drops"], p
        assert mine["redirect_fail"] + mine["tag_fail"] + mine["upcall"] == 0, p


def test_tagged_frames_through_real_links_follow_the_core(switch_ns) -> None:
    ns, links = switch_ns
    with _switch(ns, links) as (core, prog, endpoints):
        _send_all(core, endpoints, [
            ("B", _frame(b"\xff" * 6, MAC["B"], vid=10, pcp=3, seq=1)),   # flood VLAN 10: A (pop), D (keep)
            ("A", _frame(MAC["B"], MAC["A"], seq=2)),                      # known unicast: B, tag 10 pushed
            ("A", _frame(MAC["B"], MAC["A"], vid=0, pcp=5, seq=3)),        # priority tag: B, rewritten to 10
            ("D", _frame(b"\xff" * 6, MAC["D"], seq=4)),                   # untagged = native 20: B (push), C
            ("B", _frame(MAC["D"], MAC["B"], vid=20, seq=5)),              # known unicast in 20: D, popped
            ("C", _frame(MAC["A"], MAC["C"], seq=6)),                      # A is in VLAN 10 only: unknown, B, D
            ("B", _frame(MAC["A"], MAC["B"], vid=30, seq=7)),              # VLAN 30 not allowed on B: dropped
        ])
        c = {p: prog.counters(p) for p in POLICIES}
        assert c["B"]["drop_vlan_ingress"] == 1 and c["B"]["flood_broadcast"] == 1
        assert c["A"]["forward_learned"] == 2 and c["C"]["flood_unknown"] == 1
        _ingress_counts_agree(core, prog)


def test_random_frames_through_real_links_follow_the_core(switch_ns) -> None:
    """400 random frames (802.1Q, 802.1ad and priority tags in skb metadata, untagged, groups,
    reserved groups, bad sources, MACs moving between ports): what each port receives, the
    counters and the MAC table are the core's."""
    ns, links = switch_ns
    rng = random.Random(12)
    pool = [bytes((2, 0, 0, 0, 0x4C, i)) for i in range(6)]
    groups = [b"\xff" * 6, bytes.fromhex("01005e000001"), bytes.fromhex("0180c2000000"),
              bytes.fromhex("0180c200000e")]
    sent = []
    for seq in range(400):
        dst = rng.choice(groups) if rng.random() < 0.3 else rng.choice(pool)
        src = bytes.fromhex("010000000001") if rng.random() < 0.03 else rng.choice(pool)
        vid = rng.choice((None, None, 0, 10, 20, 30))
        frame = _frame(dst, src, vid=vid, pcp=rng.randrange(8), seq=seq)
        if vid is not None and rng.random() < 0.2:  # 802.1ad outer tag
            frame = frame[:12] + b"\x88\xa8" + frame[14:]
        sent.append((rng.choice(list(POLICIES)), frame))
    with _switch(ns, links) as (core, prog, endpoints):
        _send_all(core, endpoints, sent)
        _ingress_counts_agree(core, prog)
        table = {(e.mac, e.vlan): (prog.port_at(e.slot), e.static) for e in prog.tables.fdb_entries()}
        assert table == {(e.mac, e.vlan): (e.port, e.static) for t in core.fdb.by_vlan.values() for e in t.values()}


def test_decision_events_of_real_receives_carry_the_tag_back_in_the_bytes(switch_ns) -> None:
    """The decision events (datapath/kernel/events.py) of frames received for real, the tag in skb
    metadata: each one is the core's decision, with the frame's first bytes as the core sees them
    (the tag put back after the MAC addresses) and its whole length."""
    from vswitch.datapath.kernel.events import DecisionFeed

    ns, links = switch_ns
    sent = [("B", _frame(b"\xff" * 6, MAC["B"], vid=10, pcp=3, seq=1)),
            ("A", _frame(MAC["B"], MAC["A"], seq=2)),
            ("A", _frame(MAC["B"], MAC["A"], vid=0, pcp=5, seq=3)),
            ("D", _frame(b"\xff" * 6, MAC["D"], seq=4)),
            ("B", _frame(MAC["D"], MAC["B"], vid=20, seq=5)),
            ("B", _frame(MAC["A"], MAC["B"], vid=30, seq=7))]
    events: list[tuple] = []
    with _switch(ns, links) as (core, prog, endpoints):
        feed = DecisionFeed(prog, [lambda pid, head, hdr, d, **kw: events.append((pid, head, d, kw["length"]))])
        try:
            want = []
            for in_port, frame in sent:
                d = core.process(in_port, frame, 0, 0.0)
                want.append((in_port, frame, d.reason, d.vlan, d.out_ports, len(frame)))
                endpoints[in_port].send(frame)
            wait_until(lambda: feed.drain() >= 0 and len(events) >= len(sent), what="an event per frame")
        finally:
            feed.close()
    got = [(pid, head, d.reason, d.vlan, d.out_ports, n) for pid, head, d, n in events]
    assert got == want

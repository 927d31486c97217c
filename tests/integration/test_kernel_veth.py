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

import socket
import struct

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


def test_tagged_frames_through_real_links_follow_the_core(switch_ns) -> None:
    ns, links = switch_ns
    progs_before, maps_before = set(libbpf.program_ids()), set(libbpf.map_ids())
    core = SwitchCore()
    prog = SwitchProgram()
    endpoints: dict[str, _Endpoint] = {}
    try:
        for p, policy in POLICIES.items():
            ifindex = run_in(ns, lambda name=links[p][0]: socket.if_nametoindex(name))
            core.add_port(p, policy)
            prog.add_port(p, policy, ifindex=ifindex)
            prog.attach(p, netns=ns)
            endpoints[p] = _Endpoint(ns, links[p][1])
        assert tc.ingress_filters(ifindex, netns=ns) == ["vs_ingress"]

        sent = [
            ("B", _frame(b"\xff" * 6, MAC["B"], vid=10, pcp=3, seq=1)),   # flood VLAN 10: A (pop), D (keep)
            ("A", _frame(MAC["B"], MAC["A"], seq=2)),                      # known unicast: B, tag 10 pushed
            ("A", _frame(MAC["B"], MAC["A"], vid=0, pcp=5, seq=3)),        # priority tag: B, rewritten to 10
            ("D", _frame(b"\xff" * 6, MAC["D"], seq=4)),                   # untagged = native 20: B (push), C
            ("B", _frame(MAC["D"], MAC["B"], vid=20, seq=5)),              # known unicast in 20: D, popped
            ("C", _frame(MAC["A"], MAC["C"], seq=6)),                      # A is in VLAN 10 only: unknown, B, D
            ("B", _frame(MAC["A"], MAC["B"], vid=30, seq=7)),              # VLAN 30 not allowed on B: dropped
        ]
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
                           what=f"port {p} to receive {len(expected[p])} frames (frame {frame[18:22].hex()})")
        for p in POLICIES:
            assert endpoints[p].poll() == expected[p], f"port {p} received other frames than the core sends"

        c = {p: prog.counters(p) for p in POLICIES}
        assert c["B"]["drop_vlan_ingress"] == 1 and c["B"]["flood_broadcast"] == 1
        assert c["A"]["forward_learned"] == 2 and c["C"]["flood_unknown"] == 1
        assert sum(x["redirect_fail"] + x["tag_fail"] + x["upcall"] for x in c.values()) == 0
        for p in POLICIES:  # the core's ingress counts, as the program counted them from real frames
            snap = core.counters[p].snapshot()
            assert {k: c[p][k] for k in ("rx_frames", "rx_bytes", "floods", "learned")} == \
                {k: snap[k] for k in ("rx_frames", "rx_bytes", "floods", "learned")}, p
    finally:
        for e in endpoints.values():
            e.port.close()
        prog.close()
    for p in POLICIES:
        assert not tc.has_clsact(run_in(ns, lambda name=links[p][0]: socket.if_nametoindex(name)), netns=ns)
    assert set(libbpf.program_ids()) - progs_before == set(), "a BPF program outlived SwitchProgram.close"
    assert set(libbpf.map_ids()) - maps_before == set(), "a BPF map outlived SwitchProgram.close"

"""Private VLANs and port isolation, told frame by frame (memory ports; as root again on veth cables
on each datapath): an isolated host's broadcast reaches the promiscuous port and the trunk (tagged
with its secondary) only, a community's its community too, the promiscuous port's everybody; the
answers are known unicast (one learning domain); an isolated host's frame to another is dropped; and
two isolated ports never meet while both still reach a third."""

from __future__ import annotations

import struct

import pytest
from memswitch import Factory

from l2frames import BROADCAST, mac
from vswitch.core.policy import PortPolicy, PvlanMode

pytestmark = pytest.mark.timeout(60)

BCAST = bytes.fromhex(BROADCAST.replace(":", ""))
P, ISO, COM = 100, 101, 102
BODY = b"\x88\xb5" + bytes(46)   # an experimental ethertype: no host stack answers it

PVLAN = {
    "PROM": PortPolicy.private(PvlanMode.PROMISCUOUS, P, {ISO, COM}),
    "I1": PortPolicy.private(PvlanMode.ISOLATED, P, {ISO}),
    "I2": PortPolicy.private(PvlanMode.ISOLATED, P, {ISO}),
    "C1": PortPolicy.private(PvlanMode.COMMUNITY, P, {COM}),
    "C2": PortPolicy.private(PvlanMode.COMMUNITY, P, {COM}),
    "T": PortPolicy.trunk([P, ISO, COM]),
}


def frame(dst: bytes, src: bytes) -> bytes:
    return dst + src + BODY


def tagged(f: bytes, vid: int) -> bytes:
    return f[:12] + struct.pack("!HH", 0x8100, vid) + f[12:]


def test_a_private_vlan_told_frame_by_frame(switch: Factory) -> None:
    sw = switch(PVLAN)
    i1, i2, c1, c2, prom = mac("i1"), mac("i2"), mac("c1"), mac("c2"), mac("pr")
    b = frame(BCAST, i1)
    sw.expect(b, on="I1", arrives_on={"PROM": b, "T": tagged(b, ISO)}, not_on=["I2", "C1", "C2"],
              why="an isolated host's broadcast reaches the promiscuous port and the trunk, tagged 101")
    b = frame(BCAST, i2)
    sw.expect(b, on="I2", arrives_on={"PROM": b, "T": tagged(b, ISO)}, why="so does the other's")
    b = frame(BCAST, c1)
    sw.expect(b, on="C1", arrives_on={"PROM": b, "C2": b, "T": tagged(b, COM)}, not_on=["I1", "I2"],
              why="a community's broadcast reaches its community too, tagged 102 on the trunk")
    b = frame(BCAST, c2)
    sw.expect(b, on="C2", arrives_on={"PROM": b, "C1": b, "T": tagged(b, COM)}, why="and the other's")
    b = frame(BCAST, prom)
    sw.expect(b, on="PROM", arrives_on={"I1": b, "I2": b, "C1": b, "C2": b, "T": tagged(b, P)},
              why="the promiscuous port's broadcast reaches everybody, tagged 100 on the trunk")
    u = frame(i1, prom)
    sw.expect(u, on="PROM", arrives_on=["I1"], why="the answer to an isolated host is known unicast: "
                                                  "its MAC was learned under the primary")
    assert sw.fdb_port(i1, P) == "I1" and sw.fdb_port(c1, P) == "C1"
    sw.expect(frame(i2, i1), on="I1", arrives_on=[], why="an isolated host's frame to the other is dropped")
    sw.expect(frame(c1, i1), on="I1", arrives_on=[], why="and to a community host")
    sw.expect(frame(c2, c1), on="C1", arrives_on=["C2"], why="a community host reaches its community")
    sw.expect(frame(i1, c1), on="C1", arrives_on=[], why="but not an isolated host")
    far = mac("fa")
    sw.expect(tagged(frame(i2, far), ISO), on="T", arrives_on=[],
              why="from the trunk, a far isolated host's frame to an isolated one here is dropped too")
    f = frame(prom, far)
    sw.expect(tagged(f, ISO), on="T", arrives_on={"PROM": f}, why="and reaches the promiscuous port untagged")
    assert sw.counters("I1")["drops"] == {"drop_private_vlan": 2}
    assert sw.counters("T")["drops"] == {"drop_private_vlan": 1}


def test_isolated_ports_told_frame_by_frame(switch: Factory) -> None:
    sw = switch({"A": PortPolicy(isolated=True), "B": PortPolicy(isolated=True), "N": None})
    a, b, n = mac("a"), mac("b"), mac("n")
    sw.expect(frame(BCAST, a), on="A", arrives_on=["N"], not_on=["B"], why="an isolated port's broadcast "
                                                                         "skips the other isolated port")
    sw.expect(frame(BCAST, b), on="B", arrives_on=["N"], not_on=["A"], why="both ways")
    sw.expect(frame(BCAST, n), on="N", arrives_on=["A", "B"], why="a port that is not isolated reaches both")
    sw.expect(frame(b, a), on="A", arrives_on=[], why="known unicast between isolated ports is dropped")
    sw.expect(frame(n, a), on="A", arrives_on=["N"], why="an isolated port still reaches the others")
    sw.expect(frame(a, n), on="N", arrives_on=["A"], why="and is reached by them")
    assert sw.counters("A")["drops"] == {"drop_isolated": 1}

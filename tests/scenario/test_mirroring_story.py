"""Port mirroring, told frame by frame (memory ports; as root again on veth cables on each datapath):
what the source S sends and receives reaches the monitors M (access) and T (trunk) once each, T's
copy tagged with the frame's VLAN and M's untagged; the others' traffic never does; a monitor keeps
its own traffic; nothing is sent back to the port a frame came from; dropped frames are not mirrored."""

from __future__ import annotations

import struct

import pytest
from memswitch import Factory

from guard_frames import eth
from l2frames import BROADCAST, mac
from vswitch.core.policy import PortMirroring, PortPolicy

pytestmark = pytest.mark.timeout(60)

BCAST = bytes.fromhex(BROADCAST.replace(":", ""))
BODY = b"\x88\xb5" + bytes(46)  # an experimental ethertype: no host stack answers it
TAG10 = struct.pack("!HH", 0x8100, 10)
PORTS = {"S": PortPolicy.access(10, port_mirroring=PortMirroring.SOURCE), "P": PortPolicy.access(10),
         "O": PortPolicy.access(10), "Q": PortPolicy.access(10),
         "M": PortPolicy.access(10, port_mirroring=PortMirroring.DESTINATION),
         "T": PortPolicy.trunk([10, 20], flooding=False, port_mirroring=PortMirroring.DESTINATION)}


def test_the_monitors_see_the_sources_frames_once_and_nothing_else(switch: Factory) -> None:
    sw = switch(PORTS)
    s, p, o, q, m = (mac(n) for n in "spoqm")
    hello = eth(BCAST, s, BODY)
    sw.expect(hello, on="S", arrives_on={"P": hello, "O": hello, "Q": hello, "M": hello,
                                         "T": eth(BCAST, s, BODY, tag=TAG10)},
              why="S's broadcast floods to M once (no second copy) and is copied to T, which does not "
                  "flood, tagged VLAN 10")
    for name, src in (("P", p), ("O", o), ("Q", q), ("M", m)):
        flood = eth(BCAST, src, BODY)
        sw.expect(flood, on=name, arrives_on={**{x: flood for x in "SPOQM" if x != name},
                                              "T": eth(BCAST, src, BODY, tag=TAG10)},
                  why=f"{name}'s broadcast floods as usual, and reaches the source S: T gets a copy")
    there, back = eth(p, s, BODY), eth(s, p, BODY)
    sw.expect(there, on="S", arrives_on={"P": there, "M": there, "T": eth(p, s, BODY, tag=TAG10)},
              why="S → P: P gets it, and each monitor one copy")
    sw.expect(back, on="P", arrives_on={"S": back, "M": back, "T": eth(s, p, BODY, tag=TAG10)},
              why="P → S: what is delivered to the source is mirrored too")
    sw.expect(eth(q, o, BODY), on="O", arrives_on=["Q"], not_on=["M", "T"],
              why="O → Q: the others' traffic is not mirrored")
    sw.expect(eth(p, m, BODY), on="M", arrives_on=["P"], not_on=["T"],
              why="the monitor M keeps its own traffic: M → P is forwarded, and not mirrored")
    sw.expect(eth(s, m, BODY), on="M", arrives_on={"S": eth(s, m, BODY), "T": eth(s, m, BODY, tag=TAG10)},
              why="M → S is mirrored to T, never back to M")
    sw.expect(eth(s, s, BODY), on="S", arrives_on=[], not_on=["M", "T"],
              why="a frame S sends to its own MAC is dropped (same port): dropped frames are not mirrored")
    assert sw.counters("M")["mirror_tx"] == 2 and sw.counters("T")["mirror_tx"] == 8
    assert sw.counters("S")["mirrored"] == 8 and sw.counters("P")["mirrored"] == 0

"""Bad frames mixed into good traffic (RFC 2889 5.9 style), through a real switch.

A QEMU stream socket can deliver anything, unlike a kernel link: the test is the "guest" and
writes QEMU's framing itself. One frame in ten is bad — runts, a truncated VLAN tag, a zero or
multicast source, an IEEE reserved destination, a tag on an access port. Every good frame (UDP
with a sequence number, to a namespace behind a TAP port) must arrive; every bad one must be
counted under its own name; the switch must keep running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from switchlab import move_and_address

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType

pytestmark = pytest.mark.root

GUEST_MAC, SINK_MAC = "02:00:00:84:00:01", "02:00:00:84:00:02"
GUEST_IP, SINK_IP = "10.84.0.1", "10.84.0.2"
GOOD = 1000

SINK = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: hold every datagram of a burst
s.bind((sys.argv[1], 9999))
print("ready", flush=True)
# Done when every good frame is in, or when none came for a long while (then some were lost): an
# idle timer that started at "ready" would race the test building and sending its stream.
s.settimeout(60)
seqs = []
try:
    while len(seqs) < int(sys.argv[2]):
        seqs.append(int(s.recv(2048)[:8]))
        s.settimeout(10)
except socket.timeout:
    pass
print(json.dumps(seqs), flush=True)
"""

_BAD = {
    # name: (frame, where it is counted)
    "runt-1": (b"\x01", "rx_runts"),
    "runt-13": (bytes(13), "rx_runts"),
    "truncated-tag": (bytes.fromhex(SINK_MAC.replace(":", "") + GUEST_MAC.replace(":", "")) + b"\x81\x00\x00",
                      "drop_malformed"),
    "zero-source": (bytes(Ether(dst=SINK_MAC, src="00:00:00:00:00:00") / Raw(bytes(46))), "drop_invalid_src"),
    "multicast-source": (bytes(Ether(dst=SINK_MAC, src="01:00:5e:00:00:01") / Raw(bytes(46))), "drop_invalid_src"),
    "stp-bpdu": (bytes(Ether(dst="01:80:c2:00:00:00", src=GUEST_MAC) / Raw(bytes(46))), "drop_reserved_group"),
    "lldp": (bytes(Ether(dst="01:80:c2:00:00:0e", src=GUEST_MAC, type=0x88CC) / Raw(bytes(46))),
             "drop_reserved_group"),
    "tag-on-access-port": (bytes(Ether(dst=SINK_MAC, src=GUEST_MAC) / Dot1Q(vlan=10) / IP(src=GUEST_IP, dst=SINK_IP)
                                 / UDP(dport=9999) / Raw(b"x" * 18)), "drop_vlan_ingress"),
}


def _good(seq: int) -> bytes:
    return bytes(Ether(dst=SINK_MAC, src=GUEST_MAC) / IP(src=GUEST_IP, dst=SINK_IP)
                 / UDP(sport=9998, dport=9999) / Raw(b"%08d" % seq + bytes(24)))


def _framed(frame: bytes) -> bytes:
    return len(frame).to_bytes(4, "big") + frame


def test_one_bad_frame_in_ten_is_counted_and_no_good_frame_is_lost(netns):
    m = SwitchManager()
    tmp = tempfile.TemporaryDirectory(prefix="vsm-")
    guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sw = ns_helpers.unique_name("sm")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
        path = os.path.join(tmp.name, "guest.sock")
        m.add_port(sw, PortSpec("guest", PortKind.QEMU_STREAM, path))
        ns_sink = netns("sms")
        tap = ns_helpers.unique_name("smt")
        m.add_port(sw, PortSpec("sink", PortKind.TAP, tap))
        move_and_address(tap, ns_sink, f"{SINK_IP}/24", mac=SINK_MAC)
        sink = ns_helpers.popen(ns_sink, [sys.executable, "-c", SINK, SINK_IP, str(GOOD)], stdout=subprocess.PIPE)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        guest.connect(path)

        names = list(_BAD)
        expected: dict[str, int] = {}
        stream = bytearray()
        for seq in range(GOOD):
            stream += _framed(_good(seq))
            if seq % 9 == 8:
                name = names[(seq // 9) % len(names)]
                frame, counter = _BAD[name]
                stream += _framed(frame)
                expected[counter] = expected.get(counter, 0) + 1
        for i in range(0, len(stream), 8192):  # chunks that split frames and length headers anywhere
            guest.sendall(stream[i:i + 8192])
            time.sleep(0.002)  # not a wait: keeps the chunks apart, so the switch reads them split

        out, _ = sink.communicate(timeout=90)
        seqs = json.loads(out.strip().splitlines()[-1])
        assert sorted(seqs) == list(range(GOOD)), \
            f"every good frame arrives: {GOOD - len(set(seqs))} of {GOOD} lost"

        stats = {s.port: s for s in m.stats(sw)}
        guest_port = m.port_object(sw, "guest")
        for counter, n in expected.items():
            got = guest_port.rx_runts if counter == "rx_runts" else stats["guest"].drops.get(counter, 0)
            assert got == n, f"{counter}: {n} bad frames sent, {got} counted"
        assert guest_port.connected, "bad frames never cost the guest its connection"
        assert stats["sink"].tx_frames == GOOD, "only good frames reached the sink"
        assert m.datapath(sw).port_state("guest")["up"]
    finally:
        guest.close()
        m.shutdown()
        tmp.cleanup()

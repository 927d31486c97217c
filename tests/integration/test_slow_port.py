"""One slow port must not hurt the switch: a link port whose kernel link is shaped to 8 kbit/s.

Three namespaces hang off a private switch through link ports on veths. The switch side of S's veth
has a tbf qdisc, so almost every frame toward S is dropped by the kernel (send() says ENOBUFS). A
blast of UDP toward S must be counted as drops on S, A and B must keep talking, and once the blast
is over the datapath must go back to sleep (it used to retry the dropped frames on EPOLLOUT forever
at 100% CPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from pyroute2 import IPRoute
from switchlab import address_in, delete_link, veth_pair

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType

pytestmark = pytest.mark.root

BLAST = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(1000)
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    try:
        s.sendto(payload, (sys.argv[1], 9))
        n += 1
    except OSError:
        pass
print(n)
"""


def _thread_cpu_s(native_id: int) -> float:
    fields = open(f"/proc/self/task/{native_id}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_shaped_link_port_drops_and_counts_without_spinning(netns):
    m = SwitchManager()
    sides: list[str] = []
    try:
        sw = ns_helpers.unique_name("sw")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
        nss = {}
        for i, who in enumerate("abs"):
            nss[who] = netns("sl" + who)
            inner, side = ns_helpers.unique_name("si" + who), ns_helpers.unique_name("so" + who)
            veth_pair(side, inner, None, nss[who])
            sides.append(side)
            address_in(nss[who], inner, f"10.81.0.{i + 1}/24")
            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname=side)[0], state="up")
            m.add_port(sw, PortSpec(who, PortKind.LINK, side))
        with IPRoute() as ipr:
            ipr.tc("add", "tbf", index=ipr.link_lookup(ifname=sides[2])[0], handle="1:", rate="8kbit",
                   burst=4096, latency="20ms")
        assert ns_helpers.ping(nss["a"], "10.81.0.2"), "A reaches B through the switch"
        assert ns_helpers.ping(nss["a"], "10.81.0.3"), "small frames fit S's burst allowance"

        blast = ns_helpers.popen(nss["a"], [sys.executable, "-c", BLAST, "10.81.0.3", "1.5"],
                                   stdout=subprocess.PIPE)
        assert ns_helpers.ping(nss["b"], "10.81.0.1", count=5, interval=0.2), \
            "A and B keep talking while S's link drops almost everything"
        out, _ = blast.communicate(timeout=30)
        blasted = int(out.strip() or 0)

        thread = m.datapath(sw)._thread
        assert thread is not None and thread.native_id is not None
        time.sleep(0.3)
        before = _thread_cpu_s(thread.native_id)
        time.sleep(1.0)
        used = _thread_cpu_s(thread.native_id) - before
        assert used < 0.3, f"after the blast the datapath must sleep: it used {used:.2f} s of CPU in 1 s"

        stats = {s.port: s for s in m.stats(sw)}
        dropped = stats["s"].drops.get("drop_queue_full", 0)
        assert blasted > 1000, f"the blaster sent only {blasted} datagrams"
        assert dropped > blasted // 2, f"S's drops must be counted: {dropped} of {blasted} frames"
        assert stats["s"].tx_frames < blasted // 10, "8 kbit/s lets only a trickle through"
    finally:
        m.shutdown()
        for side in sides:
            delete_link(side)

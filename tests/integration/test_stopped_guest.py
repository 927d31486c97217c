"""A frozen VM must not hurt the others: a real QEMU guest is stopped (SIGSTOP) while broadcasts
flood toward it; two namespaces on TAP ports keep pinging each other without loss, the frozen
port's bounded queue overflows and is counted, and the guest answers again once it is continued.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from switchlab import move_and_address, switch_with_guest_port

import netns as ns_helpers
from vswitch.control.model import PortKind, PortSpec

pytestmark = pytest.mark.root

BLAST = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
end, n = time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < end:
    for _ in range(20):
        try:
            s.sendto(bytes(200), (sys.argv[1], 9)); n += 1
        except OSError:
            pass
    time.sleep(0.001)
print(n)
"""


def test_a_stopped_qemu_guest_costs_the_other_ports_nothing(guest_image, netns):
    with switch_with_guest_port(guest_image, "vm") as gs:
        m, sw, guest = gs.manager, gs.switch, gs.guest
        nss = {}
        for i, who in enumerate("ab", 1):
            nss[who] = netns("ss" + who)
            tap = ns_helpers.unique_name("st" + who)
            m.add_port(sw, PortSpec(who, PortKind.TAP, tap))
            move_and_address(tap, nss[who], f"10.88.0.{i}/24")
        guest.start(gs.qemu_arg, "52:54:00:88:00:05", addresses=("10.88.0.5/24",))
        assert ns_helpers.ping(nss["a"], "10.88.0.5"), "the guest answers before it is stopped"
        assert guest.pid is not None

        os.kill(guest.pid, signal.SIGSTOP)
        try:
            blast = ns_helpers.popen(nss["a"], [sys.executable, "-c", BLAST, "10.88.0.255", "3"],
                                     stdout=subprocess.PIPE)
            out = ns_helpers.run(nss["b"], ["ping", "-n", "-q", "-c", "200", "-i", "0.01", "10.88.0.1"],
                                 check=False, timeout=30).stdout
            sent = int((blast.communicate(timeout=30)[0] or "0").strip() or 0)
            assert "200 received" in out, f"B ↔ A must not lose a ping while the guest is frozen: {out}"
            stats = {s.port: s for s in m.stats(sw)}
            assert stats["vm"].drops.get("drop_queue_full", 0) > 0, \
                f"the frozen guest's queue overflowed and was counted ({sent} broadcasts sent)"
            assert m.datapath(sw).port_state("a")["up"] and m.datapath(sw).port_state("b")["up"]
        finally:
            os.kill(guest.pid, signal.SIGCONT)
        rc, out = guest.exec("ping -c 2 -W 5 10.88.0.2")
        assert rc == 0, f"the guest is back once continued: {out}"

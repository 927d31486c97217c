"""A frozen VM must not hurt the others: a real QEMU guest is stopped (SIGSTOP) while broadcasts
flood toward it; two namespaces on TAP ports keep pinging each other without loss, the frozen
port's bounded queue overflows and is counted, and the guest answers again once it is continued.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest
from switchlab import move_and_address, switch_with_guest_port

import netns as ns_helpers
from vswitch.control.model import PortKind, PortSpec
from waiting import wait_until

pytestmark = pytest.mark.root

# Paced at ~2,000 broadcasts/s until stopped (by PID): enough to fill the frozen guest's socket and
# queue within seconds, and far below what the switch forwards even on a loaded machine. An unpaced
# blaster measured the machine: once it outran the switch, A's own TAP queue dropped A's ping replies.
BLAST = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
end = time.monotonic() + 120
while time.monotonic() < end:
    for _ in range(20):
        try:
            s.sendto(bytes(200), (sys.argv[1], 9))
        except OSError:
            pass
    time.sleep(0.01)
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
        blast = None
        try:
            blast = ns_helpers.popen(nss["a"], [sys.executable, "-c", BLAST, "10.88.0.255"])

            def vm_drops() -> int:
                return {s.port: s for s in m.stats(sw)}["vm"].drops.get("drop_queue_full", 0)
            # the frozen guest's socket and queue are full: from now on its frames are dropped
            wait_until(vm_drops, 60, "the frozen guest's queue to overflow and be counted")
            out = ns_helpers.run(nss["b"], ["ping", "-n", "-q", "-c", "200", "-i", "0.01", "10.88.0.1"],
                                 check=False, timeout=60).stdout
            full = vm_drops()
            assert "200 received" in out, f"B ↔ A must not lose a ping while the guest is frozen: {out}"
            assert m.datapath(sw).port_state("a")["up"] and m.datapath(sw).port_state("b")["up"]
            wait_until(lambda: vm_drops() > full, 60, "the guest's drops to go on rising while it is frozen")
        finally:
            if blast is not None:
                blast.terminate()
                blast.wait(timeout=10)
            os.kill(guest.pid, signal.SIGCONT)
        rc, out = guest.exec("ping -c 2 -W 5 10.88.0.2")
        assert rc == 0, f"the guest is back once continued: {out}"

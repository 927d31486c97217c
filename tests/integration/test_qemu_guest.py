"""A real QEMU guest on a qemu-stream / qemu-dgram port, started with the `-netdev` argument the
port prints, talks to a namespace behind a TAP port: ping both ways, and a TCP transfer whose
SHA-256 must match (from the TAP side the switch receives TSO super-frames; the QEMU port takes
none, so the switch segments them in software).

The guest is Debian's kernel with a busybox initramfs (vswitch.lab.guest), under QEMU's software
emulation.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from switchlab import move_and_address, switch_with_guest_port

import netns as ns_helpers
from vswitch.control.model import PortKind, PortSpec

pytestmark = pytest.mark.root

GUEST_MAC = "52:54:00:86:00:05"
SEND = """
import socket, sys, time
data = bytes((i * 7) & 0xff for i in range(1 << 16)) * int(sys.argv[2])
for _ in range(600):  # up to a minute for the guest's nc to listen (an emulated CPU may be slow)
    try:
        c = socket.create_connection((sys.argv[1], 5001), timeout=30); break
    except OSError:
        time.sleep(0.1)
c.sendall(data); c.close()
"""



@pytest.mark.parametrize("kind", [PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM], ids=["stream", "dgram"])
def test_a_real_qemu_guest_on_the_printed_netdev_argument(guest_image, netns, kind):
    with switch_with_guest_port(guest_image, "vm1", kind) as gs:
        m, sw, guest = gs.manager, gs.switch, gs.guest
        ns = netns("sgn")
        tap = ns_helpers.unique_name("sgt")
        m.add_port(sw, PortSpec("vm2", PortKind.TAP, tap))
        move_and_address(tap, ns, "10.87.0.2/24")
        guest.start(gs.qemu_arg, GUEST_MAC, addresses=("10.87.0.5/24",), log_path=os.path.join(gs.dir, "qemu.log"))

        assert ns_helpers.ping(ns, "10.87.0.5"), "the namespace reaches the QEMU guest"
        rc, out = guest.exec("ping -c 2 -W 5 10.87.0.2")
        assert rc == 0, f"the guest reaches the namespace: {out}"
        fdb = {e.mac: e.port for e in m.fdb_show(sw)}
        assert fdb.get(GUEST_MAC) == "vm1", "the switch learned the guest behind its QEMU port"

        # TCP from the TAP side (TSO super-frames) into the guest: 8 MiB, hashed on both ends
        blocks = 128
        expected = hashlib.sha256(bytes((i * 7) & 0xff for i in range(1 << 16)) * blocks).hexdigest()
        assert guest.exec("nc -l -p 5001 | sha256sum > /tmp/sum &")[0] == 0
        sender = ns_helpers.popen(ns, [sys.executable, "-c", SEND, "10.87.0.5", str(blocks)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err
        rc, out = guest.exec("wait; cat /tmp/sum", timeout=60)
        assert out.split()[:1] == [expected], f"the guest received the bytes intact: {out!r}"

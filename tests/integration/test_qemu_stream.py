"""A namespace attached through a qemu-stream port (a stand-in QEMU client) talks to a TAP port.

TCP from the TAP side arrives as 64 KB TSO super-frames with a virtio-net header; the
qemu-stream port cannot take those, so the switch must finish checksums and segment in software.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from fakeqemu import FakeQemu
from switchlab import move_and_address

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from waiting import wait_until

pytestmark = pytest.mark.root

TCP_BYTES = 20_000_000


@pytest.fixture
def setup(netns):
    m = SwitchManager()
    tmp = tempfile.TemporaryDirectory(prefix="vsq-")
    guest = None
    try:
        sw = ns_helpers.unique_name("sq")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
        path = os.path.join(tmp.name, "vm1.sock")
        info = m.add_port(sw, PortSpec("vm1", PortKind.QEMU_STREAM, path))
        assert path in info.details["qemu_arg"], "the port must tell the user the -netdev argument"
        ns_guest, ns_tap = netns("qg"), netns("qt")
        guest = FakeQemu(ns_helpers.unique_name("qg"), path).connect()
        move_and_address(guest.ifname, ns_guest, "10.79.0.1/24")
        tap = ns_helpers.unique_name("qt")
        m.add_port(sw, PortSpec("vm2", PortKind.TAP, tap))
        move_and_address(tap, ns_tap, "10.79.0.2/24")
        yield m, sw, guest, ns_guest, ns_tap
    finally:
        if guest is not None:
            guest.close()
        m.shutdown()
        tmp.cleanup()


def test_ping_and_tcp_between_qemu_stream_and_tap(setup):
    m, sw, guest, ns_guest, ns_tap = setup
    assert ns_helpers.ping(ns_guest, "10.79.0.2"), "the guest behind the qemu-stream socket must reach the TAP side"
    # TAP side sends: TSO super-frames must be segmented for the stream port
    ns_helpers.tcp_transfer(ns_tap, ns_guest, "10.79.0.1", TCP_BYTES)
    ns_helpers.tcp_transfer(ns_guest, ns_tap, "10.79.0.2", TCP_BYTES)
    assert guest.frames_in > 0 and m.datapath(sw).port_state("vm1")["up"]


def test_guest_that_disconnects_and_reconnects_comes_back(setup):
    m, sw, guest, ns_guest, ns_tap = setup
    assert ns_helpers.ping(ns_guest, "10.79.0.2")

    def port(name: str):
        return {p.name: p for p in m.list_ports(sw)}[name]

    def stats(name: str):
        return {s.port: s for s in m.stats(sw)}[name]

    guest.disconnect()
    wait_until(lambda: not port("vm1").details["connected"] and port("vm1").details["disconnects"] == 1,
               what="the switch to see the guest hang up")
    before = stats("vm1")
    # the TAP side still sends to the guest's MAC: each frame is dropped and counted on vm1
    assert not ns_helpers.ping(ns_tap, "10.79.0.1", count=3, deadline=3), "nobody answers for a gone guest"
    away = stats("vm1")
    assert away.tx_frames == before.tx_frames, "nothing is sent to a port without a client"
    assert sum(away.drops.values()) > sum(before.drops.values()), \
        f"frames toward the gone guest are counted as drops: {before.drops} → {away.drops}"
    gone = port("vm1")
    assert not gone.up and gone.details.get("down_reason"), f"the port says it is down, and why: {gone}"
    assert port("vm2").up, "the other port keeps forwarding while the guest is away"

    guest.connect()
    wait_until(lambda: port("vm1").details["connected"], what="the switch to accept the returning guest")
    assert port("vm1").details["clients_accepted"] == 2
    assert ns_helpers.ping(ns_guest, "10.79.0.2"), "a reconnected guest must forward again"
    assert stats("vm1").tx_frames > away.tx_frames, "frames reach the guest again"
    wait_until(lambda: port("vm1").up, what="the port to say up again once frames flow")

"""A namespace attached through a qemu-stream port (a stand-in QEMU client) talks to a TAP port.

TCP from the TAP side arrives as 64 KB TSO super-frames with a virtio-net header; the
qemu-stream port cannot take those, so the switch must finish checksums and segment in software.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest
from fakeqemu import FakeQemu
from switchlab import move_and_address

import netns as ns_helpers
from conftest import require_tool
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType

pytestmark = pytest.mark.root


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
    require_tool("iperf3")
    m, sw, guest, ns_guest, ns_tap = setup
    assert ns_helpers.ping(ns_guest, "10.79.0.2"), "the guest behind the qemu-stream socket must reach the TAP side"
    server = ns_helpers.popen(ns_guest, ["iperf3", "-s", "-1", "-B", "10.79.0.1"])
    try:
        time.sleep(0.5)
        # TAP side sends: TSO super-frames must be segmented for the stream port
        out = ns_helpers.run(ns_tap, ["iperf3", "-c", "10.79.0.1", "-t", "3", "-J"], timeout=60)
    finally:
        server.kill()
        server.wait()
    result = json.loads(out.stdout)
    received = result["end"]["sum_received"]["bytes"]
    assert received > 10e6, f"TCP from the TAP port to the qemu-stream port must flow (got {received} bytes)"
    assert result["end"]["sum_sent"]["retransmits"] < 1000 or received > 100e6


def test_guest_that_disconnects_and_reconnects_comes_back(setup):
    m, sw, guest, ns_guest, ns_tap = setup
    assert ns_helpers.ping(ns_guest, "10.79.0.2")
    guest.disconnect()
    time.sleep(0.3)
    ports = {p.name: p for p in m.list_ports(sw)}
    assert ports["vm2"].up, "the other port keeps forwarding while the guest is away"
    guest.connect()
    assert ns_helpers.ping(ns_guest, "10.79.0.2"), "a reconnected guest must forward again"

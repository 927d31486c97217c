"""Port truth (issue 10): what `port list` and `stats` say is what the ports are doing.

- a qemu-stream port with no QEMU is down ("waiting for QEMU to connect"), up once one connects;
- runts, bad lengths and truncated frames from a qemu-stream port are in `stats` drops;
- 65,536-byte frames from qemu-stream and 65,554-byte datagrams from qemu-dgram never reach an
  MTU-1500 TAP (captured on the TAP) and are counted DROP_OVERSIZE;
- a TAP moved into a namespace and set down there, and a veth link port set down, are shown down
  within 1 s of the `ip link set down` (netlink link events), and up again after `set up` (the link
  port on both datapaths: the kernel one has no socket on it, only the link watch).
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest
from switchlab import delete_link, move_and_address, veth_pair

import datapaths
import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import DatapathMode, PortKind, PortSpec, SwitchSpec, SwitchType

pytestmark = pytest.mark.root

SRC = bytes.fromhex("02a0a0a0a001")
BCAST = b"\xff" * 6


def wait_for(cond: Callable[[], bool], what: str, timeout: float) -> float:
    """Poll `cond` until true; the time it took. Fails after `timeout` s."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.005)
    return time.monotonic() - t0


def eth(size: int, fill: int = 0) -> bytes:
    return BCAST + SRC + b"\x08\x00" + bytes([fill]) * (size - 14)


@pytest.fixture
def switch(request: pytest.FixtureRequest) -> Iterator[tuple[SwitchManager, str, str]]:
    """A private switch on `auto`, or on the datapath a test gives (indirect parametrization)."""
    mode = getattr(request, "param", "auto")
    datapaths.require(mode)
    m = SwitchManager()
    tmp = tempfile.mkdtemp(prefix="vspt", dir="/tmp")
    name = ns_helpers.unique_name("pt")
    try:
        m.create_switch(SwitchSpec(name, SwitchType.PRIVATE, datapath=DatapathMode(mode)))
        yield m, name, tmp
    finally:
        m.shutdown()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)


def port(m: SwitchManager, sw: str, name: str):
    return {p.name: p for p in m.list_ports(sw)}[name]


def stream_client(path: str) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    return c


def test_qemu_stream_without_a_client_is_down_until_one_connects(switch) -> None:
    m, sw, tmp = switch
    path = os.path.join(tmp, "vm.sock")
    info = m.add_port(sw, PortSpec("vm", PortKind.QEMU_STREAM, path))
    assert not info.up and info.details["down_reason"] == "waiting for QEMU to connect", info
    with stream_client(path):
        wait_for(lambda: port(m, sw, "vm").up, "the port is up once QEMU connected", 5)
        assert "down_reason" not in port(m, sw, "vm").details
    wait_for(lambda: not port(m, sw, "vm").up, "the port is down again when QEMU left", 5)
    assert port(m, sw, "vm").details["down_reason"] == "waiting for QEMU to connect"


def test_qemu_stream_receive_drops_are_in_stats(switch) -> None:
    m, sw, tmp = switch
    path = os.path.join(tmp, "vm.sock")
    m.add_port(sw, PortSpec("vm", PortKind.QEMU_STREAM, path))

    def drops() -> dict[str, int]:
        return {s.port: s for s in m.stats(sw)}["vm"].drops

    with stream_client(path) as c:
        c.sendall(struct.pack(">I", 5) + bytes(5) + struct.pack(">I", 13) + bytes(13))
        wait_for(lambda: drops().get("drop_runt") == 2, "two runts counted as drop_runt in stats", 5)
        c.sendall(struct.pack(">I", 1 << 20))  # a length QEMU would never send: connection closed
        wait_for(lambda: drops().get("drop_bad_length") == 1, "the bad length in stats", 5)
    with stream_client(path) as c:
        wait_for(lambda: port(m, sw, "vm").up, "a new client", 5)
        c.sendall(struct.pack(">I", 100) + bytes(40))  # then the stream ends mid-frame
    wait_for(lambda: drops().get("drop_truncated") == 1, "the truncated frame in stats", 5)
    details = port(m, sw, "vm").details
    assert (details["rx_runts"], details["rx_bad_length"], details["rx_truncated"]) == (2, 1, 1)


def _capture(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((ifname, 0))
    s.settimeout(0.2)
    return s


def _ours(cap: socket.socket, until_fill: int, timeout: float = 5) -> list[bytes]:
    """Frames from SRC captured until the marker frame (filled with `until_fill`) arrives."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            f = cap.recv(1 << 17)
        except TimeoutError:
            continue
        if f[6:12] == SRC:
            got.append(f)
            if len(f) == 60 and f[-1] == until_fill:
                return got
    raise AssertionError("the marker frame after the oversize ones never reached the TAP")


def test_oversize_frames_from_socket_ports_never_reach_an_mtu_1500_tap(switch, request) -> None:
    m, sw, tmp = switch
    tap = ns_helpers.unique_name("ptt")
    request.addfinalizer(lambda: delete_link(tap))  # a TAP port's netdev outlives the switch (it persists)
    m.add_port(sw, PortSpec("tap", PortKind.TAP, tap))
    ns_helpers.run(None, ["ip", "link", "set", tap, "up"])
    wait_for(lambda: port(m, sw, "tap").up, "the TAP port up", 5)
    spath, dpath = os.path.join(tmp, "s.sock"), os.path.join(tmp, "d.sock")
    m.add_port(sw, PortSpec("vs", PortKind.QEMU_STREAM, spath))
    m.add_port(sw, PortSpec("vd", PortKind.QEMU_DGRAM, dpath))
    cap = _capture(tap)
    dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        dg.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        dg.bind(dpath + ".qemu")
        with stream_client(spath) as c:
            wait_for(lambda: port(m, sw, "vs").up, "the stream client", 5)
            for _ in range(3):
                c.sendall(struct.pack(">I", 65536) + eth(65536))
            c.sendall(struct.pack(">I", 60) + eth(60, 1))
            got = _ours(cap, 1)
            for _ in range(3):
                dg.sendto(eth(65554), dpath)
            dg.sendto(eth(60, 2), dpath)
            got += _ours(cap, 2)
    finally:
        dg.close()
        cap.close()
    assert [len(f) for f in got] == [60, 60], "only the small frames reach the TAP"
    stats = {s.port: s.drops for s in m.stats(sw)}
    assert stats["tap"].get("drop_oversize") == 3, f"65,536-byte stream frames are oversize for the TAP: {stats}"
    assert stats["vd"].get("drop_oversize") == 3, f"65,554-byte datagrams are oversize on receive: {stats}"


def _down_then_up(m: SwitchManager, sw: str, pname: str, ns: str | None, ifname: str) -> None:
    wait_for(lambda: port(m, sw, pname).up, f"{pname} up before the test", 5)
    t0 = time.monotonic()
    ns_helpers.run(ns, ["ip", "link", "set", ifname, "down"])
    wait_for(lambda: not port(m, sw, pname).up, f"{pname} shown down", 1.0 - (time.monotonic() - t0))
    took = time.monotonic() - t0
    assert port(m, sw, pname).details["down_reason"] == "link down"
    ns_helpers.run(ns, ["ip", "link", "set", ifname, "up"])
    wait_for(lambda: port(m, sw, pname).up, f"{pname} shown up again", 1.0)
    print(f"{pname}: shown down {took * 1000:.0f} ms after ip link set down")


def test_tap_set_down_inside_its_namespace_is_seen_within_1s(switch, netns) -> None:
    m, sw, _tmp = switch
    ns = netns("ptn")
    tap = ns_helpers.unique_name("ptn")
    m.add_port(sw, PortSpec("vm", PortKind.TAP, tap))
    move_and_address(tap, ns, "10.81.0.1/24")
    _down_then_up(m, sw, "vm", ns, tap)
    ns_helpers.run(ns, ["ip", "link", "set", tap, "mtu", "1400"])
    wait_for(lambda: m.datapath(sw).port_state("vm")["mtu"] == 1400, "the new MTU in the datapath", 1.0)
    # moved on into a second namespace: watched there too
    ns2 = netns("ptm")
    ns_helpers.run(ns, ["ip", "link", "set", tap, "netns", ns2])
    ns_helpers.run(ns2, ["ip", "link", "set", tap, "up"])
    _down_then_up(m, sw, "vm", ns2, tap)


@pytest.mark.parametrize("switch", datapaths.DATAPATHS, indirect=True)
def test_link_port_set_down_is_seen_within_1s(switch, netns, request) -> None:
    m, sw, _tmp = switch
    ns = netns("ptl")
    a, b = ns_helpers.unique_name("pla"), ns_helpers.unique_name("plb")
    veth_pair(a, b, None, ns)
    try:
        ns_helpers.run(None, ["ip", "link", "set", a, "up"])
        ns_helpers.run(ns, ["ip", "link", "set", b, "up"])
        m.add_port(sw, PortSpec("ln", PortKind.LINK, a))
        datapaths.assert_runs_on(m.get_switch(sw).datapath, request.node.callspec.params["switch"])
        assert m.datapath(sw).port_state("ln")["mtu"] == 1500, "a link port knows its link's MTU"
        _down_then_up(m, sw, "ln", None, a)
        ns_helpers.run(ns, ["ip", "link", "set", b, "down"])
        wait_for(lambda: not port(m, sw, "ln").up, "no carrier when the peer goes down", 1.0)
        ns_helpers.run(ns, ["ip", "link", "set", b, "up"])
        wait_for(lambda: port(m, sw, "ln").up, "carrier back", 1.0)
    finally:
        delete_link(a)

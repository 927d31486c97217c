"""`VxlanPort` on loopback UDP (no root): the wire format, head-end replication, the VTEP each MAC was
seen behind, and every refused datagram counted under its reason. Stand-in VTEPs are plain UDP
sockets on 127.0.0.x, so what is asserted is the bytes on the wire."""

from __future__ import annotations

import errno
import select
import socket
from collections.abc import Iterator

import pytest

from vswitch.core.reasons import Reason
from vswitch.ports.vxlan import VxlanPort, vxlan_header

LOCAL = "127.0.0.1"
REMOTES = ("127.0.0.2", "127.0.0.3")
MAC_VM = bytes.fromhex("020000000001")
MAC_R1 = bytes.fromhex("020000000011")
MAC_R2 = bytes.fromhex("020000000022")
BCAST = b"\xff" * 6


def _frame(dst: bytes, src: bytes, body: bytes = b"x" * 46) -> bytes:
    return dst + src + b"\x08\x00" + body


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


class Vtep:
    """A stand-in remote VTEP: a UDP socket on its address and the tunnel's port."""

    def __init__(self, addr: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.sock.settimeout(5)

    def receive(self) -> bytes:
        return self.sock.recv(70000)

    def quiet(self) -> bool:
        return not select.select([self.sock], [], [], 0.2)[0]  # a bounded look for a datagram that must not come


@pytest.fixture
def tunnel() -> Iterator[tuple[VxlanPort, list[Vtep], list[Reason]]]:
    port_no = _free_udp_port()
    vteps = [Vtep(r, port_no) for r in REMOTES]
    port = VxlanPort("vx", REMOTES, 100, local=LOCAL, dstport=port_no)
    drops: list[Reason] = []
    port.count_rx_drop = drops.append
    port.open()
    try:
        yield port, vteps, drops
    finally:
        port.close()
        for v in vteps:
            v.sock.close()


def _arrive(port: VxlanPort) -> bytes | None:
    select.select([port.fileno()], [], [], 5)
    return port.recv()


def test_a_flood_goes_to_every_remote_and_a_known_mac_to_its_vtep(tunnel) -> None:
    port, (v1, v2), _ = tunnel
    frame = _frame(BCAST, MAC_VM)
    assert port.write(frame)
    assert v1.receive() == vxlan_header(100) + frame == v2.receive()
    # R1's frame arrives from 127.0.0.2: its MAC lives behind that VTEP from now on
    v1.sock.sendto(vxlan_header(100) + _frame(MAC_VM, MAC_R1), (LOCAL, port.dstport))
    assert _arrive(port) == _frame(MAC_VM, MAC_R1)
    assert port.where(MAC_R1) == REMOTES[0] and port.where(MAC_R2) is None
    assert port.write(_frame(MAC_R1, MAC_VM))
    assert v1.receive() == vxlan_header(100) + _frame(MAC_R1, MAC_VM)
    assert v2.quiet(), "a frame for a MAC behind one VTEP went to another"
    # an unknown unicast is replicated like a broadcast
    assert port.write(_frame(MAC_R2, MAC_VM))
    assert v1.receive() and v2.receive()
    # the MAC moves: its next frame comes from the other VTEP
    v2.sock.sendto(vxlan_header(100) + _frame(MAC_VM, MAC_R1), (LOCAL, port.dstport))
    assert _arrive(port) is not None and port.where(MAC_R1) == REMOTES[1]
    assert port.describe()["remote_macs"] == 1


@pytest.mark.parametrize(("datagram", "reason", "counter"), [
    (vxlan_header(200) + _frame(MAC_VM, MAC_R1), Reason.DROP_VXLAN_VNI, "rx_wrong_vni"),
    (b"\x00" + vxlan_header(100)[1:] + _frame(MAC_VM, MAC_R1), Reason.DROP_VXLAN_FLAGS, "rx_bad_flags"),
    (b"\x0c" + vxlan_header(100)[1:] + _frame(MAC_VM, MAC_R1), Reason.DROP_VXLAN_FLAGS, "rx_bad_flags"),
    (vxlan_header(100)[:7] + b"\x01" + _frame(MAC_VM, MAC_R1), Reason.DROP_VXLAN_FLAGS, "rx_bad_flags"),
    (b"\x08\x00\x00", Reason.DROP_VXLAN_TRUNCATED, "rx_truncated"),
    (vxlan_header(100) + b"\x02\x00", Reason.DROP_RUNT, "rx_runts"),
], ids=["other-vni", "no-vni-flag", "reserved-flag", "reserved-vni-byte", "truncated", "runt"])
def test_a_bad_datagram_is_counted_and_the_next_good_one_comes_through(tunnel, datagram, reason, counter) -> None:
    port, (v1, _), drops = tunnel
    v1.sock.sendto(datagram, (LOCAL, port.dstport))
    v1.sock.sendto(vxlan_header(100) + _frame(MAC_VM, MAC_R1), (LOCAL, port.dstport))
    assert _arrive(port) == _frame(MAC_VM, MAC_R1)
    assert drops == [reason] and port.describe()[counter] == 1
    assert port.where(MAC_R1) == REMOTES[0]


def test_a_stranger_is_refused(tunnel) -> None:
    port, (v1, _), drops = tunnel
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.9", 0))
        stranger.sendto(vxlan_header(100) + _frame(MAC_VM, MAC_R2), (LOCAL, port.dstport))
        v1.sock.sendto(vxlan_header(100) + _frame(MAC_VM, MAC_R1), (LOCAL, port.dstport))
        assert _arrive(port) == _frame(MAC_VM, MAC_R1)
    assert drops == [Reason.DROP_VXLAN_UNKNOWN_VTEP] and port.where(MAC_R2) is None


def test_the_udp_port_is_held_once(tunnel) -> None:
    port, _, _ = tunnel
    second = VxlanPort("vy", REMOTES, 200, local=LOCAL, dstport=port.dstport)
    with pytest.raises(OSError) as exc:
        second.open()
    assert exc.value.errno == errno.EADDRINUSE
    assert second.fileno() == -1


def test_the_overlay_mtu_is_the_path_mtu_minus_50() -> None:
    port = VxlanPort("vx", ("127.0.0.2",), 1, local=LOCAL, dstport=_free_udp_port())
    port.open()
    try:
        with open("/sys/class/net/lo/mtu") as f:
            # the route to 127.0.0.2 is over lo (an IPv4 packet is at most 65,535 bytes, whatever lo's MTU)
            assert port.mtu == min(int(f.read()), 65535) - 50
    finally:
        port.close()

"""Fuzzing what a hostile peer controls: vnet-header conversion (`offload.adapt`), the QEMU stream
and dgram framing, and the per-frame pipeline (`SwitchCore.process` → egress edit → `adapt`).

The property everywhere: no exception but the documented one (OffloadError for `adapt`), and the
framing never returns a frame it should have dropped. Every crasher found is kept as an
@example. Budgets are bounded (max_examples, no deadline flakiness) so the module runs in
seconds; VSWITCH_FUZZ_SCALE=20 multiplies them for a longer hunt.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import EDIT_KEEP, SwitchCore, egress_frame
from vswitch.ports.base import MAX_MTU, over_mtu
from vswitch.ports.errors import OffloadError
from vswitch.ports.offload import GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_HDR, adapt
from vswitch.ports.qemu import MAX_STREAM_FRAME, MIN_FRAME, QemuDgramPort, QemuStreamPort

_SCALE = int(os.environ.get("VSWITCH_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=400 * _SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_IO = settings(max_examples=80 * _SCALE, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

ETH_IPV4 = bytes.fromhex("020000000001" "020000000002" "0800")
ETH_IPV6 = bytes.fromhex("020000000001" "020000000002" "86dd")


def vnet(flags: int, gso_type: int, hdr_len: int, gso_size: int, csum_start: int, csum_offset: int) -> bytes:
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def ipv4_tcp(payload: int) -> bytes:
    ip = bytearray(bytes.fromhex("45000000000140004006000a000001" "0a000002")[:20])
    struct.pack_into(">H", ip, 2, 20 + 20 + payload)
    tcp = bytes.fromhex("1f90d431" "00000001" "00000000" "5018ffff" "00000000")
    return ETH_IPV4 + bytes(ip) + tcp + bytes(payload)


@st.composite
def vnet_frames(draw: st.DrawFn) -> bytes:
    """A vnet header (often GSO, offsets near the real ones) and a frame that is plausible, cut
    short, or noise."""
    gso = draw(st.sampled_from([0, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, 3, 0x81, 0x84]) | st.integers(0, 255))
    flags = draw(st.sampled_from([0, 1, 2, 3]) | st.integers(0, 255))
    gso_size = draw(st.sampled_from([0, 1, 7, 536, 1448]) | st.integers(0, 0xFFFF))
    csum_start = draw(st.sampled_from([0, 13, 14, 34, 54, 0xFFFF]) | st.integers(0, 200))
    csum_offset = draw(st.sampled_from([0, 6, 16, 0xFFFF]) | st.integers(0, 60))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        body = draw(st.binary(max_size=120))
    else:
        base = ipv4_tcp(draw(st.integers(0, 3000))) if kind == 1 else ETH_IPV6 + draw(st.binary(max_size=200))
        cut = draw(st.integers(0, len(base)))
        body = bytearray(base[:cut] if draw(st.booleans()) else base)
        for _ in range(draw(st.integers(0, 4))):
            if body:
                body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
        body = bytes(body)
    return vnet(flags, gso, 0, gso_size, csum_start, csum_offset) + body


# The crasher of issue 10: a GSO-TCPv4 header on a 14-byte frame made _l4_offset index past the end.
@example(vnet(0, GSO_TCPV4, 0, 1448, 0, 0) + ETH_IPV4, 10, 0)
@example(vnet(0, GSO_TCPV6, 0, 1448, 0, 0) + ETH_IPV6, 10, 0)
@example(vnet(0, GSO_UDP_L4, 0, 1448, 0, 0) + ETH_IPV4, 10, 0)
@example(vnet(1, GSO_TCPV4, 0, 1448, 34, 16) + ETH_IPV4 + b"\x45", 10, 0)
@given(vnet_frames(), st.sampled_from([10, 12]), st.sampled_from([0, 10, 12]))
@FUZZ
def test_adapt_raises_only_offload_error(buf: bytes, in_hdr: int, out_hdr: int) -> None:
    if in_hdr == 12:
        buf = buf[:10] + b"\x00\x00" + buf[10:]
    try:
        out = adapt(buf, in_hdr, out_hdr)
    except OffloadError:
        return
    assert out and all(isinstance(seg, bytes | bytearray | memoryview) for seg in out)
    if out_hdr == 0 and len(out) > 1:
        assert all(len(seg) >= 14 for seg in out), "a software segment is a whole Ethernet frame"


@given(st.binary(max_size=40), st.integers(0, 12), st.integers(0, 70000))
@FUZZ
def test_over_mtu_never_raises(buf: bytes, hdr: int, mtu: int) -> None:
    over_mtu(buf, hdr, mtu)


# -- the per-frame pipeline: what the datapath runs on every frame -----------------------------

POLICIES = [PortPolicy.access(1), PortPolicy.access(10), PortPolicy.trunk({1, 10, 20}, 1),
            PortPolicy.trunk({10, 20}, None)]


@given(st.lists(st.tuples(st.integers(0, 3), vnet_frames() | st.binary(max_size=80)), max_size=30),
       st.lists(st.sampled_from(POLICIES), min_size=4, max_size=4), st.sampled_from([0, 10]))
@FUZZ
def test_process_edit_adapt_pipeline_never_raises(frames: list[tuple[int, bytes]], policies: list[PortPolicy],
                                                  hdr: int) -> None:
    core = SwitchCore()
    for i, pol in enumerate(policies):
        core.add_port(i, pol)
    for now, (port, buf) in enumerate(frames):
        if not hdr and len(buf) > 10:
            buf = buf[10:]
        d = core.process(port, buf, hdr, float(now))
        for j, out in enumerate(d.out_ports):
            edit = d.edits[j] if d.edits is not None else EDIT_KEEP
            f = egress_frame(buf, hdr, edit, d.vlan)
            try:
                adapt(f, hdr, 0 if out % 2 else hdr)
            except OffloadError:
                pass


# -- QEMU framing ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sockdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="vsf", dir="/tmp")
    try:
        yield d
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def _lengths() -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, 13, 14, 60, 1514, 65549, 65550, 65553, 65554, 1 << 31]) | st.integers(0, 2000)


@st.composite
def stream_bytes(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A byte stream of length-prefixed records (lengths honest or lying, sometimes cut) and the
    record lengths as written."""
    out = bytearray()
    lengths = []
    for _ in range(draw(st.integers(0, 6))):
        n = draw(_lengths())
        lengths.append(n)
        out += struct.pack(">I", n % (1 << 32))
        if n <= MAX_STREAM_FRAME:
            body = bytes([2]) + bytes(max(0, n - 1))
            out += body[:n]
        else:
            break
    if draw(st.booleans()):
        out += draw(st.binary(max_size=9))
    return bytes(out), lengths


class _Drops:
    def __init__(self) -> None:
        self.reasons: list[Reason] = []

    def __call__(self, r: Reason) -> None:
        self.reasons.append(r)


def _drain(port: QemuStreamPort, limit_s: float = 2.0) -> list[bytes]:
    got = []
    while port.connected:
        fd = port.fileno()
        if not select.select([fd], [], [], limit_s)[0]:
            break
        f = port.recv()
        if f is not None:
            got.append(f)
    return got


@example((struct.pack(">I", 65550) + bytes([2]) + bytes(65549), [65550]))
@example((struct.pack(">I", 1 << 31), [1 << 31]))
@given(stream_bytes())
@FUZZ_IO
def test_stream_framing_keeps_legal_frames_and_counts_the_rest(sockdir: str, data: tuple[bytes, list[int]]) -> None:
    raw, lengths = data
    port = QemuStreamPort("fz", os.path.join(sockdir, "s.sock"))
    drops = _Drops()
    port.count_rx_drop = drops
    port.open()
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(port.path)
        port.service(port.extra_fds()[0])
        assert port.connected
        def send() -> None:
            # on its own thread: a stream longer than the socket buffers blocks until we read
            client.sendall(raw)
            client.shutdown(socket.SHUT_WR)  # the stream ends: a cut record is truncation
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        got = _drain(port)
        sender.join(timeout=10)
        client.close()
    finally:
        port.close()
    for f in got:
        assert MIN_FRAME <= len(f) and not over_mtu(f, 0, MAX_MTU), "no runt or oversize frame is passed on"
    legal = []
    for n in lengths:
        if n > MAX_STREAM_FRAME:
            break
        if MIN_FRAME <= n <= MAX_MTU + 14:
            legal.append(n)
    assert [len(f) for f in got] == legal[:len(got)], "frames come out whole and in order"
    assert port.rx_runts + port.rx_oversize + port.rx_bad_length + port.rx_truncated == len(drops.reasons), \
        "every drop the port counts is also reported to the datapath's counters"


@example(bytes([2]) + bytes(65553))
@example(bytes(13))
@given(st.binary(max_size=80) | st.sampled_from([65549, 65550, 65554]).map(lambda n: bytes([2]) + bytes(n - 1)))
@FUZZ_IO
def test_dgram_framing(sockdir: str, datagram: bytes) -> None:
    port = QemuDgramPort("fz", os.path.join(sockdir, "d.sock"))
    drops = _Drops()
    port.count_rx_drop = drops
    port.open()
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        peer.sendto(datagram, port.path)
        select.select([port.fileno()], [], [], 2)
        got = port.recv()
    finally:
        peer.close()
        port.close()
    if len(datagram) < MIN_FRAME:
        assert got is None and drops.reasons == [Reason.DROP_RUNT]
    elif over_mtu(datagram, 0, MAX_MTU):
        assert got is None and drops.reasons == [Reason.DROP_OVERSIZE]
    else:
        assert got == datagram and not drops.reasons


# -- rtnetlink link messages (control.linkwatch) -----------------------------------------------

@example(struct.pack("=IHHII", 0xFFFF, 16, 0, 0, 0))
@example(struct.pack("=IHHII", 36, 16, 0, 0, 0) + bytes(16) + struct.pack("=HH", 2, 3) + bytes(2))
@given(st.binary(max_size=120))
@FUZZ
def test_parse_links_never_raises(data: bytes) -> None:
    from vswitch.control.linkwatch import parse_links
    parse_links(data)


def test_parse_links_reads_name_flags_and_mtu() -> None:
    from vswitch.control.linkwatch import IFF_RUNNING, IFF_UP, RTM_NEWLINK, parse_links
    name = b"veth0\0\0\0"
    attrs = struct.pack("=HH", 4 + 6, 3) + name + struct.pack("=HH", 8, 4) + struct.pack("=I", 1400)
    body = struct.pack("=BxHiII", 0, 1, 7, IFF_UP | IFF_RUNNING, 0) + attrs
    msg = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, 0, 0, 0) + body
    assert parse_links(msg + msg) == [(RTM_NEWLINK, 7, "veth0", IFF_UP | IFF_RUNNING, 1400)] * 2

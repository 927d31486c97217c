"""virtio_net_hdr handling: convert a frame from its ingress port's format to its egress port's.

Owns pure functions only (no I/O, no state): parsing the 10-byte ``struct virtio_net_hdr``,
prepending/stripping it, completing a partial checksum and segmenting TCP/UDP GSO super-frames in
software for egress ports that have no vnet header (plain AF_PACKET, QEMU sockets, VXLAN).

Invariants:
- ``adapt`` never modifies its input; when no conversion is needed it returns ``[buf]`` itself
  (no copy), and stripping a header from a frame that needs no work returns a memoryview slice.
- Output of a software segmentation matches what the kernel's ``tcp_gso_segment`` /
  ``__udp_gso_segment`` would produce: IPv4 total length and header checksum, IPv4 ID
  incremented per segment, IPv6 payload length, TCP sequence numbers, FIN/PSH only on the last
  segment, CWR only on the first, full L4 checksums.
- Offsets come from the header (``csum_start`` is the L4 offset) and from the Ethernet type chain
  (802.1Q/802.1ad tags are skipped), so tagged frames work.

Header fields are little-endian: TAP and AF_PACKET use the host's byte order unless told
otherwise (TUNSETVNETBE), and these machines are x86.

Checksums use one trick: a big-endian integer made of 16-bit words is congruent, modulo 0xFFFF, to
the ones' complement sum of those words (2**16 == 1 mod 0xFFFF). ``int.from_bytes`` and ``%`` run
in C, so a 64 KB sum costs tens of microseconds instead of milliseconds in a Python loop.
"""

from __future__ import annotations

import struct

from vswitch.core.frame import push_vlan
from vswitch.core.switch import EDIT_POP, EDIT_PUSH, egress_frame
from vswitch.ports.errors import OffloadError

VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset

F_NEEDS_CSUM = 0x01
F_DATA_VALID = 0x02

GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3  # UFO: needs IP fragmentation, not supported
GSO_TCPV6 = 4
GSO_UDP_L4 = 5  # USO
GSO_ECN = 0x80

_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_PROTO_TCP = 6
_PROTO_UDP = 17

_TCP_FIN = 0x01
_TCP_PSH = 0x08
_TCP_CWR = 0x80

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

_ZERO_HDRS = {n: bytes(n) for n in (10, 12)}

Buffer = bytes | bytearray | memoryview


def parse_vnet_hdr(buf: Buffer) -> tuple[int, int, int, int, int, int]:
    """``(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)`` from the first 10 bytes."""
    return VNET_HDR.unpack_from(buf, 0)


def shift_csum_start(hdr: Buffer, delta: int) -> bytes:
    """The vnet header ``hdr`` (10 or 12 bytes) with ``csum_start`` moved by ``delta`` bytes.

    Use after inserting (+4) or removing (-4) an 802.1Q tag in front of the L3 header. Only
    ``csum_start`` moves (as the kernel's tun driver does); it is left alone when NEEDS_CSUM is
    clear because it then means nothing.
    """
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(hdr, 0)
    out = bytearray(hdr)
    if flags & F_NEEDS_CSUM:
        VNET_HDR.pack_into(out, 0, flags, gso_type, hdr_len, gso_size, csum_start + delta, csum_offset)
    return bytes(out)


def edit_tag(buf: Buffer, hdr_len: int, edit: int, vlan: int) -> Buffer:
    """The core's egress edit (`EDIT_*`, see core.switch.egress_frame) applied to a frame behind a
    vnet header of ``hdr_len`` bytes: a pushed or popped tag moves the L3 header, so the header's
    ``csum_start`` moves with it. The one place a tag is edited under a vnet header."""
    frame = egress_frame(buf, hdr_len, edit, vlan)
    if hdr_len and (edit == EDIT_PUSH or edit == EDIT_POP):
        frame = shift_csum_start(frame[:hdr_len], 4 if edit == EDIT_PUSH else -4) + frame[hdr_len:]
    return frame


def insert_vlan(buf: Buffer, hdr_len: int, tpid: int, tci: int) -> bytes:
    """``buf`` (vnet header of ``hdr_len`` bytes, then the frame) with the tag ``tpid``/``tci`` the
    kernel took off on receive put back after the MACs (PCP and DEI kept)."""
    frame = push_vlan(buf, tci & 0x0FFF, offset=hdr_len, pcp=tci >> 13, dei=(tci >> 12) & 1, tpid=tpid)
    if hdr_len:
        return shift_csum_start(frame[:hdr_len], 4) + frame[hdr_len:]
    return frame


def _sum16(data: Buffer) -> int:
    """Ones' complement sum of ``data`` as 16-bit big-endian words, reduced modulo 0xFFFF.

    An odd trailing byte is padded with zero on the right, as RFC 1071 asks.
    """
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return n % 0xFFFF


def _fold(s: int) -> int:
    """The checksum field for a sum ``s`` (mod 0xFFFF): ~sum, giving 0 rather than 0xFFFF for TCP."""
    return (-s) % 0xFFFF


def internet_checksum(data: Buffer) -> int:
    """RFC 1071 checksum of ``data`` (what goes into an IPv4 header's checksum field)."""
    return _fold(_sum16(data))


def _l3_offset(frame: memoryview) -> tuple[int, int]:
    """(offset of the L3 header, its ethertype), skipping any number of VLAN tags."""
    off = 12
    try:
        etype = (frame[off] << 8) | frame[off + 1]
        while etype in _VLAN_TPIDS:
            off += 4
            etype = (frame[off] << 8) | frame[off + 1]
    except IndexError:
        raise OffloadError("frame too short for its Ethernet header") from None
    return off + 2, etype


def _l4_offset(frame: memoryview, flags: int, csum_start: int, l3: int, etype: int) -> int:
    if flags & F_NEEDS_CSUM:
        return csum_start
    # GSO without NEEDS_CSUM breaks the virtio spec; be lenient when the header chain is simple.
    if l3 >= len(frame):
        raise OffloadError(f"GSO frame of {len(frame)} bytes ends before its L3 header")
    if etype == _ETH_IPV4:
        return l3 + (frame[l3] & 0x0F) * 4
    if etype == _ETH_IPV6:
        return l3 + 40
    raise OffloadError(f"GSO frame with unknown ethertype 0x{etype:04x}")


def complete_checksum(frame: Buffer, csum_start: int, csum_offset: int) -> bytes:
    """The frame (no vnet header) with its partial checksum finished, as ``skb_checksum_help`` does.

    The field at ``csum_start + csum_offset`` already holds the pseudo-header sum (not inverted);
    summing from ``csum_start`` to the end *including* that field and inverting gives the full
    checksum. A result of 0 is sent as 0xFFFF for UDP (offset 6), where 0 means "no checksum".
    """
    pos = csum_start + csum_offset
    if pos + 2 > len(frame) or csum_start < 14:
        raise OffloadError(f"checksum offsets out of range (start {csum_start}, offset {csum_offset}, "
                           f"frame {len(frame)} bytes)")
    out = bytearray(frame)
    csum = _fold(_sum16(memoryview(out)[csum_start:]))
    if csum == 0 and csum_offset == 6:
        csum = 0xFFFF
    _U16.pack_into(out, pos, csum)
    return bytes(out)


def adapt(buf: Buffer, in_hdr_len: int, out_hdr_len: int, mtu: int = 0) -> list[Buffer]:
    """Frame(s) for an egress port whose vnet header length is ``out_hdr_len`` (and whose L3 MTU is
    ``mtu``, 0: any).

    ``buf`` is in the ingress format (a vnet header of ``in_hdr_len`` bytes, 0/10/12, then the
    Ethernet frame). Same format: ``[buf]``. No header → header: a zero header is prepended
    ("no offload, checksum already complete"). Header → no header: the partial checksum is
    completed and GSO super-frames are segmented in software; a TCP super-frame into segments that
fit ``mtu`` even when its ``gso_size`` came from a larger MTU (a VM on a 1500-byte link sending into
a tunnel of 1450: TCP takes smaller segments as they come, where a drop would stall the stream;
UDP's datagram boundaries are the application's and stay). Raises :class:`OffloadError` for a
    frame that cannot be converted (drop it).
    """
    if in_hdr_len == out_hdr_len:
        return [buf]
    if in_hdr_len == 0:
        return [(_ZERO_HDRS.get(out_hdr_len) or bytes(out_hdr_len)) + buf]
    if len(buf) < in_hdr_len + 14:
        raise OffloadError(f"frame of {len(buf)} bytes is shorter than its vnet header + Ethernet header")
    if out_hdr_len:
        # 10 <-> 12 (num_buffers): same meaning, only the size differs.
        mv = memoryview(buf)
        common = min(in_hdr_len, out_hdr_len)
        return [b"".join((mv[:common], bytes(out_hdr_len - common), mv[in_hdr_len:]))]
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(buf, 0)
    frame = memoryview(buf)[in_hdr_len:]
    gso = gso_type & ~GSO_ECN
    if gso == GSO_NONE:
        if flags & F_NEEDS_CSUM:
            return [complete_checksum(frame, csum_start, csum_offset)]
        return [frame]
    if gso in (GSO_TCPV4, GSO_TCPV6):
        return segment_tcp(frame, flags, gso_size, csum_start, mtu)
    if gso == GSO_UDP_L4:
        return segment_udp(frame, flags, gso_size, csum_start)
    raise OffloadError(f"unsupported GSO type {gso_type} (UFO needs IP fragmentation)")


class _L3:
    """Where the L3/L4 headers are and how to rewrite the per-segment L3 fields."""

    __slots__ = ("l3", "l4", "is_v4", "addr_sum", "id0")

    def __init__(self, frame: memoryview, flags: int, csum_start: int, proto: int) -> None:
        l3, etype = _l3_offset(frame)
        self.l3 = l3
        self.l4 = l4 = _l4_offset(frame, flags, csum_start, l3, etype)
        if etype == _ETH_IPV4 and len(frame) >= l3 + 20 and frame[l3] >> 4 == 4:
            self.is_v4 = True
            self.addr_sum = _sum16(frame[l3 + 12:l3 + 20])
            self.id0 = _U16.unpack_from(frame, l3 + 4)[0]
            if l4 < l3 + 20:
                raise OffloadError("L4 offset inside the IPv4 header")
        elif etype == _ETH_IPV6 and len(frame) >= l3 + 40 and frame[l3] >> 4 == 6:
            self.is_v4 = False
            self.addr_sum = _sum16(frame[l3 + 8:l3 + 40])
            self.id0 = 0
            if l4 < l3 + 40:
                raise OffloadError("L4 offset inside the IPv6 header")
        else:
            raise OffloadError(f"GSO frame is neither IPv4 nor IPv6 (ethertype 0x{etype:04x})")
        # The pseudo-header's protocol word; the L4 length is added per segment.
        self.addr_sum += proto

    def set_lengths(self, hdr: bytearray, seg_index: int, l4_len: int) -> None:
        """Rewrite total/payload length (and, for IPv4, ID and header checksum) for one segment."""
        l3 = self.l3
        if self.is_v4:
            _U16.pack_into(hdr, l3 + 2, self.l4 - l3 + l4_len)
            _U16.pack_into(hdr, l3 + 4, (self.id0 + seg_index) & 0xFFFF)
            hdr[l3 + 10] = hdr[l3 + 11] = 0
            ihl = (hdr[l3] & 0x0F) * 4
            _U16.pack_into(hdr, l3 + 10, _fold(_sum16(hdr[l3:l3 + ihl])))
        else:
            _U16.pack_into(hdr, l3 + 4, self.l4 - l3 - 40 + l4_len)


def segment_tcp(frame: memoryview, flags: int, gso_size: int, csum_start: int, mtu: int = 0) -> list[Buffer]:
    """Split a TCP super-frame (no vnet header) into segments of at most ``gso_size`` payload bytes,
    and no longer than ``mtu`` from the L3 header on (0: no such bound)."""
    if gso_size <= 0:
        raise OffloadError("GSO frame with gso_size 0")
    net = _L3(frame, flags, csum_start, _PROTO_TCP)
    l4 = net.l4
    if len(frame) < l4 + 20:
        raise OffloadError("frame too short for its TCP header")
    thl = (frame[l4 + 12] >> 4) * 4
    data_off = l4 + thl
    if thl < 20 or len(frame) < data_off:
        raise OffloadError("bad TCP header length")
    if mtu and data_off - net.l3 + gso_size > mtu:
        gso_size = mtu - (data_off - net.l3)
        if gso_size <= 0:
            raise OffloadError(f"TCP headers of {data_off - net.l3} bytes leave no payload in an MTU of {mtu}")
    hdr = bytearray(frame[:data_off])
    seq0 = _U32.unpack_from(hdr, l4 + 4)[0]
    tcp_flags = hdr[l4 + 13]
    total = len(frame)
    addr_sum = net.addr_sum
    out: list[Buffer] = []
    index = 0
    pos = data_off
    while True:
        end = min(pos + gso_size, total)
        last = end >= total
        chunk = frame[pos:end]
        plen = end - pos
        seg_flags = tcp_flags
        if not last:
            seg_flags &= ~(_TCP_FIN | _TCP_PSH)
        if index:
            seg_flags &= ~_TCP_CWR
        hdr[l4 + 13] = seg_flags
        _U32.pack_into(hdr, l4 + 4, (seq0 + pos - data_off) & 0xFFFFFFFF)
        hdr[l4 + 16] = hdr[l4 + 17] = 0
        l4_len = thl + plen
        net.set_lengths(hdr, index, l4_len)
        # thl is a multiple of 4, so the payload starts on an even offset: sums just add.
        s = addr_sum + l4_len + _sum16(hdr[l4:]) + _sum16(chunk)
        _U16.pack_into(hdr, l4 + 16, _fold(s % 0xFFFF))
        out.append(b"".join((hdr, chunk)))
        if last:
            return out
        pos = end
        index += 1


def segment_udp(frame: memoryview, flags: int, gso_size: int, csum_start: int) -> list[Buffer]:
    """Split a UDP GSO (USO) super-frame into datagrams of at most ``gso_size`` payload bytes."""
    if gso_size <= 0:
        raise OffloadError("GSO frame with gso_size 0")
    net = _L3(frame, flags, csum_start, _PROTO_UDP)
    l4 = net.l4
    data_off = l4 + 8
    if len(frame) < data_off:
        raise OffloadError("frame too short for its UDP header")
    hdr = bytearray(frame[:data_off])
    total = len(frame)
    out: list[Buffer] = []
    index = 0
    pos = data_off
    while True:
        end = min(pos + gso_size, total)
        chunk = frame[pos:end]
        l4_len = 8 + end - pos
        _U16.pack_into(hdr, l4 + 4, l4_len)
        hdr[l4 + 6] = hdr[l4 + 7] = 0
        net.set_lengths(hdr, index, l4_len)
        s = net.addr_sum + l4_len + _sum16(hdr[l4:]) + _sum16(chunk)
        _U16.pack_into(hdr, l4 + 6, _fold(s % 0xFFFF) or 0xFFFF)
        out.append(b"".join((hdr, chunk)))
        if end >= total:
            return out
        pos = end
        index += 1

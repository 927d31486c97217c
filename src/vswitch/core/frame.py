"""The L2 header of a frame: parse it, push/pop/rewrite an 802.1Q tag.

Frames are ``bytes``/``bytearray``/``memoryview``; an ``offset`` skips whatever precedes the
Ethernet header (a virtio_net_hdr). The parser never raises on arbitrary input: a frame
shorter than 14 bytes, or with a VLAN TPID and fewer than 18 bytes, is malformed (None).
Only the outer tag is interpreted (vlan-limit 1): an inner tag stays payload.
Must not touch: anything above L2.
"""

from __future__ import annotations

from dataclasses import dataclass

TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
_TPID_8021Q_BYTES = b"\x81\x00"
_TPID_8021AD_BYTES = b"\x88\xa8"
ETH_HLEN = 14
VLAN_HLEN = 4


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What the switch reads from a frame. ``tpid`` is 0 for an untagged frame."""

    dst: bytes
    src: bytes
    tpid: int
    vid: int
    pcp: int
    ethertype: int
    l3_offset: int

    @property
    def tagged(self) -> bool:
        return self.tpid != 0


def parse_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader | None:
    """Parse the Ethernet (+ optional outer VLAN tag) header at `offset`; None when malformed."""
    n = len(buf) - offset
    if n < ETH_HLEN:
        return None
    dst = bytes(buf[offset:offset + 6])
    src = bytes(buf[offset + 6:offset + 12])
    tpid = (buf[offset + 12] << 8) | buf[offset + 13]
    if tpid == TPID_8021Q or tpid == TPID_8021AD:
        if n < ETH_HLEN + VLAN_HLEN:
            return None
        tci = (buf[offset + 14] << 8) | buf[offset + 15]
        ethertype = (buf[offset + 16] << 8) | buf[offset + 17]
        return FrameHeader(dst, src, tpid, tci & 0x0FFF, tci >> 13, ethertype, offset + 18)
    return FrameHeader(dst, src, 0, 0, 0, tpid, offset + 14)


def is_tagged(buf: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    et = buf[offset + 12:offset + 14]
    return et == _TPID_8021Q_BYTES or et == _TPID_8021AD_BYTES


def push_vlan(buf: bytes | bytearray | memoryview, vid: int, *, offset: int = 0, pcp: int = 0, dei: int = 0,
              tpid: int = TPID_8021Q) -> bytes:
    """Insert a tag after the MAC addresses; bytes before `offset` (a vnet header) are kept."""
    tag = bytes(((tpid >> 8) & 0xFF, tpid & 0xFF, (pcp << 5) | (dei << 4) | ((vid >> 8) & 0x0F), vid & 0xFF))
    return bytes(buf[:offset + 12]) + tag + bytes(buf[offset + 12:])


def pop_vlan(buf: bytes | bytearray | memoryview, *, offset: int = 0) -> bytes:
    """Remove the outer tag (the frame must be tagged); bytes before `offset` are kept."""
    return bytes(buf[:offset + 12]) + bytes(buf[offset + 16:])


def set_vid(buf: bytes | bytearray | memoryview, vid: int, *, offset: int = 0) -> bytes:
    """Rewrite the outer tag's VLAN id, keeping PCP/DEI (e.g. a priority tag VID 0 → the port's VLAN)."""
    out = bytearray(buf)
    out[offset + 14] = (out[offset + 14] & 0xF0) | ((vid >> 8) & 0x0F)
    out[offset + 15] = vid & 0xFF
    return bytes(out)

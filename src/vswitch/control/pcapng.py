"""pcapng blocks (draft-ietf-opsawg-pcapng): what `vswitch capture` writes, as bytes.

Owns the encoding of the four blocks a capture needs — the section header (SHB), one interface
description per port (IDB), one enhanced packet block per frame (EPB, with its comment and
direction flags) and an interface statistics block (ISB, what the capture dropped) — little-endian,
each block's body and each option padded to 32 bits, the block's total length at both ends.

Why a module of our own and not a library: the blocks are ~100 lines of `struct`; python-pcapng is
unmaintained and scapy (which can write pcapng) is far too heavy to import into the daemon. Tests
read what this writes with scapy's and tshark's readers, so the format is checked by others' code.

Invariants: pure — no I/O, no clock; every function returns the whole block.
Must not touch: anything but bytes.
"""

from __future__ import annotations

import struct

SHB_TYPE, IDB_TYPE, EPB_TYPE, ISB_TYPE = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000005
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1
OPT_ENDOFOPT, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_NAME, IF_DESCRIPTION, IF_TSRESOL = 2, 3, 9
EPB_FLAGS = 2
ISB_STARTTIME, ISB_ENDTIME, ISB_IFDROP = 2, 3, 5
#: epb_flags bits 0-1: the frame's direction at the interface
INBOUND, OUTBOUND = 1, 2
#: if_tsresol 9: timestamps count nanoseconds
TSRESOL_NS = 9


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def option(code: int, value: bytes) -> bytes:
    """One option: code, length, the value padded to 32 bits. Raises ValueError over 65535 bytes."""
    if len(value) > 0xFFFF:
        raise ValueError(f"a pcapng option holds at most 65535 bytes, got {len(value)}")
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _options(opts: list[bytes]) -> bytes:
    return b"".join(opts) + struct.pack("<HH", OPT_ENDOFOPT, 0) if opts else b""


def block(block_type: int, body: bytes) -> bytes:
    """A block: type, total length, `body` padded to 32 bits, total length again."""
    body = _pad(body)
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def section_header(application: str | None = None) -> bytes:
    """The SHB (version 1.0, section length unknown: -1, as a stream's must be)."""
    opts = [option(SHB_USERAPPL, application.encode())] if application else []
    return block(SHB_TYPE, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts))


def interface_description(name: str, snaplen: int, description: str | None = None,
                          tsresol: int = TSRESOL_NS) -> bytes:
    """An Ethernet IDB named `name`; `snaplen` the most bytes a packet block carries (0: no limit)."""
    opts = [option(IF_NAME, name.encode())]
    if description:
        opts.append(option(IF_DESCRIPTION, description.encode()))
    opts.append(option(IF_TSRESOL, bytes([tsresol])))
    return block(IDB_TYPE, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, snaplen) + _options(opts))


def _ts(t_ns: int) -> tuple[int, int]:
    return (t_ns >> 32) & 0xFFFFFFFF, t_ns & 0xFFFFFFFF


def enhanced_packet(interface: int, t_ns: int, data: bytes, original_len: int, *, comment: str | None = None,
                    flags: int = 0) -> bytes:
    """An EPB of interface number `interface` (its IDB's order in the section): `data` is what was
    captured (perhaps cut), `original_len` the frame's length on the wire; `t_ns` in the IDB's
    resolution (ns by default). `flags`: INBOUND/OUTBOUND (epb_flags)."""
    high, low = _ts(t_ns)
    opts = []
    if comment:
        opts.append(option(OPT_COMMENT, comment.encode()))
    if flags:
        opts.append(option(EPB_FLAGS, struct.pack("<I", flags)))
    return block(EPB_TYPE, struct.pack("<IIIII", interface, high, low, len(data), max(original_len, len(data)))
                 + _pad(data) + _options(opts))


def interface_statistics(interface: int, t_ns: int, *, dropped: int, start_ns: int | None = None,
                         comment: str | None = None) -> bytes:
    """An ISB at `t_ns` for `interface`: `dropped` frames the capture could not keep (isb_ifdrop)."""
    high, low = _ts(t_ns)
    opts = []
    if comment:
        opts.append(option(OPT_COMMENT, comment.encode()))
    if start_ns is not None:
        opts.append(option(ISB_STARTTIME, struct.pack("<II", *_ts(start_ns))))
    opts.append(option(ISB_ENDTIME, struct.pack("<II", high, low)))
    opts.append(option(ISB_IFDROP, struct.pack("<Q", dropped)))
    return block(ISB_TYPE, struct.pack("<III", interface, high, low) + _options(opts))


# ---- reading back what this module writes (the CLI counts what it saves) --------------------------

def split_blocks(data: bytes | bytearray | memoryview) -> tuple[list[bytes], int]:
    """The whole blocks at the start of `data` (little-endian, as written here) and the bytes they take;
    what follows is a block still arriving. Raises ValueError on a length no block can have."""
    blocks, at, view = [], 0, memoryview(data)
    while len(view) - at >= 8:
        (total,) = struct.unpack_from("<I", view, at + 4)
        if total < 12 or total % 4:
            raise ValueError(f"not a pcapng block at byte {at}: total length {total}")
        if len(view) - at < total:
            break
        blocks.append(bytes(view[at:at + total]))
        at += total
    return blocks, at


def block_type(blk: bytes) -> int:
    """The type of a whole block (EPB_TYPE, ISB_TYPE, ...)."""
    return int(struct.unpack_from("<I", blk)[0])


def statistics(blk: bytes) -> tuple[int | None, str | None]:
    """(isb_ifdrop, comment) of an ISB, each None when absent. Raises ValueError for another block."""
    if block_type(blk) != ISB_TYPE:
        raise ValueError(f"block type {block_type(blk):#x} is not an interface statistics block")
    dropped, note, at, end = None, None, 8 + 12, len(blk) - 4
    while at + 4 <= end:
        code, length = struct.unpack_from("<HH", blk, at)
        if code == OPT_ENDOFOPT:
            break
        value = blk[at + 4:at + 4 + length]
        if code == ISB_IFDROP and length == 8:
            (dropped,) = struct.unpack("<Q", value)
        elif code == OPT_COMMENT:
            note = value.decode(errors="replace")
        at += 4 + length + (-length % 4)
    return dropped, note

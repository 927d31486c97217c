"""MAC address values: 6-byte ``bytes`` on the hot path, text only at the edges.

Owns parsing/formatting and the address-class tests (broadcast, multicast, all-zero,
IEEE 802.1D reserved group 01:80:C2:00:00:00-0F). Must not touch frames beyond 6 bytes.
"""

from __future__ import annotations

BROADCAST = b"\xff\xff\xff\xff\xff\xff"
ZERO = b"\x00\x00\x00\x00\x00\x00"
RESERVED_PREFIX = b"\x01\x80\xc2\x00\x00"
#: 01:80:C2:00:00:00 (STP), :01 (PAUSE), :02 (LACP) are never forwardable, whatever the mask says.
GROUP_FWD_RESTRICTED = 0x0007


def parse_mac(text: str) -> bytes:
    """'52:54:00:12:34:56' (or with '-', or 12 hex digits) → 6 bytes; ValueError naming the input."""
    if not isinstance(text, str):
        raise ValueError(f"MAC address must be text, got {text!r}")
    digits = text.replace(":", "").replace("-", "").replace(".", "")
    if len(digits) != 12:
        raise ValueError(f"bad MAC address {text!r}: expected 6 bytes like 52:54:00:12:34:56")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"bad MAC address {text!r}: not hexadecimal") from None


def format_mac(mac: bytes) -> str:
    return mac.hex(":")


def is_multicast(mac: bytes) -> bool:
    """Group bit set: broadcast is a multicast too."""
    return bool(mac[0] & 1)


def is_broadcast(mac: bytes) -> bool:
    return mac == BROADCAST


def is_zero(mac: bytes) -> bool:
    return mac == ZERO


def is_reserved_group(mac: bytes) -> bool:
    """01:80:C2:00:00:00-0F: link-local control protocols that 802.1D bridges never relay."""
    return mac[:5] == RESERVED_PREFIX and mac[5] < 16

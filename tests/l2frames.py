"""Frame builders shared by the unit and scenario tests: readable MACs in, wire bytes out.

Tests write `frame(dst="b", src="a")` rather than hex; a one-letter name maps to a stable,
locally administered unicast MAC (02:00:00:00:00:<ord>). No switch logic lives here.
"""

from __future__ import annotations

import struct

from vswitch.core.mac import parse_mac

BROADCAST = "ff:ff:ff:ff:ff:ff"
PAYLOAD = bytes(range(46))


def mac(name: str) -> bytes:
    """'a' → 02:00:00:00:00:61, 'ab' → 02:00:00:00:61:62; a full 'xx:xx:..' text → its 6 bytes."""
    if len(name) <= 2:
        return bytes((2, 0, 0, 0)) + name.encode().rjust(2, b"\0")
    return parse_mac(name)


def frame(dst: str | bytes, src: str | bytes, *, vlan: int | None = None, pcp: int = 0, tpid: int = 0x8100,
          ethertype: int = 0x0800, payload: bytes = PAYLOAD) -> bytes:
    """An Ethernet frame; tagged with (tpid, pcp, vlan) when `vlan` is not None (0 = priority tag)."""
    d = dst if isinstance(dst, bytes) else mac(dst)
    s = src if isinstance(src, bytes) else mac(src)
    tag = b"" if vlan is None else struct.pack("!HH", tpid, (pcp << 13) | vlan)
    return d + s + tag + struct.pack("!H", ethertype) + payload

"""A read-only tap on a kernel link: every frame it receives and sends, whole (`vswitch capture`).

Owns one AF_PACKET socket bound to the link: the packet taps run before tc ingress and on transmit,
so it sees what arrives on the link before the kernel fast path's program decides, and what the
program (or Python, down the upcall TAP) sends out of it. A capture of a fast-path port reads its
frames here — whole, where the program's decision events carry 128 bytes — and takes only the
decisions from the events (control/capture.py pairs them).

Invariants: reads only — never sends, never changes the link (no promiscuous membership: the link
sees what the switch's port already makes it see); a tag the kernel took off into metadata is put
back (PACKET_AUXDATA), as the link port does, so a trunk's frames keep their VLAN; created with
protocol 0 and bound with ETH_P_ALL, so it never sees another link's frames; the kernel's drops of
this socket (a reader too slow for the link) are counted (`dropped`).
Must not touch: the link's configuration, the datapath.
"""

from __future__ import annotations

import select
import socket
import struct
import time

from vswitch.ports.link import (
    _ANC_SPACE,
    _AUXDATA,
    ETH_P_ALL,
    PACKET_AUXDATA,
    PACKET_OUTGOING,
    SO_RCVBUFFORCE,
    SOL_PACKET,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
)
from vswitch.ports.offload import insert_vlan

PACKET_STATISTICS = 6
#: the largest frame a link hands up whole (a 64 KB GSO super-frame, with room to spare)
BUFSIZE = 262144
#: the socket's receive buffer: a burst the reader takes up a little later
RCVBUF_BYTES = 8 * 2**20
#: frames read per call at most (then the caller writes, and comes back)
BATCH = 256


class PacketTap:
    """Every frame of link `ifname` (in the caller's namespace), both directions. Raises OSError when
    the link does not exist or the socket cannot be made (not root)."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind((ifname, ETH_P_ALL))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        self.dropped = 0

    def read(self, timeout: float) -> list[tuple[float, bool, bytes]]:
        """(time, outgoing, frame) of what came within `timeout` seconds, oldest first (at most `BATCH`);
        [] once closed or when the link went."""
        sock = self._sock
        if sock is None:
            return []
        try:
            if not select.select([sock], [], [], timeout)[0]:
                return []
        except (OSError, ValueError):  # closed meanwhile
            return []
        out = []
        for _ in range(BATCH):
            try:
                data, anc, _flags, addr = sock.recvmsg(BUFSIZE, _ANC_SPACE)
            except BlockingIOError:
                break
            except OSError:  # the link was deleted: nothing more to read
                break
            for level, ctype, cdata in anc:
                if level == SOL_PACKET and ctype == PACKET_AUXDATA and len(cdata) >= _AUXDATA.size:
                    status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(cdata)
                    if status & TP_STATUS_VLAN_VALID:
                        data = insert_vlan(data, 0, tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100, tci)
            out.append((time.time(), addr[2] == PACKET_OUTGOING, data))
        return out

    def close(self) -> None:
        """Close the socket (its drops added to `dropped` first); idempotent."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.dropped += drops
        except OSError:
            pass
        sock.close()

"""VXLAN port (RFC 7348): the switch's frames carried in UDP to remote tunnel endpoints (VTEPs).

Owns one UDP socket bound to ``(local or any, dstport)`` in vswitchd's namespace, the list of
remote VTEPs (fixed when the port is made) and the port's own table of which VTEP each remote MAC
was last seen behind. It knows nothing of forwarding: the switch's MAC table says a MAC is behind
this port (and ages it, caps it, moves it); this table only says behind *which VTEP*, the way the
kernel's vxlan fdb or an OVS tunnel port does.

Wire format: an 8-byte VXLAN header (flags ``0x08`` = "VNI valid", 24 reserved bits, the 24-bit
VNI, 8 reserved bits) in front of the Ethernet frame, in one UDP datagram to ``remote:dstport``.
The source port is the socket's own (``dstport``), which is what the kernel's vxlan driver answers
to as well (it replies to the destination port, not to the flow-hash source port it sends from).

Invariants:
- ``vnet_hdr_len`` is 0: frames are complete (the datapath completes checksums and segments GSO
  super-frames before writing here, each TCP segment cut so that it fits ``mtu``).
- ``mtu`` is the overlay MTU: the smallest path MTU towards the remotes minus the encapsulation
  (50 bytes over IPv4, 70 over IPv6: outer IP, UDP, VXLAN and the inner Ethernet header), as the
  kernel's vxlan device offers it (1450 on a 1500 underlay). The datapath drops and counts what is
  larger (``drop_oversize``) instead of letting the underlay fragment it.
- Receive: a datagram from an address that is not one of the remotes (``drop_vxlan_unknown_vtep``),
  with another VNI (``drop_vxlan_vni``), with flags other than exactly "VNI valid" or a reserved
  bit set (``drop_vxlan_flags``, the kernel's rule), shorter than the header
  (``drop_vxlan_truncated``) or carrying an inner frame shorter than an Ethernet header
  (``drop_runt``) is dropped and counted, here and in the switch's counters (``count_rx_drop``).
- Send: a frame to a unicast MAC seen behind one VTEP goes to that VTEP only; anything else (a
  broadcast, a multicast, a MAC not seen yet) goes to every remote (head-end replication). A copy
  the kernel cannot take right now is counted (``tx_replica_drops``), never retried: the others
  already went, and a retry of the whole frame would duplicate them. A known unicast the underlay's
  queue drops is the datapath's ``drop_queue_full`` (EgressDropped), as on any port.
- The VTEP table holds at most ``MAX_REMOTE_MACS`` entries; past that the oldest learned goes
  first (it comes back with its next frame). It is read by ``where`` from other threads: one dict
  lookup, atomic under the GIL.
Must not touch: the switch's MAC table, links, routes (the underlay is the host's).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Sequence
from typing import Any, NoReturn

from vswitch.core.reasons import Reason
from vswitch.ports.base import MAX_FRAME_BYTES, LinkDown, Port, grow_socket_buffers
from vswitch.ports.errors import EgressDropped, FrameRejected

#: IANA's VXLAN port, the kernel's and Open vSwitch's default
DEFAULT_DSTPORT = 4789
VXLAN_HLEN = 8
#: the flags byte of a plain VXLAN header: "I", the VNI is valid
FLAG_VNI = 0x08
VNI_MAX = (1 << 24) - 1
#: outer IP + UDP + VXLAN + the inner Ethernet header, which the overlay MTU does not count
ENCAP_OVERHEAD = {socket.AF_INET: 20 + 8 + VXLAN_HLEN + 14, socket.AF_INET6: 40 + 8 + VXLAN_HLEN + 14}
#: the path MTU assumed when the route towards a remote cannot be asked
UNDERLAY_MTU_DEFAULT = 1500
MAX_REMOTE_MACS = 65536
MIN_FRAME = 14
_IP_MTU = 14      # getsockopt(IPPROTO_IP, IP_MTU) on a connected socket: the path MTU
_IPV6_MTU = 24
_SOCK_BUF_BYTES = 4 << 20
#: errors that mean "no route towards that remote now": the underlay may come back
_UNREACHABLE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL)
_RX_BUF = MAX_FRAME_BYTES + VXLAN_HLEN + 1


def vxlan_header(vni: int) -> bytes:
    """The 8 bytes in front of every frame of VNI `vni`."""
    return struct.pack(">II", FLAG_VNI << 24, vni << 8)


class VxlanPort(Port):
    """A VXLAN tunnel port: frames to and from ``remotes`` in VNI ``vni`` over one UDP socket.

    ``VxlanPort(name, remotes, vni, local=None, dstport=4789)``; `remotes` are IP addresses of one
    family (the spec checks them: control/model.py). Counters (``port show``): ``rx_unknown_vtep``,
    ``rx_wrong_vni``, ``rx_bad_flags``, ``rx_truncated``, ``rx_runts``, ``tx_replica_drops``,
    ``tx_unreachable``.
    """

    kind = "vxlan"

    def __init__(self, name: str, remotes: Sequence[str], vni: int, local: str | None = None,
                 dstport: int = DEFAULT_DSTPORT) -> None:
        super().__init__(name)
        if not remotes:
            raise ValueError("a VXLAN port needs at least one remote VTEP")
        self.remotes = tuple(str(ipaddress.ip_address(r)) for r in remotes)
        self.vni = vni
        self.local = local
        self.dstport = dstport
        self.family = socket.AF_INET6 if ipaddress.ip_address(self.remotes[0]).version == 6 else socket.AF_INET
        self._header = vxlan_header(vni)
        self._index = {r: i for i, r in enumerate(self.remotes)}
        self._addrs = [(r, dstport) for r in self.remotes]
        self._where: dict[bytes, int] = {}
        self._sock: socket.socket | None = None
        self._buf = bytearray(_RX_BUF)
        self._view = memoryview(self._buf)
        self.mtu = UNDERLAY_MTU_DEFAULT - ENCAP_OVERHEAD[self.family]
        self.rx_unknown_vtep = 0
        self.rx_wrong_vni = 0
        self.rx_bad_flags = 0
        self.rx_truncated = 0
        self.rx_runts = 0
        self.tx_replica_drops = 0
        self.tx_unreachable = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Bind the UDP socket. OSError from bind (EADDRINUSE: another socket holds that UDP port;
        EADDRNOTAVAIL: `local` is not an address of this host)."""
        if self._sock is not None:
            return
        sock = socket.socket(self.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.local or ("::" if self.family == socket.AF_INET6 else "0.0.0.0"), self.dstport))
            grow_socket_buffers(sock, _SOCK_BUF_BYTES)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.mtu = self.overlay_mtu()
        self.generation += 1

    def close(self) -> None:
        """Close the socket; the VTEP table is forgotten (the switch flushes the port's MACs too). Idempotent."""
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None
        self._where.clear()
        self.generation += 1

    def fileno(self) -> int:
        """The UDP socket's descriptor, or -1 when closed."""
        return -1 if self._sock is None else self._sock.fileno()

    def overlay_mtu(self) -> int:
        """The largest L3 packet a frame may carry across every remote: the smallest path MTU the
        kernel knows towards them (UNDERLAY_MTU_DEFAULT for a remote without a route now) minus the
        encapsulation."""
        v6 = self.family == socket.AF_INET6
        level, opt = (socket.IPPROTO_IPV6, _IPV6_MTU) if v6 else (socket.IPPROTO_IP, _IP_MTU)
        smallest = None
        for addr in self._addrs:
            probe = socket.socket(self.family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                probe.connect(addr)  # no packet leaves: a UDP connect only looks up the route
                mtu = probe.getsockopt(level, opt)
            except OSError:
                mtu = UNDERLAY_MTU_DEFAULT
            finally:
                probe.close()
            smallest = mtu if smallest is None else min(smallest, mtu)
        return (smallest or UNDERLAY_MTU_DEFAULT) - ENCAP_OVERHEAD[self.family]

    # -- frames ------------------------------------------------------------------------------

    def recv(self) -> bytes | None:
        """One inner frame, or None when no datagram is queued. Datagrams that are not a frame of
        this tunnel are dropped and counted (module doc); the inner source MAC is remembered
        behind the VTEP it came from."""
        sock = self._sock
        if sock is None:
            raise OSError(errno.EBADF, f"vxlan port {self.name} is not open")
        buf, view, index, header = self._buf, self._view, self._index, self._header
        while True:
            try:
                n, addr = sock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                return None
            vtep = index.get(addr[0])
            if vtep is None:
                self.rx_unknown_vtep += 1
                self.count_rx_drop(Reason.DROP_VXLAN_UNKNOWN_VTEP)
                continue
            if n < VXLAN_HLEN:
                self.rx_truncated += 1
                self.count_rx_drop(Reason.DROP_VXLAN_TRUNCATED)
                continue
            if view[:VXLAN_HLEN] != header:
                if buf[0] != FLAG_VNI or buf[1] or buf[2] or buf[3] or buf[7]:
                    self.rx_bad_flags += 1
                    self.count_rx_drop(Reason.DROP_VXLAN_FLAGS)
                else:
                    self.rx_wrong_vni += 1
                    self.count_rx_drop(Reason.DROP_VXLAN_VNI)
                continue
            if n < VXLAN_HLEN + MIN_FRAME:
                self.rx_runts += 1
                self.count_rx_drop(Reason.DROP_RUNT)
                continue
            if not buf[VXLAN_HLEN + 6] & 1:  # a group source is the switch's to drop, never a VTEP's MAC
                src = bytes(view[VXLAN_HLEN + 6:VXLAN_HLEN + 12])
                where = self._where
                if where.get(src) != vtep:
                    if len(where) >= MAX_REMOTE_MACS and src not in where:
                        del where[next(iter(where))]
                    where[src] = vtep
            return bytes(view[VXLAN_HLEN:n])

    def write(self, buf: bytes | bytearray | memoryview) -> bool:
        """Encapsulate one frame and send it to the VTEP its destination was seen behind, or to every
        remote. False: that one VTEP's datagram would block (retry). LinkDown: no remote can be
        reached now. FrameRejected: larger than a datagram may be."""
        sock = self._sock
        if sock is None:
            raise OSError(errno.EBADF, f"vxlan port {self.name} is not open")
        parts = (self._header, buf)
        vtep = None if buf[0] & 1 else self._where.get(bytes(buf[:6]))
        if vtep is not None:
            try:
                sock.sendmsg(parts, (), 0, self._addrs[vtep])
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as e:
                self._send_failed(e, len(buf))
            return True
        unreachable = 0
        for addr in self._addrs:
            try:
                sock.sendmsg(parts, (), 0, addr)
            except (BlockingIOError, InterruptedError):
                self.tx_replica_drops += 1
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.tx_replica_drops += 1
                elif e.errno in _UNREACHABLE:
                    self.tx_unreachable += 1
                    unreachable += 1
                else:
                    self._send_failed(e, len(buf))
        if unreachable == len(self._addrs):
            raise LinkDown(errno.EHOSTUNREACH, f"no route to any VTEP ({', '.join(self.remotes[:4])})")
        return True

    def _send_failed(self, e: OSError, n: int) -> NoReturn:
        code = e.errno
        if code in _UNREACHABLE:
            self.tx_unreachable += 1
            raise LinkDown(code, f"no route to the VTEP: {e.strerror}") from None
        if code == errno.EMSGSIZE:
            self.mtu = self.overlay_mtu()  # the path MTU went down: the datapath checks the new one next time
            raise FrameRejected(code, f"frame of {n} bytes does not fit a datagram to the VTEP") from None
        if code == errno.ENOBUFS:
            raise EgressDropped(code, "the underlay's transmit queue dropped the datagram") from None
        raise e

    # -- what the switch shows ----------------------------------------------------------------

    def where(self, mac: bytes) -> str | None:
        """The VTEP `mac` was last seen behind, or None."""
        i = self._where.get(mac)
        return None if i is None else self.remotes[i]

    def describe(self) -> dict[str, Any]:
        """Kind, name, VNI, the remotes, the local end, the overlay MTU and the counters."""
        d = super().describe()
        d.update(vni=self.vni, remotes=list(self.remotes), local=self.local or "any", dstport=self.dstport,
                 mtu=self.mtu, remote_macs=len(self._where), rx_unknown_vtep=self.rx_unknown_vtep,
                 rx_wrong_vni=self.rx_wrong_vni, rx_bad_flags=self.rx_bad_flags, rx_truncated=self.rx_truncated,
                 rx_runts=self.rx_runts, tx_replica_drops=self.tx_replica_drops, tx_unreachable=self.tx_unreachable)
        return d

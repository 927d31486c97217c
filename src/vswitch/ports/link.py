"""Link port: an AF_PACKET socket on a kernel link (a physical NIC uplink, a veth, a guest's TAP).

Owns one AF_PACKET/SOCK_RAW socket bound to ``ifname``. It does not configure the link (up/down,
addresses, offloads on the peer): that is control/'s and lab/'s business.

Invariants:
- Created with protocol 0 and bound with ETH_P_ALL, so it never sees other links' traffic (a
  socket created with ETH_P_ALL receives everything until bind).
- PACKET_VNET_HDR (when ``vnet`` and the kernel agrees) is set before bind: frames carry a 10-byte
  ``virtio_net_hdr``, so partial checksums and GSO super-frames cross intact. Without it, a veth
  with default offloads hands us CHECKSUM_PARTIAL frames that nobody completes (ping works, TCP
  dies); the datapath must then segment/complete in software (``offload.adapt``).
- Our own transmissions are not read back (PACKET_IGNORE_OUTGOING; filtered by packet type when
  the kernel lacks it).
- The kernel strips an 802.1Q/802.1ad tag into metadata on receive; it comes back through
  PACKET_AUXDATA and is re-inserted (after the vnet header, moving ``csum_start`` by 4), so VLANs
  never silently vanish.
- The link is promiscuous through PACKET_ADD_MEMBERSHIP (reference-counted by the kernel and
  dropped with the socket), never by flipping IFF_PROMISC.
- ``send`` errors: EAGAIN → False (retry); ENOBUFS → :class:`EgressDropped` (the link's qdisc
  dropped the frame: it is gone, and the socket stays writable, so retrying would spin on
  EPOLLOUT); ENETDOWN/ENXIO → :class:`LinkDown`;
  EINVAL/EMSGSIZE (under 14 bytes, over MTU+14, bad vnet header) → :class:`FrameRejected`.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from vswitch.ports.base import MAX_FRAME_BYTES, VNET_HDR_LEN, LinkDown, Port
from vswitch.ports.errors import EgressDropped, FrameRejected
from vswitch.ports.offload import insert_vlan

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

_AUXDATA = struct.Struct("IIIHHHH")  # tp_status, tp_len, tp_snaplen, tp_mac, tp_net, tci, tpid
_PACKET_MREQ = struct.Struct("iHH8s")  # mr_ifindex, mr_type, mr_alen, mr_address
_ANC_SPACE = socket.CMSG_SPACE(_AUXDATA.size)

#: Deep socket buffers absorb bursts while the Python loop is busy; 4 MiB each way.
DEFAULT_BUFFER_BYTES = 4 << 20


class LinkPort(Port):
    """AF_PACKET on a kernel link: ``LinkPort(name, ifname, vnet=True, promisc=True)``."""

    kind = "link"

    def __init__(self, name: str, ifname: str, vnet: bool = True, *, promisc: bool = True,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> None:
        super().__init__(name)
        self.ifname = ifname
        self.want_vnet = vnet
        self.promisc = promisc
        self.buffer_bytes = buffer_bytes
        self.ifindex = 0
        self._sock: socket.socket | None = None
        self._filter_outgoing = False
        self._bufsize = MAX_FRAME_BYTES + 64
        #: Frames dropped because they did not fit the receive buffer (never expected).
        self.rx_truncated = 0
        #: Frames whose 802.1Q tag came back from PACKET_AUXDATA and was re-inserted.
        self.rx_vlan_reinserted = 0

    def open(self) -> None:
        """Create, configure and bind the socket. Raises OSError when the link does not exist."""
        if self._sock is not None:
            return
        self.ifindex = socket.if_nametoindex(self.ifname)
        # Protocol 0: receive nothing until bound to this one link.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            self.vnet_hdr_len = 0
            if self.want_vnet:
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                    self.vnet_hdr_len = VNET_HDR_LEN
                except OSError:
                    pass  # old kernel: plain frames, the datapath completes offloads in software
            self._bufsize = MAX_FRAME_BYTES + 64 + self.vnet_hdr_len
            self._set_buffers(sock)
            sock.bind((self.ifname, ETH_P_ALL))
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self._filter_outgoing = False
            except OSError:
                self._filter_outgoing = True
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            if self.promisc:
                mreq = _PACKET_MREQ.pack(self.ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.generation += 1

    def _set_buffers(self, sock: socket.socket) -> None:
        # The *FORCE variants (root/CAP_NET_ADMIN) pass net.core.[rw]mem_max; plain ones are capped.
        for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, self.buffer_bytes)
            except OSError:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, plain, self.buffer_bytes)
                except OSError:
                    pass

    def close(self) -> None:
        """Close the socket (the kernel drops our promiscuous membership with it). Idempotent."""
        sock = self._sock
        if sock is None:
            return
        self._sock = None
        sock.close()
        self.generation += 1

    def fileno(self) -> int:
        """The packet socket's descriptor, or -1 when closed."""
        return -1 if self._sock is None else self._sock.fileno()

    def recv(self) -> bytes | None:
        """One frame (vnet header first when enabled), its VLAN tag restored; None when none ready."""
        sock = self._sock
        if sock is None:
            raise OSError(errno.EBADF, f"link port {self.name} is not open")
        while True:
            try:
                data, anc, msg_flags, addr = sock.recvmsg(self._bufsize, _ANC_SPACE)
            except BlockingIOError:
                return None
            except OSError as e:
                if e.errno == errno.ENETDOWN:
                    # The link went down: reported once as a socket error, then cleared.
                    return None
                raise
            if msg_flags & socket.MSG_TRUNC:
                self.rx_truncated += 1
                continue
            if self._filter_outgoing and addr[2] == PACKET_OUTGOING:
                continue
            for level, ctype, cdata in anc:
                if level == SOL_PACKET and ctype == PACKET_AUXDATA and len(cdata) >= _AUXDATA.size:
                    status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(cdata)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = 0x8100
                        self.rx_vlan_reinserted += 1
                        return insert_vlan(data, self.vnet_hdr_len, tpid, tci)
            return data

    def write(self, buf: bytes | bytearray | memoryview) -> bool:
        """Send one frame on the link. False: socket buffer full. LinkDown: link down or gone.
        EgressDropped: the link's qdisc dropped it. FrameRejected: too short/too long/badly offloaded."""
        try:
            self._sock.send(buf)  # type: ignore[union-attr]
        except BlockingIOError:
            return False
        except OSError as e:
            code = e.errno
            if code == errno.ENOBUFS:
                raise EgressDropped(code, f"{self.ifname}'s transmit queue dropped a frame") from None
            if code in (errno.ENETDOWN, errno.ENXIO):
                raise LinkDown(code, f"link {self.ifname} is down") from None
            if code in (errno.EINVAL, errno.EMSGSIZE):
                raise FrameRejected(code, f"{self.ifname} refused a frame of {len(buf)} bytes: "
                                          f"{e.strerror}") from None
            raise
        except AttributeError:
            raise OSError(errno.EBADF, f"link port {self.name} is not open") from None
        return True

    def describe(self) -> dict[str, Any]:
        """Kind, name, link, whether vnet headers are in use and whether the link is promiscuous."""
        d = super().describe()
        d.update(ifname=self.ifname, ifindex=self.ifindex, promisc=self.promisc,
                 open=self._sock is not None)
        return d

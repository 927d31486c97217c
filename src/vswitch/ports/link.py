"""Link port: AF_PACKET sockets on a kernel link (a physical NIC uplink, a veth, a guest's TAP).

Owns two AF_PACKET/SOCK_RAW sockets bound to ``ifname`` (untagged and VLAN-tagged frames). It does
not configure the link (up/down, addresses, offloads on the peer): that is control/'s and lab/'s
business.

Invariants:
- Two sockets on the link, split by a classic BPF filter in the kernel: the data socket gets the
  untagged frames and is read with a plain ``recv`` (about 1 µs a frame); the tagged socket gets
  the frames whose 802.1Q/802.1ad tag the kernel stripped into metadata, and is read with
  ``recvmsg`` + PACKET_AUXDATA so the tag can be re-inserted (after the vnet header, moving
  ``csum_start`` by 4): VLANs never silently vanish. One socket for both cost 3 µs a frame,
  because ``recvmsg`` also builds the sender's address (an ioctl per frame in CPython).
  The tagged socket is an ``extra_fds`` descriptor: ``service`` marks it ready and asks the
  datapath to read, and ``recv`` then serves it first, so neither socket can starve the other.
- Created with protocol 0 and bound with ETH_P_ALL, so they never see other links' traffic (a
  socket created with ETH_P_ALL receives everything until bind); the filter is attached before
  bind, so no frame ever lands on the wrong socket.
- PACKET_VNET_HDR (when ``vnet`` and the kernel agrees) is set before bind: frames carry a 10-byte
  ``virtio_net_hdr``, so partial checksums and GSO super-frames cross intact. Without it, a veth
  with default offloads hands us CHECKSUM_PARTIAL frames that nobody completes (ping works, TCP
  dies); the datapath must then segment/complete in software (``offload.adapt``).
- Our own transmissions are not read back (PACKET_IGNORE_OUTGOING, and the filter rejects
  PACKET_OUTGOING for kernels that lack it).
- The link is promiscuous through PACKET_ADD_MEMBERSHIP (reference-counted by the kernel and
  dropped with the socket), never by flipping IFF_PROMISC.
- ``send`` errors: EAGAIN → False (retry); ENOBUFS → :class:`EgressDropped` (the link's qdisc
  dropped the frame: it is gone, and the socket stays writable, so retrying would spin on
  EPOLLOUT); ENETDOWN → :class:`LinkDown`; EINVAL/EMSGSIZE (under 14 bytes, over MTU+14, bad
  vnet header) → :class:`FrameRejected`.
- A deleted link is a failed port, not a down one: the sockets are bound to its ifindex and would
  stay dead if a link of the same name came back. ``recv``/``write`` raise a plain OSError
  (ENODEV), the datapath closes the port and reopens it by name once the link exists again.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from typing import Any

from vswitch.core.reasons import Reason
from vswitch.ports.base import MAX_FRAME_BYTES, VNET_HDR_LEN, LinkDown, Port, link_mtu
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

SO_ATTACH_FILTER = 26

# Classic BPF: ancillary loads at SKF_AD_OFF (-0x1000) + offset read skb metadata.
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4
_SKF_AD_VLAN_TAG_PRESENT = 0xFFFFF000 + 48
_SOCK_FILTER = struct.Struct("HBBI")

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
        self._tagged: socket.socket | None = None
        self._tagged_fd = -1
        self._tagged_ready = False
        self._bufsize = MAX_FRAME_BYTES + 64
        #: Frames dropped because they did not fit the receive buffer (never expected).
        self.rx_truncated = 0
        #: Frames whose 802.1Q tag came back from PACKET_AUXDATA and was re-inserted.
        self.rx_vlan_reinserted = 0

    def open(self) -> None:
        """Create, configure and bind both sockets. Raises OSError when the link does not exist."""
        if self._sock is not None:
            return
        try:
            self.ifindex = socket.if_nametoindex(self.ifname)
        except OSError:
            raise OSError(errno.ENODEV, f"link {self.ifname} does not exist") from None
        self.vnet_hdr_len = VNET_HDR_LEN if self.want_vnet else 0
        data = self._packet_socket(tagged=False)
        try:
            tagged = self._packet_socket(tagged=True)
        except BaseException:
            data.close()
            raise
        self._bufsize = MAX_FRAME_BYTES + 64 + self.vnet_hdr_len
        self.mtu = link_mtu(data, self.ifname, self.mtu)
        self._sock, self._tagged, self._tagged_fd = data, tagged, tagged.fileno()
        self._tagged_ready = False
        self.generation += 1

    def _packet_socket(self, *, tagged: bool) -> socket.socket:
        # Protocol 0: receive nothing until bound to this one link, and the filter is in by then.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            if self.vnet_hdr_len:
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                except OSError:
                    if tagged:
                        raise  # both sockets must speak the same format
                    self.vnet_hdr_len = 0  # old kernel: plain frames, offloads done in software
            _attach_filter(sock, tagged=tagged)
            self._set_buffers(sock)
            sock.bind((self.ifname, ETH_P_ALL))
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass  # the filter drops PACKET_OUTGOING
            if tagged:
                sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            elif self.promisc:
                mreq = _PACKET_MREQ.pack(self.ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

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
        """Close both sockets (the kernel drops our promiscuous membership with them). Idempotent."""
        sock, tagged = self._sock, self._tagged
        if sock is None:
            return
        self._sock = self._tagged = None
        self._tagged_fd = -1
        sock.close()
        if tagged is not None:
            tagged.close()
        self.generation += 1

    def fileno(self) -> int:
        """The data socket's descriptor (untagged frames, and every write), or -1 when closed."""
        return -1 if self._sock is None else self._sock.fileno()

    def extra_fds(self) -> tuple[int, ...]:
        """The tagged socket: readable when VLAN-tagged frames wait (see :meth:`service`)."""
        return () if self._tagged_fd < 0 else (self._tagged_fd,)

    def service(self, fd: int) -> bool:
        """The tagged socket is readable: :meth:`recv` serves it first until it is empty.
        Returns True: frames are waiting, read them now."""
        self._tagged_ready = fd == self._tagged_fd
        return self._tagged_ready

    def recv(self) -> bytes | None:
        """One frame (vnet header first when enabled), its VLAN tag restored; None when none ready."""
        if self._tagged_ready:
            frame = self._recv_tagged()
            if frame is not None:
                return frame
            self._tagged_ready = False
        sock = self._sock
        if sock is None:
            raise OSError(errno.EBADF, f"link port {self.name} is not open")
        bufsize = self._bufsize
        while True:
            try:
                data = sock.recv(bufsize)
            except BlockingIOError:
                return None
            except OSError as e:
                self._recv_failed(e)
                return None
            # The buffer holds the largest frame there is: filling it means it was cut short.
            if len(data) < bufsize:
                return data
            self.rx_truncated += 1
            self.count_rx_drop(Reason.DROP_TRUNCATED)

    def _recv_tagged(self) -> bytes | None:
        sock = self._tagged
        if sock is None:
            return None
        while True:
            try:
                data, anc, msg_flags, _addr = sock.recvmsg(self._bufsize, _ANC_SPACE)
            except BlockingIOError:
                return None
            except OSError as e:
                self._recv_failed(e)
                return None
            if msg_flags & socket.MSG_TRUNC:
                self.rx_truncated += 1
                self.count_rx_drop(Reason.DROP_TRUNCATED)
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

    def set_priority(self, priority: int) -> None:
        """The skb->priority of the frames written from now on (SO_PRIORITY): an htb class of the
        link's qdisc (an External switch's uplink shared by weight), 0 for none."""
        if self._sock is not None:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, priority)

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
            if code == errno.ENETDOWN:
                raise LinkDown(code, f"link {self.ifname} is down") from None
            if code in (errno.ENXIO, errno.ENODEV):
                self._raise_if_deleted()
                raise LinkDown(code, f"link {self.ifname} is down") from None
            if code in (errno.EINVAL, errno.EMSGSIZE):
                raise FrameRejected(code, f"{self.ifname} refused a frame of {len(buf)} bytes: "
                                          f"{e.strerror}") from None
            raise
        except AttributeError:
            raise OSError(errno.EBADF, f"link port {self.name} is not open") from None
        return True

    def _recv_failed(self, e: OSError) -> None:
        # ENETDOWN is reported once as a socket error, then cleared: the link went down (read nothing
        # now) or was deleted (a failed port). Anything else is a real error.
        if e.errno != errno.ENETDOWN:
            raise e
        self._raise_if_deleted()

    def _raise_if_deleted(self) -> None:
        # Our sockets are bound to an ifindex: once that link is deleted they stay dead even if a
        # link of the same name comes back. A plain OSError makes the datapath close the port and
        # reopen it by name from its tick.
        try:
            same = socket.if_indextoname(self.ifindex) == self.ifname
        except OSError:
            same = False
        if not same:
            raise OSError(errno.ENODEV, f"link {self.ifname} (ifindex {self.ifindex}) was deleted")

    def describe(self) -> dict[str, Any]:
        """Kind, name, link, whether vnet headers are in use and whether the link is promiscuous."""
        d = super().describe()
        d.update(ifname=self.ifname, ifindex=self.ifindex, promisc=self.promisc,
                 open=self._sock is not None)
        return d


def _attach_filter(sock: socket.socket, *, tagged: bool) -> None:
    """Let through only frames that arrived (never our own outgoing ones) and whose VLAN tag the
    kernel stripped (``tagged``) or did not (not ``tagged``)."""
    prog = (
        (_BPF_LD_W_ABS, 0, 0, _SKF_AD_PKTTYPE),
        (_BPF_JEQ_K, 3, 0, PACKET_OUTGOING),          # ours → reject
        (_BPF_LD_W_ABS, 0, 0, _SKF_AD_VLAN_TAG_PRESENT),
        (_BPF_JEQ_K, 0, 1, 1 if tagged else 0),       # wanted → accept, else reject
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),
        (_BPF_RET_K, 0, 0, 0),
    )
    code = ctypes.create_string_buffer(b"".join(_SOCK_FILTER.pack(*insn) for insn in prog))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program

"""The contract between port back-ends and the datapath.

A port moves whole frames between the switch and one endpoint (a TAP, a kernel link, a QEMU
socket, an in-memory peer). It knows nothing of forwarding: no FDB, no VLAN policy.

Frames are handed over in the port's own wire format: when ``vnet_hdr_len`` is 10, every frame
returned by :meth:`Port.recv` starts with a ``struct virtio_net_hdr`` and :meth:`Port.write`
expects one; when it is 0 the buffer is the bare Ethernet frame. The datapath converts between
formats (``vswitch.ports.offload``) when ingress and egress ports differ.

Invariants every back-end keeps:
- ``recv`` and ``write`` never block: ``recv`` returns ``None`` when nothing is ready,
  ``write`` returns ``False`` when the kernel would block (the datapath queues and retries).
- A link that is down for now (a TAP whose netdev is down or being moved to another namespace,
  a QEMU peer not connected yet) raises :class:`LinkDown` from ``write``; it is not a dead port.
- Any other ``OSError`` from ``recv``/``write`` is a real error: the datapath marks the port down.
- ``generation`` increases whenever the set of file descriptors to watch changes
  (a QEMU client connected or left), so the datapath can re-register them.
- A frame the back-end drops on receive (a runt, a bad stream length, a truncated or oversize
  frame) is reported through ``count_rx_drop(reason)``: the datapath points it at the port's
  counters in the core, so every drop of every kind shows in ``stats`` under its Reason. A port
  may keep its own detail counters too (``port show``).
- ``mtu`` is the endpoint's L3 MTU (the link/TAP MTU; 65,535 for socket and memory ports, which
  take anything a frame can be). The datapath drops what is larger (``over_mtu``) before writing.
- ``down_reason`` says why the port cannot carry frames now although it is open (no QEMU client
  yet), or is None; the datapath reports such a port as down.
"""

from __future__ import annotations

import abc
import fcntl
import socket
import struct
from collections.abc import Callable
from typing import Any, ClassVar

from vswitch.core.reasons import Reason

#: ``struct virtio_net_hdr`` without ``num_buffers``: what TAP (TUNSETVNETHDRSZ 10) and
#: AF_PACKET (PACKET_VNET_HDR) use.
VNET_HDR_LEN = 10
#: Largest frame we ever read: a 64 KiB GSO super-frame plus Ethernet/VLAN headers.
MAX_FRAME_BYTES = 65535 + 14 + 4
#: The largest L3 MTU there is (an IPv4/IPv6 packet's length field): what socket ports take.
MAX_MTU = 65535
ETH_HLEN = 14
VLAN_HLEN = 4


def over_mtu(buf: bytes | bytearray | memoryview, hdr_len: int, mtu: int) -> bool:
    """True when the frame in ``buf`` (after a vnet header of ``hdr_len`` bytes) carries more than
    ``mtu`` bytes after its L2 header: longer than mtu + 14, or mtu + 18 with an 802.1Q/802.1ad tag.

    A GSO super-frame (a vnet header with a gso_type) is never over: its receiver segments it.
    The one rule for oversize frames, on egress (the port's MTU) and on receive from a socket
    port (``MAX_MTU``). Never raises for a short buffer.
    """
    n = len(buf) - hdr_len
    if n <= mtu + ETH_HLEN:
        return False
    if hdr_len and buf[1] & 0x7F:  # gso_type without the ECN bit
        return False
    if n > mtu + ETH_HLEN + VLAN_HLEN:
        return True
    b12, b13 = buf[hdr_len + 12], buf[hdr_len + 13]
    return not ((b12 == 0x81 and b13 == 0x00) or (b12 == 0x88 and b13 == 0xA8))


_SIOCGIFMTU = 0x8921
_IFREQ_MTU = struct.Struct("16si20x")


def link_mtu(sock: socket.socket | None, ifname: str, default: int) -> int:
    """The MTU of link ``ifname`` in the namespace of ``sock`` (a fresh AF_INET socket when None);
    ``default`` when the link cannot be asked (gone, or in another namespace)."""
    own = sock is None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if own else sock
    try:
        res = fcntl.ioctl(s.fileno(), _SIOCGIFMTU, _IFREQ_MTU.pack(ifname.encode(), 0))
        return _IFREQ_MTU.unpack(res)[1]
    except OSError:
        return default
    finally:
        if own:
            s.close()


def grow_socket_buffers(sock: socket.socket, nbytes: int) -> None:
    """Ask for `nbytes` of send and receive buffer on a socket port's socket; a refusal is not fatal
    (the defaults work, with more drops under bursts)."""
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, nbytes)
        except OSError:
            pass


def ignore_rx_drop(reason: Reason) -> None:
    """``count_rx_drop`` of a port no datapath has attached: nobody counts."""


class LinkDown(OSError):
    """The endpoint cannot take frames right now (link down, peer absent); it may come back."""


class Port(abc.ABC):
    """One attachment of a switch: moves frames, in its own wire format, without blocking."""

    kind: ClassVar[str] = "abstract"

    def __init__(self, name: str) -> None:
        self.name = name
        self.vnet_hdr_len = 0
        self.generation = 0
        self.mtu = MAX_MTU
        #: Where receive-side drops are counted; the datapath sets it on attach (see module doc).
        self.count_rx_drop: Callable[[Reason], None] = ignore_rx_drop

    @property
    def down_reason(self) -> str | None:
        """Why this open port cannot carry frames right now (e.g. no peer yet), or None."""
        return None

    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the endpoint (create/open the device or socket). Idempotent."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything the port holds. Idempotent; never raises for an already-gone endpoint."""

    @abc.abstractmethod
    def fileno(self) -> int:
        """The data file descriptor to watch for readable frames, or -1 when there is none right now."""

    def extra_fds(self) -> tuple[int, ...]:
        """Other descriptors to watch for readability (e.g. a listening socket); see :meth:`service`."""
        return ()

    def service(self, fd: int) -> bool | None:
        """Handle readiness of one of :meth:`extra_fds` (accept a client, ...). True means frames
        are waiting behind that descriptor: the caller reads them through :meth:`recv` now."""
        return None

    @abc.abstractmethod
    def recv(self) -> bytes | None:
        """Return one frame (with its vnet header when ``vnet_hdr_len``), or None when none is ready."""

    @abc.abstractmethod
    def write(self, buf: bytes | bytearray | memoryview) -> bool:
        """Send one frame in this port's format. False: would block, try later. LinkDown: down for now."""

    def where(self, mac: bytes) -> str | None:
        """Where behind this port `mac` was last seen, when the port can say (a VXLAN port: the
        remote VTEP); None. Called from the control plane's thread: a read, never a change."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts for `port show`: the kind, the endpoint, and e.g. the QEMU argument to use."""
        return {"kind": self.kind, "name": self.name, "vnet_hdr_len": self.vnet_hdr_len}

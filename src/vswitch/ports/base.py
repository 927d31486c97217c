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
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

#: ``struct virtio_net_hdr`` without ``num_buffers``: what TAP (TUNSETVNETHDRSZ 10) and
#: AF_PACKET (PACKET_VNET_HDR) use.
VNET_HDR_LEN = 10
#: Largest frame we ever read: a 64 KiB GSO super-frame plus Ethernet/VLAN headers.
MAX_FRAME_BYTES = 65535 + 14 + 4


class LinkDown(OSError):
    """The endpoint cannot take frames right now (link down, peer absent); it may come back."""


class Port(abc.ABC):
    """One attachment of a switch: moves frames, in its own wire format, without blocking."""

    kind: ClassVar[str] = "abstract"

    def __init__(self, name: str) -> None:
        self.name = name
        self.vnet_hdr_len = 0
        self.generation = 0

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

    def describe(self) -> dict[str, Any]:
        """Facts for `port show`: the kind, the endpoint, and e.g. the QEMU argument to use."""
        return {"kind": self.kind, "name": self.name, "vnet_hdr_len": self.vnet_hdr_len}

"""vswitch.ports: I/O back-ends that move frames between the switch and its endpoints.

One module per kind (``tap``, ``link``, ``qemu``, ``vxlan``, ``memory``), the contract in ``base``, per-frame
errors in ``errors`` and the pure vnet-header conversions in ``offload``. ``PORT_KINDS`` maps the
kind names used in port specs to their classes; it is the one registry of kinds.
"""

from __future__ import annotations

from vswitch.ports.base import MAX_FRAME_BYTES, VNET_HDR_LEN, LinkDown, Port
from vswitch.ports.errors import EgressDropped, FrameRejected, OffloadError
from vswitch.ports.link import LinkPort
from vswitch.ports.memory import MemoryPort
from vswitch.ports.offload import adapt, parse_vnet_hdr, shift_csum_start
from vswitch.ports.qemu import QemuDgramPort, QemuStreamPort
from vswitch.ports.tap import TapPort
from vswitch.ports.vxlan import VxlanPort

PORT_KINDS: dict[str, type[Port]] = {
    "tap": TapPort,
    "link": LinkPort,
    "qemu-stream": QemuStreamPort,
    "qemu-dgram": QemuDgramPort,
    "vxlan": VxlanPort,
    "memory": MemoryPort,
}

__all__ = [
    "MAX_FRAME_BYTES",
    "PORT_KINDS",
    "VNET_HDR_LEN",
    "EgressDropped",
    "FrameRejected",
    "LinkDown",
    "LinkPort",
    "MemoryPort",
    "OffloadError",
    "Port",
    "QemuDgramPort",
    "QemuStreamPort",
    "TapPort",
    "VxlanPort",
    "adapt",
    "parse_vnet_hdr",
    "shift_csum_start",
]

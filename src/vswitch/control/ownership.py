"""One owner per target: which switch, port, uplink or host vNIC holds a kernel link or a socket path.

Owns the rule, and nothing else:
- a kernel link name is one target whatever attaches to it — a `tap` port, a `link` port, an
  External switch's uplink or a host vNIC — because two attachments on one netdev see each other's
  frames and bypass VLAN and switch isolation;
- a socket path is one target whatever kind of socket port uses it; a `qemu-dgram` port also holds
  its peer path (``<path>.qemu``, where QEMU binds and where the port sends);
- ``vs-*`` names belong to host vNICs (`host_vnic_name`), present or left by a crashed run, and are
  never a port's link nor an External switch's NIC (the loopback device is neither: the spec
  refuses it, control/model.py);
- a VXLAN port holds its UDP port (on any local address): two VXLAN ports cannot share one, since
  datagrams are not told apart by VNI across ports (yet): give the second another `dstport`;
- reserved paths (vswitchd's API socket, its state directory) and anything under them are never a
  port's socket.

Pure: the manager describes what exists (`OwnerIndex`), then asks; no I/O here. Every refusal is a
`Conflict` naming the owner.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from vswitch.control.model import Conflict, PortKind, PortSpec, host_vnic_name

LINK = "link"
PATH = "path"
MEMORY = "memory"
UDP = "udp"
#: Every host vNIC name starts so (see `host_vnic_name`).
VNIC_PREFIX = host_vnic_name("")
#: What a qemu-dgram port's peer path adds to its own (ports/qemu.py: QEMU binds ``<path>.qemu``).
DGRAM_PEER_SUFFIX = ".qemu"

Target = tuple[str, str]


@dataclass(frozen=True)
class Owner:
    """Who holds a target: a port (`port`, `kind` set) or the switch's own uplink / host vNIC."""

    switch: str
    role: str                 # "port" | "uplink" | "host vNIC"
    port: str | None = None
    kind: str | None = None

    def __str__(self) -> str:
        if self.role == "port":
            return f"{self.kind} port {self.port!r} of switch {self.switch!r}"
        return f"the {self.role} of switch {self.switch!r}"


def port_targets(spec: PortSpec) -> list[Target]:
    """What a (validated) port spec would hold. Memory ports hold their id, among memory ports only."""
    kind = PortKind(spec.kind)
    if kind in (PortKind.TAP, PortKind.LINK):
        return [(LINK, spec.target)]
    if kind == PortKind.QEMU_STREAM:
        return [(PATH, spec.target)]
    if kind == PortKind.QEMU_DGRAM:
        return [(PATH, spec.target), (PATH, spec.target + DGRAM_PEER_SUFFIX)]
    if kind == PortKind.VXLAN:
        return [(UDP, str(spec.udp_port))]
    return [(MEMORY, spec.target)]


def _describe(target: Target) -> str:
    kind, key = target
    if kind == UDP:
        return f"UDP port {key}"
    return {LINK: "interface", PATH: "socket path", MEMORY: "memory port id"}[kind] + f" {key!r}"


class OwnerIndex:
    """The targets held by running switches. Build it from what exists, then `refuse_taken`."""

    def __init__(self) -> None:
        self._owners: dict[Target, Owner] = {}

    def add_switch(self, switch: str, nic: str | None, vnic: str | None) -> None:
        if nic is not None:
            self._owners.setdefault((LINK, nic), Owner(switch, "uplink"))
        if vnic is not None:
            self._owners.setdefault((LINK, vnic), Owner(switch, "host vNIC"))

    def add_port(self, switch: str, spec: PortSpec) -> None:
        for t in port_targets(spec):
            self._owners.setdefault(t, Owner(switch, "port", spec.name, str(spec.kind)))

    def owner(self, target: Target) -> Owner | None:
        return self._owners.get(target)

    def refuse_taken(self, targets: Iterable[Target], wanted_by: str) -> None:
        """Conflict naming the owner of the first of `targets` that is already held."""
        for t in targets:
            owner = self._owners.get(t)
            if owner is not None:
                raise Conflict(f"{_describe(t)} is already {owner}; it cannot also be {wanted_by}")


def refuse_reserved_link(ifname: str, wanted_by: str) -> None:
    """Conflict when `ifname` is named like a host vNIC and so can never be `wanted_by` (a port's link,
    an External NIC). The loopback device is refused by the spec itself (control/model.py)."""
    if ifname.startswith(VNIC_PREFIX):
        raise Conflict(f"{ifname!r} is named like a host vNIC of vswitch ({VNIC_PREFIX}*, owned by a switch "
                       f"or left by an earlier run); it cannot be {wanted_by}")


def is_under(path: str, directory: str) -> bool:
    """True when normalised absolute `path` is `directory` or inside it (both compared as given)."""
    directory = posixpath.normpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def refuse_reserved_path(path: str, reserved: Iterable[str], wanted_by: str) -> None:
    """Conflict when `path` is a reserved path (vswitchd's API socket, its state directory) or under one."""
    for r in reserved:
        if is_under(path, r):
            where = "is" if path == posixpath.normpath(r) else f"is under {r!r}, which is"
            raise Conflict(f"socket path {path!r} {where} reserved for vswitchd itself (its API socket or "
                           f"state directory); it cannot be {wanted_by}")


def resolve_socket_name(target: str, port_socket_dir: str) -> str:
    """A plain name (no '/') → ``<port_socket_dir>/<name>.sock``; an absolute path is returned as is."""
    if "/" in target:
        return target
    return posixpath.join(port_socket_dir, f"{target}.sock")

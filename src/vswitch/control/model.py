"""Intent: what a user asks for (switches, ports) and the facts we report back.

Owns the value types shared by the control plane and every front end (REST, CLI, lab):
`SwitchSpec`, `PortSpec`, their validation, and the `*Info` records returned by `SwitchApi`.
Validation here is the single place where names, VLAN ids and options are checked, so a bad
request is refused with a message naming what is wrong before anything changes.
Must not touch: sockets, netlink, the datapath.
"""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: Linux netdev names are at most 15 bytes (IFNAMSIZ 16 with the NUL).
IFNAME_MAX = 15
NAME_MAX = 32
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
AGEING_MIN_S, AGEING_MAX_S, AGEING_DEFAULT_S = 10, 3600, 300
CAPACITY_MIN, CAPACITY_MAX, CAPACITY_DEFAULT = 16, 1_000_000, 8192


class VswitchError(Exception):
    """A request was refused; `status` is the HTTP status a front end should use."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(VswitchError):
    status = 400


class NotFound(VswitchError):
    status = 404


class Conflict(VswitchError):
    status = 409


class SwitchType(enum.StrEnum):
    """Hyper-V's three kinds of virtual switch."""

    EXTERNAL = "external"  # uplink on a physical NIC, optional host vNIC (allow management OS)
    INTERNAL = "internal"  # host vNIC + VMs, no physical NIC
    PRIVATE = "private"    # VMs only


class PortKind(enum.StrEnum):
    TAP = "tap"
    LINK = "link"
    QEMU_STREAM = "qemu-stream"
    QEMU_DGRAM = "qemu-dgram"
    MEMORY = "memory"


def validate_name(what: str, name: object, *, max_len: int = NAME_MAX) -> str:
    """Return `name` if it is a safe object name, else raise InvalidRequest naming the problem."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{what} name must be a non-empty string")
    if len(name.encode()) > max_len:
        raise InvalidRequest(f"{what} name {name!r} is too long ({len(name.encode())} bytes, max {max_len})")
    if "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidRequest(f"{what} name {name!r} must not contain '/', NUL or be '.'/'..'")
    if not _NAME_RE.match(name):
        raise InvalidRequest(f"{what} name {name!r} may only use letters, digits, '_', '.', '-'")
    return name


def validate_ifname(what: str, name: object) -> str:
    return validate_name(what, name, max_len=IFNAME_MAX)


def validate_vlan(what: str, vid: object) -> int:
    if not isinstance(vid, int) or isinstance(vid, bool) or not 1 <= vid <= 4094:
        raise InvalidRequest(f"{what} must be a VLAN id between 1 and 4094, got {vid!r}")
    return vid


def parse_vlan_list(text: str) -> list[int]:
    """Parse '10,20,30-32' into [10, 20, 30, 31, 32]; InvalidRequest on anything else."""
    vids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise InvalidRequest(f"bad VLAN list {text!r}: {part!r} is not a number or range") from None
        if a > b:
            raise InvalidRequest(f"bad VLAN list {text!r}: range {part!r} is reversed")
        for v in range(a, b + 1):
            vids.add(validate_vlan("trunk VLAN", v))
    if not vids:
        raise InvalidRequest(f"bad VLAN list {text!r}: it names no VLAN")
    return sorted(vids)


#: A unix socket address holds 108 bytes; a qemu-dgram port's peer adds ".qemu" to its path.
SOCKET_PATH_MAX = 100
LOOPBACK = "lo"


def normalise_socket_path(path: str) -> str:
    """`path` as a normalised absolute path: no '//', no '.' components, no trailing '/'.

    A plain name (no '/') is returned unchanged: the manager puts it under its port socket directory.
    Raises InvalidRequest for a relative path, a '..' component (refused, never resolved: the caller
    must say which directory it means), NUL, the root itself, or a path too long for a unix socket.
    """
    if "\0" in path:
        raise InvalidRequest("socket path must not contain NUL")
    if "/" not in path:
        return validate_name("socket", path)
    if not path.startswith("/"):
        raise InvalidRequest(f"socket path {path[:120]!r} must be absolute (or a plain name, "
                             "for a socket in vswitchd's port socket directory)")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidRequest(f"socket path {path[:120]!r} has a '..' component; give the path without it "
                             "(it is refused, not resolved)")
    if not parts:
        raise InvalidRequest(f"socket path {path!r} names no file")
    norm = "/" + "/".join(parts)
    if len(norm.encode()) > SOCKET_PATH_MAX:
        raise InvalidRequest(f"socket path {norm[:120]!r} is too long for a unix socket "
                             f"(max {SOCKET_PATH_MAX} bytes)")
    return norm


def validate_port_target(kind: PortKind, target: object) -> str:
    """The target of a port of `kind`, normalised; InvalidRequest naming what is wrong.

    tap/link: an interface name, never the loopback device. qemu-stream/qemu-dgram: see
    `normalise_socket_path`. Who owns a target is decided elsewhere (control/ownership.py)."""
    if not isinstance(target, str) or not target:
        raise InvalidRequest("a port needs a target (interface name or socket path)")
    if kind in (PortKind.TAP, PortKind.LINK):
        validate_ifname("interface", target)
        if target == LOOPBACK:
            raise InvalidRequest("the loopback device 'lo' cannot be a port")
        return target
    if kind in (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM):
        return normalise_socket_path(target)
    return target


def host_vnic_name(switch: str) -> str:
    """The host vNIC (management OS adapter) of a switch: ``vs-<switch>`` cut to 15 bytes."""
    return ("vs-" + switch)[:IFNAME_MAX]


@dataclass(frozen=True)
class SwitchSpec:
    """What a user asks for when creating a switch."""

    name: str
    type: SwitchType
    nic: str | None = None
    allow_management_os: bool = True
    confirm_timeout_s: float | None = None
    ageing_s: int = AGEING_DEFAULT_S
    max_entries: int = CAPACITY_DEFAULT

    def validate(self) -> SwitchSpec:
        validate_name("switch", self.name)
        try:
            SwitchType(self.type)
        except ValueError:
            raise InvalidRequest(f"switch type must be one of external/internal/private, got {self.type!r}") from None
        if self.type == SwitchType.EXTERNAL:
            if not self.nic:
                raise InvalidRequest("an external switch needs a physical NIC (--external NIC)")
            validate_ifname("NIC", self.nic)
            if self.nic == "lo":
                raise InvalidRequest("the loopback device cannot be the uplink of an external switch")
        elif self.nic:
            raise InvalidRequest(f"a {self.type} switch has no physical NIC (got {self.nic!r})")
        if self.confirm_timeout_s is not None:
            if self.type != SwitchType.EXTERNAL:
                raise InvalidRequest("--confirm-timeout only applies to external switches")
            if not (isinstance(self.confirm_timeout_s, int | float) and self.confirm_timeout_s > 0):
                raise InvalidRequest(
                    f"confirm timeout must be a positive number of seconds, got {self.confirm_timeout_s!r}")
        if not isinstance(self.ageing_s, int) or not AGEING_MIN_S <= self.ageing_s <= AGEING_MAX_S:
            raise InvalidRequest(f"ageing must be {AGEING_MIN_S}-{AGEING_MAX_S} s, got {self.ageing_s!r}")
        if not isinstance(self.max_entries, int) or not CAPACITY_MIN <= self.max_entries <= CAPACITY_MAX:
            raise InvalidRequest(f"MAC table capacity must be {CAPACITY_MIN}-{CAPACITY_MAX}, got {self.max_entries!r}")
        return self

    @property
    def has_host_vnic(self) -> bool:
        return self.type == SwitchType.INTERNAL or (
            self.type == SwitchType.EXTERNAL and self.allow_management_os)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = str(self.type)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SwitchSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidRequest(f"unknown switch field(s): {', '.join(unknown)}")
        if "name" not in known or "type" not in known:
            raise InvalidRequest("a switch needs 'name' and 'type'")
        try:
            known["type"] = SwitchType(known["type"])
        except ValueError:
            raise InvalidRequest(f"switch type must be one of external/internal/private, got {d['type']!r}") from None
        return cls(**known).validate()


@dataclass(frozen=True)
class PortSpec:
    """What a user asks for when adding a port. `target` is an ifname or a socket path."""

    name: str
    kind: PortKind
    target: str
    vlan: int | None = None                       # access VLAN (default 1)
    trunk: tuple[int, ...] | None = None          # allowed VLANs on a trunk port
    native: int | None = None                     # trunk's untagged VLAN

    def validate(self) -> PortSpec:
        validate_name("port", self.name)
        try:
            kind = PortKind(self.kind)
        except ValueError:
            raise InvalidRequest(f"port kind must be one of {', '.join(k.value for k in PortKind)}, "
                                 f"got {self.kind!r}") from None
        if not isinstance(self.target, str) or not self.target:
            raise InvalidRequest(f"port {self.name!r} needs a target (interface name or socket path)")
        target = validate_port_target(kind, self.target)
        if target != self.target:
            return replace(self, target=target).validate()  # validation runs on what will be stored
        if self.trunk is not None:
            if self.vlan is not None:
                raise InvalidRequest("a port is either access (--vlan) or trunk (--trunk), not both")
            if not self.trunk:
                raise InvalidRequest("a trunk port needs at least one allowed VLAN")
            for v in self.trunk:
                validate_vlan("trunk VLAN", v)
            if self.native is not None:
                validate_vlan("native VLAN", self.native)
        else:
            if self.native is not None:
                raise InvalidRequest("--native only applies to trunk ports")
            if self.vlan is not None:
                validate_vlan("access VLAN", self.vlan)
        return self

    @property
    def access_vlan(self) -> int:
        return 1 if self.vlan is None else self.vlan

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = str(self.kind)
        d["trunk"] = list(self.trunk) if self.trunk is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PortSpec:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidRequest(f"unknown port field(s): {', '.join(unknown)}")
        for k in ("name", "kind", "target"):
            if k not in d:
                raise InvalidRequest(f"a port needs {k!r}")
        known = dict(d)
        try:
            known["kind"] = PortKind(known["kind"])
        except ValueError:
            raise InvalidRequest(f"port kind must be one of {', '.join(k.value for k in PortKind)}, "
                                 f"got {d['kind']!r}") from None
        if known.get("trunk") is not None:
            if not isinstance(known["trunk"], list | tuple):
                raise InvalidRequest("trunk must be a list of VLAN ids")
            known["trunk"] = tuple(known["trunk"])
        return cls(**known).validate()


@dataclass
class PortInfo:
    """A port as reported: its spec, its state and what the back-end says of itself."""

    name: str
    kind: str
    target: str
    vlan_mode: str            # "access 1", "trunk 10,20 native 10"
    up: bool
    role: str = "vm"          # vm | host-vnic | uplink
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class SwitchInfo:
    name: str
    type: str
    nic: str | None
    allow_management_os: bool
    host_vnic: str | None
    state: str                # up | awaiting-confirm
    ports: list[PortInfo] = field(default_factory=list)
    ageing_s: int = AGEING_DEFAULT_S
    max_entries: int = CAPACITY_DEFAULT
    confirm_deadline_s: float | None = None


@dataclass
class FdbEntryInfo:
    mac: str
    vlan: int
    port: str
    age_s: float
    static: bool


@dataclass
class PortStatsInfo:
    port: str
    rx_frames: int
    rx_bytes: int
    tx_frames: int
    tx_bytes: int
    floods: int
    learned: int
    moved: int
    drops: dict[str, int] = field(default_factory=dict)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses (and lists of them) → plain JSON-ready structures."""
    if isinstance(obj, list):
        return [to_jsonable(o) for o in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj

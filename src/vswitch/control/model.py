"""Intent: what a user asks for (switches, ports) and the facts we report back.

Owns the value types shared by the control plane and every front end (REST, CLI, lab):
`SwitchSpec`, `PortSpec`, their validation, and the `*Info` records returned by `SwitchApi`.
Validation here is the single place where names, VLAN ids and options are checked, so a bad
request is refused with a message naming what is wrong before anything changes.
Must not touch: sockets, netlink, the datapath.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from vswitch.core.mac import format_mac, parse_mac
from vswitch.core.policy import format_vlan_list, merge_vlan_ranges

#: Linux netdev names are at most 15 bytes (IFNAMSIZ 16 with the NUL).
IFNAME_MAX = 15
NAME_MAX = 32
#: what a switch, port or interface name may look like (the OpenAPI schema states the same pattern)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_NAME_RE = re.compile(NAME_PATTERN)
AGEING_MIN_S, AGEING_MAX_S, AGEING_DEFAULT_S = 10, 3600, 300
CAPACITY_MIN, CAPACITY_MAX, CAPACITY_DEFAULT = 16, 1_000_000, 8192
#: longest confirm timeout: an hour is plenty to check a host is reachable; finite, so a timer can hold it
CONFIRM_TIMEOUT_MAX_S = 3600.0
VLAN_MIN, VLAN_MAX = 1, 4094
#: a trunk names each VLAN at most once, so no list (or range text) may be longer than this
TRUNK_MAX_VLANS = VLAN_MAX - VLAN_MIN + 1
#: longest trunk range text ("1,3,5,...": every other VLAN written out is about 10 KB)
TRUNK_TEXT_MAX = 20_000
#: a `watch` records for at most this long and returns at most this many events
WATCH_MAX_S, WATCH_MAX_EVENTS = 60.0, 10_000
#: how much of a refused input an error message repeats
ECHO_MAX = 64


def clip(value: object, limit: int = ECHO_MAX) -> str:
    """`repr(value)` cut to `limit` characters (plus "…"): what an error message may echo of an input.

    Keeps a refused 1 MB string from coming back in the answer, the log and the terminal.
    """
    if isinstance(value, str | bytes) and len(value) > 4 * limit:
        value = value[:4 * limit]  # the repr of a huge string is never built
    if isinstance(value, list | tuple | dict | set) and len(value) > limit:
        text = f"<{type(value).__name__} of {len(value)} items>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


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
        raise InvalidRequest(f"{what} name {clip(name)} is too long ({len(name.encode())} bytes, max {max_len})")
    if "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidRequest(f"{what} name {clip(name)} must not contain '/', NUL or be '.'/'..'")
    if not _NAME_RE.fullmatch(name):  # match() would let a trailing newline through
        raise InvalidRequest(f"{what} name {clip(name)} may only use letters, digits, '_', '.', '-' "
                             "(and start with a letter or digit)")
    return name


def validate_ifname(what: str, name: object) -> str:
    return validate_name(what, name, max_len=IFNAME_MAX)


def validate_vlan(what: str, vid: object) -> int:
    if not isinstance(vid, int) or isinstance(vid, bool) or not VLAN_MIN <= vid <= VLAN_MAX:
        raise InvalidRequest(f"{what} must be a VLAN id between {VLAN_MIN} and {VLAN_MAX}, got {clip(vid)}")
    return vid


_RANGE_RE = re.compile(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?", re.ASCII)


def parse_vlan_list(text: str) -> list[int]:
    """Parse '10,20,30-32' into [10, 20, 30, 31, 32] (sorted, each VLAN once).

    Raises InvalidRequest for anything else: a text over `TRUNK_TEXT_MAX` characters (refused before
    it is parsed), a part that is not a number or ``LO-HI`` range, a reversed range, a VLAN outside
    1-4094, or no VLAN at all. Ranges are merged before they are expanded, so at most 4094 ids are
    ever built whatever the text repeats.
    """
    if not isinstance(text, str):
        raise InvalidRequest(f"a VLAN list must be text like '10,20-30', got {clip(text)}")
    if len(text) > TRUNK_TEXT_MAX:
        raise InvalidRequest(f"VLAN list is too long ({len(text)} characters, max {TRUNK_TEXT_MAX})")
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _RANGE_RE.fullmatch(part)
        if m is None:
            raise InvalidRequest(f"bad VLAN list {clip(text)}: {clip(part.strip())} is not a number or range")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if a > b:
            raise InvalidRequest(f"bad VLAN list {clip(text)}: range {clip(part.strip())} is reversed")
        validate_vlan("trunk VLAN", a)
        validate_vlan("trunk VLAN", b)
        ranges.append((a, b))
    if not ranges:
        raise InvalidRequest(f"bad VLAN list {clip(text)}: it names no VLAN")
    vids: list[int] = []
    for a, b in merge_vlan_ranges(ranges):
        vids.extend(range(a, b + 1))
    return vids


def trunk_vlans(value: object) -> tuple[int, ...]:
    """A trunk's allowed VLANs, sorted and each once, from a list of ids or a range text ('10,20-30').

    Raises InvalidRequest for a list over `TRUNK_MAX_VLANS` entries (refused before any is looked
    at), a non-integer or out-of-range id, an empty list, or a bad range text (see `parse_vlan_list`).
    Stored rows of older versions hold a JSON list of ints and load through here too.
    """
    if isinstance(value, str):
        return tuple(parse_vlan_list(value))
    if not isinstance(value, list | tuple):
        raise InvalidRequest(f"trunk must be a list of VLAN ids or a range text like '10,20-30', got {clip(value)}")
    if len(value) > TRUNK_MAX_VLANS:
        raise InvalidRequest(f"a trunk carries at most {TRUNK_MAX_VLANS} VLANs; the list has {len(value)} entries")
    if not value:
        raise InvalidRequest("a trunk port needs at least one allowed VLAN")
    return tuple(sorted({validate_vlan("trunk VLAN", v) for v in value}))


def validate_flag(what: str, value: object) -> bool:
    """`value` if it is a bool, else InvalidRequest naming `what`."""
    if not isinstance(value, bool):
        raise InvalidRequest(f"{what} must be true or false, got {clip(value)}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
            raise InvalidRequest(
                f"switch type must be one of external/internal/private, got {clip(self.type)}") from None
        if self.type == SwitchType.EXTERNAL:
            if not self.nic:
                raise InvalidRequest("an external switch needs a physical NIC (--external NIC)")
            validate_ifname("NIC", self.nic)
            if self.nic == "lo":
                raise InvalidRequest("the loopback device cannot be the uplink of an external switch")
        elif self.nic:
            raise InvalidRequest(f"a {self.type} switch has no physical NIC (got {clip(self.nic)})")
        if self.confirm_timeout_s is not None:
            if self.type != SwitchType.EXTERNAL:
                raise InvalidRequest("--confirm-timeout only applies to external switches")
            t = self.confirm_timeout_s
            # finite and bounded: the revert timer must be able to hold it (1e308 overflowed it)
            if not (isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)
                    and 0 < t <= CONFIRM_TIMEOUT_MAX_S):
                raise InvalidRequest(f"confirm timeout must be a number of seconds in (0, "
                                     f"{CONFIRM_TIMEOUT_MAX_S:.0f}], got {clip(t)}")
        if not _is_int(self.ageing_s) or not AGEING_MIN_S <= self.ageing_s <= AGEING_MAX_S:
            raise InvalidRequest(f"ageing must be {AGEING_MIN_S}-{AGEING_MAX_S} s, got {clip(self.ageing_s)}")
        if not _is_int(self.max_entries) or not CAPACITY_MIN <= self.max_entries <= CAPACITY_MAX:
            raise InvalidRequest(f"MAC table capacity must be {CAPACITY_MIN}-{CAPACITY_MAX}, "
                                 f"got {clip(self.max_entries)}")
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
            raise InvalidRequest(f"unknown switch field(s): {', '.join(clip(k) for k in unknown[:8])}")
        if "name" not in known or "type" not in known:
            raise InvalidRequest("a switch needs 'name' and 'type'")
        try:
            known["type"] = SwitchType(known["type"])
        except ValueError:
            raise InvalidRequest(f"switch type must be one of external/internal/private, got {clip(d['type'])}"
                                 ) from None
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
    admin_up: bool = True                         # `port set --admin down` keeps the port but drops its frames
    learning: bool = True
    flooding: bool = True

    def validate(self) -> PortSpec:
        validate_name("port", self.name)
        for flag in ("admin_up", "learning", "flooding"):
            validate_flag(flag, getattr(self, flag))
        try:
            kind = PortKind(self.kind)
        except ValueError:
            raise InvalidRequest(f"port kind must be one of {', '.join(k.value for k in PortKind)}, "
                                 f"got {clip(self.kind)}") from None
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
            if len(self.trunk) > TRUNK_MAX_VLANS:
                raise InvalidRequest(f"a trunk carries at most {TRUNK_MAX_VLANS} VLANs, got {len(self.trunk)}")
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
        # ranges, not a list: 4094 VLANs are "1-4094", not 20 KB of JSON
        d["trunk"] = format_vlan_list(self.trunk) if self.trunk is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PortSpec:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidRequest(f"unknown port field(s): {', '.join(clip(k) for k in unknown[:8])}")
        for k in ("name", "kind", "target"):
            if k not in d:
                raise InvalidRequest(f"a port needs {k!r}")
        known = dict(d)
        try:
            known["kind"] = PortKind(known["kind"])
        except ValueError:
            raise InvalidRequest(f"port kind must be one of {', '.join(k.value for k in PortKind)}, "
                                 f"got {clip(d['kind'])}") from None
        if known.get("trunk") is not None:
            known["trunk"] = trunk_vlans(known["trunk"])
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
    admin_up: bool = True
    learning: bool = True
    flooding: bool = True


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
    #: frames whose source MAC is static on another port: counted, neither learned nor moved
    static_refused: int = 0


def _refuse_unknown(what: str, cls: type, d: object) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise InvalidRequest(f"{what} must be an object, got {clip(d)}")
    unknown = sorted(set(d) - set(cls.__dataclass_fields__))  # type: ignore[attr-defined]
    if unknown:
        raise InvalidRequest(f"unknown {what} field(s): {', '.join(clip(k) for k in unknown[:8])}")
    return d


@dataclass(frozen=True)
class PortSettings:
    """What `port set` changes on a live port; a field left None keeps that setting.

    The VLAN mode is set as a whole: `vlan` (access) or `trunk` with an optional `native`
    (a trunk given without `native` has none)."""

    vlan: int | None = None
    trunk: tuple[int, ...] | None = None
    native: int | None = None
    admin_up: bool | None = None
    learning: bool | None = None
    flooding: bool | None = None

    def validate(self) -> PortSettings:
        """Raises InvalidRequest naming the field: both vlan and trunk, native without trunk, a bad
        VLAN id or list (the `PortSpec` rules), a non-boolean flag, or nothing to change."""
        if self.vlan is not None and self.trunk is not None:
            raise InvalidRequest("a port is either access (--vlan) or trunk (--trunk), not both")
        if self.native is not None and self.trunk is None:
            raise InvalidRequest("--native only applies to trunk ports (give --trunk with it)")
        for flag in ("admin_up", "learning", "flooding"):
            if getattr(self, flag) is not None:
                validate_flag(flag, getattr(self, flag))
        if all(getattr(self, f) is None for f in self.__dataclass_fields__):
            raise InvalidRequest("nothing to change: give --vlan, --trunk, --admin, --learning or --flooding")
        return self

    def apply(self, spec: PortSpec) -> PortSpec:
        """`spec` with these settings, validated as any port (InvalidRequest naming the field)."""
        changes: dict[str, Any] = {f: getattr(self, f) for f in ("admin_up", "learning", "flooding")
                                   if getattr(self, f) is not None}
        if self.vlan is not None:
            changes.update(vlan=self.vlan, trunk=None, native=None)
        elif self.trunk is not None:
            changes.update(vlan=None, trunk=self.trunk, native=self.native)
        return replace(spec, **changes).validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PortSettings:
        known = dict(_refuse_unknown("port setting", cls, d))
        if known.get("trunk") is not None:
            known["trunk"] = trunk_vlans(known["trunk"])
        return cls(**known).validate()


@dataclass(frozen=True)
class StaticEntry:
    """A static MAC table entry: `mac` (in `vlan`) always lives behind `port`.

    `vlan` None means the port's own VLAN (its access VLAN, or a trunk's native VLAN)."""

    mac: str
    port: str
    vlan: int | None = None

    def validate(self) -> StaticEntry:
        """`self` with the MAC written canonically; InvalidRequest for a bad MAC (or a group address:
        only a unicast MAC lives behind one port), port name or VLAN id."""
        mac = canonical_mac("MAC", self.mac)
        if int(mac[:2], 16) & 1:
            raise InvalidRequest(f"a static entry needs a unicast MAC, {mac} is a group address")
        validate_name("port", self.port)
        if self.vlan is not None:
            validate_vlan("VLAN", self.vlan)
        return self if mac == self.mac else replace(self, mac=mac)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StaticEntry:
        known = _refuse_unknown("static entry", cls, d)
        for k in ("mac", "port"):
            if k not in known:
                raise InvalidRequest(f"a static entry needs {k!r}")
        return cls(**known).validate()


def canonical_mac(what: str, text: object) -> str:
    """`text` as ``aa:bb:cc:dd:ee:ff``; InvalidRequest naming `what` when it is not a MAC."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{what} must be text like 52:54:00:12:34:56, got {clip(text)}")
    try:
        return format_mac(parse_mac(text))
    except ValueError as e:
        raise InvalidRequest(f"{what}: {e}") from None


@dataclass(frozen=True)
class SwitchSettings:
    """What `switch set` changes on a running switch; a field left None keeps that setting.

    `name` renames the switch (a Private one: the others' host vNIC is named after the switch)."""

    ageing_s: int | None = None
    max_entries: int | None = None
    name: str | None = None

    def validate(self) -> SwitchSettings:
        """InvalidRequest naming the field (the `SwitchSpec` rules), or when nothing is to change."""
        if self.ageing_s is None and self.max_entries is None and self.name is None:
            raise InvalidRequest("nothing to change: give --name, --ageing or --max-entries")
        if self.name is not None:
            validate_name("switch", self.name)
        return self

    def apply(self, spec: SwitchSpec) -> SwitchSpec:
        """`spec` with these settings, validated as any switch."""
        changes = {f: getattr(self, f) for f in self.__dataclass_fields__ if getattr(self, f) is not None}
        return replace(spec, **changes).validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SwitchSettings:
        return cls(**_refuse_unknown("switch setting", cls, d)).validate()


@dataclass
class NicInfo:
    """A link that could be the uplink of an External switch (what Hyper-V's drop-down lists)."""

    name: str
    mac: str
    up: bool
    kind: str                 # "device" for a physical NIC, else the link kind (veth, vlan, bond, ...)
    addresses: list[str] = field(default_factory=list)
    default_route: bool = False  # taking this NIC moves the host's default route
    mtu: int = 1500


def to_jsonable(obj: Any) -> Any:
    """Dataclasses (and lists of them) → plain JSON-ready structures."""
    if isinstance(obj, list):
        return [to_jsonable(o) for o in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj

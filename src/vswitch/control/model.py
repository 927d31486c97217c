"""Intent: what a user asks for (switches, ports) and the facts we report back.

Owns the value types shared by the control plane and every front end (REST, CLI, lab):
`SwitchSpec`, `PortSpec`, their rules, `policy_for` (a port spec as the core's policy), and the
records returned by `SwitchApi` (`*Info`, `TraceInfo`/`TraceStepInfo` of `trace`,
`FrameEvent`/`IcmpEcho` of `watch`, `SwitchEvent`/`EventsPage` of `events`; a configuration document
is control/config_file.py's).

Parse once, at the edge: the rules here (one checker per field in `SWITCH_FIELDS` / `PORT_FIELDS`,
then the rules between fields) are the only place names, VLAN IDs and options are checked. A spec
is valid by construction: building one (directly, through `parse` from a mapping, or `updated`)
checks everything and raises one `InvalidRequest` listing every problem, each naming its field
("trunk[2]: 5000 is not a VLAN ID (1-4094)"). Front ends show these messages as they are; the
manager, the datapath and the core trust a spec and check only what needs the kernel or state.
Must not touch: sockets, netlink, the datapath.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from typing import Any, ClassVar, Self, cast

from vswitch.core import acl as acl_rules
from vswitch.core import events as core_events
from vswitch.core.guards import GUARD_DHCP, GUARD_ROUTER
from vswitch.core.mac import format_mac, parse_mac
from vswitch.core.policy import PortMirroring, PortPolicy, PvlanMode, format_vlan_list, merge_vlan_ranges
from vswitch.core.rates import BURST_MAX, RATE_MAX, STORM_LIMIT_MAX
from vswitch.core.reasons import Reason

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
#: the daemon keeps this many `events` (oldest dropped); one read returns at most EVENTS_LIMIT_MAX of
#: them and waits at most EVENTS_WAIT_MAX_S for the next (well under the REST client's timeout)
EVENTS_RING, EVENTS_LIMIT_DEFAULT, EVENTS_LIMIT_MAX, EVENTS_WAIT_MAX_S = 4096, 1000, 4096, 30.0
#: how much of a refused input an error message repeats
ECHO_MAX = 64
#: vswitchd's --busy-poll-us: at most 0.1 s of spinning after a batch
BUSY_POLL_MAX_US = 100_000
#: the switch's own ports (no PortSpec): its uplink and its host vNIC; no user port takes these names
UPLINK_PORT = "uplink"
HOST_PORT = "host"
RESERVED_PORT_NAMES = frozenset({UPLINK_PORT, HOST_PORT})


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


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: the field (a path like ``trunk[2]``; "" for the whole) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidRequest(VswitchError):
    """A request that can never succeed as given. `problems` lists every problem found.

    Built from a message (one problem about the whole request) or from `Problem`s; the message
    joins them with "; ", so a front end showing the message shows every one."""

    status = 400

    def __init__(self, message: str | Sequence[Problem]) -> None:
        self.problems: list[Problem] = [Problem("", message)] if isinstance(message, str) else list(message)
        super().__init__("; ".join(map(str, self.problems)))

    def within(self, path: str) -> InvalidRequest:
        """The same problems inside `path` (e.g. ``ports[1]``): ``vlan`` becomes ``ports[1].vlan``."""
        def inside(f: str) -> str:
            return f"{path}{'' if not f or f.startswith('[') else '.'}{f}"
        return InvalidRequest([Problem(inside(p.field), p.message) for p in self.problems])


class NotFound(VswitchError):
    status = 404


class Conflict(VswitchError):
    status = 409


class SwitchType(enum.StrEnum):
    """Hyper-V's three kinds of virtual switch."""

    EXTERNAL = "external"  # uplink on a physical NIC, optional host vNIC (allow management OS)
    INTERNAL = "internal"  # host vNIC + VMs, no physical NIC
    PRIVATE = "private"    # VMs only


class DatapathMode(enum.StrEnum):
    """Which datapath forwards a switch's frames: `auto` the kernel fast path when it can, else Python."""

    AUTO = "auto"
    KERNEL = "kernel"   # the fast path or a refusal saying why
    PYTHON = "python"   # SwitchCore on every frame (the behaviour before the fast path)


class PortKind(enum.StrEnum):
    TAP = "tap"
    LINK = "link"
    QEMU_STREAM = "qemu-stream"
    QEMU_DGRAM = "qemu-dgram"
    VXLAN = "vxlan"
    MEMORY = "memory"



# ---- the rules: one checker per field, one place --------------------------------------------------
#
# A checker takes a value as a request gives it (JSON, YAML, CLI options, a stored row) and returns it
# as a spec holds it, or raises FieldError saying what is wrong without naming the field: the caller
# knows the field and names it. `SWITCH_FIELDS` / `PORT_FIELDS` map each spec field to its checker, so
# a partial update (one option of `port set`) checks its value with `check_field`.

class FieldError(ValueError):
    """One value is refused; the message says why (not which field: the caller names it).

    `sub` is a path inside the value (e.g. ``[3]`` for the fourth VLAN of a trunk list)."""

    def __init__(self, message: str, sub: str = "") -> None:
        super().__init__(message)
        self.sub = sub


Check = Callable[[Any], Any]


def _whole(value: object) -> int | None:
    """`value` as an int when it is a whole number (10, or JSON's 10.0), else None (True is not 1)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _int_in(lo: int, hi: int, what: str) -> Check:
    def check(value: object) -> int:
        n = _whole(value)
        if n is None or not lo <= n <= hi:
            raise FieldError(f"{clip(value)} is not {what} ({lo}-{hi})")
        return n
    return check


def optional(check: Check) -> Check:
    """`check`, letting None (not given) through."""
    def maybe(value: object) -> Any:
        return None if value is None else check(value)
    return maybe


def check_flag(value: object) -> bool:
    """True or false, nothing that merely looks like it ("yes", 1); FieldError otherwise."""
    if not isinstance(value, bool):
        raise FieldError(f"{clip(value)} is not true or false")
    return value


_RATE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:bit/s|bit|bps|b/s)?", re.IGNORECASE)
_RATE_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_rate(value: object) -> int:
    """A bandwidth in bits per second: a whole number (bits per second), or text with an SI suffix —
    ``100M``, ``1.5G``, ``800k``, ``100Mbit``, ``100mbps`` (decimal: M is 10**6, as for links) —, 0
    for none. Rounded to a multiple of 8 (whole bytes, as Hyper-V's -MaximumBandwidth), a non-zero rate
    to at least 8; at most `RATE_MAX` (400 Gbit/s). FieldError otherwise."""
    n = None if isinstance(value, bool) else _whole(value)
    if n is None and isinstance(value, str) and (m := _RATE_RE.fullmatch(value.strip())):
        exact = float(m.group(1)) * _RATE_SCALE[m.group(2).lower()]
        n = int(exact) if math.isfinite(exact) and exact == int(exact) else None
    if n is None or not 0 <= n <= RATE_MAX:
        raise FieldError(f"{clip(value)} is not a rate in bits per second (e.g. 100M, 1G; 0 for none; "
                         f"at most {RATE_MAX // 10**9} Gbit/s)")
    return 0 if n == 0 else max(8, (n + 4) // 8 * 8)


def _name_checker(max_len: int) -> Check:
    """A checker of safe object names (`NAME_PATTERN`) of at most `max_len` bytes."""
    def check(name: object) -> str:
        if not isinstance(name, str) or not name:
            raise FieldError(f"must be a non-empty string, got {clip(name)}")
        if len(name.encode()) > max_len:
            raise FieldError(f"{clip(name)} is too long ({len(name.encode())} bytes, max {max_len})")
        if "/" in name or "\0" in name or name in (".", ".."):
            raise FieldError(f"{clip(name)} must not contain '/', NUL or be '.'/'..'")
        if not _NAME_RE.fullmatch(name):  # match() would let a trailing newline through
            raise FieldError(f"{clip(name)} may only use letters, digits, '_', '.', '-' "
                             "(and start with a letter or digit)")
        return name
    return check


#: the checkers of single values, each raising FieldError
check_name = _name_checker(NAME_MAX)
check_ifname = _name_checker(IFNAME_MAX)
check_vlan = _int_in(VLAN_MIN, VLAN_MAX, "a VLAN ID")
check_ageing = _int_in(AGEING_MIN_S, AGEING_MAX_S, "an ageing time in seconds")
check_capacity = _int_in(CAPACITY_MIN, CAPACITY_MAX, "a MAC table capacity in entries")
check_busy_poll_us = _int_in(0, BUSY_POLL_MAX_US, "a busy-poll time in microseconds")


def _enum_checker(enum_type: type[enum.StrEnum], what: str) -> Check:
    def check(value: object) -> Any:
        try:
            return enum_type(value)
        except ValueError:
            raise FieldError(f"{clip(value)} is not {what} ({', '.join(e.value for e in enum_type)})") from None
    return check


#: `port set --port-mirroring` (Hyper-V -PortMirroring None|Source|Destination), as stored
PORT_MIRRORING_MODES = ("none", "source", "destination")


def check_port_mirroring(value: object) -> str:
    """A port mirroring mode, 'none' | 'source' | 'destination' (any case, as PowerShell takes
    Hyper-V's); FieldError otherwise."""
    if isinstance(value, str) and value.lower() in PORT_MIRRORING_MODES:
        return value.lower()
    raise FieldError(f"{clip(value)} is not a port mirroring mode ({', '.join(PORT_MIRRORING_MODES)})")


def check_port_name(name: object) -> str:
    """A name (`check_name`) that is not one of the switch's own ports; FieldError otherwise."""
    name = check_name(name)
    if name in RESERVED_PORT_NAMES:
        raise FieldError(f"{name!r} is reserved for the switch's own ports")
    return name


def check_nic(nic: object) -> str:
    """A kernel link name (`check_ifname`) that is not the loopback device; FieldError otherwise."""
    nic = check_ifname(nic)
    if nic == LOOPBACK:
        raise FieldError("'lo' is the loopback device, not a physical NIC")
    return nic


def check_confirm_timeout(t: object) -> float:
    """Seconds in (0, `CONFIRM_TIMEOUT_MAX_S`], as a float; FieldError otherwise."""
    # finite and bounded: the revert timer must be able to hold it (1e308 overflowed it)
    if not (isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t)
            and 0 < t <= CONFIRM_TIMEOUT_MAX_S):
        raise FieldError(f"{clip(t)} is not a number of seconds in (0, {CONFIRM_TIMEOUT_MAX_S:.0f}]")
    return float(t)


def check_target(target: object) -> str:
    """The part of a port target's rules that holds for every kind; the kind's own in `_port_rules`."""
    if not isinstance(target, str) or not target:
        raise FieldError(f"must be an interface name, a socket path or remote VTEP addresses, got {clip(target)}")
    return target


_RANGE_RE = re.compile(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?", re.ASCII)


def parse_vlan_list(text: str) -> list[int]:
    """Parse '10,20,30-32' into [10, 20, 30, 31, 32] (sorted, each VLAN once).

    Raises FieldError for anything else: a text over `TRUNK_TEXT_MAX` characters (refused before
    it is parsed), a part that is not a number or ``LO-HI`` range, a reversed range, a VLAN outside
    1-4094, or no VLAN at all. Ranges are merged before they are expanded, so at most 4094 ids are
    ever built whatever the text repeats.
    """
    if not isinstance(text, str):
        raise FieldError(f"{clip(text)} is not a VLAN list like '10,20-30'")
    if len(text) > TRUNK_TEXT_MAX:
        raise FieldError(f"VLAN list is too long ({len(text)} characters, max {TRUNK_TEXT_MAX})")
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _RANGE_RE.fullmatch(part)
        if m is None:
            raise FieldError(f"bad VLAN list {clip(text)}: {clip(part.strip())} is not a number or range")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if a > b:
            raise FieldError(f"bad VLAN list {clip(text)}: range {clip(part.strip())} is reversed")
        for v in (a, b):
            try:
                check_vlan(v)
            except FieldError as exc:
                raise FieldError(f"bad VLAN list {clip(text)}: {exc}") from None
        ranges.append((a, b))
    if not ranges:
        raise FieldError(f"bad VLAN list {clip(text)}: it names no VLAN")
    vids: list[int] = []
    for a, b in merge_vlan_ranges(ranges):
        vids.extend(range(a, b + 1))
    return vids


def trunk_vlans(value: object) -> tuple[int, ...]:
    """A trunk's allowed VLANs, sorted and each once, from a list of ids or a range text ('10,20-30').

    Raises FieldError for a list over `TRUNK_MAX_VLANS` entries (refused before any is looked
    at), a non-integer or out-of-range id (`sub` names its index), an empty list, or a bad range
    text (see `parse_vlan_list`). Stored rows of older versions hold a JSON list of ints and load
    through here too.
    """
    if isinstance(value, str):
        return tuple(parse_vlan_list(value))
    if not isinstance(value, list | tuple):
        raise FieldError(f"{clip(value)} is not a list of VLAN IDs or a range text like '10,20-30'")
    if len(value) > TRUNK_MAX_VLANS:
        raise FieldError(f"a trunk carries at most {TRUNK_MAX_VLANS} VLANs; the list has {len(value)} entries")
    if not value:
        raise FieldError("a trunk port needs at least one allowed VLAN")
    vids = set()
    for i, v in enumerate(value):
        try:
            vids.add(check_vlan(v))
        except FieldError as exc:
            raise FieldError(str(exc), f"[{i}]") from None
    return tuple(sorted(vids))


#: A unix socket address holds 108 bytes; a qemu-dgram port's peer adds ".qemu" to its path.
SOCKET_PATH_MAX = 100
LOOPBACK = "lo"


def normalise_socket_path(path: str) -> str:
    """`path` as a normalised absolute path: no '//', no '.' components, no trailing '/'.

    A plain name (no '/') is returned unchanged: the manager puts it under its port socket directory.
    Raises FieldError for a relative path, a '..' component (refused, never resolved: the caller
    must say which directory it means), NUL, the root itself, or a path too long for a unix socket.
    """
    if "\0" in path:
        raise FieldError("a socket path must not contain NUL")
    if "/" not in path:
        return check_name(path)
    if not path.startswith("/"):
        raise FieldError(f"socket path {path[:120]!r} must be absolute (or a plain name, "
                         "for a socket in vswitchd's port socket directory)")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise FieldError(f"socket path {path[:120]!r} has a '..' component; give the path without it "
                         "(it is refused, not resolved)")
    if not parts:
        raise FieldError(f"socket path {path!r} names no file")
    norm = "/" + "/".join(parts)
    if len(norm.encode()) > SOCKET_PATH_MAX:
        raise FieldError(f"socket path {norm[:120]!r} is too long for a unix socket "
                         f"(max {SOCKET_PATH_MAX} bytes)")
    return norm


def check_port_target(kind: PortKind, target: str) -> str:
    """The target of a port of `kind`, normalised; FieldError naming what is wrong.

    tap/link: an interface name, never the loopback device. qemu-stream/qemu-dgram: see
    `normalise_socket_path`. Who owns a target is decided elsewhere (control/ownership.py)."""
    if kind in (PortKind.TAP, PortKind.LINK):
        check_ifname(target)
        if target == LOOPBACK:
            raise FieldError("the loopback device 'lo' cannot be a port")
        return target
    if kind in (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM):
        return normalise_socket_path(target)
    if kind == PortKind.VXLAN:
        return ",".join(vxlan_remotes(target))
    return target


#: the most remote VTEPs one VXLAN port replicates a flood to (one datagram each, in Python)
VXLAN_REMOTES_MAX = 256
VNI_MIN, VNI_MAX = 1, (1 << 24) - 1
VXLAN_DSTPORT_DEFAULT = 4789


def _tunnel_address(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise FieldError(f"{clip(text)} is not an IPv4 or IPv6 address ({what})") from None
    if ip.is_multicast or ip.is_unspecified or (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255")):
        raise FieldError(f"{ip} is not a unicast address ({what}; a multicast underlay is not supported: "
                         "list the remote VTEPs)")
    return ip


def vxlan_remotes(target: str) -> list[str]:
    """The remote VTEPs of a VXLAN port's target ``IP[,IP…]``: each a unicast address, all of one
    family, each once (in the order given); FieldError naming what is wrong."""
    items = [t for t in target.split(",") if t.strip()]
    if not items:
        raise FieldError("a VXLAN port needs at least one remote VTEP address (IP[,IP…])")
    if len(items) > VXLAN_REMOTES_MAX:
        raise FieldError(f"{len(items)} remote VTEPs; a VXLAN port replicates to at most {VXLAN_REMOTES_MAX}")
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        try:
            ip = _tunnel_address(item, "a remote VTEP")
        except FieldError as exc:
            raise FieldError(str(exc), f"[{i}]") from None
        seen.setdefault(str(ip), ip.version)
    if len(set(seen.values())) > 1:
        raise FieldError("the remote VTEPs mix IPv4 and IPv6; one VXLAN port speaks one family")
    return list(seen)


def check_tunnel_ip(value: object) -> str:
    """A VXLAN port's local address: one unicast IP, normalised."""
    if not isinstance(value, str):
        raise FieldError(f"{clip(value)} is not an IP address")
    return str(_tunnel_address(value, "the local VTEP address"))


def host_vnic_name(switch: str) -> str:
    """The host vNIC (management OS adapter) of a switch: ``vs-<switch>`` cut to 15 bytes."""
    return ("vs-" + switch)[:IFNAME_MAX]


class _Missing:
    """A required field the request did not give (only `parse` passes it, so the check names it)."""

    def __repr__(self) -> str:
        return "<missing>"


_ABSENT: Any = _Missing()

Rules = Callable[[dict[str, Any]], Iterable[Problem]]


def _checked(spec: Any, fields: Mapping[str, Check], rules: Rules) -> None:
    """Check every field of `spec` and then the rules between them; store the normalised values.

    Raises InvalidRequest listing every problem found (a rule only sees fields that passed)."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, check in fields.items():
        raw = getattr(spec, name)
        if raw is _ABSENT:
            problems.append(Problem(name, "required"))
            continue
        try:
            values[name] = check(raw)
        except FieldError as exc:
            problems.append(Problem(name + exc.sub, str(exc)))
    problems += rules(values)
    if problems:
        raise InvalidRequest(problems)
    for name, value in values.items():
        object.__setattr__(spec, name, value)  # frozen: the normal form is set once, here


def _key_text(key: object) -> str:
    """A field name a client chose, as an error message may repeat it."""
    return key if isinstance(key, str) and len(key) <= 32 and key.isprintable() else clip(key, 32)


def _parse(cls: Any, data: object, what: str) -> Any:
    """`cls` from a mapping (JSON, YAML, a stored row): every unknown, missing or bad field named."""
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"a {what} must be a mapping of field → value, got {clip(data)}")
    fields = {f.name: f for f in dataclass_fields(cls)}  # not the ClassVars
    problems = [Problem(_key_text(k), f"unknown {what} field (expected {', '.join(fields)})")
                for k in [k for k in data if k not in fields][:8]]
    known = {k: data[k] for k in fields if k in data}
    for k, f in fields.items():
        if k not in known and f.default is NO_DEFAULT and f.default_factory is NO_DEFAULT:
            known[k] = _ABSENT
    try:
        spec = cls(**known)
    except InvalidRequest as exc:
        problems += exc.problems
    if problems:
        raise InvalidRequest(problems)
    return spec


def check_field(spec_type: type[SwitchSpec] | type[PortSpec], field_name: str, value: object) -> Any:
    """One field's value as the spec would hold it (e.g. ``check_field(PortSpec, "vlan", 10)``).

    For a partial update that names one option; the rules between fields run when the updated spec
    is built (`SwitchSpec.updated` / `PortSpec.updated`). Raises InvalidRequest naming the field."""
    fields = spec_type.fields
    if field_name not in fields:
        raise InvalidRequest([Problem(_key_text(field_name), f"unknown field (expected {', '.join(fields)})")])
    try:
        return fields[field_name](value)
    except FieldError as exc:
        raise InvalidRequest([Problem(field_name + exc.sub, str(exc))]) from None


def _switch_rules(v: dict[str, Any]) -> Iterator[Problem]:
    typ = v.get("type")
    if typ is None:
        return  # already reported: the rules below depend on it
    if "nic" in v:
        if typ == SwitchType.EXTERNAL and v["nic"] is None:
            yield Problem("nic", "an external switch needs a physical NIC")
        elif typ != SwitchType.EXTERNAL and v["nic"] is not None:
            article = "an" if typ == SwitchType.INTERNAL else "a"
            yield Problem("nic", f"{article} {typ} switch has no physical NIC (got {clip(v['nic'])})")
    if v.get("confirm_timeout_s") is not None and typ != SwitchType.EXTERNAL:
        yield Problem("confirm_timeout_s", "only an external switch has a confirm timeout")


SWITCH_FIELDS: dict[str, Check] = {
    "name": check_name,
    "type": _enum_checker(SwitchType, "a switch type"),
    "nic": optional(check_nic),
    "allow_management_os": check_flag,
    "confirm_timeout_s": optional(check_confirm_timeout),
    "ageing_s": check_ageing,
    "max_entries": check_capacity,
    "datapath": _enum_checker(DatapathMode, "a datapath"),
    "uplink_bandwidth": parse_rate,
}


#: `trace --payload`: what follows the MAC addresses (ethertype and on), at most a jumbo frame's worth
TRACE_PAYLOAD_MAX = 9000
#: the default payload of a traced frame: IPv4's ethertype and 46 zero bytes (a minimum-size frame)
TRACE_PAYLOAD_DEFAULT = b"\x08\x00" + bytes(46)


def trace_payload(text: str | None) -> bytes:
    """`trace`'s payload as bytes (None: the default); InvalidRequest naming ``payload`` when it is
    not 2 to TRACE_PAYLOAD_MAX bytes of hex."""
    if text is None:
        return TRACE_PAYLOAD_DEFAULT
    try:
        data = bytes.fromhex(text) if isinstance(text, str) else None
    except ValueError:
        data = None
    if data is None or not 2 <= len(data) <= TRACE_PAYLOAD_MAX:
        raise InvalidRequest([Problem("payload", f"{clip(text)} is not 2-{TRACE_PAYLOAD_MAX} bytes of hex "
                                                 "(the ethertype and what follows, e.g. 86dd6000...)")])
    return data


def check_unicast_mac(text: object) -> str:
    """`text` as ``aa:bb:cc:dd:ee:ff``; FieldError when it is not a MAC, or a group address (only a
    unicast MAC lives behind one port)."""
    if not isinstance(text, str):
        raise FieldError(f"{clip(text)} is not a MAC address like 52:54:00:12:34:56")
    try:
        mac = format_mac(parse_mac(text))
    except ValueError as e:
        raise FieldError(str(e)) from None
    if int(mac[:2], 16) & 1:
        raise FieldError(f"{mac} is a group address, not a unicast MAC (its first byte is odd)")
    return mac


#: whose MAC a port of each kind but tap carries, for `port set --mac` refused
_MAC_OWNER = {
    PortKind.LINK: "a link port carries the frames of the link's far side (a VM's veth end, a QEMU guest's "
                   "own TAP): set the MAC there",
    PortKind.QEMU_STREAM: "a QEMU guest chooses its own MAC (-device ...,mac=)",
    PortKind.QEMU_DGRAM: "a QEMU guest chooses its own MAC (-device ...,mac=)",
    PortKind.VXLAN: "a VXLAN port carries the frames of the MACs behind its remote VTEPs",
    PortKind.MEMORY: "a memory port has no MAC of its own",
}


def _port_rules(v: dict[str, Any]) -> Iterator[Problem]:
    kind, target = v.get("kind"), v.get("target")
    if kind is not None and target is not None:
        try:
            v["target"] = check_port_target(kind, target)
        except FieldError as exc:
            del v["target"]
            yield Problem("target", str(exc))
    if v.get("trunk") is not None:
        if v.get("vlan") is not None:
            yield Problem("vlan", "a port is either access (vlan) or trunk (trunk), not both")
    elif v.get("native") is not None and "trunk" in v:
        yield Problem("native", "only a trunk port has a native VLAN")
    if v.get("mac") is not None and kind is not None and kind != PortKind.TAP:
        yield Problem("mac", f"only a tap port's MAC is vswitch's to set: {_MAC_OWNER[kind]}")
    if v.get("max_bandwidth_in") and kind is not None and kind != PortKind.LINK:
        yield Problem("max_bandwidth_in", f"only a link port's delivery is shaped (a qdisc on its link); a {kind} "
                                          "port has no link of the switch's")
    yield from _vxlan_rules(v)
    yield from _pvlan_rules(v)


#: the fields only a VXLAN port has
VXLAN_FIELDS = ("vni", "local_ip", "dstport")


def _vxlan_rules(v: dict[str, Any]) -> Iterator[Problem]:
    """A VXLAN port has its VNI (and optionally its local address and UDP port); no other port has any."""
    kind = v.get("kind")
    if kind == PortKind.VXLAN:
        if "vni" in v and v["vni"] is None:
            yield Problem("vni", "a VXLAN port needs its VNI (1-16777215)")
        local, target = v.get("local_ip"), v.get("target")
        if local is not None and target:
            if ipaddress.ip_address(local).version != ipaddress.ip_address(target.split(",")[0]).version:
                yield Problem("local_ip", f"{local} is not of the remote VTEPs' family ({target.split(',')[0]})")
        return
    if kind is not None:
        for k in VXLAN_FIELDS:
            if v.get(k) is not None:
                yield Problem(k, "only a VXLAN port has it")


def _pvlan_rules(v: dict[str, Any]) -> Iterator[Problem]:
    """A private VLAN port (Hyper-V's Set-VMNetworkAdapterVlan): its mode replaces access and trunk;
    isolated and community take one --secondary, promiscuous a --secondary-list; none is the primary."""
    mode = v.get("pvlan")
    if "pvlan" not in v and not any(k in v for k in ("primary", "secondary", "secondary_list")):
        return
    if mode is None:
        for k in ("primary", "secondary", "secondary_list"):
            if v.get(k) is not None:
                yield Problem(k, "only a private VLAN port (pvlan isolated, community or promiscuous) has it")
        return
    if v.get("vlan") is not None or v.get("trunk") is not None:
        yield Problem("pvlan", "a private VLAN port is neither access (vlan) nor trunk (trunk): give one mode")
    primary = v.get("primary")
    if primary is None and "primary" in v:
        yield Problem("primary", f"{_a(mode)} private VLAN port needs its primary VLAN")
    if mode == PvlanMode.PROMISCUOUS:
        if v.get("secondary") is not None:
            yield Problem("secondary", "a promiscuous port takes a secondary_list, not one secondary")
        if v.get("secondary_list") is None and "secondary_list" in v:
            yield Problem("secondary_list", "a promiscuous port needs the secondary VLANs it serves")
    else:
        if v.get("secondary_list") is not None:
            yield Problem("secondary_list", f"{_a(mode)} port takes one secondary, not a list")
        if v.get("secondary") is None and "secondary" in v:
            yield Problem("secondary", f"{_a(mode)} private VLAN port needs its secondary VLAN")


def _a(mode: object) -> str:
    return f"{'an' if mode == PvlanMode.ISOLATED else 'a'} {mode}"


def pvlan_conflicts(spec: PortSpec, others: Iterable[PortSpec]) -> list[Problem]:
    """What `spec` contradicts among the private VLANs of its switch (itself included): a secondary is
    not its own primary, belongs to one primary and is one kind (isolated or community), and no VLAN is
    both a primary and a secondary (the learning domains of core/isolation.py would not be one each).
    A plain access port's VLAN is no secondary (its hosts would receive an isolated secondary's frames:
    a host port there is a private VLAN port); a trunk may carry any (that is how a private VLAN
    crosses switches). A conflict (409), not a bad request: JSON Schema cannot compare two fields'
    values, nor see the other ports."""
    others = [o for o in others if o.name != spec.name]
    if spec.pvlan is None:
        if spec.trunk is not None:
            return []
        for o in others:
            if o.pvlan is not None and spec.access_vlan in _secondaries(o):
                return [Problem("vlan", f"VLAN {spec.access_vlan} is a secondary of private VLAN {o.primary} "
                                        f"(port {o.name}): a host port there is a private VLAN port (pvlan)")]
        return []
    field_name = "secondary_list" if spec.pvlan == PvlanMode.PROMISCUOUS else "secondary"
    if spec.primary in _secondaries(spec):
        return [Problem(field_name, f"VLAN {spec.primary} is the primary; a secondary is another VLAN")]
    owner: dict[int, tuple[int, str, str]] = {}   # secondary → (primary, kind, port)
    primaries: dict[int, str] = {}
    for o in others:
        if o.pvlan is None:
            continue
        primaries.setdefault(cast(int, o.primary), o.name)
        for s in _secondaries(o):
            kind = "" if o.pvlan == PvlanMode.PROMISCUOUS else str(o.pvlan)
            prev = owner.get(s)
            if prev is None or (not prev[1] and kind):
                owner[s] = (cast(int, o.primary), kind, o.name)
    problems: list[Problem] = []
    kind = "" if spec.pvlan == PvlanMode.PROMISCUOUS else str(spec.pvlan)
    if spec.primary in owner:
        problems.append(Problem("primary", f"VLAN {spec.primary} is a secondary of port {owner[spec.primary][2]}"))
    plain = {o.access_vlan: o.name for o in others if o.pvlan is None and o.trunk is None}
    for s in _secondaries(spec):
        if s in plain:
            problems.append(Problem(field_name, f"VLAN {s} is the access VLAN of port {plain[s]}, not a "
                                                "private VLAN port"))
            continue
        if s in primaries:
            problems.append(Problem(field_name, f"VLAN {s} is the primary of port {primaries[s]}"))
            continue
        prev = owner.get(s)
        if prev is None:
            continue
        if prev[0] != spec.primary:
            problems.append(Problem(field_name, f"secondary VLAN {s} belongs to primary {prev[0]} "
                                                f"(port {prev[2]})"))
        elif kind and prev[1] and prev[1] != kind:
            problems.append(Problem(field_name, f"secondary VLAN {s} is {prev[1]} (port {prev[2]}), not {kind}"))
    return problems


def _secondaries(spec: PortSpec) -> tuple[int, ...]:
    if spec.pvlan == PvlanMode.PROMISCUOUS:
        return spec.secondary_list or ()
    return (spec.secondary,) if spec.secondary is not None else ()


PORT_FIELDS: dict[str, Check] = {
    "name": check_port_name,
    "kind": _enum_checker(PortKind, "a port kind"),
    "target": check_target,
    "vlan": optional(check_vlan),
    "trunk": optional(trunk_vlans),
    "native": optional(check_vlan),
    "admin_up": check_flag,
    "learning": check_flag,
    "flooding": check_flag,
    "mac": optional(check_unicast_mac),
    "dhcp_guard": check_flag,
    "router_guard": check_flag,
    "mac_spoofing": check_flag,
    "mac_limit": _int_in(0, CAPACITY_MAX, "a MAC limit in MACs, 0 for none"),
    "port_mac": optional(check_unicast_mac),
    "port_mirroring": check_port_mirroring,
    "acls": lambda v: check_acls(v),
    "isolated": check_flag,
    "pvlan": optional(_enum_checker(PvlanMode, "a private VLAN mode")),
    "primary": optional(check_vlan),
    "secondary": optional(check_vlan),
    "secondary_list": optional(trunk_vlans),
    "storm_limit": _int_in(0, STORM_LIMIT_MAX, "a storm limit in frames per second, 0 for none"),
    "max_bandwidth": parse_rate,
    "bandwidth_burst": _int_in(0, BURST_MAX, "a burst in bytes, 0 for the default"),
    "max_bandwidth_in": parse_rate,
    "min_bandwidth_weight": _int_in(0, 100, "a minimum bandwidth weight"),
    "vni": optional(_int_in(VNI_MIN, VNI_MAX, "a VXLAN network identifier")),
    "local_ip": optional(check_tunnel_ip),
    "dstport": optional(_int_in(1, 65535, "a UDP port")),
}


class _Spec:
    """What `SwitchSpec` and `PortSpec` share: checked when built, `parse`d from a mapping, `updated`.

    A subclass names its checkers (`fields`), the rules between them (`rules`) and what it is."""

    what: ClassVar[str]
    fields: ClassVar[Mapping[str, Check]]
    rules: ClassVar[Rules]

    def __post_init__(self) -> None:
        _checked(self, self.fields, type(self).rules)

    @classmethod
    def parse(cls, data: object) -> Self:
        """A spec from a mapping (REST body, YAML, stored row); InvalidRequest naming every bad field."""
        return cast(Self, _parse(cls, data, cls.what))

    def updated(self, changes: Mapping[str, Any]) -> Self:
        """This spec with `changes` (field → raw value) applied and every rule checked again."""
        return self.parse({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class SwitchSpec(_Spec):
    """What a user asks for when creating a switch; valid by construction.

    Building one checks every field and the rules between them (`SWITCH_FIELDS`, `_switch_rules`)
    and raises InvalidRequest listing every problem, each naming its field; `parse` builds one
    from a mapping. Whoever holds a SwitchSpec may trust it."""

    name: str
    type: SwitchType
    nic: str | None = None
    allow_management_os: bool = True
    confirm_timeout_s: float | None = None
    ageing_s: int = AGEING_DEFAULT_S
    max_entries: int = CAPACITY_DEFAULT
    datapath: DatapathMode = DatapathMode.AUTO
    uplink_bandwidth: int = 0       # External: the uplink's capacity the ports' weights share; 0: no sharing

    what: ClassVar[str] = "switch"
    fields: ClassVar[Mapping[str, Check]] = SWITCH_FIELDS
    rules = staticmethod(_switch_rules)

    @property
    def has_host_vnic(self) -> bool:
        return self.type == SwitchType.INTERNAL or (
            self.type == SwitchType.EXTERNAL and self.allow_management_os)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["type"] = str(self.type)
        d["datapath"] = str(self.datapath)
        return d


@dataclass(frozen=True)
class PortSpec(_Spec):
    """What a user asks for when adding a port; valid by construction (see `SwitchSpec`).

    `target` is an ifname or a socket path (stored normalised)."""

    name: str
    kind: PortKind
    target: str
    vlan: int | None = None                       # access VLAN (default 1)
    trunk: tuple[int, ...] | None = None          # allowed VLANs on a trunk port
    native: int | None = None                     # trunk's untagged VLAN
    admin_up: bool = True                         # `port set --admin down` keeps the port but drops its frames
    learning: bool = True
    flooding: bool = True
    mac: str | None = None                        # a tap port's netdev MAC (the VM's); None: the kernel's
    dhcp_guard: bool = False                      # drop DHCP server messages from it (Hyper-V -DhcpGuard)
    router_guard: bool = False                    # drop RAs and redirects from it (Hyper-V -RouterGuard)
    mac_spoofing: bool = True                     # any source (Hyper-V -MacAddressSpoofing; docs/port-features.md)
    mac_limit: int = 0                            # the most MACs it may own in the table; 0: no cap
    port_mac: str | None = None                   # spoofing off, no `mac`: the first source it sent, adopted
    port_mirroring: str = "none"                  # source | destination (Hyper-V -PortMirroring)
    acls: tuple[AclRuleSpec, ...] = ()            # its port ACLs and extended ACLs (`vswitch acl add`)
    isolated: bool = False                        # never exchanges frames with another isolated port
    pvlan: PvlanMode | None = None                # a private VLAN port (Hyper-V -Isolated/-Community/-Promiscuous)
    primary: int | None = None                    # its primary VLAN
    secondary: int | None = None                  # isolated/community: its secondary VLAN
    secondary_list: tuple[int, ...] | None = None  # promiscuous: the secondaries it serves
    storm_limit: int = 0                          # floods it may send per second (Hyper-V -StormLimit); 0: none
    max_bandwidth: int = 0                        # bits/s it may send into the switch (-MaximumBandwidth); 0: none
    bandwidth_burst: int = 0                      # that policer's bucket in bytes; 0: rates.police_burst
    max_bandwidth_in: int = 0                     # bits/s the switch delivers to it (a shaper); 0: none
    min_bandwidth_weight: int = 0                 # its share of a congested uplink (-MinimumBandwidthWeight)
    vni: int | None = None                        # a VXLAN port: its VNI (the target: its remote VTEPs)
    local_ip: str | None = None                   # a VXLAN port: the address it sends from; None: any
    dstport: int | None = None                    # a VXLAN port: its UDP port; None: 4789

    what: ClassVar[str] = "port"
    fields: ClassVar[Mapping[str, Check]] = PORT_FIELDS
    rules = staticmethod(_port_rules)

    @property
    def access_vlan(self) -> int:
        return 1 if self.vlan is None else self.vlan

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = str(self.kind)
        # ranges, not a list: 4094 VLANs are "1-4094", not 20 KB of JSON
        d["trunk"] = format_vlan_list(self.trunk) if self.trunk is not None else None
        d["acls"] = [r.to_dict() for r in self.acls]
        if not self.acls:
            del d["acls"]  # a port without ACLs reads (and is stored, and exported) as before
        d["pvlan"] = str(self.pvlan) if self.pvlan is not None else None
        d["secondary_list"] = format_vlan_list(self.secondary_list) if self.secondary_list is not None else None
        if self.kind != PortKind.VXLAN:
            for k in VXLAN_FIELDS:
                del d[k]  # the other ports read (and are stored, and exported) as before
        return d

    @property
    def udp_port(self) -> int:
        """A VXLAN port's UDP port (4789 unless given)."""
        return VXLAN_DSTPORT_DEFAULT if self.dstport is None else self.dstport


def policy_for(spec: PortSpec) -> PortPolicy:
    """The core's policy of a port: its VLAN mode and flags. The one translation of a spec into the
    rules the core applies (the manager attaches it; a configuration file resolves a static entry's
    VLAN with it)."""
    flags: dict[str, Any] = {"admin_up": spec.admin_up, "learning": spec.learning, "flooding": spec.flooding,
                             "guards": (GUARD_DHCP if spec.dhcp_guard else 0)
                             | (GUARD_ROUTER if spec.router_guard else 0),
                             "mac_spoofing": spec.mac_spoofing, "mac_limit": spec.mac_limit,
                             "port_mirroring": PortMirroring[spec.port_mirroring.upper()], "isolated": spec.isolated,
                             "storm_limit": spec.storm_limit, "max_bandwidth": spec.max_bandwidth,
                             "bandwidth_burst": spec.bandwidth_burst}
    own = spec.mac or spec.port_mac
    if not spec.mac_spoofing and own is not None:
        flags["mac"] = parse_mac(own)
    if spec.acls:
        flags["acl"] = acl_rules.PortAcl(tuple(r.rule() for r in spec.acls))
    if spec.pvlan is not None and spec.primary is not None:
        return PortPolicy.private(spec.pvlan, spec.primary, _secondaries(spec), **flags)
    if spec.trunk is not None:
        return PortPolicy.trunk(set(spec.trunk), spec.native, **flags)
    return PortPolicy.access(spec.access_vlan, **flags)




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
    mac: str | None = None    # the MAC vswitch gives a tap port's netdev (`port set --mac`); None: the kernel's
    dhcp_guard: bool = False  # DHCP server messages from it are dropped (docs/port-features.md)
    router_guard: bool = False  # router advertisements and redirects from it are dropped
    mac_spoofing: bool = True   # it may send any source; off: only `port_mac`
    mac_limit: int = 0          # the most MACs it may own in the table; 0: no cap
    port_mac: str | None = None  # spoofing off: its one MAC (its `mac` or its first source); None: none yet
    #: who decides its frames: "python", "kernel (tc-bpf)", or "python, through the upcall path: " and
    #: why (a port kind the program cannot send to, or a setting the program does not run)
    datapath: str = "python"
    port_mirroring: str = "none"  # source: what it sends and receives is copied; destination: it gets the copies
    #: how many ACL rules (simple and extended) the port has (`vswitch acl list` shows them)
    acl_rules: int = 0
    isolated: bool = False      # never exchanges frames with another isolated port
    pvlan: str | None = None    # isolated | community | promiscuous: a private VLAN port (vlan_mode says it)
    primary: int | None = None  # its primary VLAN
    secondary: list[int] = field(default_factory=list)  # its secondary (promiscuous: the ones it serves)
    storm_limit: int = 0        # broadcast/multicast/unknown-unicast frames it may send per second; 0: none
    max_bandwidth: int = 0      # bits per second it may send into the switch; 0: none
    bandwidth_burst: int = 0    # that policer's burst in bytes; 0: the default (rates.police_burst)
    max_bandwidth_in: int = 0   # bits per second the switch delivers to it; 0: none
    min_bandwidth_weight: int = 0  # its weight on a congested uplink, 0-100; 0: none


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
    watches: int = 0          # `watch` requests recording its frames now (each costs per-frame work)
    #: which datapath forwards and why: "kernel (tc-bpf)", "python: port vm3 is a qemu-stream port"
    datapath: str = "python"
    #: decisions the kernel fast path could not report to a watch (its event ring was full)
    watch_events_lost: int = 0
    #: External: the uplink's capacity (bits/s) the ports' --min-bandwidth-weight share; 0: no sharing
    uplink_bandwidth: int = 0
    #: dynamic MAC table entries evicted (the table full, or shrunk) since the switch started
    fdb_evictions: int = 0


@dataclass
class FdbEntryInfo:
    mac: str
    vlan: int
    port: str
    age_s: float
    static: bool
    #: where behind the port the MAC is: a VXLAN port's remote VTEP; None for every other port
    remote: str | None = None


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
    #: port mirroring: a source's frames (in or out) a destination got; the copies a destination was given
    mirrored: int = 0
    mirror_tx: int = 0


def canonical_mac(what: str, text: object) -> str:
    """`text` as ``aa:bb:cc:dd:ee:ff``; InvalidRequest naming `what` when it is not a unicast MAC."""
    try:
        return check_unicast_mac(text)
    except FieldError as exc:
        raise InvalidRequest([Problem(what, str(exc))]) from None


class _Change(_Spec):
    """A change to something that exists (`port set`, `switch set`): every field optional (None keeps
    that setting), checked by the spec's own checkers when built; at least one must be given."""

    options: ClassVar[str]

    def __post_init__(self) -> None:
        if all(getattr(self, f.name) is None for f in dataclass_fields(self)):
            raise InvalidRequest(f"nothing to change: give {self.options}")
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _port_settings_rules(v: dict[str, Any]) -> Iterator[Problem]:
    if v.get("vlan") is not None and v.get("trunk") is not None:
        yield Problem("vlan", "a port is either access (vlan) or trunk (trunk), not both")
    if v.get("native") is not None and "trunk" in v and v["trunk"] is None:
        yield Problem("native", "only a trunk port has a native VLAN (give trunk with it)")
    mode = v.get("pvlan")
    if mode is None:
        for k in ("primary", "secondary", "secondary_list"):
            if v.get(k) is not None:
                yield Problem(k, "give pvlan with it (the VLAN mode is set as a whole)")
    elif mode != "none":
        if v.get("vlan") is not None or v.get("trunk") is not None:
            yield Problem("pvlan", "a private VLAN port is neither access (vlan) nor trunk (trunk): give one mode")
        if v.get("primary") is None:
            yield Problem("primary", f"{_a(mode)} private VLAN port needs its primary VLAN")
        need = "secondary_list" if mode == PvlanMode.PROMISCUOUS else "secondary"
        if v.get(need) is None:
            yield Problem(need, f"{_a(mode)} private VLAN port needs " + ("the secondary VLANs it serves"
                                                                        if need == "secondary_list" else
                                                                        "its secondary VLAN"))
    else:
        for k in ("primary", "secondary", "secondary_list"):
            if v.get(k) is not None:
                yield Problem(k, "pvlan none leaves the private VLAN: no primary or secondary")


def _check_pvlan_setting(value: object) -> str:
    """`port set --pvlan`: a private VLAN mode, or none (back to a plain access port)."""
    if value == "none":
        return "none"
    return str(_enum_checker(PvlanMode, "a private VLAN mode or none")(value))


#: the settings that make a port's VLAN mode (access, trunk or private VLAN), changed as a whole
_VLAN_MODE_SETTINGS = frozenset({"vlan", "trunk", "native", "pvlan", "primary", "secondary", "secondary_list"})


@dataclass(frozen=True)
class PortSettings(_Change):
    """What `port set` changes on a live port; a field left None keeps that setting. Valid by
    construction with `PortSpec`'s checkers (InvalidRequest naming every bad field).

    The VLAN mode is set as a whole: `vlan` (access) or `trunk` with an optional `native`
    (a trunk given without `native` has none)."""

    vlan: int | None = None
    trunk: tuple[int, ...] | None = None
    native: int | None = None
    admin_up: bool | None = None
    learning: bool | None = None
    flooding: bool | None = None
    mac: str | None = None
    dhcp_guard: bool | None = None
    router_guard: bool | None = None
    mac_spoofing: bool | None = None
    mac_limit: int | None = None
    port_mirroring: str | None = None
    isolated: bool | None = None
    pvlan: str | None = None                      # isolated | community | promiscuous | none
    primary: int | None = None
    secondary: int | None = None
    secondary_list: tuple[int, ...] | None = None
    storm_limit: int | None = None
    max_bandwidth: int | None = None
    bandwidth_burst: int | None = None
    max_bandwidth_in: int | None = None
    min_bandwidth_weight: int | None = None

    what: ClassVar[str] = "port setting"
    options: ClassVar[str] = ("--vlan, --trunk, --admin, --learning, --flooding, --mac, --dhcp-guard, "
                              "--router-guard, --mac-spoofing, --mac-limit, --port-mirroring, --isolated, --pvlan, "
                              "--storm-limit, --max-bandwidth, --burst, --max-bandwidth-in or --min-bandwidth-weight")
    fields: ClassVar[Mapping[str, Check]] = {
        **{k: optional(PORT_FIELDS[k]) for k in
           ("vlan", "trunk", "native", "admin_up", "learning", "flooding", "mac", "dhcp_guard", "router_guard",
            "mac_spoofing", "mac_limit", "port_mirroring", "isolated", "primary", "secondary", "secondary_list",
            "storm_limit", "max_bandwidth", "bandwidth_burst", "max_bandwidth_in", "min_bandwidth_weight")},
        "pvlan": optional(_check_pvlan_setting)}
    rules = staticmethod(_port_settings_rules)

    def apply(self, spec: PortSpec) -> PortSpec:
        """`spec` with these settings, checked again as any port (InvalidRequest naming the field;
        Conflict for a MAC on a port that is not a tap, or a delivery shaper on one that is not a
        link: the port's kind refuses it, which the REST schema of the settings cannot know)."""
        if self.mac is not None and spec.kind != PortKind.TAP:
            raise Conflict(f"mac: only a tap port's MAC is vswitch's to set: {_MAC_OWNER[spec.kind]}")
        if self.max_bandwidth_in and spec.kind != PortKind.LINK:
            raise Conflict(f"max_bandwidth_in: only a link port's delivery is shaped (a qdisc on its link); a "
                           f"{spec.kind} port has no link of the switch's")
        # every setting but the VLAN mode's (set as a whole, below) is taken as given: one list, `fields`
        changes: dict[str, Any] = {f: getattr(self, f) for f in self.fields
                                   if f not in _VLAN_MODE_SETTINGS and getattr(self, f) is not None}
        no_pvlan = {"pvlan": None, "primary": None, "secondary": None, "secondary_list": None}
        if self.mac_spoofing or (self.mac is not None and self.mac != spec.mac):
            changes["port_mac"] = None  # an adopted MAC holds until spoofing is on or a MAC is given
        if self.pvlan is not None and self.pvlan != "none":
            changes.update(vlan=None, trunk=None, native=None, pvlan=self.pvlan, primary=self.primary,
                           secondary=self.secondary, secondary_list=self.secondary_list)
        elif self.pvlan == "none":
            changes.update(no_pvlan)
        if self.vlan is not None:
            changes.update(vlan=self.vlan, trunk=None, native=None, **no_pvlan)
        elif self.trunk is not None:
            changes.update(vlan=None, trunk=self.trunk, native=self.native, **no_pvlan)
        return spec.updated(changes)


def _no_rules(v: dict[str, Any]) -> Iterator[Problem]:
    return iter(())


# ---- port ACLs (Add-VMNetworkAdapterAcl / Add-VMNetworkAdapterExtendedAcl; core/acl.py) ----------------
ACL_DIRECTIONS = ("in", "out", "both")
ACL_ACTIONS = ("allow", "deny", "meter")
ACL_PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
#: the most rules one port may have (each frame of an ACL port is matched against them in Python)
ACL_RULES_MAX = 256
ACL_WEIGHT_MAX = 65535            # Hyper-V's Weight is a UInt16 in WMI
ACL_IDLE_TIMEOUT_MAX = 86400
_DIR_BITS = {"in": acl_rules.DIR_IN, "out": acl_rules.DIR_OUT, "both": acl_rules.DIR_BOTH}


def _choice(options: Sequence[str], what: str) -> Check:
    def check(value: object) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise FieldError(f"{clip(value)} is not {what} ({', '.join(options)})")
        return value.lower()
    return check


def check_acl_mac(value: object) -> str:
    """A remote MAC (any MAC: a rule may name a group address) or ``any``, canonical."""
    if isinstance(value, str) and value.strip().lower() in ("any", "*"):
        return "any"
    if not isinstance(value, str):
        raise FieldError(f"{clip(value)} is not a MAC address like 52:54:00:12:34:56 or any")
    try:
        return format_mac(parse_mac(value))
    except ValueError as e:
        raise FieldError(str(e)) from None


def check_acl_ip(value: object) -> str:
    """An IPv4/IPv6 address or prefix (host bits are cleared: 10.1.2.3/8 is 10.0.0.0/8) or ``any``."""
    if not isinstance(value, str) or len(value) > 64:
        raise FieldError(f"{clip(value)} is not an IP address or prefix like 10.0.0.0/8, 2001:db8::/32 or any")
    try:
        return str(acl_rules.parse_net(value))
    except ValueError:
        raise FieldError(f"{clip(value)} is not an IP address or prefix like 10.0.0.0/8, 2001:db8::/32 "
                         "or any") from None


def check_acl_ports(value: object) -> str:
    """A port P or a range P-Q (0-65535, P <= Q), as text."""
    n = _whole(value)
    text = str(n) if n is not None else value
    if isinstance(text, str):
        m = re.fullmatch(r"\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?", text)
        if m:
            lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
            if lo <= hi <= 65535:
                return str(lo) if lo == hi else f"{lo}-{hi}"
    raise FieldError(f"{clip(value)} is not a port or a range of ports like 80 or 1024-65535")


def check_acl_protocol(value: object) -> str:
    """tcp, udp, icmp or an IP protocol number 0-255, as text."""
    n = _whole(value)
    if n is None and isinstance(value, str) and value.strip().isdigit():
        n = int(value)
    if n is not None:
        if 0 <= n <= 255:
            return next((k for k, v in ACL_PROTOCOLS.items() if v == n), str(n))
    elif isinstance(value, str) and value.strip().lower() in ACL_PROTOCOLS:
        return value.strip().lower()
    raise FieldError(f"{clip(value)} is not a protocol (tcp, udp, icmp or a number 0-255)")


def _acl_rule_rules(v: dict[str, Any]) -> Iterator[Problem]:
    extended = v.get("weight") is not None
    action, direction = v.get("action"), v.get("direction")
    if not extended:
        for f in ("protocol", "remote_port", "local_port", "stateful", "idle_timeout"):
            if v.get(f) not in (None, False):
                yield Problem(f, "only an extended ACL (with a weight) has this")
        if (v.get("remote_mac") is None) == (v.get("remote_ip") is None) and "remote_mac" in v and "remote_ip" in v:
            yield Problem("remote_mac", "a port ACL names a remote MAC or a remote IP (one of them)")
        if v.get("remote_mac") is not None and v.get("local_ip") is not None:
            yield Problem("local_ip", "a MAC rule has no local IP (give a remote IP with it)")
        if action == "meter" and v.get("remote_mac") is not None:
            yield Problem("action", "a meter rule is IP-based (as Hyper-V's): give a remote IP")
    else:
        if direction == "both":
            yield Problem("direction", "an extended ACL is in or out (add one of each)")
        if action == "meter":
            yield Problem("action", "an extended ACL allows or denies (meter is a port ACL's)")
        if v.get("remote_mac") is not None:
            yield Problem("remote_mac", "an extended ACL matches IP fields, not a MAC")
        proto = v.get("protocol")
        if proto not in ("tcp", "udp", "132") and (v.get("remote_port") is not None
                                                   or v.get("local_port") is not None):
            yield Problem("remote_port" if v.get("remote_port") is not None else "local_port",
                          "only a tcp, udp or sctp (132) rule has ports")
        if v.get("stateful") and action != "allow":
            yield Problem("stateful", "only an allow rule is stateful (it admits the flow's return traffic)")
        if v.get("idle_timeout") is not None and not v.get("stateful"):
            yield Problem("idle_timeout", "only a stateful rule has an idle timeout")
    r, loc = v.get("remote_ip"), v.get("local_ip")
    if r and loc and r != "any" and loc != "any" and (":" in r) != (":" in loc):
        yield Problem("local_ip", f"{loc} and the remote {r} are not the same IP version")


@dataclass(frozen=True)
class AclRuleSpec(_Spec):
    """One port ACL rule as a user asks for it (`vswitch acl add`); valid by construction. Without a
    `weight` a port ACL (Add-VMNetworkAdapterAcl): `remote_mac` or `remote_ip` (+ `local_ip`), action
    allow, deny or meter; with a `weight` (1-65535) an extended ACL (Add-VMNetworkAdapterExtendedAcl):
    protocol, addresses, port ranges, allow or deny, maybe `stateful` with an `idle_timeout`. `id` is
    the port's number for it (given by `acl add`; None in a request)."""

    direction: str
    action: str
    remote_mac: str | None = None
    remote_ip: str | None = None
    local_ip: str | None = None
    weight: int | None = None
    protocol: str | None = None
    remote_port: str | None = None
    local_port: str | None = None
    stateful: bool = False
    idle_timeout: int | None = None
    id: int | None = None

    what: ClassVar[str] = "ACL rule"
    fields: ClassVar[Mapping[str, Check]] = {
        "direction": _choice(ACL_DIRECTIONS, "a direction"),
        "action": _choice(ACL_ACTIONS, "an action"),
        "remote_mac": optional(check_acl_mac),
        "remote_ip": optional(check_acl_ip),
        "local_ip": optional(check_acl_ip),
        "weight": optional(_int_in(1, ACL_WEIGHT_MAX, "a weight")),
        "protocol": optional(check_acl_protocol),
        "remote_port": optional(check_acl_ports),
        "local_port": optional(check_acl_ports),
        "stateful": check_flag,
        "idle_timeout": optional(_int_in(1, ACL_IDLE_TIMEOUT_MAX, "an idle timeout in seconds")),
        "id": optional(_int_in(1, 1_000_000, "a rule id")),
    }
    rules = staticmethod(_acl_rule_rules)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v is not False}

    @property
    def extended(self) -> bool:
        return self.weight is not None

    def selector(self) -> dict[str, Any]:
        """What names the rule on its port besides its id (`acl remove` by selector): an extended ACL
        by weight and direction (as Remove-VMNetworkAdapterExtendedAcl), a port ACL by everything."""
        if self.extended:
            return {"weight": self.weight, "direction": self.direction}
        d = self.to_dict()
        d.pop("id", None)
        return d

    def rule(self) -> acl_rules.Rule:
        """The core's rule (the id must be set)."""
        def ports(text: str | None) -> tuple[int, int] | None:
            if text is None:
                return None
            lo, _, hi = text.partition("-")
            return int(lo), int(hi or lo)
        mac = None if self.remote_mac is None else (b"" if self.remote_mac == "any" else parse_mac(self.remote_mac))
        proto = None if self.protocol is None else ACL_PROTOCOLS.get(self.protocol, None)
        if proto is None and self.protocol is not None:
            proto = int(self.protocol)
        return acl_rules.Rule(
            self.id or 0, _DIR_BITS[self.direction], self.action, mac,
            None if self.remote_ip is None else acl_rules.parse_net(self.remote_ip),
            None if self.local_ip is None else acl_rules.parse_net(self.local_ip),
            self.weight or 0, proto, ports(self.remote_port), ports(self.local_port), self.stateful,
            self.idle_timeout or acl_rules.IDLE_TIMEOUT_DEFAULT)


def check_acls(value: object) -> tuple[AclRuleSpec, ...]:
    """A port's rules (AclRuleSpec or mappings; one without an id is numbered after the others): unique
    ids, unique weights per direction."""
    if not isinstance(value, (list, tuple)):
        raise FieldError(f"{clip(value)} is not a list of ACL rules")
    if len(value) > ACL_RULES_MAX:
        raise FieldError(f"{len(value)} rules: a port has at most {ACL_RULES_MAX}")
    out: list[AclRuleSpec] = []
    for i, item in enumerate(value):
        try:
            r = item if isinstance(item, AclRuleSpec) else AclRuleSpec.parse(item)
        except InvalidRequest as exc:
            raise FieldError("; ".join(str(p) for p in exc.problems), f"[{i}]") from None
        out.append(r)
    top = max((r.id or 0 for r in out), default=0)
    for i, r in enumerate(out):  # a rule written without its id (a file) is numbered after the others
        if r.id is None:
            top += 1
            out[i] = replace(r, id=top)
    ids = [r.id for r in out]
    if len(set(ids)) != len(ids):
        raise FieldError("two rules have the same id")
    weights = [(r.weight, r.direction) for r in out if r.weight is not None]
    if len(set(weights)) != len(weights):
        raise FieldError("two extended rules have the same weight and direction")
    return tuple(out)


def check_acl_id(rule: object) -> int:
    """A rule's id as `acl remove` names it (text or a number); InvalidRequest naming ``rule``."""
    n = int(rule) if isinstance(rule, str) and rule.isdigit() and len(rule) < 8 else _whole(rule)
    if n is None or not 1 <= n <= 1_000_000:
        raise InvalidRequest([Problem("rule", f"{clip(rule)} is not a rule id (acl list shows them)")])
    return n


@dataclass
class AclRuleInfo:
    """One rule of a port as `acl list` shows it: the rule, in words, and what it counted (frames it
    decided or metered, and their bytes as the switch received them)."""

    port: str
    id: int
    direction: str
    action: str
    rule: str
    hits: int = 0
    bytes: int = 0
    weight: int | None = None
    remote_mac: str | None = None
    remote_ip: str | None = None
    local_ip: str | None = None
    protocol: str | None = None
    remote_port: str | None = None
    local_port: str | None = None
    stateful: bool = False
    idle_timeout: int | None = None
    #: a stateful rule: the flows it admitted that are in the connection table now
    flows: int = 0


@dataclass(frozen=True)
class StaticEntry(_Spec):
    """A static MAC table entry: `mac` (in `vlan`) always lives behind `port`; valid by construction
    (the MAC is stored canonically). `vlan` None means the port's own VLAN (its access VLAN, or a
    trunk's native VLAN)."""

    mac: str
    port: str
    vlan: int | None = None

    what: ClassVar[str] = "static entry"
    # the port may be the switch's own (uplink, host): a static entry can point there
    fields: ClassVar[Mapping[str, Check]] = {"mac": check_unicast_mac, "port": check_name,
                                             "vlan": optional(check_vlan)}
    rules = staticmethod(_no_rules)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: what `switch set` may change along with the connection (type, NIC, management OS): not the name
_CONNECTION_FIELDS = ("type", "nic", "allow_management_os", "confirm_timeout_s")


def _switch_settings_rules(v: dict[str, Any]) -> Iterator[Problem]:
    typ = v.get("type")
    if typ == SwitchType.EXTERNAL and v.get("nic") is None:
        yield Problem("nic", "a change to an external switch needs the physical NIC it takes over")
    elif typ is not None and typ != SwitchType.EXTERNAL:
        if v.get("nic") is not None:
            article = "an" if typ == SwitchType.INTERNAL else "a"
            yield Problem("nic", f"{article} {typ} switch has no physical NIC (got {clip(v['nic'])})")
        if v.get("allow_management_os") is not None:
            yield Problem("allow_management_os", f"only an external switch has this setting ({typ}: "
                          + ("the host always has its vNIC)" if typ == SwitchType.INTERNAL else "the host has none)"))
    if v.get("confirm_timeout_s") is not None and typ != SwitchType.EXTERNAL:
        yield Problem("confirm_timeout_s", "only with a change to an external switch (type external and its NIC)")
    if v.get("name") is not None and any(v.get(k) is not None for k in _CONNECTION_FIELDS):
        yield Problem("name", "rename the switch and change its connection in two `switch set` calls")
    if v.get("datapath") is not None and (v.get("name") is not None or any(v.get(k) is not None
                                                                         for k in _CONNECTION_FIELDS)):
        yield Problem("datapath", "change the datapath in a `switch set` call of its own (not with a rename or "
                      "a connection change)")


@dataclass(frozen=True)
class SwitchSettings(_Change):
    """What `switch set` changes on a running switch; a field left None keeps that setting. Valid by
    construction with `SwitchSpec`'s checkers.

    `name` renames the switch (an Internal or External one's host vNIC is renamed with it). `type`,
    `nic`, `allow_management_os` change its connection as Hyper-V's Virtual Switch Manager does (an
    External switch's NIC is given back, another taken over); `confirm_timeout_s` (with a change to
    External) reverts to the previous connection unless confirmed in time. The connection and the
    name are changed in separate calls. `datapath` moves the running switch between the kernel fast
    path and the Python datapath (in a call of its own)."""

    ageing_s: int | None = None
    max_entries: int | None = None
    name: str | None = None
    type: SwitchType | None = None
    nic: str | None = None
    allow_management_os: bool | None = None
    confirm_timeout_s: float | None = None
    datapath: DatapathMode | None = None
    uplink_bandwidth: int | None = None

    what: ClassVar[str] = "switch setting"
    fields: ClassVar[Mapping[str, Check]] = {k: optional(SWITCH_FIELDS[k]) for k in (
        "ageing_s", "max_entries", "name", *_CONNECTION_FIELDS, "datapath", "uplink_bandwidth")}
    options: ClassVar[str] = ("--name, --ageing, --max-entries, --internal, --private, --external NIC, "
                              "--allow-management-os, --datapath or --uplink-bandwidth")
    rules = staticmethod(_switch_settings_rules)

    @property
    def changes_connection(self) -> bool:
        """Whether it names the connection (type, NIC, management OS) at all."""
        return any(getattr(self, k) is not None for k in _CONNECTION_FIELDS)

    def apply(self, spec: SwitchSpec) -> SwitchSpec:
        """`spec` with these settings, checked again as any switch (InvalidRequest naming the field;
        Conflict for allow_management_os without a change of type on a switch that is not External).

        A new type starts from that type's defaults (no NIC off External, management OS allowed unless
        said otherwise); a change of the connection replaces the stored confirm timeout with its own."""
        changes = self.to_dict()
        if self.changes_connection:
            typ = self.type or spec.type
            if typ != spec.type:
                changes.setdefault("allow_management_os", True)
            elif self.allow_management_os is not None and typ != SwitchType.EXTERNAL:
                # the switch's type, not the request, refuses it: a Conflict (409), as the REST schema
                # cannot know what a switch is
                raise Conflict(f"allow_management_os: only an external switch has this setting; "
                               f"switch {spec.name!r} is {typ}")
            if typ != SwitchType.EXTERNAL:
                changes["nic"] = None
            changes["confirm_timeout_s"] = self.confirm_timeout_s
        return spec.updated(changes)


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
    speed_mbps: int | None = None  # as the driver reports it; None when it reports none


@dataclass
class TraceStepInfo:
    """One stage of a traced frame (`vswitch.core.switch.TraceStep` as the API reports it).

    `stage`: parse | ingress | learn | decide | egress; `reason`: the Reason name when this stage
    stopped or decided the frame, else None; `detail`: the facts behind `result` (JSON values)."""

    stage: str
    result: str
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class TraceInfo:
    """What a switch would do now with a frame from `src` to `dst` arriving on `in_port` (`trace`).

    `tag`: the frame's own VLAN tag as asked (None untagged, 0 priority-tagged); `vlan`: the VLAN the
    ingress port classified it to — for drops too — or None when it was dropped before (malformed,
    port down, reserved group, bad source, VLAN not admitted); `reason`: the verdict's Reason name,
    `explanation` its sentence; `out_ports`: where it would go (empty for a drop)."""

    switch: str
    in_port: str
    src: str
    dst: str
    tag: int | None
    vlan: int | None
    reason: str
    explanation: str
    out_ports: list[str] = field(default_factory=list)
    steps: list[TraceStepInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IcmpEcho:
    """Identity of an ICMPv4 echo: `type` 8 request / 0 reply, identifier, sequence number."""

    type: int
    id: int
    seq: int

    @classmethod
    def from_frame(cls, f: bytes, l3: int) -> IcmpEcho | None:
        """The echo request/reply in frame `f` whose IPv4 header starts at `l3`; None for anything else
        (not IPv4, not ICMP, another ICMP type, cut short). Never raises on arbitrary bytes. The one
        reader for `watch` (the switch's decisions) and lab capture (what crossed a link)."""
        if len(f) < l3 + 20 or f[l3] >> 4 != 4 or f[l3 + 9] != 1:
            return None
        icmp = l3 + (f[l3] & 0x0F) * 4
        if len(f) < icmp + 8 or f[icmp] not in (0, 8):
            return None
        return cls(f[icmp], int.from_bytes(f[icmp + 4:icmp + 6], "big"), int.from_bytes(f[icmp + 6:icmp + 8], "big"))


@dataclass(slots=True)
class FrameEvent:
    """One per-frame decision recorded by `watch`: when (`t`, wall-clock seconds), which switch and
    port, the header (MACs, `vid` of the frame's tag, ethertype inside it, length), the VLAN it was
    classified to (None when dropped before), the Reason name, the output ports, for an ICMPv4
    echo request/reply its `icmp` identity, and which `path` decided."""

    t: float
    switch: str
    in_port: str
    src: str | None
    dst: str | None
    vid: int | None
    vlan: int | None
    ethertype: int | None
    length: int
    reason: str
    out_ports: list[str] = field(default_factory=list)
    icmp: IcmpEcho | None = None
    #: who decided: "python" (SwitchCore in vswitchd) or "kernel fast path" (the switch's tc-bpf program)
    path: str = "python"


class EventKind(enum.StrEnum):
    """What a `SwitchEvent` is about: the core's own kinds (core/events.py), then the control plane's."""

    MAC_LEARNED = core_events.MAC_LEARNED
    MAC_MOVED = core_events.MAC_MOVED
    MAC_AGED = core_events.MAC_AGED
    MAC_EVICTED = core_events.MAC_EVICTED
    STATIC_REFUSED = core_events.STATIC_REFUSED
    PORT_UP = core_events.PORT_UP
    PORT_DOWN = core_events.PORT_DOWN
    FRAME_DROPPED = core_events.FRAME_DROPPED
    SWITCH_CREATED = "switch-created"
    SWITCH_RESTORED = "switch-restored"
    SWITCH_SET = "switch-set"
    SWITCH_DELETED = "switch-deleted"
    SWITCH_CONFIRMED = "switch-confirmed"
    SWITCH_REVERTED = "switch-reverted"
    PORT_ADDED = "port-added"
    PORT_SET = "port-set"
    PORT_REMOVED = "port-removed"
    FDB_ADD = "fdb-add"
    FDB_DEL = "fdb-del"
    FDB_FLUSH = "fdb-flush"
    TAKEOVER_STEP = "takeover-step"
    #: the switch's datapath dropped `count` events before they reached the daemon's ring
    EVENTS_DROPPED = "events-dropped"


_PER_PORT_SUMMARY = (EventKind.MAC_LEARNED, EventKind.MAC_AGED, EventKind.MAC_EVICTED)


@dataclass
class SwitchEvent:
    """One thing that happened to a switch (`events`): `seq` increases by one per event of the daemon,
    `t` is wall-clock seconds, `kind` an `EventKind` value. The typed facts, as the kind has them:
    `mac`/`vlan` (a MAC event, a static entry), `port` (the port it happened on or to; the new port of
    a move), `old_port` (the port a MAC moved from; the port a refused MAC is static on), `reason`
    (why a port went up or down: admin, link, failed: …, reopened; a takeover step's outcome: done,
    undone; why a switch was reverted), `detail` (a configuration change: the settings given; a
    takeover step: its description as `step` and its stable `key`, hostnic's Step names). `count` > 1
    folds that many occurrences over `window_s` seconds into one event (rate limiting); a
    learned/aged/evicted summary has no `mac`."""

    seq: int
    t: float
    switch: str
    kind: str
    port: str | None = None
    mac: str | None = None
    vlan: int | None = None
    old_port: str | None = None
    reason: str | None = None
    count: int = 1
    window_s: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The event in words, without its time and switch (the CLI's lines and the daemon's log)."""
        k = self.kind
        where = f"{self.mac} vlan {self.vlan}" if self.mac else ""
        if k == EventKind.MAC_MOVED:
            parts = [where, f"{self.old_port} → {self.port}"]
        elif k == EventKind.STATIC_REFUSED:
            parts = [where, f"seen on {self.port}, static on {self.old_port}"]
        elif k in _PER_PORT_SUMMARY:
            side = "from" if k == EventKind.MAC_EVICTED else "on"
            parts = [where or f"{self.count} MACs", f"{side} {self.port}" + (" (table full)" if side == "from" else "")]
        elif k in (EventKind.PORT_UP, EventKind.PORT_DOWN):
            parts = [f"{self.port} ({self.reason})"]
        elif k == EventKind.FRAME_DROPPED:
            reason = Reason.__members__.get((self.reason or "").upper())
            n = "" if self.window_s is not None else f"{self.count} frame{'s' if self.count != 1 else ''} "
            parts = [f"{n}at {self.port}: {reason.value if reason else self.reason}",
                     f"(source {where})" if where else ""]
        elif k == EventKind.EVENTS_DROPPED:
            parts = [f"{self.count} lost before they reached the ring"]
        elif k == EventKind.FDB_ADD:
            parts = [where, f"→ {self.port}"]
        elif k == EventKind.TAKEOVER_STEP:
            parts = [f"{self.reason}: {self.detail.get('step')}"]
        else:
            parts = [self.port or "", where, self.reason or "",
                     ", ".join(f"{key}={value}" for key, value in self.detail.items() if value is not None)]
        text = "  ".join([k.replace("-", " ")] + [p for p in parts if p])
        if self.window_s is not None:
            folded = "" if k in _PER_PORT_SUMMARY and not self.mac else f"×{self.count} "
            text += f"  ({folded}in {self.window_s:.0f} s)"
        return text


@dataclass
class EventsPage:
    """What one `events` read returns: `events` after the `since` asked (oldest first, of the switch
    asked or all), `next_since` to ask for next, `latest` the daemon's newest sequence number, and
    `missed`: how many events after `since` (of any switch) had already left the ring — a reader that
    falls more than `EVENTS_RING` events behind is told so."""

    events: list[SwitchEvent]
    next_since: int
    latest: int
    missed: int = 0


_check_since = _int_in(0, 2**63 - 1, "a sequence number")
_check_events_limit = _int_in(1, EVENTS_LIMIT_MAX, "a number of events")


def check_events_query(since: object, limit: object, wait_s: object) -> None:
    """The arguments of `events`; InvalidRequest naming each bad one."""
    problems = []
    for name, value, check in (("since", since, _check_since), ("limit", limit, _check_events_limit)):
        try:
            check(value)
        except FieldError as exc:
            problems.append(Problem(name, str(exc)))
    if not (isinstance(wait_s, int | float) and not isinstance(wait_s, bool) and math.isfinite(wait_s)
            and 0 <= wait_s <= EVENTS_WAIT_MAX_S):
        problems.append(Problem("wait_s", f"{clip(wait_s)} is not a number of seconds in [0, {EVENTS_WAIT_MAX_S:.0f}]"))
    if problems:
        raise InvalidRequest(problems)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses (and lists of them) → plain JSON-ready structures."""
    if isinstance(obj, list):
        return [to_jsonable(o) for o in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj

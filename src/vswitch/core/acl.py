"""Port ACLs and extended port ACLs (Hyper-V's Add-VMNetworkAdapterAcl / Add-VMNetworkAdapterExtendedAcl):
which frames a port's rules deny, which they meter, and the connections a stateful rule admitted.
Pure: bytes and `now` in, a verdict out; the counters and the connection table are plain objects the
core owns. docs/port-features.md ("Port ACLs and extended ACLs") states the rules; in short:

Directions are the VM's, as in Hyper-V: **out** (Outbound) is what the VM sends — the frame entering
the switch from the port, where *local* is the source and *remote* the destination —, **in**
(Inbound) what the switch delivers to the port — *remote* is the source, *local* the destination.

Simple ACLs (`Rule.weight == 0`), as Hyper-V keeps them, in separate lists by the address they name:
- **MAC rules** (remote MAC, or ANY) match every frame; an exact MAC is more specific than ANY;
- **IP rules** (remote prefix, ANY, and an optional local prefix) match IPv4 / IPv6 packets: the
  longest remote prefix wins, then the longest local prefix (a rule naming none is the least specific);
- the most specific matching allow/deny rule of each list decides; **deny wins a tie**; the frame is
  dropped when the MAC list's or the IP list's decision is deny; nothing matching: allowed;
- **meter** rules (IP only, as Hyper-V requires) never decide: the most specific one matching counts
  the packet's bytes.
Extended ACLs (`weight >= 1`): the highest weight matching decides (weights are unique per port and
direction); nothing matching: allowed. A frame passes when neither the simple nor the extended rules
deny it. A **stateful** allow records the flow (protocol, local and remote address and port) in the
`ConnTable`; a packet of that flow in the other direction is admitted without the extended rules until
the flow has been idle for the rule's timeout.

Frames are read as the guards read them: the outer VLAN tag only; IPv4 non-first fragments have no
ports (a rule naming ports does not match them); IPv6 extension headers are walked (at most 8).
Must not touch: the MAC table, the port counters, anything outside the frame.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

from vswitch.core.mac import format_mac

DIR_IN = 1       # Inbound: the switch delivers the frame to the port (to the VM)
DIR_OUT = 2      # Outbound: the frame enters the switch from the port (from the VM)
DIR_BOTH = DIR_IN | DIR_OUT

ALLOW = "allow"
DENY = "deny"
METER = "meter"

PROTO_ICMP = 1     # `icmp` matches ICMPv4 (1) and ICMPv6 (58)
_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}

#: the connections a switch's stateful rules admitted, at most; when full the least recently used goes
CONN_MAX = 4096
#: Hyper-V's IdleSessionTimeout default (Msvm_EthernetSwitchPortExtendedAclSettingData), seconds
IDLE_TIMEOUT_DEFAULT = 255
MAX_EXT_HEADERS = 8

ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
_PORTED = frozenset((6, 17, 132))      # TCP, UDP, SCTP: source and destination ports after the header
_EXT = frozenset((0, 43, 44, 51, 60))


class Net(NamedTuple):
    """An address prefix: `version` 4 or 6 (0: ANY, every IPv4 and IPv6 address), the network as an
    int and its prefix length."""

    version: int
    value: int
    plen: int

    def matches(self, version: int, addr: int) -> bool:
        if self.version == 0:
            return True
        if self.version != version:
            return False
        bits = 32 if version == 4 else 128
        return (addr >> (bits - self.plen)) == (self.value >> (bits - self.plen)) if self.plen else True

    def __str__(self) -> str:
        if self.version == 0:
            return "any"
        net: ipaddress.IPv4Network | ipaddress.IPv6Network = (
            ipaddress.IPv4Network((self.value, self.plen)) if self.version == 4
            else ipaddress.IPv6Network((self.value, self.plen)))
        return str(net)


ANY_NET = Net(0, 0, 0)


def parse_net(text: str) -> Net:
    """`text` (an address, a prefix, ``any``/``*``) as a Net; ValueError saying why."""
    t = text.strip()
    if t.lower() in ("any", "*"):
        return ANY_NET
    net = ipaddress.ip_network(t, strict=False)
    return Net(net.version, int(net.network_address), net.prefixlen)


@dataclass(frozen=True)
class Rule:
    """One ACL rule of a port. `weight` 0: a simple ACL (Add-VMNetworkAdapterAcl) naming a
    `remote_mac` (b"" for ANY) or a `remote_ip` (and maybe a `local_ip`); `weight` >= 1: an extended
    ACL (Add-VMNetworkAdapterExtendedAcl) with `protocol` (None: any), addresses and port ranges.
    `direction`: DIR_IN, DIR_OUT or both (a simple rule only)."""

    id: int
    direction: int
    action: str
    remote_mac: bytes | None = None
    remote_ip: Net | None = None
    local_ip: Net | None = None
    weight: int = 0
    protocol: int | None = None
    remote_port: tuple[int, int] | None = None
    local_port: tuple[int, int] | None = None
    stateful: bool = False
    idle_timeout: int = IDLE_TIMEOUT_DEFAULT

    @property
    def extended(self) -> bool:
        return self.weight > 0

    def describe(self) -> str:
        """The rule in words, e.g. ``out, deny remote 10.0.0.0/8``."""
        text = {DIR_IN: "in", DIR_OUT: "out", DIR_BOTH: "both"}[self.direction] + ", "
        if self.extended:
            text += f"weight {self.weight}, "
        text += self.action
        if self.extended:
            text += " " + (_PROTO_NAMES.get(self.protocol, str(self.protocol)) if self.protocol is not None
                           else "any protocol")
        if self.remote_mac is not None:
            text += " remote " + (format_mac(self.remote_mac) if self.remote_mac else "any MAC")
        if self.remote_ip is not None:
            text += f" remote {self.remote_ip}"
        if self.remote_port is not None:
            text += " remote port " + _range_text(self.remote_port)
        if self.local_ip is not None:
            text += f" local {self.local_ip}"
        if self.local_port is not None:
            text += " local port " + _range_text(self.local_port)
        if self.stateful:
            text += f", stateful (idle {self.idle_timeout} s)"
        return text


def _range_text(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


class Packet(NamedTuple):
    """What the rules read of one frame, from the port's point of view: the remote and local MAC, and
    for IP the version, remote and local address, protocol and ports (None: no ports)."""

    remote_mac: bytes
    version: int            # 0: not IP
    remote: int
    local: int
    proto: int
    rport: int | None
    lport: int | None


def read_packet(buf: bytes, offset: int, l3: int, direction: int) -> Packet:
    """The fields of the frame at `offset` (its L3 header at `l3`, after the outer tag) as a rule in
    `direction` sees them. Never raises on arbitrary bytes: what cannot be read is not IP, or has no ports."""
    dst, src = bytes(buf[offset:offset + 6]), bytes(buf[offset + 6:offset + 12])
    remote_mac = dst if direction == DIR_OUT else src
    n = len(buf)
    et = (buf[l3 - 2] << 8) | buf[l3 - 1] if l3 >= 2 and n >= l3 else 0
    version = s = d = proto = 0
    sport = dport = None
    if et == ETH_P_IPV4 and n >= l3 + 20 and buf[l3] >> 4 == 4:
        version = 4
        s = int.from_bytes(buf[l3 + 12:l3 + 16], "big")
        d = int.from_bytes(buf[l3 + 16:l3 + 20], "big")
        proto = buf[l3 + 9]
        l4 = l3 + (buf[l3] & 0x0F) * 4
        first = not (((buf[l3 + 6] & 0x1F) << 8) | buf[l3 + 7])
        if first and proto in _PORTED and l4 >= l3 + 20 and n >= l4 + 4:
            sport, dport = (buf[l4] << 8) | buf[l4 + 1], (buf[l4 + 2] << 8) | buf[l4 + 3]
    elif et == ETH_P_IPV6 and n >= l3 + 40 and buf[l3] >> 4 == 6:
        version = 6
        s = int.from_bytes(buf[l3 + 8:l3 + 24], "big")
        d = int.from_bytes(buf[l3 + 24:l3 + 40], "big")
        nh, at, first = buf[l3 + 6], l3 + 40, True
        for _ in range(MAX_EXT_HEADERS):
            if nh not in _EXT or n < at + 8:
                break
            if nh == 44:
                first = not (((buf[at + 2] << 8) | buf[at + 3]) & 0xFFF8)
                size = 8
            elif nh == 51:
                size = (buf[at + 1] + 2) * 4
            else:
                size = (buf[at + 1] + 1) * 8
            nh, at = buf[at], at + size
        proto = nh
        if first and proto in _PORTED and n >= at + 4:
            sport, dport = (buf[at] << 8) | buf[at + 1], (buf[at + 2] << 8) | buf[at + 3]
    if direction == DIR_OUT:
        return Packet(remote_mac, version, d, s, proto, dport, sport)
    return Packet(remote_mac, version, s, d, proto, sport, dport)


@dataclass(frozen=True)
class PortAcl:
    """A port's rules, sorted once for matching (a PortPolicy holds it; immutable: replace to change)."""

    rules: tuple[Rule, ...]
    #: per direction (DIR_IN, DIR_OUT): the simple MAC rules, simple IP rules, meter rules, extended rules
    #: (highest weight first)
    _by_dir: dict[int, tuple[tuple[Rule, ...], tuple[Rule, ...], tuple[Rule, ...], tuple[Rule, ...]]] = \
        field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for d in (DIR_IN, DIR_OUT):
            mine = [r for r in self.rules if r.direction & d]
            self._by_dir[d] = (
                tuple(r for r in mine if not r.extended and r.remote_mac is not None and r.action != METER),
                tuple(r for r in mine if not r.extended and r.remote_mac is None and r.action != METER),
                tuple(r for r in mine if not r.extended and r.action == METER),
                tuple(sorted((r for r in mine if r.extended), key=lambda r: -r.weight)))

    def has(self, direction: int) -> bool:
        """Whether any rule applies in `direction`."""
        return any(self._by_dir[direction])

    def lists(self, direction: int) -> tuple[tuple[Rule, ...], tuple[Rule, ...], tuple[Rule, ...], tuple[Rule, ...]]:
        return self._by_dir[direction]


def _ip_key(r: Rule, p: Packet) -> tuple[int, int] | None:
    """How specific `r` is for `p` (larger wins), or None when it does not match."""
    if p.version == 0:
        return None
    if r.remote_ip is not None and not r.remote_ip.matches(p.version, p.remote):
        return None
    if r.local_ip is not None and not r.local_ip.matches(p.version, p.local):
        return None
    return (r.remote_ip.plen if r.remote_ip is not None else -1, r.local_ip.plen if r.local_ip is not None else -1)


def _most_specific(rules: tuple[Rule, ...], p: Packet, mac: bool) -> Rule | None:
    best: Rule | None = None
    best_key: tuple[int, int] = (-2, -2)
    for r in rules:
        if mac:
            if r.remote_mac and r.remote_mac != p.remote_mac:
                continue
            key: tuple[int, int] | None = (1 if r.remote_mac else 0, 0)
        else:
            key = _ip_key(r, p)
            if key is None:
                continue
        if key > best_key or (key == best_key and r.action == DENY):   # deny wins a tie
            best, best_key = r, key
    return best


def _in_range(r: tuple[int, int] | None, port: int | None) -> bool:
    return r is None or (port is not None and r[0] <= port <= r[1])


def extended_match(r: Rule, p: Packet) -> bool:
    """Whether extended rule `r` matches `p`."""
    if r.protocol is not None:
        if p.version == 0:
            return False
        if r.protocol == PROTO_ICMP:
            if p.proto not in (1, 58):
                return False
        elif p.proto != r.protocol:
            return False
    if (r.remote_ip is not None or r.local_ip is not None) and _ip_key(r, p) is None:
        return False
    return _in_range(r.remote_port, p.rport) and _in_range(r.local_port, p.lport)


class ConnKey(NamedTuple):
    port: object
    version: int
    proto: int
    local: int
    lport: int
    remote: int
    rport: int


def conn_key(port: object, p: Packet) -> ConnKey:
    """The flow of `p` on `port`, the same whichever direction the packet goes (local is the VM's side)."""
    return ConnKey(port, p.version, 58 if p.proto == 1 and p.version == 6 else p.proto, p.local,
                   -1 if p.lport is None else p.lport, p.remote, -1 if p.rport is None else p.rport)


@dataclass
class Conn:
    """One flow a stateful rule admitted: the rule, the direction it was admitted in, when last seen."""

    rule: int
    direction: int
    seen: float
    timeout: float


class ConnTable:
    """The flows stateful rules admitted, at most `size`; least recently seen first. Full: the least
    recently seen flow is evicted (`evicted` counts them) — its return traffic then meets the rules."""

    def __init__(self, size: int = CONN_MAX) -> None:
        self.size = size
        self.flows: OrderedDict[ConnKey, Conn] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self.flows)

    def get(self, key: ConnKey, now: float) -> Conn | None:
        """The live flow of `key` (an idle one is removed), without touching it."""
        c = self.flows.get(key)
        if c is not None and now - c.seen > c.timeout:
            del self.flows[key]
            self.expired += 1
            return None
        return c

    def touch(self, key: ConnKey, c: Conn, now: float) -> None:
        c.seen = now
        self.flows.move_to_end(key)

    def add(self, key: ConnKey, rule: Rule, direction: int, now: float) -> None:
        c = self.flows.get(key)
        if c is not None:
            c.rule, c.direction, c.timeout = rule.id, direction, rule.idle_timeout
            self.touch(key, c, now)
            return
        if len(self.flows) >= self.size:
            self.flows.popitem(last=False)
            self.evicted += 1
        self.flows[key] = Conn(rule.id, direction, now, rule.idle_timeout)

    def expire(self, now: float) -> int:
        """Remove every flow idle past its timeout; how many went."""
        gone = [k for k, c in self.flows.items() if now - c.seen > c.timeout]
        for k in gone:
            del self.flows[k]
        self.expired += len(gone)
        return len(gone)

    def drop_port(self, port: object) -> None:
        for k in [k for k in self.flows if k.port == port]:
            del self.flows[k]


class Verdict(NamedTuple):
    """What a port's rules say of one frame in one direction: the rule that denies it (None: allowed),
    why in words (which list, or the connection that admitted it), and every rule the frame counts on."""

    deny: Rule | None
    why: str
    counted: tuple[Rule, ...]


def evaluate(acl: PortAcl, direction: int, port: object, p: Packet, now: float, conns: ConnTable,
             *, dry: bool = False) -> Verdict:
    """The verdict of `acl` on `p` going `direction` on `port`. Without `dry`, a stateful allow records
    the flow and a packet of a recorded flow refreshes it; with `dry` (trace) nothing changes."""
    macs, ips, meters, ext = acl.lists(direction)
    counted: list[Rule] = []
    deny: Rule | None = None
    why = ""
    m = _most_specific(macs, p, True) if macs else None
    if m is not None:
        counted.append(m)
        if m.action == DENY:
            deny, why = m, "most specific MAC match"
    i = _most_specific(ips, p, False) if ips else None
    if i is not None:
        counted.append(i)
        if i.action == DENY and deny is None:
            deny, why = i, "most specific match"
    if meters:
        mt = _most_specific(meters, p, False)
        if mt is not None:
            counted.append(mt)
    if ext and p.version:
        key = conn_key(port, p)
        c = conns.get(key, now) if not dry else _peek(conns, key, now)
        admitted = False
        if c is not None and c.direction != direction:     # return traffic of a flow a stateful rule admitted
            admitted = True
            if not dry:
                conns.touch(key, c, now)
            r = next((r for r in acl.rules if r.id == c.rule), None)
            if r is not None:
                counted.append(r)
        if not admitted:
            for r in ext:
                if extended_match(r, p):
                    counted.append(r)
                    if r.action == DENY:
                        if deny is None:
                            deny, why = r, f"weight {r.weight}, the highest matching"
                    elif r.stateful and not dry:
                        conns.add(key, r, direction, now)
                    break
    return Verdict(deny, why, tuple(counted))


def _peek(conns: ConnTable, key: ConnKey, now: float) -> Conn | None:
    c = conns.flows.get(key)
    return c if c is not None and now - c.seen <= c.timeout else None


class RuleCounters:
    """Hits and bytes of every rule of a switch, by (port, rule id)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[object, int], list[int]] = {}

    def count(self, port: object, rules: tuple[Rule, ...], nbytes: int) -> None:
        for r in rules:
            c = self.counts.get((port, r.id))
            if c is None:
                c = self.counts[(port, r.id)] = [0, 0]
            c[0] += 1
            c[1] += nbytes

    def get(self, port: object, rule_id: int) -> tuple[int, int]:
        c = self.counts.get((port, rule_id))
        return (c[0], c[1]) if c is not None else (0, 0)

    def keep(self, port: object, ids: set[int]) -> None:
        """Forget the counters of `port`'s rules not in `ids` (removed rules)."""
        for k in [k for k in self.counts if k[0] == port and k[1] not in ids]:
            del self.counts[k]

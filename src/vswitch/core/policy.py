"""Per-port policy: admin state, learning, flooding, VLAN membership (access or trunk), guards.

A port is either *access* (one VLAN, untagged on the wire; a priority tag VID 0 is accepted and
classified to that VLAN) or *trunk* (a set of allowed VLANs carried tagged, and an optional
native VLAN carried untagged). The default — access VLAN 1 — behaves as a plain learning switch.
`guards` holds the DHCP and router guards' bits (core/guards.py: GUARD_DHCP, GUARD_ROUTER; 0: none).
`mac_spoofing` False locks the port to one source MAC, `mac` (None: the first source it sends, which
`SwitchCore` adopts); `mac_limit` caps the MACs it may own in the table (0: no cap); `port_mirroring`
makes it a mirroring source (what it sends and receives is copied) or destination (it gets the copies);
`acl` its port ACLs and extended ACLs (core/acl.py; None: none). `isolated` is the Linux bridge's port
flag (isolated ports never reach each other); `pvlan` makes it a private VLAN port (core/isolation.py:
what it sends in and what it receives from). `storm_limit` caps the broadcast, multicast and
unknown-unicast frames it may send per second (0: none; core/rates.py); `max_bandwidth` the bits per
second it may send into the switch (0: none), policed with a bucket of `bandwidth_burst` bytes (0:
`rates.police_burst`). `uplink_class` is not the core's: the htb class (``1:minor`` as skb->priority)
the datapath gives its frames for an External switch's uplink, so the uplink shares its capacity by
the ports' weights (0: none; control/manager.py sets it). docs/port-features.md.
A policy is built from a `PortSpec`, which checked its VLANs (control/model.py): no check here.
Must not touch: the FDB, frames.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vswitch.core.acl import DIR_OUT, PortAcl


class PortMirroring(enum.IntEnum):
    """Hyper-V's -PortMirroring: every frame in or out of a SOURCE port is copied to every DESTINATION
    port of the switch (SwitchCore._mirror_for). Falsy NONE: the core tests it as a flag."""

    NONE = 0
    SOURCE = 1
    DESTINATION = 2

    @property
    def label(self) -> str:
        """'none' | 'source' | 'destination': the word of the CLI, REST and the store."""
        return self.name.lower()


class VlanMode(enum.StrEnum):
    ACCESS = "access"
    TRUNK = "trunk"


class PvlanMode(enum.StrEnum):
    """A private VLAN port's type (Hyper-V's Set-VMNetworkAdapterVlan -Isolated/-Community/-Promiscuous)."""

    ISOLATED = "isolated"
    COMMUNITY = "community"
    PROMISCUOUS = "promiscuous"


@dataclass(frozen=True)
class PortPolicy:
    """What a port admits, learns, floods, how it tags, what it guards and which sources it may send.
    Immutable: replace to change.

    Trusts its VLANs (1-4094, a trunk with at least one): the spec it comes from was checked."""

    admin_up: bool = True
    learning: bool = True
    flooding: bool = True
    mode: VlanMode = VlanMode.ACCESS
    access_vlan: int = 1
    allowed_vlans: frozenset[int] = field(default_factory=frozenset)
    native_vlan: int | None = None
    guards: int = 0
    mac_spoofing: bool = True
    mac: bytes | None = None
    mac_limit: int = 0
    acl: PortAcl | None = None
    port_mirroring: PortMirroring = PortMirroring.NONE

    isolated: bool = False
    #: a private VLAN port (None: a plain access or trunk port); it is an access port of `access_vlan`,
    #: the VLAN it sends in (its secondary; a promiscuous port's: the primary)
    pvlan: PvlanMode | None = None
    primary_vlan: int = 0
    #: isolated/community: its one secondary VLAN; promiscuous: the secondaries it receives from
    secondary_vlans: frozenset[int] = field(default_factory=frozenset)

    storm_limit: int = 0
    max_bandwidth: int = 0
    bandwidth_burst: int = 0
    uplink_class: int = 0

    def __post_init__(self) -> None:
        if type(self.port_mirroring) is not PortMirroring:  # SwitchCore tests it by identity
            object.__setattr__(self, "port_mirroring", PortMirroring(self.port_mirroring))

    @property
    def screened(self) -> bool:
        """Whether any port feature screens this port's frames (a guard, spoofing off, a MAC limit,
        ACLs on what it sends, a storm limit, a maximum bandwidth) or makes its decisions depend on it
        (a mirroring source): `SwitchCore.process`'s one test for all of them (with ACLs on what any
        port receives and private VLANs, which screen more ports: `SwitchCore._invalidate`)."""
        return (self.guards != 0 or not self.mac_spoofing or self.mac_limit > 0
                or self.port_mirroring is PortMirroring.SOURCE or (self.acl is not None and self.acl.has(DIR_OUT))
                or self.storm_limit > 0 or self.max_bandwidth > 0)

    @classmethod
    def access(cls, vlan: int = 1, **kw: Any) -> PortPolicy:
        return cls(mode=VlanMode.ACCESS, access_vlan=vlan, **kw)

    @classmethod
    def trunk(cls, allowed: set[int] | frozenset[int] | list[int], native: int | None = None,
              **kw: Any) -> PortPolicy:
        return cls(mode=VlanMode.TRUNK, allowed_vlans=frozenset(allowed), native_vlan=native, **kw)

    @classmethod
    def private(cls, pvlan: PvlanMode, primary: int, secondaries: set[int] | frozenset[int] | list[int],
                **kw: Any) -> PortPolicy:
        """A private VLAN port: it sends in its secondary VLAN (promiscuous: in the primary) and
        receives what `egress_vlans` says (trusted: the spec checked one secondary for isolated and
        community, none of them the primary)."""
        sec = frozenset(secondaries)
        sends = primary if pvlan == PvlanMode.PROMISCUOUS else min(sec)
        return cls(mode=VlanMode.ACCESS, access_vlan=sends, pvlan=pvlan, primary_vlan=primary,
                   secondary_vlans=sec, **kw)

    def egress_vlans(self) -> frozenset[int]:
        """A private VLAN port's VLANs whose frames it receives (NDIS_SWITCH_PORT_PVLAN_MODE): isolated
        the primary only; community the primary and its community; promiscuous the primary and its
        secondaries."""
        if self.pvlan == PvlanMode.ISOLATED:
            return frozenset((self.primary_vlan,))
        return self.secondary_vlans | {self.primary_vlan}

    def classify(self, vid: int | None) -> int | None:
        """Ingress: the VLAN a frame belongs to (vid None = untagged), or None when not admitted."""
        if self.mode == VlanMode.ACCESS:
            return self.access_vlan if vid is None or vid == 0 else None
        if vid is None or vid == 0:
            return self.native_vlan
        return vid if vid in self.allowed_vlans else None

    def own_vlan(self) -> int | None:
        """The VLAN a static entry given without one goes in: its untagged frames' VLAN, or a private
        VLAN port's primary (its learning domain: where lookups for it go). None: a trunk without one."""
        return self.primary_vlan if self.pvlan is not None else self.classify(None)

    def member_vlans(self) -> frozenset[int]:
        """Every VLAN the port sends or receives in (a private VLAN port: its primary and secondaries)."""
        if self.pvlan is not None:
            return self.secondary_vlans | {self.primary_vlan}
        if self.mode == VlanMode.ACCESS:
            return frozenset((self.access_vlan,))
        if self.native_vlan is None:
            return self.allowed_vlans
        return self.allowed_vlans | {self.native_vlan}

    def is_member(self, vlan: int) -> bool:
        """Egress: does a frame of `vlan` leave by this port (a private VLAN port: `egress_vlans`)?"""
        if self.mode == VlanMode.ACCESS:
            if self.pvlan is not None:
                return vlan in self.egress_vlans()
            return vlan == self.access_vlan
        return vlan in self.allowed_vlans or vlan == self.native_vlan

    def egress_tagged(self, vlan: int) -> bool:
        """Egress: does a frame of `vlan` leave this port tagged? (Only meaningful for members.)"""
        if self.mode == VlanMode.ACCESS:
            return False
        return vlan != self.native_vlan

    def describe(self) -> str:
        if self.pvlan == PvlanMode.PROMISCUOUS:
            return f"private VLAN promiscuous, primary {self.primary_vlan}, secondary " \
                   f"{format_vlan_list(self.secondary_vlans)}"
        if self.pvlan is not None:
            return f"private VLAN {self.pvlan}, primary {self.primary_vlan}, secondary {self.access_vlan}"
        if self.mode == VlanMode.ACCESS:
            return f"access {self.access_vlan}"
        text = "trunk " + format_vlan_list(self.allowed_vlans)
        return text + (f" native {self.native_vlan}" if self.native_vlan is not None else "")


def merge_vlan_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping, non-adjacent (lo, hi) ranges covering the same VLANs."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def format_vlan_list(vids: Iterable[int]) -> str:
    """VLAN ids as ranges, e.g. {10, 20, 21, 22} → '10,20-22': a trunk of 4094 VLANs is '1-4094'."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in merge_vlan_ranges((v, v) for v in vids))

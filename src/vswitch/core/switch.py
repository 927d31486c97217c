"""SwitchCore: the learning switch, frame in → Decision out. Pure: no I/O, `now` is a parameter.

The stages of one frame (`process`), each ending in a Reason when it stops the frame:
1. parse: runt or truncated tag → DROP_MALFORMED
2. ingress: admin down → DROP_PORT_DOWN; reserved 01:80:C2:00:00:0X → DROP_RESERVED_GROUP
   (unless allowed by `group_fwd_mask`, never 00-02); multicast/zero source → DROP_INVALID_SRC;
   VLAN not admitted → DROP_VLAN_INGRESS
3. learn the source (when the port learns); a source that is static on another port is counted
   (`static_refused`), never learned or moved
4. decide: broadcast/multicast → flood; known unicast → its port (DROP_SAME_PORT when that is the
   ingress port); unknown → flood. Floods go to every other port that is up, a member of the VLAN
   and floods.
5. egress edits per output port: push / pop / rewrite the tag (`EDIT_*`), applied by `egress_frame`.

`process` is the hot path: it is written flat, with cached Decision objects, so a known-unicast
frame allocates nothing but two 6-byte slices. `trace` runs the same rules without side effects.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from vswitch.core.counters import PortCounters
from vswitch.core.fdb import LEARN_MOVED, LEARN_NEW, MacTable
from vswitch.core.frame import TPID_8021AD, TPID_8021Q, pop_vlan, push_vlan, set_vid
from vswitch.core.mac import BROADCAST, GROUP_FWD_RESTRICTED, RESERVED_PREFIX, ZERO
from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason

PortId = Hashable

EDIT_KEEP = 0
EDIT_PUSH = 1    # untagged in, tagged out
EDIT_POP = 2     # tagged in, untagged out
EDIT_RETAG = 3   # priority-tagged (VID 0) in, tagged out with the classified VLAN

# How the frame arrived, relative to the VLAN it was classified to.
_IN_UNTAGGED = 0
_IN_TAGGED = 1
_IN_PRIORITY = 2

_FLOOD_KIND = {Reason.FLOOD_BROADCAST: 0, Reason.FLOOD_MULTICAST: 1, Reason.FLOOD_UNKNOWN: 2}


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one frame: the output ports, why, in which VLAN, and per-port tag edits
    (`edits` is None when every output port takes the frame as it came)."""

    out_ports: tuple[PortId, ...]
    reason: Reason
    vlan: int = 0
    edits: tuple[int, ...] | None = None


_DROPS = {r: Decision((), r) for r in Reason if r.is_drop}
_D_MALFORMED = _DROPS[Reason.DROP_MALFORMED]
_D_PORT_DOWN = _DROPS[Reason.DROP_PORT_DOWN]
_D_RESERVED = _DROPS[Reason.DROP_RESERVED_GROUP]
_D_INVALID_SRC = _DROPS[Reason.DROP_INVALID_SRC]
_D_VLAN = _DROPS[Reason.DROP_VLAN_INGRESS]
_D_SAME = _DROPS[Reason.DROP_SAME_PORT]
_D_EGRESS_DOWN = _DROPS[Reason.DROP_EGRESS_DOWN]


@dataclass
class TraceStage:
    stage: str
    result: str
    reason: Reason | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class SwitchCore:
    """A learning switch over opaque port ids: policies, MAC table, counters and decisions."""

    def __init__(self, *, ageing_s: float = 300, max_entries: int = 8192, group_fwd_mask: int = 0) -> None:
        self.fdb = MacTable(ageing_s=ageing_s, max_entries=max_entries)
        self.policies: dict[PortId, PortPolicy] = {}
        self.counters: dict[PortId, PortCounters] = {}
        self._oper_up: dict[PortId, bool] = {}
        self._group_fwd_mask = 0
        self.set_group_fwd_mask(group_fwd_mask)
        # Decision caches, invalidated whenever ports or policies change.
        self._flood: dict[int, dict[PortId, Decision]] = {}
        self._unicast: dict[int, dict[PortId, Decision]] = {}
        self._ingress: dict[PortId, tuple[PortCounters, bool, bool, int | None, PortPolicy]] = {}

    # -- configuration ------------------------------------------------------------------------
    def set_group_fwd_mask(self, mask: int) -> None:
        """Allow forwarding of some reserved group addresses (bit N = 01:80:C2:00:00:0N)."""
        if not 0 <= mask <= 0xFFFF:
            raise ValueError(f"group_fwd_mask must be a 16-bit mask, got {mask:#x}")
        if mask & GROUP_FWD_RESTRICTED:
            raise ValueError("01:80:C2:00:00:00-02 (STP, PAUSE, LACP) can never be forwarded")
        self._group_fwd_mask = mask

    def add_port(self, port: PortId, policy: PortPolicy | None = None) -> None:
        if port in self.policies:
            raise ValueError(f"port {port!r} already exists")
        self.policies[port] = policy or PortPolicy()
        self.counters[port] = PortCounters()
        self._oper_up[port] = True
        self._invalidate()

    def remove_port(self, port: PortId) -> None:
        """Detach a port: its policy, counters and every FDB entry pointing to it go."""
        self.policies.pop(port)
        self.counters.pop(port, None)
        self._oper_up.pop(port, None)
        self.fdb.flush(port=port, include_static=True)
        self._invalidate()

    def set_policy(self, port: PortId, policy: PortPolicy) -> None:
        old = self.policies[port]
        self.policies[port] = policy
        if old.member_vlans() != policy.member_vlans() or not policy.admin_up:
            self.fdb.flush(port=port)
        self._invalidate()

    def set_oper_up(self, port: PortId, up: bool) -> None:
        """The datapath reports a port's link going down/up; down flushes its dynamic entries."""
        if self._oper_up.get(port) == up:
            return
        self._oper_up[port] = up
        if not up:
            self.fdb.flush(port=port)
        self._invalidate()

    def is_up(self, port: PortId) -> bool:
        return self.policies[port].admin_up and self._oper_up.get(port, False)

    def _invalidate(self) -> None:
        self._flood.clear()
        self._unicast.clear()
        # Per-port ingress facts in one tuple: one dict lookup per frame instead of five.
        self._ingress = {p: (self.counters[p], pol.admin_up, pol.learning, pol.classify(None), pol)
                         for p, pol in self.policies.items()}

    # -- the hot path -------------------------------------------------------------------------
    def process(self, in_port: PortId, buf: bytes, offset: int, now: float) -> Decision:
        """Decide what happens to one frame received on `in_port` (Ethernet header at `offset`).

        `buf` should be ``bytes`` (slices of it are the FDB keys); other buffers are copied once.
        """
        if type(buf) is not bytes:
            buf = bytes(buf)
        c, admin_up, learning, untagged_vlan, pol = self._ingress[in_port]
        n = len(buf) - offset
        c.rx_frames += 1
        c.rx_bytes += n
        if n < 14:
            c.drop(Reason.DROP_MALFORMED)
            return _D_MALFORMED
        if not admin_up:
            c.drop(Reason.DROP_PORT_DOWN)
            return _D_PORT_DOWN
        dst = buf[offset:offset + 6]
        if dst[0] & 1 and dst[:5] == RESERVED_PREFIX and dst[5] < 16 \
                and not (self._group_fwd_mask >> dst[5]) & 1:
            c.drop(Reason.DROP_RESERVED_GROUP)
            return _D_RESERVED
        src = buf[offset + 6:offset + 12]
        if src[0] & 1 or src == ZERO:
            c.drop(Reason.DROP_INVALID_SRC)
            return _D_INVALID_SRC
        b12 = buf[offset + 12]
        if (b12 == 0x81 and buf[offset + 13] == 0x00) or (b12 == 0x88 and buf[offset + 13] == 0xA8):
            if n < 18:
                c.drop(Reason.DROP_MALFORMED)
                return _D_MALFORMED
            vid = ((buf[offset + 14] & 0x0F) << 8) | buf[offset + 15]
            vlan = pol.classify(vid)
            tagstate = _IN_TAGGED if vid else _IN_PRIORITY
        else:
            vlan = untagged_vlan
            tagstate = _IN_UNTAGGED
        if vlan is None:
            c.drop(Reason.DROP_VLAN_INGRESS)
            return _D_VLAN

        fdb = self.fdb
        table = fdb.by_vlan.get(vlan)
        if learning:
            e = table.get(src) if table is not None else None
            if e is None or e.port != in_port or e.seen != now:
                if e is None or not e.static:
                    r = fdb.learn(src, vlan, in_port, now)
                    if r == LEARN_NEW:
                        c.learned += 1
                    elif r == LEARN_MOVED:
                        c.moved += 1
                    table = fdb.by_vlan[vlan]
                elif e.port != in_port:
                    c.static_refused += 1  # pinned elsewhere: counted, never moved

        if dst[0] & 1:
            c.floods += 1
            return self._flood_decision(in_port, vlan, tagstate,
                                        Reason.FLOOD_BROADCAST if dst == BROADCAST else Reason.FLOOD_MULTICAST)
        e = table.get(dst) if table is not None else None
        if e is None or now - e.seen > fdb.ageing_s:  # static entries have seen=+inf
            c.floods += 1
            return self._flood_decision(in_port, vlan, tagstate, Reason.FLOOD_UNKNOWN)
        out = e.port
        if out == in_port:
            c.drop(Reason.DROP_SAME_PORT)
            return _D_SAME
        cache = self._unicast.get((vlan << 2) | tagstate)
        if cache is not None:
            d = cache.get(out)
            if d is not None:
                return d
        return self._unicast_decision(c, out, vlan, tagstate)

    # -- decision builders (cached) -----------------------------------------------------------
    def _edit_for(self, port: PortId, vlan: int, tagstate: int) -> int:
        tagged_out = self.policies[port].egress_tagged(vlan)
        if tagstate == _IN_UNTAGGED:
            return EDIT_PUSH if tagged_out else EDIT_KEEP
        if tagstate == _IN_TAGGED:
            return EDIT_KEEP if tagged_out else EDIT_POP
        return EDIT_RETAG if tagged_out else EDIT_POP

    def _edits(self, ports: tuple[PortId, ...], vlan: int, tagstate: int) -> tuple[int, ...] | None:
        edits = tuple(self._edit_for(p, vlan, tagstate) for p in ports)
        return edits if any(edits) else None

    def flood_ports(self, in_port: PortId, vlan: int) -> tuple[PortId, ...]:
        """Every other port that is up, a member of `vlan` and floods."""
        return tuple(p for p, pol in self.policies.items()
                     if p != in_port and pol.flooding and pol.admin_up and self._oper_up.get(p)
                     and pol.is_member(vlan))

    def _flood_decision(self, in_port: PortId, vlan: int, tagstate: int, reason: Reason) -> Decision:
        key = (((vlan << 2) | tagstate) << 2) | _FLOOD_KIND[reason]
        cache = self._flood.get(key)
        if cache is None:
            cache = self._flood[key] = {}
        d = cache.get(in_port)
        if d is None:
            ports = self.flood_ports(in_port, vlan)
            d = cache[in_port] = Decision(ports, reason, vlan, self._edits(ports, vlan, tagstate))
        return d

    def _unicast_decision(self, c: PortCounters, out: PortId, vlan: int, tagstate: int) -> Decision:
        cache = self._unicast.setdefault((vlan << 2) | tagstate, {})
        if not self.is_up(out):
            c.drop(Reason.DROP_EGRESS_DOWN)
            return _D_EGRESS_DOWN  # not cached: rare, and must be counted each time
        d = cache[out] = Decision((out,), Reason.FORWARD_LEARNED, vlan, self._edits((out,), vlan, tagstate))
        return d

    # -- ageing ---------------------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Drop aged MAC entries; the datapath calls this from a coarse tick."""
        return len(self.fdb.expire(now))

    # -- explaining -----------------------------------------------------------------------------
    def trace(self, in_port: PortId, frame: bytes, now: float) -> tuple[Decision, list[TraceStage]]:
        """What `process` would do with `frame` now, stage by stage, without learning or counting."""
        from vswitch.core.frame import parse_header  # local: only the slow path needs it
        from vswitch.core.mac import format_mac

        stages: list[TraceStage] = []
        if in_port not in self.policies:
            raise KeyError(f"no port {in_port!r}")
        pol = self.policies[in_port]
        # The checks run in `process`'s order (runt, admin, reserved, source, then the tag), so a
        # truncated tag on a down port is explained as `process` counts it.
        if len(frame) < 14:
            stages.append(TraceStage("parse", "malformed: shorter than 14 bytes", Reason.DROP_MALFORMED))
            return _D_MALFORMED, stages
        dst, src = bytes(frame[0:6]), bytes(frame[6:12])
        h = parse_header(frame)
        tag = "truncated VLAN tag" if h is None else f"tagged VID {h.vid}" if h.tagged else "untagged"
        stages.append(TraceStage("parse", f"{format_mac(src)} → {format_mac(dst)}, {tag}",
                                 detail={"src": format_mac(src), "dst": format_mac(dst),
                                         "vid": h.vid if h is not None and h.tagged else None}))
        if not pol.admin_up:
            stages.append(TraceStage("ingress", "port administratively down", Reason.DROP_PORT_DOWN))
            return _D_PORT_DOWN, stages
        if dst[:5] == RESERVED_PREFIX and dst[5] < 16 and not (self._group_fwd_mask >> dst[5]) & 1:
            stages.append(TraceStage("ingress", "reserved group address", Reason.DROP_RESERVED_GROUP))
            return _D_RESERVED, stages
        if src[0] & 1 or src == ZERO:
            stages.append(TraceStage("ingress", "invalid source MAC", Reason.DROP_INVALID_SRC))
            return _D_INVALID_SRC, stages
        if h is None:
            stages.append(TraceStage("parse", "malformed: truncated VLAN tag", Reason.DROP_MALFORMED))
            return _D_MALFORMED, stages
        vlan = pol.classify(h.vid if h.tagged else None)
        if vlan is None:
            stages.append(TraceStage("vlan", f"{tag} not admitted on {pol.describe()}", Reason.DROP_VLAN_INGRESS))
            return _D_VLAN, stages
        stages.append(TraceStage("vlan", f"admitted to VLAN {vlan} ({pol.describe()})", detail={"vlan": vlan}))
        tagstate = (_IN_TAGGED if h.vid else _IN_PRIORITY) if h.tagged else _IN_UNTAGGED
        learns_src_here = False
        if pol.learning:
            e = self.fdb.get(h.src, vlan)
            learns_src_here = e is None or not e.static
            if e is None:
                what = f"would learn {format_mac(h.src)} on {in_port}"
            elif e.static:
                what = f"{format_mac(h.src)} is static on {e.port} (kept)"
            elif e.port != in_port:
                what = f"would move {format_mac(h.src)} from {e.port} to {in_port}"
            else:
                what = f"{format_mac(h.src)} already on {in_port} (refresh)"
        else:
            what = "learning disabled on this port"
        stages.append(TraceStage("learn", what))
        if h.dst[0] & 1:
            reason = Reason.FLOOD_BROADCAST if h.dst == BROADCAST else Reason.FLOOD_MULTICAST
            ports = self.flood_ports(in_port, vlan)
            d = Decision(ports, reason, vlan, self._edits(ports, vlan, tagstate))
            stages.append(TraceStage("lookup", "group address: no lookup"))
        else:
            out = self.fdb.lookup(h.dst, vlan, now)
            # `process` learns the source before it looks the destination up: the source may be
            # the destination, and learning a new MAC into a full table may evict the destination
            if learns_src_here and h.dst == h.src:
                out = in_port
            elif learns_src_here and self.fdb.get(h.src, vlan) is None:
                victim = self.fdb.next_victim()
                if victim is not None and victim.mac == h.dst and victim.vlan == vlan:
                    out = None
            if out is None:
                ports = self.flood_ports(in_port, vlan)
                d = Decision(ports, Reason.FLOOD_UNKNOWN, vlan, self._edits(ports, vlan, tagstate))
                stages.append(TraceStage("lookup", f"{format_mac(h.dst)} not in the MAC table (VLAN {vlan})"))
            elif out == in_port:
                d = _D_SAME
                stages.append(TraceStage("lookup", f"{format_mac(h.dst)} is on the ingress port {out}"))
            elif not self.is_up(out):
                d = _D_EGRESS_DOWN
                stages.append(TraceStage("lookup", f"{format_mac(h.dst)} is on {out}, which is down"))
            else:
                d = Decision((out,), Reason.FORWARD_LEARNED, vlan, self._edits((out,), vlan, tagstate))
                stages.append(TraceStage("lookup", f"{format_mac(h.dst)} is on port {out}"))
        outs = ", ".join(str(p) for p in d.out_ports) or "none"
        stages.append(TraceStage("decision", f"{d.reason.value} → {outs}", d.reason,
                                 detail={"out_ports": list(d.out_ports)}))
        return d, stages


Buffer = bytes | bytearray | memoryview


def egress_frame(buf: Buffer, offset: int, edit: int, vlan: int) -> Buffer:
    """Apply one EDIT_* to a frame whose Ethernet header starts at `offset` (vnet header kept)."""
    if edit == EDIT_KEEP:
        return buf
    if edit == EDIT_PUSH:
        return push_vlan(buf, vlan, offset=offset)
    if edit == EDIT_POP:
        return pop_vlan(buf, offset=offset)
    return set_vid(buf, vlan, offset=offset)


__all__ = ["Decision", "EDIT_KEEP", "EDIT_POP", "EDIT_PUSH", "EDIT_RETAG", "SwitchCore", "TraceStage",
           "egress_frame", "TPID_8021Q", "TPID_8021AD"]

"""SwitchCore: the learning switch, frame in → Decision out. Pure: no I/O, `now` is a parameter.

The stages of one frame (`process`), each ending in a Reason when it stops the frame:
1. parse: runt or truncated tag → DROP_MALFORMED
2. ingress: admin down → DROP_PORT_DOWN; reserved 01:80:C2:00:00:0X → DROP_RESERVED_GROUP
   (unless allowed by `group_fwd_mask`, never 00-02); multicast/zero source → DROP_INVALID_SRC;
   VLAN not admitted → DROP_VLAN_INGRESS; with a guard on (core/guards.py), a DHCP server's message
   → DROP_DHCP_GUARD, a router advertisement or redirect → DROP_ROUTER_GUARD; with MAC spoofing off,
   a source other than the port's MAC → DROP_SPOOFED_MAC (a port with no MAC yet adopts its first
   source: `claims`); with a MAC limit, a new source while the port owns that many → DROP_MAC_LIMIT
   (all before learning: a dropped frame is never learned; each of these drops is also a
   rate-limited `frame-dropped` event); with ACLs (core/acl.py) on the port in its "out" direction
   (from the VM), a frame they deny → DROP_ACL; with a maximum bandwidth, a frame over it →
   DROP_MAX_BANDWIDTH (core/rates.py: a policer per port, the clock `now`)
3. learn the source (when the port learns) in the VLAN's learning domain (its own, or for a private
   VLAN's secondary its primary: core/isolation.py); a source that is static on another port is
   counted (`static_refused`) and recorded as an event, never learned or moved
4. decide: broadcast/multicast → flood; known unicast → its port (DROP_SAME_PORT when that is the
   ingress port; DROP_ISOLATED when both ports are isolated; DROP_PRIVATE_VLAN when a private VLAN's
   destination does not receive the frame's VLAN); unknown → flood. Floods go to every other port
   that is up, a member of the VLAN, floods and is not isolated from the ingress port. A port with a
   storm limit sends at most that many floods (broadcast, multicast, unknown unicast) per second:
   the excess → DROP_STORM_LIMIT (core/rates.py: a token bucket per port on the clock `now`, in
   `clock_ns` nanoseconds a unit).
5. egress edits per output port: push / pop / rewrite the tag (`EDIT_*`), applied by `egress_frame`;
   an output port whose ACLs deny the frame in their "in" direction (to the VM) is left out (a known
   unicast left with no port → DROP_ACL). Only a switch with such a port pays for it: every port is
   then `screened`, and the decision is filtered (`_acl_egress`) only when it names such a port.
6. port mirroring (`_mirror_for`): a forwarded frame received from or delivered to a mirroring source
   port is copied to every destination port that is up, but the one it came from and those already
   among its outputs: the copies are more output ports (after the forwarded ones, each with its tag
   edit) and `Decision.mirror` says which. A dropped frame is not mirrored.

`process` is the hot path: it is written flat, with cached Decision objects, so a known-unicast
frame allocates nothing but two 6-byte slices. It is also the only decision function: given a
`report` list it explains instead (every stage appends a `TraceStep`) and reads the MAC table
through a `DryRunFdb` with throw-away counters, so nothing is learned, counted, evicted or moved.
`trace` is that call. Without a report the hot path pays one `is None` test per stage reached.

`events` (core/events.py) hears of entries learned, moved, aged and evicted (from the MAC table), of
static refusals and of ports going up or down (admin state here, link state from the datapath's
`set_oper_up`); a known-unicast frame records nothing, and neither does an explanation.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vswitch.core import guards as guard_rules
from vswitch.core import isolation, rates
from vswitch.core.acl import DIR_IN, DIR_OUT, ConnTable, PortAcl, RuleCounters, Verdict, evaluate, read_packet
from vswitch.core.counters import PortCounters
from vswitch.core.events import EventRecorder
from vswitch.core.fdb import LEARN_MOVED, LEARN_NEW, LEARN_REFRESHED, DryRunFdb, MacTable
from vswitch.core.frame import TPID_8021AD, TPID_8021Q, parse_header, pop_vlan, push_vlan, set_vid
from vswitch.core.mac import BROADCAST, GROUP_FWD_RESTRICTED, RESERVED_PREFIX, ZERO, format_mac
from vswitch.core.policy import PortMirroring, PortPolicy
from vswitch.core.rates import format_rate
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

_SOURCE = PortMirroring.SOURCE

_FLOOD_KIND = {Reason.FLOOD_BROADCAST: 0, Reason.FLOOD_MULTICAST: 1, Reason.FLOOD_UNKNOWN: 2}


@dataclass(frozen=True, slots=True)
class Mirror:
    """The port mirroring of one decision: `sources` the mirroring source ports the frame came from or
    goes to (the ingress port first), `dests` the destination ports that see it (up, not the ingress
    port), `copies` those of them that get a copy: the last `len(copies)` output ports (the others
    are outputs of the frame already)."""

    sources: tuple[PortId, ...]
    dests: tuple[PortId, ...]
    copies: tuple[PortId, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one frame: the output ports, why, in which VLAN, and per-port tag edits
    (`edits` is None when every output port takes the frame as it came). `mirror` (None: not
    mirrored) tells which output ports are port mirroring's copies: every datapath sends them
    like any output."""

    out_ports: tuple[PortId, ...]
    reason: Reason
    vlan: int = 0
    edits: tuple[int, ...] | None = None
    mirror: Mirror | None = None


_DROPS = {r: Decision((), r) for r in Reason if r.is_drop}
_D_MALFORMED = _DROPS[Reason.DROP_MALFORMED]
_D_PORT_DOWN = _DROPS[Reason.DROP_PORT_DOWN]
_D_RESERVED = _DROPS[Reason.DROP_RESERVED_GROUP]
_D_INVALID_SRC = _DROPS[Reason.DROP_INVALID_SRC]
_D_VLAN = _DROPS[Reason.DROP_VLAN_INGRESS]


def policy_change_flushes(old: PortPolicy, new: PortPolicy) -> bool:
    """Whether a port's learned entries go when its policy changes from `old` to `new` (its VLANs
    changed, it went administratively down, or its MAC spoofing was turned off): the rule of
    `SwitchCore.set_policy`, for every holder of the MAC table."""
    return (old.member_vlans() != new.member_vlans() or not new.admin_up or old.pvlan != new.pvlan
            or (old.mac_spoofing and not new.mac_spoofing))  # what it learned from other sources goes


@dataclass(frozen=True)
class TraceStep:
    """One stage of one frame in `process`, as a report records it.

    `stage` is parse | ingress | learn | decide | egress; `result` one sentence for humans; `reason`
    the Reason when this stage stopped or decided the frame, else None; `detail` the facts behind the
    sentence (MACs as text, VLAN ids, port ids, lists of them), e.g. ``{"vlan": 10, "policy": "access 10"}``.
    """

    stage: str
    result: str
    reason: Reason | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


_EDIT_NAMES = {EDIT_KEEP: "keep", EDIT_PUSH: "push", EDIT_POP: "pop", EDIT_RETAG: "retag"}


class SwitchCore:
    """A learning switch over opaque port ids: policies, MAC table, counters and decisions."""

    def __init__(self, *, ageing_s: float = 300, max_entries: int = 8192, group_fwd_mask: int = 0,
                 clock_ns: int = rates.NS) -> None:
        """`clock_ns`: nanoseconds in one unit of the `now` given to `process` (seconds by default; a
        test on the BPF program's nanosecond clock gives 1), for the rate limits."""
        self.events = EventRecorder()
        self.clock_ns = clock_ns
        #: per port with a storm limit: its bucket (core/rates.py: the time it is full again, in ns)
        self._storm: dict[PortId, int] = {}
        #: per port with a maximum bandwidth: its policer's bucket (the same form)
        self._police: dict[PortId, int] = {}
        self.fdb = MacTable(ageing_s=ageing_s, max_entries=max_entries, events=self.events)
        self.policies: dict[PortId, PortPolicy] = {}
        self.counters: dict[PortId, PortCounters] = {}
        self._oper_up: dict[PortId, bool] = {}
        self._group_fwd_mask = 0
        self.set_group_fwd_mask(group_fwd_mask)
        # Decision caches, invalidated whenever ports or policies change.
        self._flood: dict[int, dict[PortId, Decision]] = {}
        self._unicast: dict[int, dict[PortId, Decision]] = {}
        self._vlan_drops: dict[tuple[Reason, int], Decision] = {}
        self._ingress: dict[PortId, tuple[PortCounters, bool, bool, int | None, PortPolicy, bool]] = {}
        # port mirroring: the source ports, the destination ports (in port order), and the unicast
        # decisions that involve a source, by (vlan << 2 | tagstate) → in-port → out-port (they
        # depend on both ends, `_unicast` on the out-port only)
        self._mirror_sources: frozenset[PortId] = frozenset()
        self._mirror_dests: tuple[PortId, ...] = ()
        self._mirror_unicast: dict[int, dict[PortId, dict[PortId, Decision]]] = {}
        #: known unicast to an isolated port: its decision depends on the ingress port too
        self._unicast_isolated: dict[tuple[int, PortId, PortId], Decision] = {}
        #: a private VLAN's secondaries → its primary: the VLANs learned under another (isolation.py)
        self._domain: dict[int, int] = {}
        #: VLANs whose dynamic entries were flushed because the learning domains changed: a second
        #: holder of the table (the kernel fast path's map) drains it (`take_relearned`) to do the same
        self.relearned: set[int] = set()
        #: ports that adopted their first source as their MAC (spoofing off, no MAC), oldest first:
        #: the datapath drains it (`take_claims`) to tell its program and the control plane
        self.claims: list[PortId] = []
        #: ACL rules' hits and bytes, by (port, rule id); the flows stateful ACL rules admitted
        self.acl_counters = RuleCounters()
        self.conns = ConnTable()
        #: the ports with an ACL rule in the "in" direction (to the VM): their deliveries are filtered
        self._acl_in: frozenset[PortId] = frozenset()

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
        self._storm.pop(port, None)
        self._police.pop(port, None)
        self.fdb.flush(port=port, include_static=True)
        self.acl_counters.keep(port, set())
        self.conns.drop_port(port)
        self._invalidate()

    def set_policy(self, port: PortId, policy: PortPolicy) -> None:
        """Replace a port's policy. A port that keeps spoofing off and is given no MAC keeps the one
        it adopted. Raises KeyError for an unknown port."""
        old = self.policies[port]
        if not policy.mac_spoofing and policy.mac is None and not old.mac_spoofing:
            policy = replace(policy, mac=old.mac)
        self.policies[port] = policy
        if old.acl != policy.acl:  # a removed rule's counters and flows go; the others keep counting
            ids = {r.id for r in policy.acl.rules} if policy.acl is not None else set()
            self.acl_counters.keep(port, ids)
            if old.acl is not None:
                gone = {r.id for r in old.acl.rules} - ids
                for k in [k for k, c in self.conns.flows.items() if k.port == port and c.rule in gone]:
                    del self.conns.flows[k]
        if old.storm_limit != policy.storm_limit:
            self._storm.pop(port, None)  # a new limit starts with a full bucket
        if (old.max_bandwidth, old.bandwidth_burst) != (policy.max_bandwidth, policy.bandwidth_burst):
            self._police.pop(port, None)
        if policy_change_flushes(old, policy):
            self.fdb.flush(port=port)
        if old.admin_up != policy.admin_up:
            self.events.port_state(port, policy.admin_up, "admin")
        self._invalidate()

    def set_oper_up(self, port: PortId, up: bool, reason: str = "link") -> None:
        """The datapath reports a port's link going down/up (`reason`: why, for the event); down
        flushes its dynamic entries."""
        if self._oper_up.get(port) == up:
            return
        self._oper_up[port] = up
        if not up:
            self.fdb.flush(port=port)
        self.events.port_state(port, up, reason)
        self._invalidate()

    def is_up(self, port: PortId) -> bool:
        return self.policies[port].admin_up and self._oper_up.get(port, False)

    def _invalidate(self) -> None:
        self._flood.clear()
        self._unicast.clear()
        self._mirror_unicast.clear()
        self._unicast_isolated.clear()
        domain = isolation.learning_domains(self.policies.values())
        if domain != self._domain:  # a VLAN keyed anew: what was learned under the old key goes
            gone = isolation.relearned(self._domain, domain)
            for v in gone:
                self.fdb.flush(vlan=v)
            self.relearned |= gone
            self._domain = domain
        shared = frozenset(self._domain)
        # Per-port ingress facts in one tuple: one dict lookup per frame instead of five. Flags as
        # bools: the interpreter's branch on True/False is the fast one (an int 0 goes through bool()).
        # `screened` (PortPolicy.screened): a guard, spoofing off, a MAC limit, ACLs on what it sends or
        # a mirroring source (its unicast decisions depend on the ingress port); a port with an ACL
        # "in" anywhere screens every port (any of them may deliver to it); and a port in a VLAN
        # learned under its primary (a private VLAN's)
        self._acl_in = acl_in = frozenset(p for p, pol in self.policies.items()
                                          if pol.acl is not None and pol.acl.has(DIR_IN))
        self._ingress = {p: (self.counters[p], pol.admin_up, pol.learning, pol.classify(None), pol,
                             pol.screened or bool(acl_in) or not shared.isdisjoint(pol.member_vlans()))
                         for p, pol in self.policies.items()}
        self._mirror_sources = frozenset(p for p, pol in self.policies.items()
                                         if pol.port_mirroring == PortMirroring.SOURCE)
        self._mirror_dests = tuple(p for p, pol in self.policies.items()
                                   if pol.port_mirroring == PortMirroring.DESTINATION)

    def take_relearned(self) -> set[int]:
        """The VLANs `relearned` since the last call; empties it."""
        out, self.relearned = self.relearned, set()
        return out

    def take_claims(self) -> list[tuple[PortId, bytes]]:
        """The MACs ports adopted since the last call (port, MAC), still their MAC; empties `claims`."""
        out = [(p, mac) for p in dict.fromkeys(self.claims)
               if p in self.policies and (mac := self.policies[p].mac) is not None]
        self.claims.clear()
        return out

    # -- the hot path -------------------------------------------------------------------------
    def process(self, in_port: PortId, buf: bytes, offset: int, now: float,
                report: list[TraceStep] | None = None) -> Decision:
        """Decide what happens to one frame received on `in_port` (Ethernet header at `offset`).

        `buf` should be ``bytes`` (slices of it are the FDB keys); other buffers are copied once.
        With `report` (a list) nothing changes — no learning, counting, eviction or move event — and
        each stage appends a `TraceStep`; the Decision is what the same call without it returns now.
        Raises KeyError for a port that was never added.
        """
        if type(buf) is not bytes:
            buf = bytes(buf)
        c, admin_up, learning, untagged_vlan, pol, screened = self._ingress[in_port]
        if report is None:
            fdb: MacTable | DryRunFdb = self.fdb
        else:
            c = PortCounters()  # an explanation counts nothing
            fdb = DryRunFdb(self.fdb)
        n = len(buf) - offset
        c.rx_frames += 1
        c.rx_bytes += n
        if n < 14:
            c.drop(Reason.DROP_MALFORMED)
            if report is not None:
                report.append(TraceStep("parse", f"malformed: {n} bytes, shorter than an Ethernet header (14)",
                                        Reason.DROP_MALFORMED, {"length": n}))
            return _D_MALFORMED
        if not admin_up:
            c.drop(Reason.DROP_PORT_DOWN)
            if report is not None:
                _report_drop(report, buf, offset, f"port {in_port} is administratively down", Reason.DROP_PORT_DOWN)
            return _D_PORT_DOWN
        dst = buf[offset:offset + 6]
        if dst[0] & 1 and dst[:5] == RESERVED_PREFIX and dst[5] < 16 \
                and not (self._group_fwd_mask >> dst[5]) & 1:
            c.drop(Reason.DROP_RESERVED_GROUP)
            if report is not None:
                _report_drop(report, buf, offset, f"{format_mac(dst)} is a reserved group address not forwarded "
                             f"(group_fwd_mask {self._group_fwd_mask:#06x})", Reason.DROP_RESERVED_GROUP)
            return _D_RESERVED
        src = buf[offset + 6:offset + 12]
        if src[0] & 1 or src == ZERO:
            c.drop(Reason.DROP_INVALID_SRC)
            if report is not None:
                _report_drop(report, buf, offset, f"source {format_mac(src)} is a group or all-zero address",
                             Reason.DROP_INVALID_SRC)
            return _D_INVALID_SRC
        b12 = buf[offset + 12]
        if (b12 == 0x81 and buf[offset + 13] == 0x00) or (b12 == 0x88 and buf[offset + 13] == 0xA8):
            if n < 18:
                c.drop(Reason.DROP_MALFORMED)
                if report is not None:
                    report.append(_parse_step(buf, offset, Reason.DROP_MALFORMED))
                return _D_MALFORMED
            vid = ((buf[offset + 14] & 0x0F) << 8) | buf[offset + 15]
            vlan = pol.classify(vid)
            tagstate = _IN_TAGGED if vid else _IN_PRIORITY
        else:
            vlan = untagged_vlan
            tagstate = _IN_UNTAGGED
        if vlan is None:
            c.drop(Reason.DROP_VLAN_INGRESS)
            if report is not None:
                _report_drop(report, buf, offset, f"{_tag_text(buf, offset)} not admitted on {pol.describe()}",
                             Reason.DROP_VLAN_INGRESS, {"policy": pol.describe()})
            return _D_VLAN
        fid = vlan  # the learning domain
        if screened:  # a guard, spoofing off, a MAC limit, ACLs, a rate limit, a private VLAN; others pay this test
            if self._domain:
                fid = self._domain.get(vlan, vlan)
            if pol.guards:
                l3 = offset + (14 if tagstate == _IN_UNTAGGED else 18)
                ethertype = (buf[l3 - 2] << 8) | buf[l3 - 1]
                why = guard_rules.check(buf, l3, ethertype, pol.guards)
                if why is not None:
                    c.drop(why)
                    if report is None:
                        self.events.frame_dropped(in_port, why.label, src, vlan, now)
                    else:
                        name = "DHCP guard" if why is Reason.DROP_DHCP_GUARD else "router guard"
                        _report_drop(report, buf, offset, f"{name} on port {in_port} — "
                                     f"{guard_rules.describe(buf, l3, ethertype)}", why,
                                     {"vlan": vlan, "guard": name})
                    return self._drop_in_vlan(why, vlan)
            if not pol.mac_spoofing or pol.mac_limit:
                why = self._source_check(in_port, pol, src, fid, report)
                if why is not None:
                    c.drop(why)
                    if report is None:
                        self.events.frame_dropped(in_port, why.label, src, vlan, now)
                    else:
                        _report_drop(report, buf, offset, self._source_text(in_port, pol, src, why), why,
                                     {"vlan": vlan})
                    return self._drop_in_vlan(why, vlan)
            if pol.acl is not None and pol.acl.has(DIR_OUT):
                l3 = offset + (14 if tagstate == _IN_UNTAGGED else 18)
                v = evaluate(pol.acl, DIR_OUT, in_port, read_packet(buf, offset, l3, DIR_OUT), now, self.conns,
                             dry=report is not None)
                if report is None:
                    self.acl_counters.count(in_port, v.counted, n)
                if v.deny is not None:
                    c.drop(Reason.DROP_ACL)
                    if report is None:
                        self.events.frame_dropped(in_port, Reason.DROP_ACL.label, src, vlan, now)
                    else:
                        _report_drop(report, buf, offset, acl_text(in_port, v), Reason.DROP_ACL,
                                     {"vlan": vlan, "acl": v.deny.id, "direction": "out"})
                    return self._drop_in_vlan(Reason.DROP_ACL, vlan)
            if pol.max_bandwidth and self._police_excess(in_port, pol, n, now, report):
                c.drop(Reason.DROP_MAX_BANDWIDTH)
                if report is None:
                    self.events.frame_dropped(in_port, Reason.DROP_MAX_BANDWIDTH.label, src, vlan, now)
                else:
                    _report_drop(report, buf, offset, f"maximum bandwidth on port {in_port} — "
                                 f"{format_rate(pol.max_bandwidth)} exceeded ({n} bytes)",
                                 Reason.DROP_MAX_BANDWIDTH, {"vlan": vlan, "max_bandwidth": pol.max_bandwidth})
                return self._drop_in_vlan(Reason.DROP_MAX_BANDWIDTH, vlan)

        table = fdb.by_vlan.get(fid)
        if learning:
            e = table.get(src) if table is not None else None
            if e is None or e.port != in_port or e.seen != now:
                if e is None or not e.static:
                    r = fdb.learn(src, fid, in_port, now)
                    if r == LEARN_NEW:
                        c.learned += 1
                    elif r == LEARN_MOVED:
                        c.moved += 1
                    table = fdb.by_vlan[fid]
                elif e.port != in_port:
                    c.static_refused += 1  # pinned elsewhere: counted, never moved
                    if report is None:
                        self.events.static_refused(src, fid, in_port, e.port, now)
        if report is not None:
            self._report_admitted(report, buf, offset, in_port, vlan, tagstate, learning, fdb, fid)

        if dst[0] & 1:
            if screened and pol.storm_limit and self._storm_excess(in_port, pol, now, report):
                return self._storm_drop(c, in_port, pol, buf, offset, vlan, now, report)
            c.floods += 1
            d = self._flood_decision(in_port, vlan, tagstate,
                                     Reason.FLOOD_BROADCAST if dst == BROADCAST else Reason.FLOOD_MULTICAST)
            if d.mirror is not None and report is None:
                self._count_mirror(d.mirror)
            if report is not None:
                self._report_decision(report, d, in_port, dst, vlan, None, fdb, fid)
            if screened and self._acl_in:
                d = self._acl_egress(d, c, buf, offset, tagstate, n, now, report)
            return d
        e = table.get(dst) if table is not None else None
        if e is None or now - e.seen > fdb.ageing_s:  # static entries have seen=+inf
            if screened and pol.storm_limit and self._storm_excess(in_port, pol, now, report):
                return self._storm_drop(c, in_port, pol, buf, offset, vlan, now, report)
            c.floods += 1
            d = self._flood_decision(in_port, vlan, tagstate, Reason.FLOOD_UNKNOWN)
            if d.mirror is not None and report is None:
                self._count_mirror(d.mirror)
            if report is not None:
                self._report_decision(report, d, in_port, dst, vlan, e, fdb, fid)
            if screened and self._acl_in:
                d = self._acl_egress(d, c, buf, offset, tagstate, n, now, report)
            return d
        out = e.port
        if out == in_port:
            c.drop(Reason.DROP_SAME_PORT)
            d = self._drop_in_vlan(Reason.DROP_SAME_PORT, vlan)
        else:
            cache = self._unicast.get((vlan << 2) | tagstate)
            d = cache.get(out) if cache is not None else None
            if d is None or screened and pol.port_mirroring is _SOURCE:  # by its ingress port too
                d = self._unicast_decision(c, in_port, out, vlan, tagstate, report is None)
        if report is not None:
            self._report_decision(report, d, in_port, dst, vlan, e, fdb, fid)
        if screened and self._acl_in:
            d = self._acl_egress(d, c, buf, offset, tagstate, n, now, report)
        return d

    # -- the ACLs' "in" direction (to the VM) ---------------------------------------------------
    def _acl_egress(self, d: Decision, c: PortCounters, buf: bytes, offset: int, tagstate: int, n: int,
                    now: float, report: list[TraceStep] | None) -> Decision:
        """`d` without the output ports whose ACLs deny the frame on its way to them (`d` itself when
        none does); a known unicast left with no port is DROP_ACL. A flood keeps its reason.

        Port mirroring's copies are not deliveries: they stay, whatever the destination's own ACLs
        (a monitor sees what its sources exchange), and a frame mirrored because it reached a source
        is still copied when that delivery is denied but the frame goes elsewhere. A known unicast
        denied its one port is dropped and so not mirrored (its mirror counts are taken back)."""
        acl_in = self._acl_in
        outs = d.out_ports
        if acl_in.isdisjoint(outs):  # no allocation: a decision for ports without "in" rules stays as cached
            return d
        n_forwarded = len(outs) - (len(d.mirror.copies) if d.mirror is not None else 0)
        l3 = offset + (14 if tagstate == _IN_UNTAGGED else 18)
        pkt = read_packet(buf, offset, l3, DIR_IN)
        keep: list[PortId] = []
        edits: list[int] = []
        denied = False
        kept_forwarded = 0
        for i, p in enumerate(outs):
            if i < n_forwarded and p in acl_in:
                acl = self.policies[p].acl
                assert acl is not None
                v = evaluate(acl, DIR_IN, p, pkt, now, self.conns, dry=report is not None)
                if report is None:
                    self.acl_counters.count(p, v.counted, n)
                if v.deny is not None:
                    denied = True
                    if report is None:
                        self.events.frame_dropped(p, Reason.DROP_ACL.label, bytes(buf[offset + 6:offset + 12]),
                                                  d.vlan, now)
                    else:
                        report.append(TraceStep("egress", f"port {p}: {acl_text(p, v)}: not delivered",
                                                Reason.DROP_ACL, {"port": p, "acl": v.deny.id, "direction": "in"}))
                    continue
            keep.append(p)
            kept_forwarded += i < n_forwarded
            edits.append(d.edits[i] if d.edits is not None else EDIT_KEEP)
        if not denied:
            return d
        if not kept_forwarded and not d.reason.is_flood:
            if d.mirror is not None and report is None:
                self._count_mirror(d.mirror, -1)
            c.drop(Reason.DROP_ACL)
            return self._drop_in_vlan(Reason.DROP_ACL, d.vlan)
        return Decision(tuple(keep), d.reason, d.vlan, tuple(edits) if any(edits) else None, d.mirror)

    def acl_flows(self, port: PortId) -> dict[int, int]:
        """How many live flows each stateful rule of `port` admitted (by rule id)."""
        out: dict[int, int] = {}
        for k, c in self.conns.flows.items():
            if k.port == port:
                out[c.rule] = out.get(c.rule, 0) + 1
        return out

    def acl_counts(self, port: PortId) -> dict[int, tuple[int, int]]:
        """The hits and bytes of each rule of `port` (by rule id). Raises KeyError for an unknown port."""
        acl: PortAcl | None = self.policies[port].acl
        return {r.id: self.acl_counters.get(port, r.id) for r in (acl.rules if acl is not None else ())}

    # -- the source rules (MAC spoofing, MAC limit) ---------------------------------------------
    def _source_check(self, in_port: PortId, pol: PortPolicy, src: bytes, vlan: int,
                      report: list[TraceStep] | None) -> Reason | None:
        """Which source rule drops a frame from `src` on `in_port`, or None. A port with spoofing off
        and no MAC yet adopts `src` (not while explaining): the policy gains it and `claims` the port.
        The limit counts the port's dynamic entries in the real table (an explanation reads it too):
        a source it already owns in `vlan` passes, a new one passes while it owns fewer."""
        if not pol.mac_spoofing:
            if pol.mac is None:
                if report is None:
                    self.policies[in_port] = pol = replace(pol, mac=bytes(src))
                    self.claims.append(in_port)
                    self._invalidate()
            elif src != pol.mac:
                return Reason.DROP_SPOOFED_MAC
        if pol.mac_limit:
            table = self.fdb.by_vlan.get(vlan)
            e = table.get(src) if table is not None else None
            if (e is None or e.port != in_port) and self.fdb.port_count(in_port) >= pol.mac_limit:
                return Reason.DROP_MAC_LIMIT
        return None

    def _source_text(self, in_port: PortId, pol: PortPolicy, src: bytes, why: Reason) -> str:
        if why is Reason.DROP_SPOOFED_MAC:
            assert pol.mac is not None
            return (f"MAC spoofing off on port {in_port} — source {format_mac(src)} is not its MAC "
                    f"{format_mac(pol.mac)}")
        return (f"MAC limit on port {in_port} — it owns {self.fdb.port_count(in_port)} MACs "
                f"(limit {pol.mac_limit}) and {format_mac(src)} is not one of them")

    # -- the storm limit ------------------------------------------------------------------------
    def _storm_excess(self, in_port: PortId, pol: PortPolicy, now: float, report: list[TraceStep] | None) -> bool:
        """Whether a flood from `in_port` at `now` is over its storm limit (core/rates.py); takes the
        frame's token when it is not (not while explaining: an explanation reads the bucket)."""
        interval, tolerance = rates.storm_bucket(pol.storm_limit)
        now_ns = round(now * self.clock_ns)
        tat = rates.take(self._storm.get(in_port, 0), now_ns, interval, tolerance)
        if tat is None:
            return True
        if report is None:
            self._storm[in_port] = tat
        return False

    def _police_excess(self, in_port: PortId, pol: PortPolicy, n: int, now: float,
                       report: list[TraceStep] | None) -> bool:
        """Whether a frame of `n` bytes from `in_port` at `now` is over its maximum bandwidth
        (core/rates.py); takes its bytes when it is not (not while explaining)."""
        cost, tolerance = rates.police_bucket(pol.max_bandwidth, pol.bandwidth_burst)
        tat = rates.take_bytes(self._police.get(in_port, 0), round(now * self.clock_ns), n, cost, tolerance)
        if tat is None:
            return True
        if report is None:
            self._police[in_port] = tat
        return False

    def _storm_drop(self, c: PortCounters, in_port: PortId, pol: PortPolicy, buf: bytes, offset: int, vlan: int,
                    now: float, report: list[TraceStep] | None) -> Decision:
        c.drop(Reason.DROP_STORM_LIMIT)
        if report is None:
            self.events.frame_dropped(in_port, Reason.DROP_STORM_LIMIT.label, bytes(buf[offset + 6:offset + 12]),
                                      vlan, now)
        else:
            report.append(TraceStep("decide", f"storm limit on port {in_port} — {pol.storm_limit} pps of "
                                    "broadcast/multicast/unknown unicast exceeded: dropped", Reason.DROP_STORM_LIMIT,
                                    {"vlan": vlan, "storm_limit": pol.storm_limit,
                                     "dst": format_mac(bytes(buf[offset:offset + 6]))}))
        return self._drop_in_vlan(Reason.DROP_STORM_LIMIT, vlan)

    # -- decision builders (cached) -----------------------------------------------------------
    def _edit_for(self, port: PortId, vlan: int, tagstate: int) -> int:
        tagged_out = self.policies[port].egress_tagged(vlan)
        if tagstate == _IN_UNTAGGED:
            return EDIT_PUSH if tagged_out else EDIT_KEEP
        if tagstate == _IN_TAGGED:
            return EDIT_KEEP if tagged_out else EDIT_POP
        return EDIT_RETAG if tagged_out else EDIT_POP

    def egress_edit(self, port: PortId, vlan: int, buf: Buffer, offset: int = 0) -> int:
        """The EDIT_* `port` applies to the frame `buf` (Ethernet header at `offset`, as it arrived)
        forwarded in `vlan`: the rule `decide` puts into `Decision.edits`, for a decision made
        elsewhere (the kernel fast path's events carry none; `vswitch capture` shows the frame as it
        left). Raises KeyError for a port the switch does not have."""
        b12, b13 = buf[offset + 12], buf[offset + 13]
        if (b12 == 0x81 and b13 == 0x00) or (b12 == 0x88 and b13 == 0xA8):
            tagstate = _IN_TAGGED if ((buf[offset + 14] & 0x0F) << 8) | buf[offset + 15] else _IN_PRIORITY
        else:
            tagstate = _IN_UNTAGGED
        return self._edit_for(port, vlan, tagstate)

    def _edits(self, ports: tuple[PortId, ...], vlan: int, tagstate: int) -> tuple[int, ...] | None:
        edits = tuple(self._edit_for(p, vlan, tagstate) for p in ports)
        return edits if any(edits) else None

    def flood_ports(self, in_port: PortId, vlan: int) -> tuple[PortId, ...]:
        """Every other port that is up, a member of `vlan`, floods and is not isolated from `in_port`."""
        src = self.policies[in_port]
        return tuple(p for p, pol in self.policies.items()
                     if p != in_port and pol.flooding and pol.admin_up and self._oper_up.get(p)
                     and pol.is_member(vlan) and isolation.refusal(src, pol, vlan) is None)

    def isolated_from(self, in_port: PortId, vlan: int) -> list[tuple[PortId, Reason]]:
        """The ports a flood of `vlan` from `in_port` would reach but for isolation (trace's words)."""
        src = self.policies[in_port]
        return [(p, why) for p, pol in self.policies.items()
                if p != in_port and pol.flooding and pol.admin_up and self._oper_up.get(p) and pol.is_member(vlan)
                and (why := isolation.refusal(src, pol, vlan)) is not None]

    def _flood_decision(self, in_port: PortId, vlan: int, tagstate: int, reason: Reason) -> Decision:
        key = (((vlan << 2) | tagstate) << 2) | _FLOOD_KIND[reason]
        cache = self._flood.get(key)
        if cache is None:
            cache = self._flood[key] = {}
        d = cache.get(in_port)
        if d is None:
            ports = self.flood_ports(in_port, vlan)
            mirror = self._mirror_for(in_port, ports)
            if mirror is not None:
                ports += mirror.copies
            d = cache[in_port] = Decision(ports, reason, vlan, self._edits(ports, vlan, tagstate), mirror)
        return d

    def _unicast_decision(self, c: PortCounters, in_port: PortId, out: PortId, vlan: int, tagstate: int,
                          count: bool) -> Decision:
        """A known unicast from `in_port` to `out` (a cache miss, or from a mirroring source): cached in
        `_unicast` (by `out`) unless it depends on the ingress port too — a mirroring source at either
        end (`_mirror_unicast`, by both) or an isolated destination (`_unicast_isolated`); a drop is
        never cached (counted each time). `count`: the mirror's counters."""
        key = (vlan << 2) | tagstate
        sources = self._mirror_sources
        if sources:
            by_in = self._mirror_unicast.get(key)
            row = by_in.get(in_port) if by_in is not None else None
            d = row.get(out) if row is not None else None
            if d is not None:
                if d.mirror is not None and count:
                    self._count_mirror(d.mirror)
                return d
        if not self.is_up(out):
            c.drop(Reason.DROP_EGRESS_DOWN)
            return self._drop_in_vlan(Reason.DROP_EGRESS_DOWN, vlan)
        dst = self.policies[out]
        why = isolation.refusal(self.policies[in_port], dst, vlan, vlan in self._domain.values()
                                or vlan in self._domain)
        if why is not None:
            c.drop(why)
            return self._drop_in_vlan(why, vlan)
        if dst.isolated:
            d = self._unicast_isolated.get((key, in_port, out))
            if d is not None:
                return d
        outs: tuple[PortId, ...] = (out,)
        mirror = self._mirror_for(in_port, outs)
        if mirror is not None:
            outs += mirror.copies
        d = Decision(outs, Reason.FORWARD_LEARNED, vlan, self._edits(outs, vlan, tagstate), mirror)
        if mirror is not None or out in sources or in_port in sources:
            self._mirror_unicast.setdefault(key, {}).setdefault(in_port, {})[out] = d
            if mirror is not None and count:
                self._count_mirror(mirror)
        elif dst.isolated:
            self._unicast_isolated[(key, in_port, out)] = d
        else:  # the same for every ingress port
            self._unicast.setdefault(key, {})[out] = d
        return d

    # -- port mirroring ---------------------------------------------------------------------------
    def _mirror_for(self, in_port: PortId, outs: tuple[PortId, ...]) -> Mirror | None:
        """The rule of port mirroring (Hyper-V -PortMirroring), for a frame from `in_port` forwarded
        to `outs`: mirrored when it comes from or goes to a source port and a destination port other
        than `in_port` is up; each such destination not already in `outs` gets one copy — one, however
        many sources the frame touches. None: not mirrored."""
        srcs = self._mirror_sources
        if not srcs:
            return None
        sources = tuple(p for p in (in_port, *outs) if p in srcs)
        if not sources:
            return None
        dests = tuple(p for p in self._mirror_dests if p != in_port and self.is_up(p))
        if not dests:
            return None
        return Mirror(sources, dests, tuple(p for p in dests if p not in outs))

    def _count_mirror(self, m: Mirror, n: int = 1) -> None:
        """A mirrored frame: once on each of its sources (`mirrored`), once per copy (`mirror_tx`);
        `n` -1 takes a count back (a unicast the ACLs then dropped)."""
        counters = self.counters
        for p in m.sources:
            counters[p].mirrored += n
        for p in m.copies:
            counters[p].mirror_tx += n

    def _drop_in_vlan(self, reason: Reason, vlan: int) -> Decision:
        """A drop decided after the frame was classified: it keeps the VLAN (watch and trace show it)."""
        d = self._vlan_drops.get((reason, vlan))
        if d is None:
            d = self._vlan_drops[(reason, vlan)] = Decision((), reason, vlan)
        return d

    # -- ageing ---------------------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Drop aged MAC entries and end the event windows that are over; the datapath calls this
        from a coarse tick."""
        gone = len(self.fdb.expire(now))
        self.conns.expire(now)
        self.events.tick(now)
        return gone

    # -- explaining -----------------------------------------------------------------------------
    def trace(self, in_port: PortId, frame: bytes, now: float) -> tuple[Decision, list[TraceStep]]:
        """What `process` would do with `frame` (header at 0) now, stage by stage: `process` with a
        report, so nothing is learned or counted. Raises KeyError for an unknown port."""
        report: list[TraceStep] = []
        return self.process(in_port, frame, 0, now, report), report

    # The report writers: called by `process` only when it was given a report, never on the hot path.
    def _report_admitted(self, report: list[TraceStep], buf: bytes, offset: int, in_port: PortId, vlan: int,
                         tagstate: int, learning: bool, fdb: DryRunFdb, fid: int) -> None:
        """The parse, ingress and learn steps of a frame admitted to `vlan` (learned in `fid`)."""
        report.append(_parse_step(buf, offset))
        policy = self.policies[in_port].describe()
        how = ("untagged", "tagged", "priority-tagged")[tagstate]
        report.append(TraceStep("ingress", f"{how} frame admitted to VLAN {vlan} ({policy})",
                                detail={"vlan": vlan, "policy": policy, "arrived": how}))
        src = bytes(buf[offset + 6:offset + 12])
        mac = format_mac(src)
        detail: dict[str, Any] = {"mac": mac, "vlan": fid, "port": in_port}
        where = f"VLAN {vlan}" if fid == vlan else f"VLAN {fid}, the primary of secondary VLAN {vlan}: shared learning"
        if not learning:
            what = f"learning is off on port {in_port}: {mac} not learned"
            detail["action"] = "off"
        elif fdb.outcome is None:  # `process` did not need to learn: static, or already seen now
            e = self.fdb.get(src, fid)
            if e is not None and e.static:
                what = f"{mac} is static on port {e.port}: kept"
                detail.update(action="static", port=e.port)
            else:
                what = f"{mac} already learned on port {in_port}"
                detail["action"] = "refresh"
        elif fdb.outcome == LEARN_NEW:
            what = f"would learn {mac} on port {in_port} ({where})"
            detail["action"] = "learn"
            victim = fdb.evicted
            if victim is not None:
                what += f"; the table is full: {format_mac(victim.mac)} (VLAN {victim.vlan}) on port " \
                        f"{victim.port} would be evicted"
                detail["evicts"] = {"mac": format_mac(victim.mac), "vlan": victim.vlan, "port": victim.port}
        elif fdb.outcome == LEARN_MOVED:
            old = fdb.previous.port if fdb.previous is not None else None
            what = f"would move {mac} from port {old} to port {in_port} (a MAC move)"
            detail.update(action="move", old_port=old)
        elif fdb.outcome == LEARN_REFRESHED:
            what = f"{mac} already learned on port {in_port} (refreshed)"
            detail["action"] = "refresh"
        else:
            what = f"{mac} is static: kept"
            detail["action"] = "static"
        report.append(TraceStep("learn", what, detail=detail))

    def _report_decision(self, report: list[TraceStep], d: Decision, in_port: PortId, dst: bytes, vlan: int,
                         e: Any, fdb: DryRunFdb, fid: int) -> None:
        """The decide step (lookup, verdict, output ports) and one egress step per output port.
        `e` is the destination's entry as the lookup found it (None: not found, or not looked up);
        `fid` the VLAN the lookup was in (a private VLAN's primary for its secondaries)."""
        mac = format_mac(dst)
        outs = list(d.out_ports)
        r = d.reason
        detail: dict[str, Any] = {"dst": mac, "vlan": vlan, "out_ports": outs}
        primary = fid if fid != vlan else (vlan if vlan in self._domain.values() else None)
        if r.is_flood:
            if r is Reason.FLOOD_UNKNOWN:
                victim = fdb.evicted
                if e is not None:
                    why = f"{mac} aged out of the MAC table (VLAN {fid})"
                elif victim is not None and victim.mac == dst and victim.vlan == fid:
                    why = f"{mac} would be evicted by learning the source (VLAN {fid})"
                else:
                    why = f"{mac} is not in the MAC table (VLAN {fid})"
                detail["lookup"] = "miss"
            else:
                why = f"{mac} is a {'broadcast' if r is Reason.FLOOD_BROADCAST else 'multicast'} address: no lookup"
                detail["lookup"] = "none"
            to = (f"flooded to port{'s' if len(outs) > 1 else ''} {', '.join(map(str, outs))}" if outs else
                  f"flooded to no port: no other port is up, floods and is a member of VLAN {vlan}")
            result = f"{why}; {to}"
            note = isolation.flood_note(vlan, primary, self.policies)
            if note:
                result += f" ({note})"
            refused = self.isolated_from(in_port, vlan)
            if refused:
                result += "; not to " + "; ".join(
                    f"port {p} ({isolation.describe(w, in_port, p, vlan, primary, self.policies)})" for p, w in refused)
                detail["isolated_from"] = [p for p, _ in refused]
        else:
            detail["lookup"] = "hit"
            detail["dst_port"] = e.port
            if r is Reason.DROP_SAME_PORT:
                result = f"{mac} is on the ingress port {in_port} (VLAN {vlan}): dropped"
            elif r is Reason.DROP_EGRESS_DOWN:
                result = f"{mac} is on port {e.port} (VLAN {vlan}), which is down: dropped"
            elif r in (Reason.DROP_ISOLATED, Reason.DROP_PRIVATE_VLAN):
                result = (f"{mac} is on port {e.port} (VLAN {fid}); "
                          f"{isolation.describe(r, in_port, e.port, vlan, primary, self.policies)}: dropped")
            else:
                result = f"{mac} is on port {e.port} (VLAN {vlan}): forwarded"
        m = d.mirror
        if m is not None:
            detail["mirrored_to"] = list(m.copies)
        report.append(TraceStep("decide", result, r, detail))
        n_forwarded = len(outs) - (len(m.copies) if m is not None else 0)
        for i, port in enumerate(outs):
            edit = d.edits[i] if d.edits is not None else EDIT_KEEP
            what = {EDIT_KEEP: "leaves as it came", EDIT_PUSH: f"leaves tagged VLAN {vlan} (tag pushed)",
                    EDIT_POP: "leaves untagged (tag popped)",
                    EDIT_RETAG: f"leaves tagged VLAN {vlan} (priority tag rewritten)"}[edit]
            step_detail: dict[str, Any] = {"port": port, "edit": _EDIT_NAMES[edit], "vlan": vlan}
            if m is not None and i >= n_forwarded:
                step_detail["mirrored"] = True
                report.append(TraceStep("egress", f"mirrored to port {port} ({_mirror_why(m)}): {what}",
                                        detail=step_detail))
            else:
                report.append(TraceStep("egress", f"port {port}: {what}", detail=step_detail))
        if m is not None:
            for port in m.dests:
                if port not in m.copies:
                    report.append(TraceStep("egress", f"port {port} gets it already: no mirror copy "
                                            f"({_mirror_why(m)})", detail={"port": port, "mirrored": False}))


def _mirror_why(m: Mirror) -> str:
    names = ", ".join(map(str, m.sources))
    return f"port mirroring: {names} {'is a source' if len(m.sources) == 1 else 'are sources'}"


def acl_text(port: PortId, v: Verdict) -> str:
    """Which rule of `port` denies a frame, for `trace`: "ACL #3 on port vm2 (out, deny remote
    10.0.0.0/8) — most specific match"."""
    assert v.deny is not None
    return f"ACL #{v.deny.id} on port {port} ({v.deny.describe()}) — {v.why}"


def _tag_text(buf: bytes, offset: int) -> str:
    h = parse_header(buf, offset)
    if h is None:
        return "truncated VLAN tag"
    if not h.tpid:
        return "untagged"
    kind = "802.1ad" if h.tpid == TPID_8021AD else "802.1Q"
    return f"{kind} tag VID {h.vid}" + ("" if h.vid else " (priority tag)")


def _parse_step(buf: bytes, offset: int, reason: Reason | None = None) -> TraceStep:
    """What the header says (source, destination, tag); with `reason` the parse stopped the frame."""
    h = parse_header(buf, offset)
    src, dst = format_mac(bytes(buf[offset + 6:offset + 12])), format_mac(bytes(buf[offset:offset + 6]))
    tag = _tag_text(buf, offset)
    result = f"{src} → {dst}, {tag}"
    if reason is not None:
        result = f"malformed: {result}"
    return TraceStep("parse", result, reason, {"src": src, "dst": dst, "vid": h.vid if h is not None and h.tpid
                                               else None, "length": len(buf) - offset})


def _report_drop(report: list[TraceStep], buf: bytes, offset: int, why: str, reason: Reason,
                 detail: Mapping[str, Any] | None = None) -> None:
    """A frame stopped at ingress: what it was, then why."""
    report.append(_parse_step(buf, offset))
    report.append(TraceStep("ingress", f"{why}: dropped", reason, detail or {}))


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


__all__ = ["Decision", "Mirror", "EDIT_KEEP", "EDIT_POP", "EDIT_PUSH", "EDIT_RETAG", "SwitchCore", "TraceStep",
           "egress_frame", "TPID_8021Q", "TPID_8021AD"]

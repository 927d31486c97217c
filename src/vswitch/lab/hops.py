"""Observed packet paths: capture records + the switch's decisions → numbered hops, per echo.

Owns: the pure part of `lab trace` — matching what was captured to one ping (ICMP id + seq) and
to its ARP exchange (requests for the pinged address), ordering it by time, turning each
observation into a hop sentence, merging a physical switch's in/out port captures into one hop,
noticing floods, and saying what was *not* observed and where an unanswered ARP request stopped.
No I/O here (records come in as data), so it is tested without root.

Invariants:
- Every hop comes from one observation (a capture on a link, or one switch decision); nothing is
  added from the topology. A decision hop names the path that decided (`FrameEvent.path`: the
  Python datapath or the kernel fast path). A physical-switch hop merges only captures made in that switch's
  namespace; a switch hop only says what the switch reported (ports, reason).
- Hops are numbered in time order (`_number`, for an echo and for the ARP exchange alike), whatever
  order the captures and switches delivered them in; at equal times a request's hop comes before a
  reply's, and a switch decision gives two hops: arrival on its port, then the decision.
- The sentence saying where an ARP request stopped names only what a switch reported (its decision,
  the VLAN it classified the frame to, the VLAN mode of the destination's port); the destination's
  port is the one the lab says it attached the node to.
Must not touch: sockets, namespaces, the switch itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vswitch.control.model import FrameEvent
from vswitch.core.reasons import Reason

ECHO_REQUEST = 8
ECHO_REPLY = 0
ETH_P_ARP = 0x0806
ARP_REQUEST = 1
ARP_REPLY = 2
#: kinds of capture point (the lab builder's vocabulary)
PHYSICAL_NIC = "physical-nic"
PHYSICAL_SWITCH_PORT = "physical-switch-port"


@dataclass(frozen=True)
class CaptureRecord:
    """One ICMPv4 echo frame seen on one link."""

    t: float                # CLOCK_REALTIME seconds (kernel timestamp)
    node: str
    netns: str
    ifname: str
    label: str
    kind: str
    direction: str          # "out": left through the link; "in": arrived on it
    pkttype: str            # host | broadcast | multicast | otherhost | outgoing
    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    icmp_type: int          # 8 echo request, 0 echo reply
    icmp_id: int
    icmp_seq: int

    @property
    def what(self) -> str:
        return "echo request" if self.icmp_type == ECHO_REQUEST else "echo reply"


@dataclass(frozen=True)
class ArpRecord:
    """One ARP (Ethernet/IPv4) frame seen on one link; fields as in `CaptureRecord`."""

    t: float
    node: str
    netns: str
    ifname: str
    label: str
    kind: str
    direction: str
    pkttype: str
    src_mac: str
    dst_mac: str
    op: int                 # 1 request, 2 reply
    sender_ip: str
    target_ip: str

    @property
    def what(self) -> str:
        return "ARP request" if self.op == ARP_REQUEST else "ARP reply"


@dataclass(frozen=True)
class SwitchPortMap:
    """What a switch reported about its ports: port name → the kernel link it moves frames on."""

    switch: str
    node: str
    links: Mapping[str, str]
    #: port name → its VLAN mode as the switch reports it ("access 20", "trunk ...")
    vlan_modes: Mapping[str, str] = field(default_factory=dict)

    def port_of(self, ifname: str) -> str | None:
        return next((p for p, link in self.links.items() if link == ifname), None)


def link_text(ifname: str, label: str, kind: str) -> str:
    """'eth1 (physical NIC)': the lab's label when it already names the link, else link + label."""
    if label and ifname in label:
        return label
    return f"{ifname} ({label or kind})"


def _short_reason(reason: str) -> tuple[str, str]:
    """('known unicast', full explanation) for a Reason name; unknown names pass through."""
    try:
        value = Reason[reason].value
    except KeyError:
        return reason.lower().replace("_", " "), reason
    return value.split(":")[0], value


def _capture_hop(r: CaptureRecord | ArpRecord, ports: Sequence[SwitchPortMap]) -> dict[str, Any]:
    link = link_text(r.ifname, r.label, r.kind)
    if r.kind == PHYSICAL_NIC:
        owner = next(((m.switch, m.port_of(r.ifname)) for m in ports
                      if m.node == r.node and m.port_of(r.ifname)), None)
        if r.direction == "out":
            who = f"switch {owner[0]} port {owner[1]}" if owner else r.node
            text = f"{who} → {link}: sent on the wire"
        else:
            text = f"wire → {link}: arrived"
    elif r.direction == "out":
        text = f"{r.node} stack → {link}: {r.what} sent"
    elif r.pkttype == "otherhost":
        text = f"{link} on {r.node}: a flooded copy arrived, not addressed to {r.node} (its stack drops it)"
    else:
        text = f"{link} → {r.node} stack: {r.what} received"
    return {"t": r.t, "source": "capture", "node": r.node, "link": r.ifname, "kind": r.kind, "label": r.label,
            "direction": r.direction, "pkttype": r.pkttype, "src_mac": r.src_mac, "dst_mac": r.dst_mac,
            "text": text}


def _physical_switch_hop(visit: Sequence[CaptureRecord | ArpRecord]) -> dict[str, Any]:
    node = visit[0].node
    ins = [r.ifname for r in visit if r.direction == "in"]
    outs = [r.ifname for r in visit if r.direction == "out"]
    parts = [f"physical switch {node}:"]
    if ins:
        parts.append(f"in port {', '.join(ins)}")
    if len(outs) > 1:
        parts.append(f"→ flooded out ports {', '.join(outs)}")
    elif outs:
        parts.append(f"→ out port {outs[0]}")
    else:
        parts.append("→ no output observed")
    return {"t": visit[0].t, "source": "capture", "node": node, "kind": PHYSICAL_SWITCH_PORT,
            "label": visit[0].label, "in_ports": ins, "out_ports": outs, "flooded": len(outs) > 1,
            "links": [r.ifname for r in visit], "text": " ".join(parts)}


def _switch_hops(ev: FrameEvent, ports: Mapping[str, SwitchPortMap],
                 captured: set[tuple[str, str]]) -> list[dict[str, Any]]:
    sw = ev.switch
    pm = ports.get(sw)
    in_port = ev.in_port
    out_ports = list(ev.out_ports)
    in_link = pm.links.get(in_port) if pm else None
    short, explanation = _short_reason(ev.reason)
    base = {"t": ev.t, "source": "switch", "switch": sw, "node": pm.node if pm else None,
            "in_port": in_port, "reason": ev.reason, "vlan": ev.vlan, "src_mac": ev.src, "dst_mac": ev.dst}
    if in_link and pm and (pm.node, in_link) in captured:
        arrive_text = f"{in_link} → switch {sw} port {in_port}"
    elif in_link and in_link.startswith("/"):  # a QEMU guest's socket port
        arrive_text = f"frame in at switch {sw} port {in_port} (from the QEMU guest on socket {in_link})"
    elif in_link:  # e.g. a VM's TAP, moved to the VM's namespace and renamed there after the switch made it
        arrive_text = f"frame in at switch {sw} port {in_port} (the switch's link {in_link})"
    else:
        arrive_text = f"frame in at switch {sw} port {in_port}"
    arrive = dict(base, step="arrive", link=in_link, text=arrive_text)
    who = f"switch {sw} ({ev.path})"  # which datapath decided: "python" or "kernel fast path"
    if not out_ports and ev.reason.startswith("FLOOD_"):
        text = f"{who}: {short}, but no other port in VLAN {ev.vlan} — not sent anywhere ({ev.reason})"
    elif not out_ports:
        text = f"{who}: dropped — {explanation} ({ev.reason})"
    elif len(out_ports) == 1:
        text = f"{who}: {short} → port {out_ports[0]} ({ev.reason})"
    else:
        text = f"{who}: {short} → flooded to ports {', '.join(out_ports)} ({ev.reason})"
    decide = dict(base, step="decide", out_ports=out_ports, flooded=len(out_ports) > 1, explanation=explanation,
                  path=ev.path, text=text)
    return [arrive, decide]


def _message_hops(records: Sequence[CaptureRecord | ArpRecord], events: Sequence[FrameEvent],
                  ports: Sequence[SwitchPortMap], captured: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Hops of one frame's journey (the request, or the reply), in time order."""
    by_switch = {m.switch: m for m in ports}
    items: list[tuple[float, int, list[dict[str, Any]]]] = []
    visits: dict[str, list[CaptureRecord | ArpRecord]] = {}
    visit_slots: list[tuple[float, int, list[CaptureRecord | ArpRecord]]] = []
    order = 0
    for r in sorted(records, key=lambda r: r.t):
        order += 1
        if r.kind == PHYSICAL_SWITCH_PORT:
            cur = visits.get(r.node)
            if cur is None or r.direction == "in":
                cur = [r]
                visits[r.node] = cur
                visit_slots.append((r.t, order, cur))
            else:
                cur.append(r)
            continue
        items.append((r.t, order, [_capture_hop(r, ports)]))
    for ev in events:
        order += 1
        items.append((ev.t, order, _switch_hops(ev, by_switch, captured)))
    for t, o, visit in visit_slots:
        items.append((t, o, [_physical_switch_hop(visit)]))
    items.sort(key=lambda i: (i[0], i[1]))
    return [hop for _, _, hops in items for hop in hops]


def _number(groups: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """All hops of `groups` in time order, numbered from 1, with `dt_ms` since the first.

    Equal times keep the groups' order (a request before its reply) and each group's own order
    (a switch's arrival before its decision)."""
    ordered = sorted(((h["t"], g, i, h) for g, hops in enumerate(groups) for i, h in enumerate(hops)),
                     key=lambda x: x[:3])
    t0 = ordered[0][0] if ordered else 0.0
    out = []
    for n, (t, _, _, h) in enumerate(ordered, 1):
        h["n"] = n
        h["dt_ms"] = round((t - t0) * 1000, 3)
        out.append(h)
    return out


def _signature(hops: Iterable[Mapping[str, Any]]) -> tuple[Any, ...]:
    keys = ("source", "node", "link", "direction", "switch", "step", "in_port", "reason", "pkttype")
    return tuple((tuple(h.get(k) for k in keys), tuple(h.get("out_ports") or ()), tuple(h.get("links") or ()))
                 for h in hops)


def build_echoes(records: Iterable[CaptureRecord], events: Iterable[FrameEvent], *, icmp_id: int,
                 seqs: Sequence[int], ports: Sequence[SwitchPortMap], points: Sequence[Any] = (),
                 watched: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One entry per echo sequence number: its hops numbered in time order (`hops`; the same hops split
    into `request` and `reply`, each hop's `message` saying which), and what was not seen.

    `records` and `events` (the switches' `watch` answers) may include unrelated traffic; only ICMP echo
    frames with `icmp_id` count.
    `points` (objects with node/ifname/label/kind) and `watched` (switch names) let it list where
    nothing of this echo was observed.
    """
    mine = [r for r in records if r.icmp_id == icmp_id]
    evs = [e for e in events if e.icmp is not None and e.icmp.id == icmp_id]
    echoes: list[dict[str, Any]] = []
    capture_links = {(p.node, p.ifname) for p in points}
    seen_sigs: dict[tuple[Any, ...], int] = {}
    for seq in seqs:
        parts: dict[str, list[dict[str, Any]]] = {}
        for kind, icmp_type in (("request", ECHO_REQUEST), ("reply", ECHO_REPLY)):
            recs = [r for r in mine if r.icmp_seq == seq and r.icmp_type == icmp_type]
            es = [e for e in evs if e.icmp is not None and e.icmp.seq == seq and e.icmp.type == icmp_type]
            parts[kind] = _message_hops(recs, es, ports, capture_links)
        for kind in ("request", "reply"):
            for h in parts[kind]:
                h["message"] = kind
        hops = _number([parts["request"], parts["reply"]])
        seen_links = {(r.node, r.ifname) for r in mine if r.icmp_seq == seq}
        seen_switches = {e.switch for e in evs if e.icmp is not None and e.icmp.seq == seq}
        not_seen = [{"node": p.node, "link": p.ifname, "label": p.label, "kind": p.kind}
                    for p in points if (p.node, p.ifname) not in seen_links]
        sig = _signature(parts["request"] + parts["reply"])
        echoes.append({
            "seq": seq, "hops": hops, "request": parts["request"], "reply": parts["reply"],
            "request_observed": bool(parts["request"]), "reply_observed": bool(parts["reply"]),
            "not_seen_at": not_seen,
            "switches_without_decision": [s for s in watched if s not in seen_switches],
            "same_path_as": seen_sigs.get(sig) if parts["request"] else None,
        })
        seen_sigs.setdefault(sig, seq)
    return echoes


def build_arp(records: Iterable[ArpRecord], events: Iterable[FrameEvent], *, src: str, dst: str, dst_ip: str,
              ports: Sequence[SwitchPortMap], points: Sequence[Any] = (),
              dst_port: tuple[str, str] | None = None) -> dict[str, Any]:
    """How `src` asked for `dst_ip`'s MAC: the hops of its first ARP request and of the answer, numbered in
    time order; `requests_sent` (captured leaving `src`), `answered`, and — when no answer was observed —
    `stopped`, one sentence saying where the request stopped (see `_arp_stopped`).

    A request is told apart by its target address and by the MAC it left `src` with; a switch decision
    by ARP's ethertype and that MAC (a decision carries no ARP fields). `dst_port` is the (switch, port)
    the lab attached `dst` to, when it knows."""
    arps = list(records)
    sent = sorted((r for r in arps if r.op == ARP_REQUEST and r.target_ip == dst_ip and r.node == src
                   and r.direction == "out"), key=lambda r: r.t)
    macs = {r.src_mac.lower() for r in sent}
    # the first request's journey ends where src sent its next one (the kernel retries every second)
    t_end = sent[1].t if len(sent) > 1 else float("inf")
    reqs = [r for r in arps if r.op == ARP_REQUEST and r.target_ip == dst_ip and r.src_mac.lower() in macs]
    replies = [r for r in arps if r.op == ARP_REPLY and r.sender_ip == dst_ip and r.dst_mac.lower() in macs]
    arp_evs = [e for e in events if e.ethertype == ETH_P_ARP]
    req_evs = [e for e in arp_evs if (e.src or "").lower() in macs]
    rep_evs = [e for e in arp_evs if (e.dst or "").lower() in macs and (e.src or "").lower() not in macs]
    captured = {(p.node, p.ifname) for p in points}
    first_reqs = [r for r in reqs if r.t < t_end]
    first_evs = [e for e in req_evs if e.t < t_end]
    request = _message_hops(first_reqs, first_evs, ports, captured)
    reply = _message_hops([r for r in replies if r.t < t_end], [e for e in rep_evs if e.t < t_end], ports, captured)
    for kind, hops in (("request", request), ("reply", reply)):
        for h in hops:
            h["message"] = kind
    answered = bool(replies or rep_evs)
    stopped = None
    if sent and not answered:
        stopped = _arp_stopped(first_reqs, first_evs, request, src=src, dst=dst, ports=ports, dst_port=dst_port)
    return {"target_ip": dst_ip, "requests_sent": len(sent), "answered": answered, "stopped": stopped,
            "hops": _number([request, reply]), "request": request, "reply": reply}


def _vlan_words(mode: str) -> str:
    """'VLAN 20' for an access port's mode 'access 20'; the mode itself otherwise."""
    kind, _, rest = mode.partition(" ")
    return f"VLAN {rest}" if kind == "access" and rest.isdigit() else f"VLANs {mode}"


def _arp_stopped(reqs: Sequence[ArpRecord], evs: Sequence[FrameEvent], hops: Sequence[Mapping[str, Any]], *,
                 src: str, dst: str, ports: Sequence[SwitchPortMap], dst_port: tuple[str, str] | None) -> str:
    """Where an unanswered ARP request stopped: the decision of `dst`'s switch on it (else the last
    decision observed), compared with the VLAN mode that switch reports for `dst`'s port."""
    dst_sw, dst_pt = dst_port if dst_port else (None, None)
    decisions = sorted(evs, key=lambda e: e.t)
    at_dst = [e for e in decisions if e.switch == dst_sw]
    ev = at_dst[0] if at_dst else (decisions[-1] if decisions else None)
    if ev is None:
        last = hops[-1]["text"] if hops else "nowhere"
        return f"the ARP request from {src} was last seen at: {last}; no switch decision on it was observed"
    sw = ev.switch
    if dst_pt is not None and sw == dst_sw and dst_pt in ev.out_ports:
        if any(r.node == dst and r.direction == "in" for r in reqs):
            return (f"switch {sw} sent the ARP request from {src} out port {dst_pt}; {dst} received it, "
                    f"but no ARP reply from {dst} was observed")
        return f"switch {sw} sent the ARP request from {src} out port {dst_pt}, but it was not seen arriving at {dst}"
    short, explanation = _short_reason(ev.reason)
    out = list(ev.out_ports)
    verb = "dropped" if not out else ("flooded" if ev.reason.startswith("FLOOD_") else "forwarded")
    sent_to = f" (sent to port{'s' if len(out) > 1 else ''} {', '.join(out)})" if out else ""
    if ev.vlan is None:
        return f"switch {sw} dropped the ARP request from {src} — {explanation} ({ev.reason})"
    pm = next((m for m in ports if m.switch == sw), None)
    mode = pm.vlan_modes.get(dst_pt) if pm is not None and dst_pt is not None and sw == dst_sw else None
    if mode is not None and mode != f"access {ev.vlan}":
        return (f"switch {sw} {verb} the ARP request from {src} — VLAN {ev.vlan}, no member port reaches {dst} "
                f"in {_vlan_words(mode)}{sent_to}")
    towards = (f"; not out port {dst_pt} towards {dst}" if mode is not None
               else f"; no ARP reply from {dst} was observed")
    return f"switch {sw} {verb} the ARP request from {src} — VLAN {ev.vlan}, {short} ({ev.reason}){sent_to}{towards}"


def record_to_dict(r: CaptureRecord | ArpRecord) -> dict[str, Any]:
    return asdict(r)

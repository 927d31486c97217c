"""Observed packet paths: capture records + the switch's decisions → numbered hops, per echo.

Owns: the pure part of `lab trace` — matching what was captured to one ping (ICMP id + seq),
ordering it by time, turning each observation into a hop sentence, merging a physical switch's
in/out port captures into one hop, noticing floods, and saying what was *not* observed.
No I/O here (records come in as data), so it is tested without root.

Invariants:
- Every hop comes from one observation (a capture on a link, or one switch decision); nothing is
  added from the topology. A physical-switch hop merges only captures made in that switch's
  namespace; a switch hop only says what the switch reported (ports, reason).
- Within one echo the request's hops come before the reply's; inside each, hops are in time order
  (a switch decision gives two hops with the same time: arrival on its port, then the decision).
Must not touch: sockets, namespaces, the switch itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from vswitch.control.model import FrameEvent
from vswitch.core.reasons import Reason

ECHO_REQUEST = 8
ECHO_REPLY = 0
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


@dataclass(frozen=True)
class SwitchPortMap:
    """What a switch reported about its ports: port name → the kernel link it moves frames on."""

    switch: str
    node: str
    links: Mapping[str, str]

    def port_of(self, ifname: str) -> str | None:
        return next((p for p, link in self.links.items() if link == ifname), None)


def link_text(ifname: str, label: str, kind: str) -> str:
    """'eth1 (physical NIC)': the lab's label when it already names the link, else link + label."""
    if label and ifname in label:
        return label
    return f"{ifname} ({label or kind})"


def _what(icmp_type: int) -> str:
    return "echo request" if icmp_type == ECHO_REQUEST else "echo reply"


def _short_reason(reason: str) -> tuple[str, str]:
    """('known unicast', full explanation) for a Reason name; unknown names pass through."""
    try:
        value = Reason[reason].value
    except KeyError:
        return reason.lower().replace("_", " "), reason
    return value.split(":")[0], value


def _capture_hop(r: CaptureRecord, ports: Sequence[SwitchPortMap]) -> dict[str, Any]:
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
        text = f"{r.node} stack → {link}: {_what(r.icmp_type)} sent"
    elif r.pkttype == "otherhost":
        text = f"{link} on {r.node}: a flooded copy arrived, not addressed to {r.node} (its stack drops it)"
    else:
        text = f"{link} → {r.node} stack: {_what(r.icmp_type)} received"
    return {"t": r.t, "source": "capture", "node": r.node, "link": r.ifname, "kind": r.kind, "label": r.label,
            "direction": r.direction, "pkttype": r.pkttype, "src_mac": r.src_mac, "dst_mac": r.dst_mac,
            "text": text}


def _physical_switch_hop(visit: list[CaptureRecord]) -> dict[str, Any]:
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
    if not out_ports:
        text = f"switch {sw}: dropped — {explanation} ({ev.reason})"
    elif len(out_ports) == 1:
        text = f"switch {sw}: {short} → port {out_ports[0]} ({ev.reason})"
    else:
        text = f"switch {sw}: {short} → flooded to ports {', '.join(out_ports)} ({ev.reason})"
    decide = dict(base, step="decide", out_ports=out_ports, flooded=len(out_ports) > 1, explanation=explanation,
                  text=text)
    return [arrive, decide]


def _message_hops(records: Sequence[CaptureRecord], events: Sequence[FrameEvent],
                  ports: Sequence[SwitchPortMap], captured: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Hops of one frame's journey (the request, or the reply), in time order."""
    by_switch = {m.switch: m for m in ports}
    items: list[tuple[float, int, list[dict[str, Any]]]] = []
    visits: dict[str, list[CaptureRecord]] = {}
    visit_slots: list[tuple[float, int, list[CaptureRecord]]] = []
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


def _signature(hops: Iterable[Mapping[str, Any]]) -> tuple[Any, ...]:
    keys = ("source", "node", "link", "direction", "switch", "step", "in_port", "reason", "pkttype")
    return tuple((tuple(h.get(k) for k in keys), tuple(h.get("out_ports") or ()), tuple(h.get("links") or ()))
                 for h in hops)


def build_echoes(records: Iterable[CaptureRecord], events: Iterable[FrameEvent], *, icmp_id: int,
                 seqs: Sequence[int], ports: Sequence[SwitchPortMap], points: Sequence[Any] = (),
                 watched: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One entry per echo sequence number: request hops, reply hops (numbered on), and what was not seen.

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
        n = 0
        t0 = min((h["t"] for hs in parts.values() for h in hs), default=0.0)
        for kind in ("request", "reply"):
            for h in parts[kind]:
                n += 1
                h["n"] = n
                h["dt_ms"] = round((h["t"] - t0) * 1000, 3)
        seen_links = {(r.node, r.ifname) for r in mine if r.icmp_seq == seq}
        seen_switches = {e.switch for e in evs if e.icmp is not None and e.icmp.seq == seq}
        not_seen = [{"node": p.node, "link": p.ifname, "label": p.label, "kind": p.kind}
                    for p in points if (p.node, p.ifname) not in seen_links]
        sig = _signature(parts["request"] + parts["reply"])
        echoes.append({
            "seq": seq, "request": parts["request"], "reply": parts["reply"],
            "request_observed": bool(parts["request"]), "reply_observed": bool(parts["reply"]),
            "not_seen_at": not_seen,
            "switches_without_decision": [s for s in watched if s not in seen_switches],
            "same_path_as": seen_sigs.get(sig) if parts["request"] else None,
        })
        seen_sigs.setdefault(sig, seq)
    return echoes


def record_to_dict(r: CaptureRecord) -> dict[str, Any]:
    return asdict(r)

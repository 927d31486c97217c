"""`lab trace`: send pings between two lab nodes and observe the path they take, hop by hop.

Owns the orchestration: ask each switch for its ports (port → link), start packet capture on
every capture point of the lab and a `watch` of every switch, run the real `ping` inside the
source node's namespace with an ICMP identifier of our own, stop, and hand everything to
`hops.build_echoes` (the echoes) and `hops.build_arp` (the ARP exchange before them); when ping
got no reply, the result carries ping's own words (`ping_error`). The lab is anything shaped like
`TraceableLab` (the builder's `Lab`, or a test's hand-made lab); switches are reached through a
`SwitchApi` the caller supplies (`api_for(socket_path)`, the lab's `ApiFactory`), so this module
does not know whether that is a REST client or an in-process manager.

Invariants:
- Capture and watches start before the first ping, and stop only after ping has exited (its last
  reply or timeout) plus a short grace; nothing is left running when `trace` returns or raises.
- What cannot be observed (a link that could not be captured on, a switch that could not be
  watched, decisions a kernel fast path lost) is reported in `errors`, never filled in from the
  topology.
- A request that cannot be traced (same node twice, unknown node, count out of range) is refused
  with TraceError before anything is started.
Must not touch: the topology (it only reads the lab's capture points, switches and which port it gave a node).
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from vswitch.control.api import SwitchApi
from vswitch.control.model import WATCH_MAX_EVENTS, FrameEvent
from vswitch.lab.capture import Capture, CapturePointLike, run_in_netns
from vswitch.lab.hops import ArpRecord, CaptureRecord, SwitchPortMap, build_arp, build_echoes, record_to_dict

INTERVAL_S = 0.2
REPLY_TIMEOUT_S = 1
#: longest wait for every switch's watch to be recording (the daemon says so) before the first ping
WATCH_START_TIMEOUT_S = 5.0
WATCH_START_POLL_S = 0.02
GRACE_S = 0.2
#: most decisions one watch records (other traffic counts too); reaching it is reported
WATCH_LIMIT = WATCH_MAX_EVENTS


class LabSwitchLike(Protocol):
    name: str
    node: str
    type: str
    socket: str


class TraceableLab(Protocol):
    """What `trace` needs from a lab."""

    name: str

    def netns(self, node: str) -> str: ...

    def address(self, node: str) -> str: ...

    def capture_points(self) -> Sequence[CapturePointLike]: ...

    def switches(self) -> Sequence[LabSwitchLike]: ...


class TraceError(Exception):
    """The trace could not run at all (unknown node, no ping, ...)."""


def _watch_thread(api: SwitchApi, switch: str, seconds: float, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            out["events"] = api.watch(switch, seconds, WATCH_LIMIT)
        except Exception as exc:  # reported in the result: this switch's decisions were not observed
            out["error"] = f"switch {switch}: decisions not observed: {exc}"
    th = threading.Thread(target=run, name=f"watch-{switch}", daemon=True)
    th.start()
    return th


def _watching(api: SwitchApi, switch: str) -> int:
    try:
        return api.get_switch(switch).watches
    except Exception:  # the watch itself will report what is wrong with this switch
        return 0


def _events_lost(api: SwitchApi, switch: str) -> int:
    """Decisions the switch's kernel fast path could not report so far (its event ring was full)."""
    try:
        return api.get_switch(switch).watch_events_lost
    except Exception:  # the watch reports what is wrong with this switch
        return 0


def _wait_recording(apis: Sequence[tuple[LabSwitchLike, SwitchApi]],
                    watches: Sequence[tuple[str, threading.Thread, dict[str, Any]]],
                    before: dict[str, int]) -> list[str]:
    """Wait until each switch's daemon counts one more watch than `before` (ours is recording) or that
    watch has ended (refused); what is not recording after WATCH_START_TIMEOUT_S is returned as errors."""
    waiting = {name: (api, box) for (sw, api), (name, _, box) in zip(apis, watches, strict=True)}
    deadline = time.monotonic() + WATCH_START_TIMEOUT_S
    while waiting and time.monotonic() < deadline:
        for name, (api, box) in list(waiting.items()):
            if box or _watching(api, name) > before[name]:
                del waiting[name]
        if waiting:
            time.sleep(WATCH_START_POLL_S)  # the daemon has no "watch started" notice: ask again
    return [f"switch {name}: its watch was not recording after {WATCH_START_TIMEOUT_S:g} s; "
            "the first frames may be missing from it" for name in waiting]


def trace(lab: TraceableLab, src: str, dst: str, *, count: int = 3,
          api_for: Callable[[str], SwitchApi] | None = None,
          icmp_id: int | None = None) -> dict[str, Any]:
    """Ping `dst` from `src` `count` times and return what was observed (see `hops.build_echoes`).

    Raises TraceError, before starting anything, for `src` == `dst`, a `count` outside 1-20, a node
    the lab does not have, a QEMU guest as `src`; and when ping is missing or does not finish."""
    if src == dst:
        raise TraceError(f"--from and --to are the same node ({src!r}): a trace needs two nodes; "
                         "pick another node for --to")
    if not 1 <= count <= 20:
        raise TraceError(f"--count must be 1-20, got {count}")
    try:
        src_ns = lab.netns(src)
        dst_ip = lab.address(dst).split("/")[0]
    except Exception as exc:  # the lab's own refusal (unknown node, no address) says what is wrong
        raise TraceError(str(exc) if lab.name in str(exc) else f"lab {lab.name}: {exc}") from None
    guest_of = getattr(lab, "guest", None)
    if guest_of is not None and guest_of(src) is not None:
        raise TraceError(f"{src} is a QEMU guest: a trace from it is not supported (its ping would run inside "
                         f"QEMU, out of reach of the captures); trace towards it: --from <node> --to {src}")
    icmp_id = icmp_id if icmp_id is not None else random.randint(1, 0xFFFF)
    errors: list[str] = []

    ports: list[SwitchPortMap] = []
    apis: list[tuple[LabSwitchLike, SwitchApi]] = []
    for sw in lab.switches() if api_for is not None else ():
        try:
            api = api_for(sw.socket)
            listed = api.list_ports(sw.name)
        except Exception as exc:
            errors.append(f"switch {sw.name}: cannot read its ports: {exc}")
            continue
        ports.append(SwitchPortMap(sw.name, sw.node, {p.name: p.target for p in listed},
                                   {p.name: p.vlan_mode for p in listed}))
        apis.append((sw, api))

    points = list(lab.capture_points())
    watch_s = WATCH_START_TIMEOUT_S + count * INTERVAL_S + REPLY_TIMEOUT_S + 1.0
    capture = Capture(points).start()
    watches: list[tuple[str, threading.Thread, dict[str, Any]]] = []
    ping_out = ""
    ping_rc: int | None = None
    try:
        watching_before = {sw.name: _watching(api, sw.name) for sw, api in apis}
        lost_before = {sw.name: _events_lost(api, sw.name) for sw, api in apis}
        for sw, api in apis:
            box: dict[str, Any] = {}
            watches.append((sw.name, _watch_thread(api, sw.name, watch_s, box), box))
        errors += _wait_recording(apis, watches, watching_before)
        argv = ["ping", "-n", "-c", str(count), "-i", str(INTERVAL_S), "-W", str(REPLY_TIMEOUT_S),
                "-e", str(icmp_id), dst_ip]
        try:
            proc = run_in_netns(src_ns, argv, timeout=count * INTERVAL_S + REPLY_TIMEOUT_S + 10)
        except FileNotFoundError:
            raise TraceError("`ping` is not installed (Debian: apt-get install iputils-ping)") from None
        except subprocess.TimeoutExpired:
            raise TraceError(f"ping {dst_ip} from {src} did not finish in time") from None
        ping_out = proc.stdout + proc.stderr
        ping_rc = proc.returncode
        time.sleep(GRACE_S)
    finally:
        captured = capture.stop()
        for _, th, _ in watches:
            th.join(timeout=watch_s + 15)
    errors += capture.errors
    for sw, api in apis:
        lost = _events_lost(api, sw.name) - lost_before.get(sw.name, 0)
        if lost > 0:
            errors.append(f"switch {sw.name}: its kernel fast path could not report {lost} decisions while "
                          "tracing (its event ring was full); some hops may be missing")
    events: list[FrameEvent] = []
    for name, _, box in watches:
        if "error" in box:
            errors.append(box["error"])
        elif len(box.get("events", [])) >= WATCH_LIMIT:
            errors.append(f"switch {name}: more than {WATCH_LIMIT} frames while tracing; later decisions "
                          "not observed")
        events += box.get("events", [])

    sent, received = _ping_counts(ping_out)
    seqs = list(range(1, count + 1))
    records = [r for r in captured if isinstance(r, CaptureRecord)]
    arp_records = [r for r in captured if isinstance(r, ArpRecord)]
    echoes = build_echoes(records, events, icmp_id=icmp_id, seqs=seqs, ports=ports, points=points,
                          watched=[name for name, _, box in watches if "error" not in box])
    arp = build_arp(arp_records, events, src=src, dst=dst, dst_ip=dst_ip, ports=ports, points=points,
                    dst_port=_port_of(lab, dst))
    return {
        "lab": lab.name, "from": src, "to": dst, "dst_ip": dst_ip, "icmp_id": icmp_id, "count": count,
        "sent": sent, "received": received, "echoes": echoes, "arp": arp,
        "switch_ports": {m.switch: dict(m.links) for m in ports},
        "capture_points": [{"node": p.node, "netns": p.netns, "link": p.ifname, "label": p.label, "kind": p.kind}
                           for p in points],
        "records": [record_to_dict(r) for r in records if r.icmp_id == icmp_id],
        "arp_records": [record_to_dict(r) for r in arp_records if r.target_ip == dst_ip or r.sender_ip == dst_ip],
        "errors": errors,
        "ping_output": ping_out,
        "ping_error": _ping_error(ping_out) if ping_rc != 0 or received < count else [],
    }


def _port_of(lab: TraceableLab, node: str) -> tuple[str, str] | None:
    """(switch, port) the lab attached `node` to, when the lab says (the builder's Lab does, for VMs)."""
    port_of = getattr(lab, "port_of", None)
    try:
        return port_of(node) if port_of is not None else None
    except Exception:  # not a VM (a host, a server): the ARP sentence then names no port
        return None


def _ping_error(out: str) -> list[str]:
    """ping's own words about a failure: every line but the banner, the replies and the rtt summary."""
    skip = ("PING ", "--- ", "rtt ", "round-trip ")
    return [line.strip() for line in out.splitlines()
            if line.strip() and not line.startswith(skip) and " bytes from " not in line]


def _ping_counts(out: str) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)

"""EventRecorder: what the core saw happen (MACs learned, moved, aged, evicted, refused; ports up
and down), rate-limited and bounded, waiting for the datapath to drain it. Pure: `now` is a parameter.

Invariants:
- Nothing is recorded per frame in the normal case: the MAC table calls in only when an entry is
  created, moves, ages or is evicted, the switch only for a frame from a static MAC on another port
  and for a port's state changing. Explaining a frame (`trace`, a `DryRunFdb`) records nothing.
- Rate-limited by key over windows of ``interval_s`` (10 s): a key's first ``burst`` occurrences
  in a window are events of their own, the rest are folded into one summary event (``count``
  occurrences over ``window_s``) emitted when the window ends (`tick`, or the next occurrence after
  it). A key that had a summary starts its next window already full, so a flap that goes on gives
  exactly one event per key per window; a quiet window forgets the key.
  Keys: a move and a static refusal are per (MAC, VLAN) with a burst of 1 — a MAC flapping between
  two ports 1,000 times a second is one event per 10 s carrying the count. Learned, aged and evicted
  are per port with a burst of `BULK_BURST`: a VM's few MACs show one by one, a network of 8,000
  MACs appearing behind the uplink at once is a few events and one "8,000 more" summary, so it does
  not push every other event out of the daemon's ring. Port up/down are per port, burst `PORT_BURST`.
  A frame a port feature dropped is per (port, reason) with a burst of 1: a rogue DHCP server's first
  offer is an event naming its source, an attack of 50,000 forged frames a second (or a storm over a
  port's storm limit) one event per 10 s with the count (the kernel fast path reports its drops the
  same way, as counts, once a second).
- Bounded: at most ``capacity`` events wait for `drain` and at most ``max_keys`` keys are tracked;
  beyond either an event is dropped and counted in ``dropped`` (drained with the events, so the
  reader is told).
Must not touch: clocks, logging, the control plane's types (it speaks in bytes and port ids).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import NamedTuple

PortId = Hashable

MAC_LEARNED = "mac-learned"
MAC_MOVED = "mac-moved"
MAC_AGED = "mac-aged"
MAC_EVICTED = "mac-evicted"
STATIC_REFUSED = "static-refused"
PORT_UP = "port-up"
PORT_DOWN = "port-down"
#: a port feature (a guard, the MAC spoofing rule, the MAC limit, an ACL …) dropped frames at a port
FRAME_DROPPED = "frame-dropped"
KINDS = (MAC_LEARNED, MAC_MOVED, MAC_AGED, MAC_EVICTED, STATIC_REFUSED, PORT_UP, PORT_DOWN, FRAME_DROPPED)

INTERVAL_S = 10.0
BULK_BURST = 16
PORT_BURST = 8
CAPACITY = 4096
MAX_KEYS = 65536
_FULL = 1 << 62  # `emitted` of a window that folds everything (it follows a summary)


class CoreEvent(NamedTuple):
    """One event as the core records it. `mac` is None in a per-port summary ("N more MACs");
    `count` > 1 (with `window_s`) in a summary; `reason` says why a port went up or down."""

    kind: str
    at: float
    port: PortId
    mac: bytes | None = None
    vlan: int | None = None
    old_port: PortId = None
    count: int = 1
    window_s: float | None = None
    reason: str | None = None


class _Window:
    """One key's current window: when it started, events emitted in it, occurrences folded since,
    and the facts of the last folded one (a summary reports them)."""

    __slots__ = ("kind", "start", "emitted", "folded", "port", "mac", "vlan", "old_port", "reason", "per_mac")

    def __init__(self, kind: str, start: float, per_mac: bool) -> None:
        self.kind = kind
        self.start = start
        self.emitted = 0
        self.folded = 0
        self.per_mac = per_mac
        self.port: PortId = None
        self.mac: bytes | None = None
        self.vlan: int | None = None
        self.old_port: PortId = None
        self.reason: str | None = None


class EventRecorder:
    """The core's events, rate-limited per key and bounded, until `drain`."""

    def __init__(self, *, capacity: int = CAPACITY, interval_s: float = INTERVAL_S, max_keys: int = MAX_KEYS) -> None:
        self.capacity = capacity
        self.interval_s = interval_s
        self.max_keys = max_keys
        #: events waiting for `drain`, oldest first (the datapath drains it after a batch)
        self.out: deque[CoreEvent] = deque()
        #: events lost since the last `drain` (queue full, too many keys)
        self.dropped = 0
        #: the latest `now` seen (events without a frame, like a port going down, are windowed by it)
        self.now = 0.0
        # key → window, oldest window first (a window that restarts moves to the end), so `tick`
        # stops at the first window still open
        self._windows: dict[tuple[object, ...], _Window] = {}

    # -- what the core reports ----------------------------------------------------------------------
    def learned(self, mac: bytes, vlan: int, port: PortId, now: float) -> None:
        self._record((MAC_LEARNED, port), BULK_BURST, False, MAC_LEARNED, now, port, mac, vlan)

    def moved(self, mac: bytes, vlan: int, old_port: PortId, port: PortId, now: float) -> None:
        self._record((MAC_MOVED, mac, vlan), 1, True, MAC_MOVED, now, port, mac, vlan, old_port)

    def aged(self, mac: bytes, vlan: int, port: PortId, now: float) -> None:
        self._record((MAC_AGED, port), BULK_BURST, False, MAC_AGED, now, port, mac, vlan)

    def evicted(self, mac: bytes, vlan: int, port: PortId, now: float | None = None) -> None:
        """An entry pushed out of a full table (`now` None: the latest time seen)."""
        self._record((MAC_EVICTED, port), BULK_BURST, False, MAC_EVICTED, self.now if now is None else now,
                     port, mac, vlan)

    def static_refused(self, mac: bytes, vlan: int, port: PortId, static_port: PortId, now: float) -> None:
        """A frame from `mac` on `port` while it is static on `static_port` (`old_port` of the event)."""
        self._record((STATIC_REFUSED, mac, vlan), 1, True, STATIC_REFUSED, now, port, mac, vlan, static_port)

    def port_state(self, port: PortId, up: bool, reason: str) -> None:
        """A port went up or down, and why ("admin", "link", "failed: …", "reopened")."""
        kind = PORT_UP if up else PORT_DOWN
        self._record((kind, port), PORT_BURST, False, kind, self.now, port, reason=reason)

    def frame_dropped(self, port: PortId, reason: str, mac: bytes | None, vlan: int | None, now: float,
                      count: int = 1) -> None:
        """`count` frames from `port` dropped by a port feature for `reason` (a Reason's label, e.g.
        "drop_dhcp_guard"); `mac`/`vlan` the source and VLAN of the frame (None when not known: the
        kernel fast path reports counts only)."""
        self._record((FRAME_DROPPED, port, reason), 1, False, FRAME_DROPPED, now, port, mac, vlan,
                     reason=reason, n=count)

    # -- time and draining ------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """End the windows that are over: each with folded occurrences gives its summary; a quiet one is forgotten."""
        self.now = max(self.now, now)
        interval = self.interval_s
        due = []
        for key, w in self._windows.items():
            if now - w.start < interval:
                break
            due.append((key, w))
        for key, w in due:
            del self._windows[key]
            if w.folded:
                self._summarise(key, w, now)

    def drain(self) -> tuple[list[CoreEvent], int]:
        """The waiting events, oldest first, and how many were dropped since the last drain; both reset."""
        events = list(self.out)
        self.out.clear()
        dropped, self.dropped = self.dropped, 0
        return events, dropped

    def pending(self) -> tuple[list[CoreEvent], list[tuple[object, ...]]]:
        """What is waiting and which keys have open windows (copies; for tests that must see nothing change)."""
        return list(self.out), [(k, w.start, w.emitted, w.folded) for k, w in self._windows.items()]

    # -- internals ----------------------------------------------------------------------------------------
    def _record(self, key: tuple[object, ...], burst: int, per_mac: bool, kind: str, now: float, port: PortId,
                mac: bytes | None = None, vlan: int | None = None, old_port: PortId = None,
                reason: str | None = None, n: int = 1) -> None:
        """`n` occurrences of `key` at `now` (an event of its own while the window's burst lasts,
        folded into its summary after)."""
        if now > self.now:
            self.now = now
        w = self._windows.get(key)
        if w is not None and now - w.start >= self.interval_s:
            del self._windows[key]
            if w.folded:  # the window's summary, this occurrence folded in
                w.folded += n
                w.port, w.mac, w.vlan, w.old_port, w.reason = port, mac, vlan, old_port, reason
                self._summarise(key, w, now)
                return
            w = None
        if w is None:
            if len(self._windows) >= self.max_keys:
                self.dropped += 1
                return
            w = self._windows[key] = _Window(kind, now, per_mac)
        if w.emitted < burst:
            w.emitted += 1
            self._emit(CoreEvent(kind, now, port, mac, vlan, old_port, n, None, reason))
            return
        w.folded += n
        w.port, w.mac, w.vlan, w.old_port, w.reason = port, mac, vlan, old_port, reason

    def _summarise(self, key: tuple[object, ...], w: _Window, now: float) -> None:
        """Emit `w`'s folded occurrences as one event; the key's next window starts now, already full."""
        self._emit(CoreEvent(w.kind, now, w.port, w.mac if w.per_mac else None, w.vlan if w.per_mac else None,
                             w.old_port, w.folded, now - w.start, w.reason))
        w.start, w.emitted, w.folded = now, _FULL, 0
        self._windows[key] = w

    def _emit(self, event: CoreEvent) -> None:
        if len(self.out) >= self.capacity:
            self.dropped += 1
        else:
            self.out.append(event)

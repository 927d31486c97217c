"""EventLog: the daemon's bounded ring of `SwitchEvent`s, what `vswitch events` reads and follows.

Owns: sequence numbers (one counter per daemon, +1 per event, never reused), wall-clock stamps, the
ring (`EVENTS_RING` events, oldest dropped, each read told how many it missed), the log line of each
event (logger ``vswitch.events``, INFO, one line), and waking readers that wait for the next event.

Two sources: the control plane's own changes (`emit`: configuration, takeover steps, confirm and
revert) and each switch's core events, handed over by its datapath after a batch (`sink`), already
rate-limited and bounded by the core's `EventRecorder` — so a MAC flap costs one line per 10 s.

Invariants: thread-safe (one Condition; a reader waiting for an event holds no lock, and the
datapath thread handing events over waits only for the short critical section, never for a
reader); `read` with a wait returns as soon as a matching event arrives, when the wait is over or
when the log is closed (daemon stopping) — never polls with sleeps.
Must not touch: the datapath, the kernel, HTTP.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from vswitch.control.model import EVENTS_RING, EventKind, EventsPage, SwitchEvent
from vswitch.core.events import CoreEvent
from vswitch.core.mac import format_mac

log = logging.getLogger("vswitch.events")


def _name(port: Hashable) -> str | None:
    return None if port is None else str(port)


def _log(ev: SwitchEvent) -> None:
    # outside the lock: a slow log handler must not hold up the datapath handing events over
    log.info("switch %s: %s [#%d]", ev.switch, ev.summary(), ev.seq)


class EventLog:
    """The ring of a daemon's events. `clock` gives wall-clock seconds (tests inject one)."""

    def __init__(self, capacity: int = EVENTS_RING, clock: Callable[[], float] = time.time) -> None:
        self._ring: deque[SwitchEvent] = deque(maxlen=capacity)
        self._clock = clock
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False

    # -- writing ------------------------------------------------------------------------------------
    def emit(self, switch: str, kind: EventKind, /, *, port: str | None = None, mac: str | None = None,
             vlan: int | None = None, reason: str | None = None, **detail: Any) -> SwitchEvent:
        """Record one control-plane event; `detail` holds its facts (JSON values)."""
        with self._cond:
            ev = self._add(switch, str(kind), port=port, mac=mac, vlan=vlan, reason=reason, detail=detail)
            self._cond.notify_all()
        _log(ev)
        return ev

    def sink(self, switch: Callable[[], str]) -> Callable[[list[CoreEvent], int], None]:
        """The `Datapath.on_events` of a switch whose current name `switch()` gives (it may be renamed)."""
        def take(events: list[CoreEvent], dropped: int) -> None:
            name = switch()
            with self._cond:
                added = [self._add(name, e.kind, port=_name(e.port), mac=format_mac(e.mac) if e.mac else None,
                                   vlan=e.vlan, old_port=_name(e.old_port), reason=e.reason, count=e.count,
                                   window_s=e.window_s) for e in events]
                if dropped:
                    added.append(self._add(name, str(EventKind.EVENTS_DROPPED), count=dropped))
                self._cond.notify_all()
            for ev in added:
                _log(ev)
        return take

    def _add(self, switch: str, kind: str, **facts: Any) -> SwitchEvent:
        self._seq += 1
        ev = SwitchEvent(self._seq, self._clock(), switch, kind, **facts)
        self._ring.append(ev)
        return ev

    # -- reading ------------------------------------------------------------------------------------
    def read(self, switch: str | None, since: int, limit: int, wait_s: float = 0.0) -> EventsPage:
        """The events after sequence `since` (of `switch`, or all when None), oldest first, at most
        `limit`; with `wait_s`, when there are none yet, wait up to that long for one. A `since` past
        the newest event (a reader from before the daemon restarted) reads from the start. The caller
        checked the arguments (`model.check_events_query`)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            if since > self._seq:
                since = 0
            scanned = since
            while True:
                page = self._page(switch, since, scanned, limit)
                if page.events or self._closed:
                    return page
                scanned = self._seq
                left = deadline - time.monotonic()
                if left <= 0:
                    return page
                self._cond.wait_for(lambda seen=scanned: self._seq > seen or self._closed, left)

    def _page(self, switch: str | None, since: int, scanned: int, limit: int) -> EventsPage:
        """Events of `switch` after `since`, looking only at those after `scanned` (earlier ones were
        looked at and did not match)."""
        ring = self._ring
        first = ring[0].seq if ring else self._seq + 1
        missed = max(0, first - since - 1)
        start = max(0, scanned + 1 - first)  # ring[i].seq == first + i: the ring has no gaps
        out: list[SwitchEvent] = []
        for i in range(start, len(ring)):
            ev = ring[i]
            if switch is None or ev.switch == switch:
                out.append(ev)
                if len(out) == limit:
                    return EventsPage(out, ev.seq, self._seq, missed)
        return EventsPage(out, self._seq, self._seq, missed)

    def mentions(self, switch: str) -> bool:
        """Whether an event of `switch` is still in the ring (a deleted switch's events stay readable)."""
        with self._cond:
            return any(ev.switch == switch for ev in self._ring)

    @property
    def latest(self) -> int:
        """The newest sequence number (0 before the first event)."""
        return self._seq

    def close(self) -> None:
        """Wake every waiting reader (they return what they have); later reads do not wait."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

"""The MAC table (FDB): which port each (MAC, VLAN) lives behind.

Invariants:
- Keyed by (MAC, VLAN); a MAC may live on different ports in different VLANs.
- A dynamic entry is alive while ``now - seen <= ageing_s``: still there at exactly T after its
  last frame, gone after (the lookup already ignores it; `expire` removes it).
- At most ``max_entries`` dynamic entries. When full, the least-recently-used dynamic entry of the
  port holding the most entries is evicted (OVS's fair policy), so one noisy port cannot push
  everyone else out.
- Static entries never age, never move, are never evicted and do not count against the capacity.
- A dynamic MAC seen on another port moves at once; the move is counted.
- Entries created, moved, aged out and evicted are told to `events` (an `EventRecorder`, which
  rate-limits and bounds them); refreshing an entry, the per-frame case, records nothing.
- Ports are opaque hashable ids. `now` is a parameter: the table never reads a clock.

Each port keeps its dynamic entries on an intrusive doubly-linked list in last-seen order, so
expiry walks only what expires and eviction pops the front: both O(1) per entry. (An OrderedDict
per port did the same but cost ~100 bytes more per entry: 1,000,000 entries must fit in 250 MB.)
An entry is moved to the back only when `now` has changed since it was last seen, so callers
that pass a coarse clock pay that once per tick, not once per frame.

`DryRunFdb` is the table as `trace` sees it: learning there says what would happen (the same
`learn_outcome` rule, the same `next_victim`) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

from vswitch.core.events import EventRecorder

PortId = Hashable

_NEVER_AGES = float("inf")
LEARN_NEW = 1
LEARN_REFRESHED = 2
LEARN_MOVED = 3
LEARN_STATIC_KEPT = 4


class FdbEntry:
    """One (MAC, VLAN) → port binding. Mutable in place: the hot path refreshes ``seen``."""

    __slots__ = ("mac", "vlan", "port", "seen", "static", "prev", "next")

    def __init__(self, mac: bytes, vlan: int, port: PortId, seen: float, static: bool = False) -> None:
        self.mac = mac
        self.vlan = vlan
        self.port = port
        self.seen = seen
        self.static = static
        self.prev: FdbEntry | None = None
        self.next: FdbEntry | None = None

    def __repr__(self) -> str:
        kind = "static" if self.static else f"seen={self.seen}"
        return f"FdbEntry({self.mac.hex(':')}, vlan={self.vlan}, port={self.port!r}, {kind})"


class _PortLru:
    """A port's dynamic entries, oldest first: a circular list through a sentinel."""

    __slots__ = ("head", "count")

    def __init__(self) -> None:
        head = FdbEntry(b"", 0, None, 0.0)
        head.prev = head.next = head
        self.head = head
        self.count = 0

    def append(self, e: FdbEntry) -> None:
        head = self.head
        last = head.prev
        e.prev = last
        e.next = head
        last.next = e  # type: ignore[union-attr]
        head.prev = e
        self.count += 1

    def unlink(self, e: FdbEntry) -> None:
        e.prev.next = e.next  # type: ignore[union-attr]
        e.next.prev = e.prev  # type: ignore[union-attr]
        e.prev = e.next = None
        self.count -= 1

    def move_to_end(self, e: FdbEntry) -> None:
        self.unlink(e)
        self.append(e)

    def oldest(self) -> FdbEntry | None:
        first = self.head.next
        return None if first is self.head else first


def learn_outcome(e: FdbEntry | None, port: PortId) -> int:
    """What learning a MAC on `port` does, given its entry `e` (None: not in the table): the one rule
    behind `MacTable.learn` and `DryRunFdb.learn`. Static entries never move; a dynamic one seen on
    another port moves at once."""
    if e is None:
        return LEARN_NEW
    if e.static:
        return LEARN_STATIC_KEPT
    return LEARN_REFRESHED if e.port == port else LEARN_MOVED


class MacTable:
    """Learn / lookup / expire / flush, with static entries, fair eviction and events.

    Trusts `ageing_s` and `max_entries`: they come from a checked `SwitchSpec` (control/model.py).
    `events` receives what happens to entries (a new recorder when None)."""

    def __init__(self, ageing_s: float = 300, max_entries: int = 8192, events: EventRecorder | None = None) -> None:
        self.ageing_s = ageing_s
        self.max_entries = max_entries
        #: vlan → mac → entry. Public for the switch's hot path (read-only there).
        self.by_vlan: dict[int, dict[bytes, FdbEntry]] = {}
        self._lru: dict[PortId, _PortLru] = {}
        self._dynamic = 0
        self._static = 0
        self.moves = 0
        self.evictions = 0
        self.events = events if events is not None else EventRecorder()

    # -- size ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._dynamic + self._static

    @property
    def dynamic_count(self) -> int:
        return self._dynamic

    def port_count(self, port: PortId) -> int:
        lru = self._lru.get(port)
        return lru.count if lru else 0

    # -- learn / lookup ---------------------------------------------------------------------
    def learn(self, mac: bytes, vlan: int, port: PortId, now: float) -> int:
        """Record that `mac` (in `vlan`) was seen on `port`; returns a LEARN_* code (`learn_outcome`)."""
        table = self.by_vlan.get(vlan)
        if table is None:
            table = self.by_vlan[vlan] = {}
        e = table.get(mac)
        outcome = learn_outcome(e, port)
        if e is None:
            if self._dynamic >= self.max_entries:
                self._evict_one(now)
                # the victim may have been its VLAN's last entry, and _remove drops an empty VLAN dict
                table = self.by_vlan.setdefault(vlan, table)
            e = FdbEntry(mac, vlan, port, now)
            table[mac] = e
            self._port_lru(port).append(e)
            self._dynamic += 1
            self.events.learned(mac, vlan, port, now)
        elif outcome == LEARN_REFRESHED:
            if e.seen != now:
                e.seen = now
                self._lru[port].move_to_end(e)
        elif outcome == LEARN_MOVED:
            old = e.port
            self._lru[old].unlink(e)
            if not self._lru[old].count:
                del self._lru[old]
            e.port = port
            e.seen = now
            self._port_lru(port).append(e)
            self.moves += 1
            self.events.moved(mac, vlan, old, port, now)
        return outcome

    def lookup(self, mac: bytes, vlan: int, now: float) -> PortId | None:
        """The port behind (mac, vlan), or None when unknown or aged out."""
        table = self.by_vlan.get(vlan)
        if table is None:
            return None
        e = table.get(mac)
        if e is None or now - e.seen > self.ageing_s:
            return None
        return e.port

    def get(self, mac: bytes, vlan: int) -> FdbEntry | None:
        """The raw entry (even if aged but not yet expired); for inspection."""
        table = self.by_vlan.get(vlan)
        return table.get(mac) if table else None

    def set_limits(self, ageing_s: float, max_entries: int) -> int:
        """A new ageing time and capacity (the caller validated them); a capacity below the number of
        dynamic entries evicts (fairly, as when full) down to it. Returns how many were evicted."""
        self.ageing_s = ageing_s
        self.max_entries = max_entries
        evicted = 0
        while self._dynamic > max_entries:
            self._evict_one()
            evicted += 1
        return evicted

    # -- static entries ---------------------------------------------------------------------
    def add_static(self, mac: bytes, vlan: int, port: PortId) -> None:
        """Pin (mac, vlan) to `port`; replaces a dynamic entry for the same key."""
        table = self.by_vlan.setdefault(vlan, {})
        e = table.get(mac)
        if e is not None:
            if e.static:
                e.port = port
                return
            self._remove(e)
            # _remove drops a VLAN's dict when it empties: fetch it again, or the static lands in
            # an orphaned dict and is lost
            table = self.by_vlan.setdefault(vlan, {})
        # seen=+inf: a static entry is never older than the ageing time, with no extra test
        # on the hot path
        table[mac] = FdbEntry(mac, vlan, port, _NEVER_AGES, static=True)
        self._static += 1

    def remove_static(self, mac: bytes, vlan: int) -> bool:
        e = self.get(mac, vlan)
        if e is None or not e.static:
            return False
        self._remove(e)
        return True

    # -- ageing / flushing ------------------------------------------------------------------
    def expire(self, now: float) -> list[FdbEntry]:
        """Remove dynamic entries not seen for more than `ageing_s`; return them."""
        # The same expression as `lookup` (now - seen > ageing): `seen < now - ageing` rounds
        # differently for fractional times, and an entry would be both alive and expired.
        gone: list[FdbEntry] = []
        ageing = self.ageing_s
        for lru in list(self._lru.values()):
            while True:
                e = lru.oldest()
                if e is None or now - e.seen <= ageing:
                    break
                gone.append(e)
                self._remove(e)
                self.events.aged(e.mac, e.vlan, e.port, now)
        return gone

    def flush(self, *, port: PortId | None = None, vlan: int | None = None,
              include_static: bool = False) -> int:
        """Remove entries (dynamic only unless `include_static`), optionally only of a port/VLAN."""
        doomed = [e for e in self._iter_entries()
                  if (port is None or e.port == port) and (vlan is None or e.vlan == vlan)
                  and (include_static or not e.static)]
        for e in doomed:
            self._remove(e)
        return len(doomed)

    def entries(self, now: float) -> list[FdbEntry]:
        """Live entries (aged ones excluded), statics included."""
        ageing = self.ageing_s
        return [e for e in self._iter_entries() if now - e.seen <= ageing]  # statics: seen=+inf

    # -- internals ----------------------------------------------------------------------------
    def _iter_entries(self) -> Iterator[FdbEntry]:
        for table in self.by_vlan.values():
            yield from table.values()

    def _port_lru(self, port: PortId) -> _PortLru:
        lru = self._lru.get(port)
        if lru is None:
            lru = self._lru[port] = _PortLru()
        return lru

    def _remove(self, e: FdbEntry) -> None:
        table = self.by_vlan[e.vlan]
        del table[e.mac]
        if not table:
            del self.by_vlan[e.vlan]
        if e.static:
            self._static -= 1
        else:
            lru = self._lru[e.port]
            lru.unlink(e)
            if not lru.count:
                del self._lru[e.port]
            self._dynamic -= 1

    def next_victim(self) -> FdbEntry | None:
        """The entry learning a new MAC would evict now (None while the table has room)."""
        if self._dynamic < self.max_entries:
            return None
        # The port holding the most entries pays; ties go to the port that filled up first.
        port = max(self._lru, key=lambda p: self._lru[p].count)
        return self._lru[port].oldest()

    def _evict_one(self, now: float | None = None) -> None:
        victim = self.next_victim()
        assert victim is not None
        self._remove(victim)
        self.evictions += 1
        self.events.evicted(victim.mac, victim.vlan, victim.port, now)


class DryRunFdb:
    """The MAC table as `SwitchCore.process` sees it while it only explains a frame (trace).

    `learn` changes nothing in `table`: it records what `MacTable.learn` would do (`outcome`, the
    `previous` entry, the entry it would `evicted`) and from then on `by_vlan` reads as if it had
    (the source on its new port, the victim gone), so the lookup that follows sees the table the real
    learn would leave. No event, no eviction count, no LRU change. Offers only what `process`
    uses of a MacTable: `by_vlan` (``get`` and ``[]``), `learn` and `ageing_s`.
    """

    __slots__ = ("table", "ageing_s", "by_vlan", "outcome", "previous", "evicted")

    def __init__(self, table: MacTable) -> None:
        self.table = table
        self.ageing_s = table.ageing_s
        self.by_vlan: Any = table.by_vlan
        #: the LEARN_* code `learn` returned, None while it was not called
        self.outcome: int | None = None
        self.previous: FdbEntry | None = None
        self.evicted: FdbEntry | None = None

    def learn(self, mac: bytes, vlan: int, port: PortId, now: float) -> int:
        """What `MacTable.learn(mac, vlan, port, now)` would return; the real table is not touched."""
        prev = self.table.get(mac, vlan)
        outcome = learn_outcome(prev, port)
        self.outcome, self.previous = outcome, prev
        self.evicted = self.table.next_victim() if outcome == LEARN_NEW else None
        if outcome != LEARN_STATIC_KEPT:
            self.by_vlan = _AfterLearn(self.table.by_vlan, FdbEntry(mac, vlan, port, now), self.evicted)
        return outcome


class _AfterLearn:
    """`by_vlan` with one entry learned (added or replaced) and at most one evicted, read-only."""

    __slots__ = ("_by_vlan", "_learned", "_evicted")

    def __init__(self, by_vlan: dict[int, dict[bytes, FdbEntry]], learned: FdbEntry,
                 evicted: FdbEntry | None) -> None:
        self._by_vlan = by_vlan
        self._learned = learned
        self._evicted = evicted

    def get(self, vlan: int, default: Any = None) -> Any:
        base = self._by_vlan.get(vlan)
        learned = self._learned if self._learned.vlan == vlan else None
        evicted = self._evicted if self._evicted is not None and self._evicted.vlan == vlan else None
        if learned is None and evicted is None:
            return default if base is None else base
        return _VlanAfterLearn(base or {}, learned, evicted)

    def __getitem__(self, vlan: int) -> Any:
        table = self.get(vlan)
        if table is None:
            raise KeyError(vlan)
        return table


class _VlanAfterLearn:
    __slots__ = ("_base", "_learned", "_evicted")

    def __init__(self, base: dict[bytes, FdbEntry], learned: FdbEntry | None, evicted: FdbEntry | None) -> None:
        self._base = base
        self._learned = learned
        self._evicted = evicted

    def get(self, mac: bytes, default: Any = None) -> Any:
        if self._learned is not None and mac == self._learned.mac:
            return self._learned
        if self._evicted is not None and mac == self._evicted.mac:
            return default
        return self._base.get(mac, default)

"""The program's decision events (the `vs_events` ring buffer) as the frame observers' calls, and its
MAC table events (the `vs_fdb_events` ring) as learns of the core's copy of the table.

Owns: the decoding of a `struct vs_event` (`decode`, pure) and `DecisionFeed`, which reads the ring
through libbpf's ring_buffer (libbpf.RingBuffer) and turns each record into the call a frame
observer gets from the Python datapath: the in-port, the frame's first bytes, a `Decision` (out
ports, reason, VLAN), plus what only the fast path needs to say — the frame's whole length (the
record carries its first `layout.EV_HEAD` bytes), when it was decided, and that the program decided.

Why libbpf's consumer and not an mmap of the ring read from Python: the ring's protocol needs
acquire loads of the producer position and of each record's length word (busy and discard bits),
a release store of the consumer position, and records that wrap around the double-mapped data
area; libbpf implements exactly that, Python has no memory barriers. The cost is one ctypes
callback per record — paid only while someone watches.

Invariants: records are handed over on the thread that calls `drain` (the datapath's), at most
`limit` per call, so a busy ring never starves the datapath's commands; the ring's epoll descriptor
(`fileno`) is level-triggered, so what is left is taken on the next wake-up. A record of a slot no
port holds any more (removed meanwhile) is skipped. The program never waits for room: a record that
does not fit is counted (`lost`), and the frame is forwarded all the same.
`FdbFeed` reads `vs_fdb_events` (always on while the program is loaded): each MAC the program learned
or moved, in the order it did, handed to a callback (the kernel datapath learns it into the core's
copy, whose own rule says what is an event), so `events` tells every learn and move as the Python
datapath does, a flap between two ticks included.
Must not touch: the program's maps other than the rings and their lost counters (tables.py), observers'
own state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from vswitch.core.reasons import Reason
from vswitch.core.switch import Decision
from vswitch.datapath.kernel import layout as L
from vswitch.datapath.kernel.libbpf import RingBuffer
from vswitch.datapath.loop import SAMPLE_GAP_S

#: what the fast path tells an observer besides the Python datapath's four arguments
KERNEL_PATH = "kernel fast path"
#: records handed over per `drain` (per wake-up of the datapath loop)
DRAIN_LIMIT = 256
SAMPLE_GAP_NS = int(SAMPLE_GAP_S * 1e9)


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """One decision the program reported: the in-port's slot, the core's `Reason`, the VLAN (0 when
    dropped before classification), the frame's length as the core counts it, when (`ktime_ns`,
    CLOCK_MONOTONIC), the output slots in ascending order, and the frame's first bytes as the core
    sees them (a tag the kernel kept in skb metadata put back after the MAC addresses)."""

    in_slot: int
    reason: Reason
    vlan: int
    length: int
    ktime_ns: int
    out_slots: tuple[int, ...]
    head: bytes


def out_slots(words: Sequence[int]) -> tuple[int, ...]:
    """The slots whose bits are set in a `vs_event.outs` bitmap (bit s % 64 of word s // 64), ascending."""
    out: list[int] = []
    for w, bits in enumerate(words):
        while bits:
            low = bits & -bits
            out.append(w * 64 + low.bit_length() - 1)
            bits ^= low
    return tuple(out)


def decode(raw: bytes) -> DecisionEvent:
    """A `struct vs_event` record. Raises ValueError for a record of the wrong size, kind or reason."""
    if len(raw) < L.EVENT.size:
        raise ValueError(f"a decision event of {len(raw)} bytes, expected {L.EVENT.size}")
    kind, in_slot, reason, vlan, length, head_len, ktime, present, proto, tci, *rest = L.EVENT.unpack_from(raw)
    if kind != L.EV_DECISION:
        raise ValueError(f"event kind {kind}, expected {L.EV_DECISION} (a decision)")
    r = L.COUNTER_REASON.get(reason)
    if r is None:
        raise ValueError(f"event reason {reason} is no decision counter")
    head = rest[-1][:min(head_len, L.EV_HEAD)]
    if present:  # the wire (and the core) has the metadata tag after the MAC addresses
        head = head[:12] + proto + tci.to_bytes(2, "big") + head[12:]
    return DecisionEvent(in_slot, r, vlan, length, ktime, out_slots(rest[:L.EV_OUT_WORDS]), head)


class _RingFeed:
    """One of the program's rings read in the datapath's loop: its epoll descriptor (`fileno`), what
    the program could not put in it (`lost`, read by `lost_fn`), `drain` (at most `limit` records to
    `_record`, on the calling thread) and `close` (what waits handed over first). Raises BpfError
    when the ring cannot be opened."""

    def __init__(self, ring: RingBuffer, lost_fn: Callable[[], int]) -> None:
        self._ring: RingBuffer | None = ring
        self._lost_fn = lost_fn

    def fileno(self) -> int:
        assert self._ring is not None
        return self._ring.fileno()

    @property
    def lost(self) -> int:
        """Records the program had no room for since it was loaded (a full ring)."""
        return int(self._lost_fn())

    def drain(self, limit: int = DRAIN_LIMIT) -> int:
        """Hand at most `limit` waiting records over; returns how many were read."""
        return self._ring.consume(limit) if self._ring is not None else 0

    def _before_close(self) -> None:
        """What the program must stop doing before the last records are read (nothing by default)."""

    def close(self) -> None:
        """`_before_close`, then what is still in the ring handed over, then the ring closed. Idempotent."""
        if self._ring is None:
            return
        try:
            self._before_close()
            while self.drain():
                pass
        finally:
            ring, self._ring = self._ring, None
            ring.close()


class DecisionFeed(_RingFeed):
    """A switch program's decision events handed to `observers` (the datapath's list, read at each
    record) as ``obs(pid, head, 0, decision, length=n, t=wall_clock_s, path=KERNEL_PATH)``, and to
    `samplers` the same way, at most one event per `SAMPLE_GAP_S`.

    `every`: the program reports each decision (an observer watches), or only a sample — at most one
    per SAMPLE_GAP_S per CPU, gated in the program before the event exists, so a switch read by the
    web UI's samplers alone pays no event per frame (`set_every` changes it). `program` is the
    SwitchProgram (its events are turned on here and off by `close`). Raises BpfError when the ring
    cannot be opened (events stay off)."""

    def __init__(self, program: Any, observers: Sequence[Callable[..., None]],
                 samplers: Sequence[Callable[..., None]] = (), *, every: bool = True) -> None:
        self._program = program
        self._observers = observers
        self._samplers = samplers
        self._t_offset = 0.0
        self._sample_at_ns = 0
        self._every: bool | None = None
        super().__init__(program.open_events(self._record), program.tables.events_lost)
        self.set_every(every)

    def set_every(self, every: bool) -> None:
        """Each decision reported (True) or a sample of them (False)."""
        if every != self._every:
            self._program.set_events(True, sample_gap_ns=0 if every else SAMPLE_GAP_NS)
            self._every = every

    def drain(self, limit: int = DRAIN_LIMIT) -> int:
        # CLOCK_MONOTONIC (the program's clock) → wall clock, as the observers and captures count time
        self._t_offset = time.time() - time.monotonic()
        return super().drain(limit)

    def _record(self, raw: bytes) -> None:
        ev = decode(raw)
        port_at = self._program.port_at
        try:
            pid: Hashable = port_at(ev.in_slot)
            outs = tuple(port_at(s) for s in ev.out_slots)
        except KeyError:  # a port removed since the frame was decided
            return
        d = Decision(outs, ev.reason, ev.vlan)
        t = self._t_offset + ev.ktime_ns / 1e9
        for obs in self._observers:
            obs(pid, ev.head, 0, d, length=ev.length, t=t, path=KERNEL_PATH)
        # sampled by the program (each CPU's gate) unless every decision is reported: then here
        if self._samplers and (not self._every or ev.ktime_ns >= self._sample_at_ns):
            self._sample_at_ns = ev.ktime_ns + SAMPLE_GAP_NS
            for obs in self._samplers:
                obs(pid, ev.head, 0, d, length=ev.length, t=t, path=KERNEL_PATH)

    def _before_close(self) -> None:
        self._program.set_events(False)


@dataclass(frozen=True, slots=True)
class FdbEvent:
    """One learn (`moved` False) or move the program made: the MAC, its VLAN, the slot it is behind
    now and was behind before (a learn: the same), when (`ktime_ns`, CLOCK_MONOTONIC)."""

    mac: bytes
    vlan: int
    slot: int
    old_slot: int
    moved: bool
    ktime_ns: int


def decode_fdb(raw: bytes) -> FdbEvent:
    """A `struct vs_fdb_event` record. Raises ValueError for a record of the wrong size or kind."""
    if len(raw) < L.FDB_EVENT.size:
        raise ValueError(f"a MAC table event of {len(raw)} bytes, expected {L.FDB_EVENT.size}")
    mac, vlan, kind, slot, old_slot, _pad, ktime = L.FDB_EVENT.unpack_from(raw)
    if kind not in (L.FE_LEARNED, L.FE_MOVED):
        raise ValueError(f"MAC table event kind {kind}, expected {L.FE_LEARNED} or {L.FE_MOVED}")
    return FdbEvent(mac, vlan, slot, old_slot, kind == L.FE_MOVED, ktime)


class FdbFeed(_RingFeed):
    """A switch program's MAC table events handed to `on_event` (an `FdbEvent`), on the thread that
    calls `drain`. Raises BpfError when the ring cannot be opened."""

    def __init__(self, program: Any, on_event: Callable[[FdbEvent], None]) -> None:
        self._on_event = on_event
        super().__init__(program.open_fdb_events(self._record), program.tables.fdb_events_lost)

    def drain_waiting(self) -> int:
        """Hand over what waits now (at most what the ring holds, so a busy producer cannot keep the
        caller here); returns how many."""
        return self.drain(L.FE_RING_BYTES // L.FDB_EVENT.size)

    def _record(self, raw: bytes) -> None:
        self._on_event(decode_fdb(raw))

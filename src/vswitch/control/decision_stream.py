"""The sampled stream of a switch's decisions (what the web UI's picture draws live, issue 14 item 2).

Owns the sampler (one frame sampler per switch, however many pages read it) and a reader's view
of it (`DecisionReader`: its own cursor, what it missed, once-a-second summaries).

Invariants:
- the sample is chosen where frames are decided, before anything is copied: the datapath hands a
  sampler at most one frame per `SAMPLE_GAP_S` per reader of frames (Datapath.add_sampler; the
  kernel fast path gates in its program, so a frame not sampled makes no event); the sampler's token
  bucket keeps the sum of those at `SAMPLE_RATE` a second;
- the summaries' counts of every frame come from the switch's counters (which count every frame
  anyway), never from a per-frame call;
- the samples wait in a bounded ring (`RING`), never in an unbounded queue; a reader never blocks
  the sampler: it reads the ring with its own cursor; what was overwritten before it read it is
  counted as missed for that reader alone;
- with no reader, the switch has no sampler at all (the manager removes it with the last one).
Must not touch: the manager's switches (it is given the datapath's sampler list through the manager).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vswitch.core.reasons import Reason
from vswitch.datapath.loop import SAMPLE_GAP_S

#: sampled decisions per second per switch, at most (a page draws a few dozen a second at best)
SAMPLE_RATE = round(1 / SAMPLE_GAP_S)
#: samples kept for readers (two seconds at the sampling rate)
RING = 2 * SAMPLE_RATE
#: a summary of every frame (not only the sampled ones) this often
SUMMARY_S = 1.0
#: how far into a frame a sample keeps (Ethernet + tag + IPv4 + ICMP echo header: what `_event` reads)
SAMPLE_BYTES = 86

KIND_FLOOD, KIND_UNICAST, KIND_DROP = 0, 1, 2
KINDS = ("flood", "unicast", "drop")


def kind_of(reason: Reason) -> int:
    """The picture's three kinds of decision: a flood, known unicast (to one port), a drop."""
    return KIND_DROP if reason.is_drop else KIND_FLOOD if reason.is_flood else KIND_UNICAST


def totals(port_counters: Iterable[Mapping[str, Any]]) -> list[int]:
    """Every frame the switch decided, by kind, from its ports' counters (`PortCounters.snapshot`):
    floods as counted on the in-ports, drops of every reason, and known unicast the rest of what the
    ports received (a flood that failed on one output counts as a flood and a drop: never below 0)."""
    frames = flood = drop = 0
    for c in port_counters:
        frames += c["rx_frames"]
        flood += c["floods"]
        drop += sum(c["drops"].values())
    return [flood, max(0, frames - flood - drop), drop]


class DecisionSampler:
    """A switch's one frame sampler for its decision stream (`observe` is given to the datapath's
    `add_sampler`, which calls it for a sampled frame only).

    `ring` holds ``(seq, t, pid, head, length, reason, vlan, out_ports, path)`` of at most `rate`
    frames a second (a token bucket of `rate` tokens: the datapath's gate is per reader of frames).
    `totals`/`totals_at`: the switch's counts by kind and when they were read (the manager caches
    them here for every reader)."""

    def __init__(self, rate: int = SAMPLE_RATE, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.ring: deque[tuple[Any, ...]] = deque(maxlen=RING)
        self.seq = 0
        self._tokens = float(rate)
        self._last = clock()
        self.readers = 0
        self.totals: list[int] | None = None
        self.totals_at = float("-inf")

    def observe(self, pid: Any, buf: bytes, hdr: int, d: Any, length: int | None = None, t: float | None = None,
                path: str = "python") -> None:
        now = self.clock()
        tokens = self._tokens + (now - self._last) * self.rate
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return
        self._tokens = min(tokens, float(self.rate)) - 1.0
        self.seq += 1
        self.ring.append((self.seq, time.time() if t is None else t, pid, buf[hdr:hdr + SAMPLE_BYTES],
                          len(buf) - hdr if length is None else length, d.reason, d.vlan, d.out_ports, path))


class DecisionReader:
    """One reader of a sampler: `take()` the samples it has not seen; `summary()` once a second.

    Readers run on any thread but the datapath's; the ring is copied whole (one C-level copy under the
    GIL), so a sample is never read half-written. `switch` and `datapath` say what it reads (set by the
    manager, which checks them to end the stream when the switch goes)."""

    def __init__(self, sampler: DecisionSampler, clock: Callable[[], float] = time.monotonic) -> None:
        self.sampler = sampler
        self.switch = ""
        self.datapath: Any = None
        self.clock = clock
        self._seen = sampler.seq
        self._counts: list[int] | None = None
        self._since = clock()
        self._sampled = 0
        self.missed = 0

    def take(self) -> list[tuple[Any, ...]]:
        """The samples taken since the last call, oldest first (those the ring lost before: `missed`)."""
        ring = list(self.sampler.ring)
        fresh = [s for s in ring if s[0] > self._seen]
        if fresh:
            self.missed += fresh[0][0] - self._seen - 1
            self._seen = fresh[-1][0]
        self._sampled += len(fresh)
        return fresh

    def summary_due(self) -> bool:
        """Whether `SUMMARY_S` has passed since the last summary (or, before the first, since opening)."""
        return self.clock() - self._since >= SUMMARY_S

    def start(self, counts: list[int]) -> None:
        """The switch's counts by kind when the reader opened: the first summary counts from there."""
        self._counts = list(counts)

    def summary(self, counts: list[int]) -> dict[str, Any]:
        """Every frame decided since the last summary, by kind, given the switch's counts by kind now
        (`totals`); a counter that went back (a port removed, the switch's counters reset) counts 0."""
        now = self.clock()
        before = self._counts if self._counts is not None else counts
        by_kind = {k: max(0, counts[i] - before[i]) for i, k in enumerate(KINDS)}
        out = {"t": time.time(), "interval_s": round(now - self._since, 2), "frames": sum(by_kind.values()),
               "sampled": self._sampled, "dropped_for_you": self.missed, "by_kind": by_kind}
        self._counts, self._since, self._sampled, self.missed = list(counts), now, 0, 0
        return out

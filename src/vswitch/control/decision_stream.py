"""The sampled stream of a switch's decisions (what the web UI's picture draws live, issue 14 item 2).

Owns the sampler (one frame observer per switch, however many pages read it) and a reader's view
of it (`DecisionReader`: its own cursor, what it missed, once-a-second summaries).

Invariants:
- on the datapath thread, per frame: one counter increment by kind and a token-bucket test; only a
  sampled frame (at most `SAMPLE_RATE` a second per switch) costs a slice and a tuple; the samples
  wait in a bounded ring (`RING`), never in an unbounded queue;
- a reader never blocks the sampler: it reads the ring with its own cursor; what was overwritten
  before it read it is counted as missed for that reader alone;
- with no reader, the switch has no observer at all (the manager removes it with the last one).
Must not touch: the manager's switches (it is given the datapath's observer list through the manager).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from vswitch.core.reasons import Reason

#: sampled decisions per second per switch, at most (a page draws a few dozen a second at best)
SAMPLE_RATE = 50
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


class DecisionSampler:
    """A switch's one frame observer for its decision stream (call `observe` from the datapath).

    `counts[kind]` counts every frame decided; `ring` holds ``(seq, t, pid, head, length, reason, vlan,
    out_ports, path)`` of at most `rate` frames a second (a token bucket of `rate` tokens)."""

    def __init__(self, rate: int = SAMPLE_RATE, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.counts = [0, 0, 0]
        self.ring: deque[tuple[Any, ...]] = deque(maxlen=RING)
        self.seq = 0
        self._tokens = float(rate)
        self._last = clock()
        self.readers = 0

    def observe(self, pid: Any, buf: bytes, hdr: int, d: Any, length: int | None = None, t: float | None = None,
                path: str = "python") -> None:
        reason = d.reason
        self.counts[KIND_DROP if reason.is_drop else KIND_FLOOD if reason.is_flood else KIND_UNICAST] += 1
        now = self.clock()
        tokens = self._tokens + (now - self._last) * self.rate
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return
        self._tokens = min(tokens, float(self.rate)) - 1.0
        self.seq += 1
        self.ring.append((self.seq, time.time() if t is None else t, pid, buf[hdr:hdr + SAMPLE_BYTES],
                          len(buf) - hdr if length is None else length, reason, d.vlan, d.out_ports, path))


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
        self._counts = list(sampler.counts)
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

    def summary(self) -> dict[str, Any] | None:
        """Every frame decided since the last summary, by kind; None until `SUMMARY_S` has passed."""
        now = self.clock()
        if now - self._since < SUMMARY_S:
            return None
        counts = list(self.sampler.counts)
        by_kind = {k: counts[i] - self._counts[i] for i, k in enumerate(KINDS)}
        out = {"t": time.time(), "interval_s": round(now - self._since, 2), "frames": sum(by_kind.values()),
               "sampled": self._sampled, "dropped_for_you": self.missed, "by_kind": by_kind}
        self._counts, self._since, self._sampled, self.missed = counts, now, 0, 0
        return out

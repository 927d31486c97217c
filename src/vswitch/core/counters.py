"""Per-port counters: what came in, what went out, and why frames were dropped.

The core counts ingress (rx, drops by reason, floods, learned, moved); the datapath counts what
it actually wrote (tx) and egress drops. Plain integer slots: incrementing is the hot path.
"""

from __future__ import annotations

from typing import Any

from vswitch.core.reasons import Reason


class PortCounters:
    """Counters of one port. `drops` maps a Reason to a count; `floods` counts frames this port
    received that were flooded; `learned`/`moved` count MACs learned on / moved to this port;
    `static_refused` counts frames from a MAC that is static on another port (neither learned nor moved);
    port mirroring: `mirrored` counts, on a source port, its frames (received from it or delivered to
    it) that a destination port got; `mirror_tx`, on a destination port, the copies it was given."""

    __slots__ = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "floods", "learned", "moved", "static_refused",
                 "drops", "mirrored", "mirror_tx")

    def __init__(self) -> None:
        self.rx_frames = 0
        self.rx_bytes = 0
        self.tx_frames = 0
        self.tx_bytes = 0
        self.floods = 0
        self.learned = 0
        self.moved = 0
        self.static_refused = 0
        self.drops: dict[Reason, int] = {}
        self.mirrored = 0
        self.mirror_tx = 0

    def drop(self, reason: Reason) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "rx_frames": self.rx_frames, "rx_bytes": self.rx_bytes,
            "tx_frames": self.tx_frames, "tx_bytes": self.tx_bytes,
            "floods": self.floods, "learned": self.learned, "moved": self.moved,
            "static_refused": self.static_refused,
            "drops": {r.label: n for r, n in self.drops.items()},
            "mirrored": self.mirrored, "mirror_tx": self.mirror_tx,
        }

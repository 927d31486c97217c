"""Rate limits as one-number token buckets on an integer nanosecond clock: the storm limit (frames
per second of broadcast, multicast and unknown unicast a port may send; docs/port-features.md).

The bucket is the GCRA form of a token bucket ("virtual scheduling", ITU-T I.371): its whole state
is one number, `tat`, the time at which the bucket would be full again. A frame at `now` conforms
when `tat - now <= tolerance` (the bucket holds a token); it then takes one (`tat` grows by the
`interval` of one token). An idle bucket has `tat <= now` and is full: it passes `burst` frames at
once, then one per `interval`. One number is what makes the BPF program's copy exact under
concurrency: a compare-and-swap of one 64-bit word (switch.bpf.c, storm_excess) is the same rule.

Pure: no clock of its own (`now_ns` is a parameter), no I/O. Must not touch: frames, the MAC table.
"""

from __future__ import annotations

NS = 1_000_000_000

#: the most frames per second a storm limit may be: 10 Mpps (an interval of 100 ns), more than a
#: port of a software switch carries
STORM_LIMIT_MAX = 10_000_000


def storm_burst(pps: int) -> int:
    """How many frames an idle storm bucket of `pps` passes at once: a tenth of a second's worth, at
    least 10 (a DHCP exchange and a few ARPs after a quiet spell), at most the whole second's."""
    return max(pps // 10, min(pps, 10))


def storm_bucket(pps: int) -> tuple[int, int]:
    """(interval_ns, tolerance_ns) of a storm limit of `pps` frames per second (> 0): one token per
    `interval_ns` (1e9 // pps: a limit that does not divide a second is rounded up by under one
    frame per second in a billion), `storm_burst(pps)` of them when full."""
    interval = NS // pps
    return interval, (storm_burst(pps) - 1) * interval


def take(tat: int, now_ns: int, interval: int, tolerance: int) -> int | None:
    """One token from the bucket `tat` at `now_ns`: the new `tat`, or None when the bucket is empty
    (the frame is over the limit; the bucket is unchanged)."""
    start = tat if tat > now_ns else now_ns
    if start - now_ns > tolerance:
        return None
    return start + interval

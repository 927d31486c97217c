"""Rate limits as one-number token buckets on an integer nanosecond clock: the storm limit (frames
per second of broadcast, multicast and unknown unicast a port may send) and the maximum bandwidth
(bits per second a port may send into the switch: a policer; docs/port-features.md).

The bucket is the GCRA form of a token bucket ("virtual scheduling", ITU-T I.371): its whole state
is one number, `tat`, the time at which the bucket would be full again. A frame at `now` conforms
when `tat - now <= tolerance` (the bucket holds a token); it then takes one (`tat` grows by the
`interval` of one token). An idle bucket has `tat <= now` and is full: it passes `burst` frames at
once, then one per `interval`. One number is what makes the BPF program's copy exact under
concurrency: a compare-and-swap of one 64-bit word (switch.bpf.c, storm_excess) is the same rule.

Pure: no clock of its own (`now_ns` is a parameter), no I/O. Must not touch: frames, the MAC table.
"""

from __future__ import annotations

from functools import lru_cache

NS = 1_000_000_000

#: the most frames per second a storm limit may be: 10 Mpps (an interval of 100 ns), more than a
#: port of a software switch carries
STORM_LIMIT_MAX = 10_000_000


def storm_burst(pps: int) -> int:
    """How many frames an idle storm bucket of `pps` passes at once: a tenth of a second's worth, at
    least 10 (a DHCP exchange and a few ARPs after a quiet spell), at most the whole second's."""
    return max(pps // 10, min(pps, 10))


@lru_cache(maxsize=1024)  # per flood of a limited port: the constants of its limit, computed once
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


# ---- the maximum bandwidth: a policer on the bytes a port sends into the switch ------------------

#: the fixed point of a byte's cost: nanoseconds per byte in 1/65536 ns, so a 100 Gbit/s rate
#: (0.08 ns a byte) keeps its precision to 0.01 % and a frame's cost is one multiply and one shift
COST_SHIFT = 16
#: the fastest maximum bandwidth (bits per second): 400 Gbit/s
RATE_MAX = 400_000_000_000
#: the deepest burst a policer may be given (bytes): 1 GiB
BURST_MAX = 1 << 30


def police_burst(rate_bps: int) -> int:
    """The bytes an idle policer of `rate_bps` passes at once when no burst is given: a quarter of a
    second of the rate, at least 128 KiB (two of the 64 KiB segments a TCP sender hands a veth or a
    TAP at once). A policer drops, it cannot queue: TCP through one only holds the rate when the
    bucket outlasts its bursts (measured through 100 Mbit/s on a veth: a 250 KB bucket, 20 ms, let
    TCP reach 11 Mbit/s — each drop a lost 64 KiB segment and a retransmission timeout —, 2.5 MB 97,
    3.1 MB 98-101; docs/port-features.md). Deeper than the Python loop's 10 ms clock step, too."""
    return max(rate_bps // 32, 128 * 1024)


@lru_cache(maxsize=1024)  # per frame of a policed port: the constants of its rate, computed once
def police_bucket(rate_bps: int, burst: int = 0) -> tuple[int, int]:
    """(cost, tolerance_ns) of a policer of `rate_bps` (> 0) bits per second and `burst` bytes (0:
    `police_burst`): a frame of n bytes costs ``(n * cost) >> COST_SHIFT`` ns of the bucket; the
    bucket is full `tolerance_ns` ahead of now."""
    cost = (8 * NS << COST_SHIFT) // rate_bps
    return cost, ((burst or police_burst(rate_bps)) * cost) >> COST_SHIFT


def take_bytes(tat: int, now_ns: int, n: int, cost: int, tolerance: int) -> int | None:
    """A frame of `n` bytes through the policer `tat` at `now_ns`: the new `tat`, or None when it is
    over the rate (the bucket unchanged). It passes when the bucket holds any credit (a frame larger
    than what is left borrows the rest: a GCRA bucket never splits a frame)."""
    start = tat if tat > now_ns else now_ns
    if start - now_ns > tolerance:
        return None
    return start + ((n * cost) >> COST_SHIFT)


def format_rate(bps: int) -> str:
    """Bits per second for humans, in the largest SI unit that keeps it whole: 100 Mbit/s, 1.5 Gbit/s."""
    for unit, scale in (("Tbit/s", 10**12), ("Gbit/s", 10**9), ("Mbit/s", 10**6), ("kbit/s", 10**3)):
        if bps >= scale:
            value = bps / scale
            return f"{value:g} {unit}" if value == round(value, 3) else f"{bps:,} bit/s"
    return f"{bps} bit/s"

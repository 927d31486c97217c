"""Measurements across one :class:`setups.Pair`: ping, iperf3 TCP and UDP, switch CPU per packet.

Owns the traffic runs and their parsing. Every iperf3 test uses a fresh one-off server and is
killed after its duration + 20 s, so one stuck test cannot stall a run (recorded as missing).
Traffic runs pinned to ``traffic_cpus`` when given (the switch then has the other core).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
from typing import Any

from netlab import Lab, cpu_prefix, link_stats, proc_cpu_s, run
from setups import Pair

_RTT = re.compile(r"time=([\d.]+) ms")


def warm_up(pair: Pair, cpus: str | None) -> None:
    """ARP and MAC learning before anything is timed; raises when the pair cannot talk."""
    proc = run(pair.ns_a, ["ping", "-c", "3", "-i", "0.1", "-w", "10", pair.ip_b], check=False, cpus=cpus,
               timeout=20)
    if proc.returncode != 0:
        raise RuntimeError(f"{pair.name}: {pair.ip_a} cannot ping {pair.ip_b}:\n{proc.stdout}{proc.stderr}")


def ping_rtt(pair: Pair, count: int, cpus: str | None) -> dict[str, float]:
    """RTT average and 99th percentile in µs over ``count`` pings 2 ms apart."""
    proc = run(pair.ns_a, ["ping", "-c", str(count), "-i", "0.002", "-W", "1", pair.ip_b], check=False,
               cpus=cpus, timeout=count * 0.01 + 30)
    rtts = sorted(float(x) * 1000 for x in _RTT.findall(proc.stdout))
    if not rtts:
        return {}
    p99 = rtts[min(len(rtts) - 1, int(round(0.99 * (len(rtts) - 1))))]
    return {"ping_avg_us": statistics.fmean(rtts), "ping_p99_us": p99, "ping_lost": count - len(rtts)}


_SUMMARY = re.compile(r"= [\d.]+/([\d.]+)/")


def ping_back_to_back(pair: Pair, count: int, cpus: str | None) -> dict[str, float]:
    """RTT average in µs of ``count`` pings each sent as the previous reply arrives (``ping -f``): the
    path's own cost with warm caches. The paced ping (2 ms apart) also pays the CPUs' wake-up from
    idle and cold caches, which on an idle machine is most of it (bridge ~28 µs paced, ~11 back to
    back); the two together tell a per-packet cost from a cold-path one."""
    proc = run(pair.ns_a, ["ping", "-q", "-f", "-c", str(count), "-W", "1", pair.ip_b], check=False,
               cpus=cpus, timeout=30)
    m = _SUMMARY.search(proc.stdout)
    return {"ping_b2b_us": float(m.group(1)) * 1000} if m else {}


def iperf3(pair: Pair, args: list[str], seconds: float, cpus: str | None) -> dict[str, Any] | None:
    """One iperf3 client run from A to a fresh server in B; its JSON, or None on failure/timeout."""
    with Lab() as lab:
        lab.popen(pair.ns_b, ["iperf3", "-s", "-1", "-B", pair.ip_b], cpus=cpus)
        time.sleep(0.3)
        argv = ["ip", "netns", "exec", pair.ns_a, *cpu_prefix(cpus), "iperf3", "-c", pair.ip_b,
                "-t", f"{seconds:g}", "-J", *args]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 20)
        except subprocess.TimeoutExpired:
            return None
    try:
        data = json.loads(out.stdout)
    except json.JSONDecodeError:
        return None
    return None if "error" in data else data


class CpuMeter:
    """Switch CPU seconds and packets delivered into B while the block runs. The switch idles
    outside the iperf3 test itself, so rates divide by the test's own duration."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.cpu0 = proc_cpu_s(self.pair.switch_pids)
        self.rx0 = link_stats(self.pair.ns_b, self.pair.if_b)["rx_packets"]
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.monotonic() - self.t0
        self.cpu_s = proc_cpu_s(self.pair.switch_pids) - self.cpu0
        self.rx_packets = link_stats(self.pair.ns_b, self.pair.if_b)["rx_packets"] - self.rx0


def tcp(pair: Pair, streams: int, seconds: float, cpus: str | None) -> dict[str, float]:
    key = f"tcp{streams}"
    with CpuMeter(pair) as meter:
        data = iperf3(pair, ["-P", str(streams)] if streams > 1 else [], seconds, cpus)
    if data is None:
        return {}
    out = {f"{key}_gbps": data["end"]["sum_received"]["bits_per_second"] / 1e9,
           f"{key}_retrans": float(data["end"]["sum_sent"].get("retransmits", 0))}
    if pair.switch_pids:
        secs = data["end"]["sum_received"].get("seconds") or seconds
        out[f"{key}_cpu_pct"] = 100 * meter.cpu_s / secs
    return out


def udp64(pair: Pair, seconds: float, cpus: str | None) -> dict[str, float]:
    """iperf3 UDP, 64-byte payloads, unlimited rate: packets/s received (iperf3), loss, frames
    the switch delivered into B, and switch CPU time per delivered frame."""
    with CpuMeter(pair) as meter:
        data = iperf3(pair, ["-u", "-b", "0", "-l", "64"], seconds, cpus)
    if data is None:
        return {}
    s = data["end"]["sum"]
    secs = s.get("seconds") or seconds
    received = s["packets"] - s["lost_packets"]
    out = {"udp_rx_kpps": received / secs / 1e3, "udp_loss_pct": s["lost_percent"],
           "udp_fwd_kpps": meter.rx_packets / secs / 1e3}
    if pair.switch_pids and meter.rx_packets:
        out["cpu_us_per_pkt"] = 1e6 * meter.cpu_s / meter.rx_packets
        out["udp_cpu_pct"] = 100 * meter.cpu_s / secs
    return out


def measure_pair(pair: Pair, *, seconds: float, pings: int, traffic_cpus: str | None) -> dict[str, float]:
    """Everything the main table shows, for one built pair."""
    warm_up(pair, traffic_cpus)
    result: dict[str, float] = {}
    result.update(ping_rtt(pair, pings, traffic_cpus))
    result.update(ping_back_to_back(pair, 10 * pings, traffic_cpus))
    result.update(tcp(pair, 1, seconds, traffic_cpus))
    result.update(tcp(pair, 4, seconds, traffic_cpus))
    result.update(udp64(pair, seconds, traffic_cpus))
    return result

"""Scale benchmarks of vswitch alone: flood cost against port count, a 1,000,000-entry MAC table,
and fan-in with one slow port.

Owns three tests and their markdown section:

- **flood / unicast cost**: one vswitchd, one switch whose TAP ports (kept in the switch's
  namespace, up, no addresses) grow 2 → 8 → 32 → 64. ``inject.py`` writes paced 60-byte frames
  into port 0's TAP; switch CPU time (utime+stime of vswitchd) ÷ frames the switch read from port
  0 is the cost per frame — broadcast (flooded to N−1 ports) and unicast to a MAC learned on port 1.
  Expected: unicast flat, flood linear in N (least-squares fit over N−1, R²).
- **MAC table**: ``mactable.py`` in its own process (RSS growth, learn/refresh/lookup per second).
- **fan-in**: ports A, B, C, S are link ports on veths; S's switch-side veth has a tc tbf of
  1 Mbit/s. C blasts UDP at S (far above 1 Mbit/s) while iperf3 sends UDP A → B at a fixed rate;
  A → B loss must stay as without the slow port (the switch drops for S alone).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from netlab import Lab, proc_cpu_s, run, set_up, unique_name
from setups import Vswitchd

HERE = Path(__file__).resolve().parent
PORT_COUNTS = (2, 8, 32, 64)
SRC_MAC, DST_MAC, BCAST = "02:00:00:00:aa:01", "02:00:00:00:bb:01", "ff:ff:ff:ff:ff:ff"


# -- flood / unicast cost ------------------------------------------------------------------------

def _rx_frames(d: Vswitchd, switch: str, port: str) -> int:
    return next(s.rx_frames for s in d.api.stats(switch) if s.port == port)


def _idle_cpu_per_s(d: Vswitchd, seconds: float = 1.0) -> float:
    """What vswitchd burns with no traffic (ageing tick, REST server), to subtract from a window."""
    cpu0, t0 = proc_cpu_s([d.pid]), time.monotonic()
    time.sleep(seconds)
    return (proc_cpu_s([d.pid]) - cpu0) / (time.monotonic() - t0)


def _inject_cost(d: Vswitchd, ns: str, switch: str, tap0: str, dst: str, frames: int, rate: float,
                 idle_per_s: float) -> float:
    """Switch CPU µs per frame read from port p0 while ``frames`` frames to ``dst`` enter there
    (the idle baseline over the same window subtracted)."""
    rx0 = _rx_frames(d, switch, "p0")
    cpu0, t0 = proc_cpu_s([d.pid]), time.monotonic()
    run(ns, [sys.executable, str(HERE / "inject.py"), tap0, dst, SRC_MAC, str(frames), str(rate)],
        timeout=frames / rate + 60)
    time.sleep(0.1)  # let the switch drain what is queued
    cpu = proc_cpu_s([d.pid]) - cpu0 - idle_per_s * (time.monotonic() - t0)
    rx = _rx_frames(d, switch, "p0") - rx0
    if rx <= 0:
        raise RuntimeError(f"the switch read no frames from p0 ({dst})")
    return 1e6 * max(cpu, 0.0) / rx


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b·x: (a, b, R²)."""
    slope, intercept = statistics.linear_regression(xs, ys)
    mean = statistics.fmean(ys)
    ss_tot = sum((y - mean) ** 2 for y in ys) or 1e-12
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return intercept, slope, 1 - ss_res / ss_tot


def flood_cost(frames: int = 6_000, rate: float = 5_000, reps: int = 3,
               counts: tuple[int, ...] = PORT_COUNTS) -> dict[str, Any]:
    """Per port count: ``reps`` alternating flood/unicast injections, medians."""
    with Lab() as lab:
        ns = lab.netns("fl")
        d = Vswitchd(lab, ns, None)
        sw = unique_name("sw")
        d.create_private(sw)
        taps: list[str] = []
        rows = []
        for n in counts:
            while len(taps) < n:
                tap = unique_name("ft")
                d.add_port(sw, f"p{len(taps)}", "tap", tap)
                set_up(ns, tap)
                taps.append(tap)
            # the unicast destination lives behind p1: one frame from it teaches the switch
            run(ns, [sys.executable, str(HERE / "inject.py"), taps[1], BCAST, DST_MAC, "1", "1000"])
            time.sleep(0.1)
            idle = _idle_cpu_per_s(d)
            flood, unicast = [], []
            for _ in range(reps):
                flood.append(_inject_cost(d, ns, sw, taps[0], BCAST, frames, rate, idle))
                unicast.append(_inject_cost(d, ns, sw, taps[0], DST_MAC, frames, rate, idle))
            rows.append({"ports": n, "idle_cpu_pct": 100 * idle, "flood_us": statistics.median(flood),
                         "unicast_us": statistics.median(unicast), "flood_all": flood, "unicast_all": unicast})
            print(f"  flood cost, {n:2d} ports: flood {rows[-1]['flood_us']:.2f} µs/frame, "
                  f"unicast {rows[-1]['unicast_us']:.2f} µs/frame", flush=True)
    xs = [float(r["ports"] - 1) for r in rows]
    f_fixed, f_slope, f_r2 = _fit(xs, [r["flood_us"] for r in rows])
    _u_fixed, u_slope, _ = _fit(xs, [r["unicast_us"] for r in rows])
    return {"rows": rows, "flood_us_per_output_port": f_slope, "flood_us_fixed": f_fixed, "flood_r2": f_r2,
            "unicast_us_per_port": u_slope, "unicast_slope_share": u_slope / f_slope if f_slope > 0 else float("inf"),
            "unicast_ratio_max_min": rows[-1]["unicast_us"] / rows[0]["unicast_us"],
            "frames": frames, "rate_fps": rate, "reps": reps}


# -- MAC table -----------------------------------------------------------------------------------

def mac_table(entries: int = 1_000_000) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(HERE / "mactable.py"), str(entries)], capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout)


# -- fan-in with one slow port ---------------------------------------------------------------------

BLAST = """
import socket, sys, time
dst, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, sent, t0 = bytes(1400), 0, time.monotonic()
while time.monotonic() - t0 < secs:
    for _ in range(8):
        try:
            s.sendto(payload, (dst, 9))
            sent += 1
        except OSError:
            pass
    ahead = t0 + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
print(sent)
"""


def _udp_ab(lab_ns: dict[str, str], ips: dict[str, str], mbps: int, seconds: float) -> dict[str, float]:
    with Lab() as lab:
        lab.popen(lab_ns["b"], ["iperf3", "-s", "-1", "-B", ips["b"]])
        time.sleep(0.3)
        out = run(lab_ns["a"], ["iperf3", "-c", ips["b"], "-u", "-b", f"{mbps}M", "-l", "1400", "-t", f"{seconds:g}",
                                "-J"], timeout=seconds + 20, check=False)
    data = json.loads(out.stdout)
    s = data["end"]["sum"]
    return {"loss_pct": float(s["lost_percent"]), "packets": float(s["packets"])}


def fan_in(seconds: float = 4, ab_mbps: int = 100, slow_rate: str = "1mbit", blast_pps: float = 8000) -> dict[str, Any]:
    with Lab() as lab:
        ns_s = lab.netns("fs")
        d = Vswitchd(lab, ns_s, None)
        sw = unique_name("sw")
        d.create_private(sw)
        nss, ips, sides = {}, {}, {}
        for i, who in enumerate("abcs"):
            nss[who] = lab.netns("f" + who)
            inner, side = unique_name("fi" + who), unique_name("fo" + who)
            lab.veth(inner, nss[who], side, ns_s)
            ips[who] = f"10.202.0.{i + 1}"
            set_up(nss[who], inner, cidr=f"{ips[who]}/24")
            d.add_port(sw, who, "link", side)
            sides[who] = side
        run(ns_s, ["tc", "qdisc", "add", "dev", sides["s"], "root", "tbf", "rate", slow_rate,
                   "burst", "4kb", "latency", "20ms"])
        for who in "bs":  # ARP + learning before timing
            src = "a" if who == "b" else "c"
            run(nss[src], ["ping", "-c", "2", "-i", "0.2", "-w", "10", ips[who]], timeout=20)
        cpu0, t0 = proc_cpu_s([d.pid]), time.monotonic()
        baseline = _udp_ab(nss, ips, ab_mbps, seconds)
        cpu_alone = 100 * (proc_cpu_s([d.pid]) - cpu0) / (time.monotonic() - t0)
        stats0 = {s.port: s for s in d.api.stats(sw)}
        cpu0, t0 = proc_cpu_s([d.pid]), time.monotonic()
        blast = lab.popen(nss["c"], [sys.executable, "-c", BLAST, ips["s"], str(blast_pps), str(seconds + 1.5)],
                          stdout=subprocess.PIPE)
        time.sleep(0.5)
        result: dict[str, Any] = {}
        t = threading.Thread(target=lambda: result.update(_udp_ab(nss, ips, ab_mbps, seconds)))
        t.start()
        t.join()
        blast_sent = int((blast.communicate(timeout=30)[0] or "0").strip() or 0)
        cpu_slow = 100 * (proc_cpu_s([d.pid]) - cpu0) / (time.monotonic() - t0)
        stats1 = {s.port: s for s in d.api.stats(sw)}
    s0, s1 = stats0["s"], stats1["s"]
    return {"ab_mbps": ab_mbps, "slow_rate": slow_rate, "blast_pps": blast_pps, "seconds": seconds,
            "ab_loss_alone_pct": baseline["loss_pct"], "ab_loss_with_slow_port_pct": result["loss_pct"],
            "c_to_s_sent": blast_sent, "s_tx_frames": s1.tx_frames - s0.tx_frames,
            "switch_cpu_pct_alone": cpu_alone, "switch_cpu_pct_with_slow_port": cpu_slow,
            "ok": result["loss_pct"] <= max(1.0, baseline["loss_pct"] + 1.0)}


# -- all, and the markdown section ---------------------------------------------------------------

def run_all(*, quick: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print("scale: flood cost against port count", flush=True)
    try:
        out["flood"] = flood_cost(frames=2000 if quick else 6_000, reps=1 if quick else 3)
    except Exception as exc:  # one failed scale test must not lose the others
        out["flood_error"] = f"{type(exc).__name__}: {exc}"
    print("scale: MAC table", flush=True)
    try:
        out["mac_table"] = mac_table(100_000 if quick else 1_000_000)
    except Exception as exc:
        out["mac_table_error"] = f"{type(exc).__name__}: {exc}"
    print("scale: fan-in with one slow port", flush=True)
    try:
        out["fan_in"] = fan_in(seconds=2 if quick else 4)
    except Exception as exc:
        out["fan_in_error"] = f"{type(exc).__name__}: {exc}"
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = ["## Scale (vswitch alone, unpinned)", ""]
    fl = res.get("flood")
    if fl:
        lines += [f"Flood and unicast cost as ports grow: {fl['frames']} frames of 60 B injected into port 0 at "
                  f"{fl['rate_fps']:.0f} frames/s; vswitchd CPU per frame read, minus its idle CPU over the same "
                  f"window (TAP ports); median of {fl['reps']} alternating flood/unicast runs per port count.", "",
                  "| ports | flood µs/frame | flood µs per output port | unicast µs/frame |", "|---|---|---|---|"]
        lines += [f"| {r['ports']} | {r['flood_us']:.2f} | {r['flood_us'] / (r['ports'] - 1):.2f} | "
                  f"{r['unicast_us']:.2f} |" for r in fl["rows"]]
        lines += ["", f"Flood fit: {fl['flood_us_fixed']:.2f} µs + {fl['flood_us_per_output_port']:.2f} µs × "
                      f"(ports − 1), R² = {fl['flood_r2']:.3f}. Unicast: {fl['unicast_us_per_port']:+.3f} µs per "
                      f"added port ({100 * fl['unicast_slope_share']:.0f} % of flood's), "
                      f"{fl['rows'][-1]['ports']} ports / {fl['rows'][0]['ports']} ports = "
                      f"{fl['unicast_ratio_max_min']:.2f}×.", ""]
    elif res.get("flood_error"):
        lines += [f"Flood cost: error — {res['flood_error']}", ""]
    mt = res.get("mac_table")
    if mt:
        lines += [f"MAC table (`vswitch.core.fdb.MacTable`, {mt['entries']:,} entries over 64 ports): "
                  f"{mt['memory_mib']:.0f} MiB ({mt['bytes_per_entry']:.0f} B/entry), "
                  f"learn {mt['learn_per_s'] / 1e6:.2f} M/s (new), refresh {mt['refresh_per_s'] / 1e6:.2f} M/s, "
                  f"lookup {mt['lookup_per_s'] / 1e6:.2f} M/s ({mt['hits']:,} hits).", ""]
    elif res.get("mac_table_error"):
        lines += [f"MAC table: error — {res['mac_table_error']}", ""]
    fi = res.get("fan_in")
    if fi:
        lines += [f"Fan-in with one slow port (link ports; S's veth shaped by tc tbf {fi['slow_rate']}; "
                  f"C sends {fi['blast_pps']:.0f} × 1400 B/s to S while iperf3 sends UDP A → B at "
                  f"{fi['ab_mbps']} Mb/s for {fi['seconds']:g} s): A → B loss {fi['ab_loss_with_slow_port_pct']:.2f} % "
                  f"(alone: {fi['ab_loss_alone_pct']:.2f} %); C → S: {fi['c_to_s_sent']} sent, "
                  f"{fi['s_tx_frames']} passed to S; vswitchd CPU {fi['switch_cpu_pct_with_slow_port']:.0f} % "
                  f"(A → B alone: {fi['switch_cpu_pct_alone']:.0f} %) — **{'met' if fi['ok'] else 'MISSED'}** "
                  "(the slow port must not cause loss between the others).", ""]
    elif res.get("fan_in_error"):
        lines += [f"Fan-in: error — {res['fan_in_error']}", ""]
    return "\n".join(lines)

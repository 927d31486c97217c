"""Turn raw benchmark records into medians, ratios, target verdicts, markdown and a PNG.

Owns presentation only: no traffic, no namespaces. A record is one setup measured once in one
round and one mode: ``{"round": r, "mode": "unpinned", "setup": "vswitch-tap", <metric>: value}``.
Ratios are medians divided by the kernel bridge's median *of the same run and mode*.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: (metric key, column title, format, higher_is_better or None for "no ratio")
COLUMNS: list[tuple[str, str, str, bool | None]] = [
    ("tcp1_gbps", "TCP 1 stream Gb/s", "{:.2f}", True),
    ("tcp4_gbps", "TCP 4 streams Gb/s", "{:.2f}", True),
    ("udp_rx_kpps", "UDP 64 B rx kpps", "{:.0f}", True),
    ("udp_loss_pct", "UDP loss %", "{:.0f}", None),
    ("udp_fwd_kpps", "UDP fwd kpps (into B)", "{:.0f}", None),
    ("ping_avg_us", "ping avg µs", "{:.0f}", False),
    ("ping_p99_us", "ping p99 µs", "{:.0f}", False),
    ("cpu_us_per_pkt", "switch CPU µs/pkt", "{:.2f}", None),
    ("tcp1_cpu_pct", "switch CPU % (TCP 1)", "{:.0f}", None),
]
BRIDGE = "kernel-bridge"
#: targets that are ratios to the kernel bridge, drawn on the plot
PLOT_TARGETS = {"tcp1_gbps": 0.8, "tcp4_gbps": 0.6, "ping_avg_us": 1.5}
OURS = ("vswitch-tap", "vswitch-link")
#: the kernel datapath's setups, judged by issue 12's targets
KERNEL = ("vswitch-kernel", "vswitch-external")
#: setups whose ratios are to another baseline than the kernel bridge between two veths: an
#: External switch's host traffic against a kernel bridge holding the same NIC
BASE = {"vswitch-external": "bridge-external", "vswitch-external-python": "bridge-external"}


def medians(records: Iterable[dict[str, Any]], mode: str) -> dict[str, dict[str, float]]:
    """setup -> metric -> median over the rounds (metrics missing from a round are skipped)."""
    values: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, list[int]] = {}
    for rec in records:
        if rec["mode"] != mode:
            continue
        per = values.setdefault(rec["setup"], {})
        ok = counts.setdefault(rec["setup"], [0, 0])
        ok[1] += 1
        ok[0] += 0 if rec.get("error") else 1
        for key, value in rec.items():
            if isinstance(value, int | float) and key != "round":
                per.setdefault(key, []).append(float(value))
    out = {setup: {k: statistics.median(v) for k, v in per.items()} for setup, per in values.items()}
    for setup, (ok, total) in counts.items():
        out[setup]["_ok"] = ok
        out[setup]["_runs"] = total
    return out


def ratio(med: dict[str, dict[str, float]], setup: str, key: str, base: str = BRIDGE) -> float | None:
    a, b = med.get(setup, {}).get(key), med.get(base, {}).get(key)
    if a is None or not b:
        return None
    return a / b


def main_table(med: dict[str, dict[str, float]], order: Sequence[str]) -> str:
    head = "| setup | " + " | ".join(c[1] for c in COLUMNS) + " | ok runs |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for setup in order:
        if setup not in med:
            continue
        cells = []
        for key, _title, fmt, better in COLUMNS:
            v = med[setup].get(key)
            if v is None:
                cells.append("–")
                continue
            cell = fmt.format(v)
            r = ratio(med, setup, key, BASE.get(setup, BRIDGE))
            if better is not None and r is not None and setup != BRIDGE:
                cell += f" ({r:.2f}×)"
            cells.append(cell)
        rows.append(f"| {setup} | " + " | ".join(cells) + f" | {med[setup]['_ok']:.0f}/{med[setup]['_runs']:.0f} |")
    return "\n".join(rows)


@dataclass
class Verdict:
    target: str
    setup: str
    value: str
    met: bool | None  # None: not measured in this run

    @property
    def word(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


def verdicts(med: dict[str, dict[str, float]], scale: dict[str, Any] | None) -> list[Verdict]:
    """The issue's targets, judged on the unpinned medians of this run."""
    out: list[Verdict] = []

    def check(target: str, setup: str, key: str, base: str, limit: float, at_least: bool) -> None:
        r = ratio(med, setup, key, base)
        if r is None:
            out.append(Verdict(target, setup, f"needs {base}" if base not in med else "–", None))
            return
        out.append(Verdict(target, setup, f"{r:.2f}×", r >= limit if at_least else r <= limit))

    for setup in OURS:
        if setup not in med:
            continue
        check("TCP 1 stream ≥ 0.8× kernel bridge", setup, "tcp1_gbps", BRIDGE, 0.8, True)
        check("TCP 4 streams ≥ 0.6× kernel bridge", setup, "tcp4_gbps", BRIDGE, 0.6, True)
        check("UDP 64 B rx pps ≥ 1.2× OVS userspace", setup, "udp_rx_kpps", "ovs-netdev", 1.2, True)
        check("UDP 64 B rx pps ≥ 1.2× VDE2", setup, "udp_rx_kpps", "vde2", 1.2, True)
        check("ping RTT avg ≤ 1.5× kernel bridge", setup, "ping_avg_us", BRIDGE, 1.5, False)
    for setup in KERNEL:
        if setup not in med:
            continue
        base = BASE.get(setup, BRIDGE)
        what = "kernel bridge" if base == BRIDGE else base
        check(f"TCP 1 stream ≥ 1.0× {what}", setup, "tcp1_gbps", base, 1.0, True)
        check(f"TCP 4 streams ≥ 0.95× {what}", setup, "tcp4_gbps", base, 0.95, True)
        check(f"UDP 64 B rx pps ≥ 1.1× {what}", setup, "udp_rx_kpps", base, 1.1, True)
        check(f"ping RTT avg ≤ 1.0× {what}", setup, "ping_avg_us", base, 1.0, False)
    if scale and scale.get("flood"):
        fl = scale["flood"]
        share = fl["unicast_slope_share"]
        out.append(Verdict("unicast cost flat as ports grow (per-port slope ≤ 10 % of flood's)", "vswitch-tap",
                           f"{fl['unicast_us_per_port']:+.3f} µs/port = {100 * share:.0f} % of flood's; "
                           f"64/2 ports {fl['unicast_ratio_max_min']:.2f}×", share <= 0.10))
        out.append(Verdict("flood cost linear in ports (fit R² ≥ 0.95)", "vswitch-tap",
                           f"R² = {fl['flood_r2']:.3f}", fl["flood_r2"] >= 0.95))
    else:
        out.append(Verdict("unicast flat / flood linear", "vswitch-tap", "–", None))
    return out


def verdict_table(vs: list[Verdict]) -> str:
    rows = ["| target | setup | this run | verdict |", "|---|---|---|---|"]
    rows += [f"| {v.target} | {v.setup} | {v.value} | {v.word} |" for v in vs]
    return "\n".join(rows)


def plot(path: str, runs: dict[str, dict[str, dict[str, float]]], order: Sequence[str]) -> bool:
    """Bar chart of ratios to the kernel bridge, one panel per mode. False when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return False
    metrics = [c for c in COLUMNS if c[3] is not None]
    modes = [m for m in ("unpinned", "pinned") if m in runs]
    if not modes:
        return False
    fig, axes = plt.subplots(1, len(modes), figsize=(7 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        med = runs[mode]
        setups = [s for s in order if s in med and s != BRIDGE]
        width = 0.8 / max(1, len(setups))
        for i, setup in enumerate(setups):
            ys = [ratio(med, setup, key) or 0.0 for key, *_ in metrics]
            xs = [j + i * width for j in range(len(metrics))]
            ax.bar(xs, ys, width, label=setup)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        for j, (key, *_rest) in enumerate(metrics):
            if key in PLOT_TARGETS:  # the target for this metric, as a red tick over its group
                ax.hlines(PLOT_TARGETS[key], j - width / 2, j + width * (len(setups) - 0.5), colors="red",
                          linewidth=1.5)
        ax.set_xticks([j + width * (len(setups) - 1) / 2 for j in range(len(metrics))])
        ax.set_xticklabels([c[1] for c in metrics], rotation=25, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.FixedLocator([0.1, 0.2, 0.5, 0.8, 1, 1.5, 2, 5, 10, 20, 50, 100]))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _pos: f"{y:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_ylabel("ratio to kernel bridge (same run, log scale)")
        ax.set_title(f"{mode}: red = target (ping: lower is better)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

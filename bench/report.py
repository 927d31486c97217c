"""Turn raw benchmark records into medians, paired ratios, target verdicts, markdown and a PNG.

Owns presentation only: no traffic, no namespaces. A record is one setup measured once in one
round and one mode: ``{"round": r, "mode": "unpinned", "setup": "vswitch-tap", <metric>: value}``.
Ratios are *paired*: in each round, the setup's value ÷ its baseline's value measured in the same
round and mode (the kernel bridge, or :data:`BASE`); a table shows the median of those per-round
ratios with their interquartile range, and the targets are judged on that median. With the noise
control (:data:`CONTROL`, a second kernel bridge) in the run, a target whose median lies within the
control's noise band is "within noise" instead of met or missed (:data:`NOISE_RULE`).
"""

from __future__ import annotations

import math
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
    ("ping_b2b_us", "ping back-to-back µs", "{:.1f}", False),
    ("cpu_us_per_pkt", "switch CPU µs/pkt", "{:.2f}", None),
    ("tcp1_cpu_pct", "switch CPU % (TCP 1)", "{:.0f}", None),
]
BRIDGE = "kernel-bridge"
#: the noise control: a second kernel bridge built exactly as the first and measured interleaved with
#: it; its per-round ratio to the first would be 1× on a noiseless machine
CONTROL = "kernel-bridge-2"
#: targets that are ratios to the kernel bridge, drawn on the plot
PLOT_TARGETS = {"tcp1_gbps": 0.8, "tcp4_gbps": 0.6, "ping_avg_us": 1.5}
OURS = ("vswitch-tap", "vswitch-link")
#: the kernel datapath's setups, judged by issue 12's targets
KERNEL = ("vswitch-kernel", "vswitch-external")
#: setups whose ratios are to another baseline than the kernel bridge between two veths: an
#: External switch's host traffic against a kernel bridge holding the same NIC
BASE = {"vswitch-external": "bridge-external", "vswitch-external-python": "bridge-external"}
#: what `run.py --targets` measures: the setups issue 12's targets judge, their baselines and the control
TARGET_SETUPS = (BRIDGE, CONTROL, "vswitch-kernel", "bridge-external", "vswitch-external", "vswitch-tap",
                 "ovs-netdev")
NOISE_RULE = (
    f"Each ratio is the median of the per-round ratios (setup ÷ its baseline in the same round), "
    f"[interquartile range] beside it. Noise control: `{CONTROL}`, a kernel bridge built exactly as "
    f"`{BRIDGE}`; its per-round ratios to `{BRIDGE}` would all be 1× without noise. Its noise factor "
    f"f = max(Q3, 1/Q1) of those ratios (how far from 1× the middle half of its rounds reach). "
    f"A target T is *within noise* when the setup's median ratio m lies strictly between T/f and T×f; "
    f"otherwise *met* or *MISSED* by m. Without the control in the run: met or MISSED by m alone.")


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


@dataclass(frozen=True)
class Spread:
    """Per-round ratios of a setup to its baseline: their median (what verdicts use), quartiles
    (``statistics.quantiles`` inclusive method; both equal the one value when there is one round)
    and how many rounds were paired."""

    median: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Raises ValueError when ``values`` is empty."""
        if not values:
            raise ValueError("no paired ratios")
        if len(values) == 1:
            return cls(values[0], values[0], values[0], 1)
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, q1, q3, len(values))

    def show(self) -> str:
        if self.n == 1:
            return f"{self.median:.2f}×"
        return f"{self.median:.2f}× [{self.q1:.2f}–{self.q3:.2f}]"


def base_of(setup: str) -> str:
    """The setup a setup's table ratios are to."""
    return BASE.get(setup, BRIDGE)


def paired_ratios(records: Iterable[dict[str, Any]], mode: str, setup: str, key: str, base: str) -> list[float]:
    """``setup``'s ``key`` ÷ ``base``'s, one per round (in round order) in which both have the metric
    in ``mode`` and the base's value is not 0; a round with only one of them measured is left out."""
    per_round: dict[int, dict[str, float]] = {}
    for rec in records:
        value = rec.get(key)
        if rec["mode"] == mode and rec["setup"] in (setup, base) and isinstance(value, int | float):
            per_round.setdefault(rec["round"], {})[rec["setup"]] = float(value)
    return [v[setup] / v[base] for _rnd, v in sorted(per_round.items()) if setup in v and v.get(base)]


def paired(records: Sequence[dict[str, Any]], mode: str, setup: str, key: str, base: str) -> Spread | None:
    """The :class:`Spread` of :func:`paired_ratios`, None when no round paired."""
    values = paired_ratios(records, mode, setup, key, base)
    return Spread.of(values) if values else None


def table_ratios(records: Sequence[dict[str, Any]], mode: str) -> dict[str, dict[str, Spread]]:
    """setup -> metric -> paired ratios to the setup's baseline (:func:`base_of`), for the columns that
    carry a ratio; the kernel bridge itself has none."""
    setups = dict.fromkeys(rec["setup"] for rec in records if rec["mode"] == mode)
    out: dict[str, dict[str, Spread]] = {}
    for setup in setups:
        if setup == BRIDGE:
            continue
        per = {key: sp for key, _t, _f, better in COLUMNS if better is not None
               if (sp := paired(records, mode, setup, key, base_of(setup))) is not None}
        out[setup] = per
    return out


def main_table(med: dict[str, dict[str, float]], order: Sequence[str],
               ratios: dict[str, dict[str, Spread]]) -> str:
    """Medians over the rounds; in parentheses the paired ratios to the setup's baseline
    (``ratios``, from :func:`table_ratios`): median [interquartile range]."""
    head = "| setup | " + " | ".join(c[1] for c in COLUMNS) + " | ok runs |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for setup in order:
        if setup not in med:
            continue
        cells = []
        for key, _title, fmt, _better in COLUMNS:
            v = med[setup].get(key)
            if v is None:
                cells.append("–")
                continue
            cell = fmt.format(v)
            sp = ratios.get(setup, {}).get(key)
            if sp is not None:
                cell += f" ({sp.show()})"
            cells.append(cell)
        rows.append(f"| {setup} | " + " | ".join(cells) + f" | {med[setup]['_ok']:.0f}/{med[setup]['_runs']:.0f} |")
    return "\n".join(rows)


@dataclass
class Verdict:
    target: str
    setup: str
    value: str
    met: bool | None  # None: not measured in this run
    #: the median is within the noise control's band around the target (:data:`NOISE_RULE`)
    within_noise: bool = False
    #: the noise control's paired ratios for this metric and the band they give, "" without a control
    control: str = ""

    @property
    def word(self) -> str:
        if self.met is not None and self.within_noise:
            return "within noise"
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


def noise_factor(control: Spread) -> float:
    """f = max(Q3, 1/Q1, 1) of the control's paired ratios: how far from 1× the middle half of its
    rounds reach (infinite when a quartile is 0: the control measured nothing)."""
    if control.q1 <= 0:
        return math.inf
    return max(1.0, control.q3, 1 / control.q1)


def judge(m: float, limit: float, at_least: bool, noise: float | None) -> tuple[bool, bool]:
    """(met by the median ``m``, within the noise band ``limit``/f < m < ``limit``·f) — the one
    place :data:`NOISE_RULE` is decided; ``noise`` None (no control in the run): never within noise."""
    met = m >= limit if at_least else m <= limit
    return met, noise is not None and limit / noise < m < limit * noise


def verdicts(records: Sequence[dict[str, Any]], scale: dict[str, Any] | None, mode: str = "unpinned",
             *, issue12_only: bool = False) -> list[Verdict]:
    """The targets, judged on the median paired ratios of ``mode`` in this run (and the noise control
    when it was measured). ``issue12_only``: only issue 12's targets (no older ones, no scale)."""
    out: list[Verdict] = []
    present = {rec["setup"] for rec in records if rec["mode"] == mode}

    def check(target: str, setup: str, key: str, base: str, limit: float, at_least: bool) -> None:
        r = paired(records, mode, setup, key, base)
        if r is None:
            out.append(Verdict(target, setup, f"needs {base}" if base not in present else "–", None))
            return
        control, noise, note = paired(records, mode, CONTROL, key, BRIDGE), None, ""
        if control is not None:
            noise = noise_factor(control)
            note = f"{control.show()}; band {limit / noise:.2f}–{limit * noise:.2f}×"
        met, within = judge(r.median, limit, at_least, noise)
        out.append(Verdict(target, setup, r.show(), met, within, note))

    for setup in OURS:
        if setup not in present:
            continue
        check("TCP 1 stream ≥ 0.8× kernel bridge", setup, "tcp1_gbps", BRIDGE, 0.8, True)
        if setup == "vswitch-tap":  # issue 12's "Python datapath, TAP ports"
            check("UDP 64 B rx pps ≥ 1.0× OVS userspace (issue 12)", setup, "udp_rx_kpps", "ovs-netdev", 1.0, True)
        if issue12_only:
            continue
        check("TCP 4 streams ≥ 0.6× kernel bridge", setup, "tcp4_gbps", BRIDGE, 0.6, True)
        check("UDP 64 B rx pps ≥ 1.2× OVS userspace", setup, "udp_rx_kpps", "ovs-netdev", 1.2, True)
        check("UDP 64 B rx pps ≥ 1.2× VDE2", setup, "udp_rx_kpps", "vde2", 1.2, True)
        check("ping RTT avg ≤ 1.5× kernel bridge", setup, "ping_avg_us", BRIDGE, 1.5, False)
    for setup in KERNEL:
        if setup not in present:
            continue
        base = base_of(setup)
        what = "kernel bridge" if base == BRIDGE else base
        check(f"TCP 1 stream ≥ 1.0× {what}", setup, "tcp1_gbps", base, 1.0, True)
        check(f"TCP 4 streams ≥ 0.95× {what}", setup, "tcp4_gbps", base, 0.95, True)
        check(f"UDP 64 B rx pps ≥ 1.1× {what}", setup, "udp_rx_kpps", base, 1.1, True)
        check(f"ping RTT avg ≤ 1.0× {what}", setup, "ping_avg_us", base, 1.0, False)
    if issue12_only:
        return out
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
    """The verdicts; a noise-control column when any verdict had the control to judge by."""
    if not any(v.control for v in vs):
        rows = ["| target | setup | this run: median [IQR] of per-round ratios | verdict |", "|---|---|---|---|"]
        rows += [f"| {v.target} | {v.setup} | {v.value} | {v.word} |" for v in vs]
        return "\n".join(rows)
    rows = [f"| target | setup | this run: median [IQR] of per-round ratios | noise control {CONTROL} ÷ {BRIDGE}"
            " and the band it gives | verdict |", "|---|---|---|---|---|"]
    rows += [f"| {v.target} | {v.setup} | {v.value} | {v.control or '–'} | {v.word} |" for v in vs]
    return "\n".join(rows)


def plot(path: str, ratios: dict[str, dict[str, dict[str, Spread]]], order: Sequence[str]) -> bool:
    """Bar chart of the paired ratios (mode -> :func:`table_ratios`): median bars, interquartile range
    as error bars, one panel per mode. False when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return False
    metrics = [c for c in COLUMNS if c[3] is not None]
    modes = [m for m in ("unpinned", "pinned") if m in ratios]
    if not modes:
        return False
    fig, axes = plt.subplots(1, len(modes), figsize=(7 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        per = ratios[mode]
        setups = [s for s in order if s in per]
        width = 0.8 / max(1, len(setups))
        for i, setup in enumerate(setups):
            sps = [per[setup].get(key) for key, *_ in metrics]
            ys = [sp.median if sp else 0.0 for sp in sps]
            err = [[sp.median - sp.q1 if sp else 0.0 for sp in sps], [sp.q3 - sp.median if sp else 0.0 for sp in sps]]
            xs = [j + i * width for j in range(len(metrics))]
            ax.bar(xs, ys, width, label=setup, yerr=err, capsize=2, error_kw={"linewidth": 0.8})
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        for j, (key, *_rest) in enumerate(metrics):
            if key in PLOT_TARGETS:  # the issue's target for this metric, as a red tick over its group
                ax.hlines(PLOT_TARGETS[key], j - width / 2, j + width * (len(setups) - 0.5), colors="red",
                          linewidth=1.5)
        ax.set_xticks([j + width * (len(setups) - 1) / 2 for j in range(len(metrics))])
        ax.set_xticklabels([c[1] for c in metrics], rotation=25, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.FixedLocator([0.1, 0.2, 0.5, 0.8, 1, 1.5, 2, 5, 10, 20, 50, 100]))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _pos: f"{y:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_ylabel("per-round ratio to baseline: median, IQR (log)")
        ax.set_title(f"{mode}: red = target (ping: lower is better)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

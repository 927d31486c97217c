#!/usr/bin/env python3
"""`make bench`: vswitch against the Linux kernel bridge (and VDE2 / Open vSwitch with --peers).

Builds two namespaces joined by each switch in turn, measures (ping, iperf3 TCP 1 and 4 streams,
UDP 64 B, switch CPU per packet), repeats the whole list ``--rounds`` times interleaved, unpinned and
pinned, and prints medians with paired ratios (per round, to the kernel bridge of the same round:
their median and interquartile range; see report.py). Then the scale tests
(flood cost against port count, 1,000,000-entry MAC table, fan-in with one slow port) and the
offload integrity check. Writes ``<out>/latest.md``, ``latest.png`` and ``latest.json``.

Everything it creates has a unique ``pb…`` name and is removed on exit, failure or Ctrl-C.
Needs root. ``--quick``: a ~10 s smoke run (kernel bridge and vswitch on TAP ports only).
``--targets``: only issue 12's targets (report.TARGET_SETUPS, the noise control included), unpinned,
7 rounds, no scale or integrity tests; prints each target as met, MISSED or within noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import report  # noqa: E402
from netlab import Lab, install_signal_handlers  # noqa: E402

HERE = Path(__file__).resolve().parent
SWITCH_CPU, TRAFFIC_CPU = "1", "0"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="~10 s smoke run: kernel bridge + vswitch tap, 1 s tests")
    p.add_argument("--peers", action="store_true", help="also VDE2 and Open vSwitch (installed by apt if missing)")
    p.add_argument("--targets", action="store_true",
                   help="issue 12's targets only: their setups and the noise control (a second kernel bridge), "
                        "unpinned, 7 rounds, no scale/integrity tests; installs Open vSwitch if missing")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --quick 1; --targets 7)")
    p.add_argument("--seconds", type=float, default=None, help="seconds per iperf3 test (default 3; --quick 1)")
    p.add_argument("--pings", type=int, default=None, help="pings per RTT test, 2 ms apart (default 500)")
    p.add_argument("--only", default=None, help="comma-separated setups (kernel-bridge is always included; "
                                                "with --targets, kernel-bridge-2 too)")
    p.add_argument("--modes", default=None, help="unpinned,pinned (default both; --quick unpinned)")
    p.add_argument("--vswitchd-args", default="", help='extra vswitchd arguments, e.g. "--busy-poll-us 50"')
    p.add_argument("--baseline-src", default=None,
                   help="a vswitch source tree (e.g. `git worktree add` of main): with --only …,vswitch-tap-base"
                        " or vswitch-link-base, its vswitchd is measured interleaved with this tree's")
    p.add_argument("--no-scale", action="store_true", help="skip flood / MAC-table / fan-in tests")
    p.add_argument("--integrity", action="store_true", help="only the offload integrity check (1 GiB)")
    p.add_argument("--no-integrity", action="store_true", help="skip the offload integrity check")
    p.add_argument("--integrity-bytes", type=int, default=1 << 30)
    p.add_argument("--out", default=str(HERE / "results"), help="directory for latest.md/png/json")
    p.add_argument("--update-docs", action="store_true",
                   help="also replace the 'Latest results' section of docs/performance.md with this run")
    args = p.parse_args(argv)
    if args.targets and args.quick:
        p.error("--targets and --quick exclude each other")
    args.rounds = args.rounds or (1 if args.quick else 7 if args.targets else 3)
    args.seconds = args.seconds or (1.0 if args.quick else 3.0)
    args.pings = args.pings or (30 if args.quick else 500)
    args.modes = (args.modes or ("unpinned" if args.quick or args.targets else "unpinned,pinned")).split(",")
    if args.targets:
        args.no_scale = args.no_integrity = True
    return args


def choose_setups(args: argparse.Namespace) -> list[str]:
    from setups import PEERS, SETUPS

    if args.only:
        names = [n for n in args.only.split(",") if n]
        unknown = [n for n in names if n not in SETUPS]
        if unknown:
            sys.exit(f"unknown setup(s) {unknown}; choose from {list(SETUPS)}")
        if args.targets:  # the control is what makes a targets run's verdicts say "within noise"
            names.append(report.CONTROL)
    elif args.targets:
        names = list(report.TARGET_SETUPS)
    elif args.quick:
        names = ["vswitch-tap"]
    else:
        names = ["vswitch-tap", "vswitch-link", "vswitch-kernel", "vswitch-mixed", "vswitch-external"]
        names += list(PEERS) if args.peers else []
    if any(report.BASE.get(n) for n in names) and "bridge-external" not in names:
        names.append("bridge-external")  # the External setups' own baseline
    return ["kernel-bridge"] + [n for n in dict.fromkeys(names) if n != "kernel-bridge"]


def round_order(names: list[str], rnd: int) -> list[str]:
    """The setups in round `rnd` (from 1): the list rotated by rnd - 1, so over as many rounds as
    setups each takes every place in a round once. A place has a bias of its own — in a 7-round run
    the setup measured first in a round (after the previous round's last UDP flood) had the lowest
    ping in every round, and an identical second bridge measured right after it read 1.24× —, which
    a fixed order puts on the same setups every round."""
    k = (rnd - 1) % len(names) if names else 0
    return names[k:] + names[:k]


def run_matrix(args: argparse.Namespace, names: list[str]) -> list[dict[str, Any]]:
    """Every setup in every mode, the whole list repeated ``rounds`` times, each round starting one
    setup later (`round_order`: A B C, B C A, C A B …)."""
    from measure import measure_pair
    from setups import SETUPS

    records = []
    for rnd in range(1, args.rounds + 1):
        for mode in args.modes:
            pinned = mode == "pinned"
            for name in round_order(names, rnd):
                rec: dict[str, Any] = {"round": rnd, "mode": mode, "setup": name}
                t0 = time.monotonic()
                try:
                    with Lab() as lab:
                        pair = SETUPS[name](lab, SWITCH_CPU if pinned else None)
                        rec.update(measure_pair(pair, seconds=args.seconds, pings=args.pings,
                                                traffic_cpus=TRAFFIC_CPU if pinned else None))
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    rec["error"] = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc()
                missing = [k for k in ("tcp1_gbps", "tcp4_gbps", "udp_rx_kpps", "ping_avg_us") if k not in rec]
                if missing and "error" not in rec:
                    rec["error"] = f"no result for {', '.join(missing)}"
                records.append(rec)
                print(f"[round {rnd}/{args.rounds} {mode:8s}] {name:14s} {time.monotonic() - t0:5.1f} s  "
                      + _brief(rec), flush=True)
    return records


def _brief(rec: dict[str, Any]) -> str:
    if rec.get("error"):
        return "error: " + rec["error"].splitlines()[0][:100]
    parts = []
    for key, fmt in (("tcp1_gbps", "tcp1 {:.2f}G"), ("tcp4_gbps", "tcp4 {:.2f}G"), ("udp_rx_kpps", "udp {:.0f}k"),
                     ("ping_avg_us", "ping {:.0f}µs"), ("cpu_us_per_pkt", "{:.2f}µs/pkt")):
        if key in rec:
            parts.append(fmt.format(rec[key]))
    return "  ".join(parts)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    iperf = subprocess.run(["iperf3", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem_gib:.0f} GiB RAM, kernel {platform.release()}, "
            f"Python {platform.python_version()}, {iperf.strip()}, load average at start {load}")


METHOD = """\
Two namespaces A (10.201.0.1) and B (10.201.0.2) joined by each switch in turn; the switch's process
and its side of the links live in a third namespace. Per setup and round: build, warm-up ping, then
`ping -i 0.002` (RTT avg and p99 from every reply), `ping -f` (back-to-back RTT avg), iperf3 TCP 1
stream, TCP 4 streams (`-P 4`),
UDP with 64-byte payloads at unlimited rate (`-u -b 0 -l 64`: packets/s received and loss as iperf3
reports them, plus frames the switch delivered into B from B's rx counter), tear down. The whole list
is repeated round after round, each round starting one setup later (A B C, B C A, C A B …), so drift,
other load and a place's own bias hit every setup alike;
tables show medians; a ratio is paired: per round, the setup's value ÷ the kernel bridge's in the
same round and mode, shown as the median of those per-round ratios [their interquartile range].
External setups: A is the host namespace itself and B a server behind its "NIC" (a veth); in
`vswitch-external*` the host's address moved with the takeover to the host vNIC, so its traffic
crosses vNIC → switch → uplink; their ratios are to `bridge-external` (a kernel bridge holding the
same NIC, the host's address on the bridge), whose own ratio is to the kernel bridge.
`kernel-bridge-2` (in `--targets` runs) is the noise control, built exactly as the kernel bridge.
Switch CPU: user+system time of the switch process (all threads), read from the kernel's
per-process CPU clock (the ns-precise form of /proc/PID/stat utime+stime); per packet = CPU during
the UDP test ÷ frames delivered into B. The kernel bridge has no process (it forwards in
the sender's softirq), hence "–". *Unpinned*: the scheduler decides (the targets apply here).
*Pinned*: the switch process on CPU 1, iperf3/ping on CPU 0 — the kernel bridge then gets one core
for sender + bridge + receiver, so ratios above 1× there are partly that artefact."""


def write_outputs(args: argparse.Namespace, names: list[str], records: list[dict[str, Any]],
                  extra: dict[str, Any], started: str, elapsed_s: float, host: str) -> str:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.integrity:  # alone: its own file, so the full run's latest.md stays
        text = "\n".join([f"# Offload integrity — {started}", "", f"- machine: {host}", "", *extra["sections"]])
        (out / "integrity.md").write_text(text + "\n")
        return text
    runs = {mode: report.medians(records, mode) for mode in args.modes}
    ratios = {mode: report.table_ratios(records, mode) for mode in args.modes}
    lines = ["# vswitch benchmark — latest run", "",
             f"- date: {started} (took {elapsed_s / 60:.1f} min)",
             f"- machine: {host}",
             f"- command: `bench/run.py {' '.join(sys.argv[1:])}`",
             f"- rounds: {args.rounds}, {args.seconds:g} s per iperf3 test, {args.pings} pings per RTT test",
             "", "## Method", "", METHOD, ""]
    for mode in args.modes:
        lines += [f"## {mode.capitalize()} — medians of {args.rounds} interleaved rounds (per-round ratio to the "
                  "baseline in the same round: median [IQR])", "",
                  report.main_table(runs[mode], names, ratios[mode]), ""]
    vs: list[report.Verdict] = []
    if "unpinned" in runs:
        vs = report.verdicts(records, extra.get("scale"), "unpinned", issue12_only=args.targets)
        lines += ["## Targets (unpinned)" + (" — issue 12" if args.targets else ""), "", report.NOISE_RULE, "",
                  report.verdict_table(vs), ""]
    for section in extra.get("sections", []):
        lines += [section, ""]
    errors = [r for r in records if r.get("error")]
    if errors:
        lines += ["## Errors", ""] + [f"- round {r['round']} {r['mode']} {r['setup']}: {r['error'].splitlines()[0]}"
                                      for r in errors] + [""]
    if report.plot(str(out / "latest.png"), ratios, names):
        lines += ["![ratios to the kernel bridge](latest.png)", ""]
    text = "\n".join(lines)
    (out / "latest.md").write_text(text)
    if args.update_docs:
        update_docs(lines, out)
    paired = {mode: {setup: {key: dataclasses.asdict(sp) for key, sp in per.items()} for setup, per in r.items()}
              for mode, r in ratios.items()}
    (out / "latest.json").write_text(json.dumps({"records": records, "medians": runs, "paired_ratios": paired,
                                                 "verdicts": [dict(dataclasses.asdict(v), word=v.word) for v in vs],
                                                 **extra.get("json", {})}, indent=1, default=str))
    return text


DOCS = HERE.parent / "docs" / "performance.md"
DOCS_MARKER = "<!-- latest -->"


def update_docs(lines: list[str], out: Path) -> None:
    """Replace everything after the marker in docs/performance.md with this run's header and tables."""
    doc = DOCS.read_text()
    if DOCS_MARKER not in doc:
        print(f"{DOCS} has no {DOCS_MARKER} marker; not updated", file=sys.stderr)
        return
    head = lines[2:6]  # date, machine, command, rounds
    after = lines.index("## Method") + 1
    method_end = next(i for i in range(after, len(lines)) if lines[i].startswith("## "))
    png = os.path.relpath(out / "latest.png", DOCS.parent)
    body = [ln.replace("](latest.png)", f"]({png})").replace("## ", "### ") for ln in lines[method_end:]]
    DOCS.write_text(doc.split(DOCS_MARKER)[0] + DOCS_MARKER + "\n\n" + "\n".join(head + [""] + body) + "\n")
    print(f"updated {DOCS}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py needs root: it creates network namespaces, veth pairs, TAPs and bridges.",
              file=sys.stderr)
        return 2
    install_signal_handlers()
    if args.vswitchd_args:
        import setups

        setups.VSWITCHD_EXTRA_ARGS[:] = shlex.split(args.vswitchd_args)
    if args.baseline_src:
        import setups

        setups.BASELINE_SRC = os.path.abspath(args.baseline_src)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = machine()
    t0 = time.monotonic()
    extra: dict[str, Any] = {"sections": [], "json": {}}
    try:
        if args.integrity:
            names: list[str] = []
            records: list[dict[str, Any]] = []
            args.modes = []
        else:
            names = choose_setups(args)
            from setups import PEERS, ensure_peer_packages

            if args.peers or (args.targets and any(n in PEERS for n in names)):
                ensure_peer_packages()
            records = run_matrix(args, names)
            if not args.quick and not args.no_scale:
                import scale

                extra["scale"] = scale.run_all(quick=False)
                extra["sections"].append(scale.markdown(extra["scale"]))
                extra["json"]["scale"] = extra["scale"]
        if args.integrity or not (args.quick or args.no_integrity):
            import integrity

            res = integrity.run_all(args.integrity_bytes)
            extra["sections"].append(integrity.markdown(res))
            extra["json"]["integrity"] = res
    except KeyboardInterrupt:
        print("\ninterrupted: everything created has been removed", file=sys.stderr)
        return 130
    text = write_outputs(args, names, records, extra, started, time.monotonic() - t0, host)
    print()
    print(text)
    print(f"\nwritten: {Path(args.out) / ('integrity.md' if args.integrity else 'latest.md')}")
    if args.integrity or "integrity" in extra["json"]:
        if not all(r.get("ok") for r in extra["json"]["integrity"]):
            return 1
    if any(r.get("error") for r in records) and all(r.get("error") for r in records if r["setup"] == "vswitch-tap"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

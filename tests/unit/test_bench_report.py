"""bench/report.py's pure logic: ratios paired by round, their spread, the noise-control verdict rule,
and bench/run.py's choice of setups for a targets run. No traffic, no root."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import report  # noqa: E402
import run  # noqa: E402


def rec(rnd: int, setup: str, mode: str = "unpinned", **metrics: float) -> dict:
    return {"round": rnd, "mode": mode, "setup": setup, **metrics}


def rounds(setup: str, key: str, values: list[float], mode: str = "unpinned") -> list[dict]:
    return [rec(i + 1, setup, mode, **{key: v}) for i, v in enumerate(values)]


def by_target(vs: list[report.Verdict], setup: str, starts: str) -> report.Verdict:
    [v] = [v for v in vs if v.setup == setup and v.target.startswith(starts)]
    return v


# -- paired ratios --------------------------------------------------------------------------------

def test_ratios_are_paired_by_round_not_medians_divided():
    # A bimodal bridge (10 or 20 Gb/s) and a setup that follows it except once: paired, the setup is the
    # bridge's equal in 2 rounds of 3 (median 1.0×); dividing the medians (10 / 20) would say 0.5×.
    records = rounds("kernel-bridge", "tcp1_gbps", [10, 20, 20]) + rounds("vswitch-kernel", "tcp1_gbps", [10, 20, 10])
    assert report.paired_ratios(records, "unpinned", "vswitch-kernel", "tcp1_gbps", "kernel-bridge") == [1.0, 1.0, 0.5]
    v = by_target(report.verdicts(records, None), "vswitch-kernel", "TCP 1 stream")
    assert v.met is True and v.word == "met"
    assert v.value == "1.00× [0.75–1.00]"


def test_paired_ratios_leave_out_rounds_without_both_and_other_modes():
    records = [rec(1, "kernel-bridge", tcp1_gbps=10), rec(1, "vswitch-tap", tcp1_gbps=5),
               rec(2, "kernel-bridge", tcp1_gbps=10),                                   # setup failed
               rec(3, "kernel-bridge", tcp1_gbps=0), rec(3, "vswitch-tap", tcp1_gbps=4),  # bridge measured 0
               rec(4, "kernel-bridge", error="boom"), rec(4, "vswitch-tap", tcp1_gbps=9),
               rec(5, "kernel-bridge", "pinned", tcp1_gbps=1), rec(5, "vswitch-tap", "pinned", tcp1_gbps=8)]
    assert report.paired_ratios(records, "unpinned", "vswitch-tap", "tcp1_gbps", "kernel-bridge") == [0.5]
    assert report.paired_ratios(records, "pinned", "vswitch-tap", "tcp1_gbps", "kernel-bridge") == [8.0]
    assert report.paired(records, "unpinned", "vswitch-tap", "udp_rx_kpps", "kernel-bridge") is None


def test_spread_median_and_quartiles():
    sp = report.Spread.of([0.7, 1.0, 0.9, 1.3, 0.8, 1.1, 1.2])
    assert (sp.median, sp.n) == (1.0, 7)
    assert sp.q1 == pytest.approx(0.85) and sp.q3 == pytest.approx(1.15)
    one = report.Spread.of([0.9])
    assert (one.median, one.q1, one.q3, one.n) == (0.9, 0.9, 0.9, 1)
    assert one.show() == "0.90×"
    with pytest.raises(ValueError):
        report.Spread.of([])


def test_table_ratios_use_each_setups_own_baseline():
    records = (rounds("kernel-bridge", "tcp1_gbps", [10, 10]) + rounds("bridge-external", "tcp1_gbps", [5, 5])
               + rounds("vswitch-external", "tcp1_gbps", [4, 6]))
    r = report.table_ratios(records, "unpinned")
    assert "kernel-bridge" not in r
    assert r["bridge-external"]["tcp1_gbps"].median == 0.5
    assert r["vswitch-external"]["tcp1_gbps"].median == 1.0  # to bridge-external, not to the kernel bridge
    table = report.main_table(report.medians(records, "unpinned"), ["kernel-bridge", "vswitch-external"], r)
    [row] = [ln for ln in table.splitlines() if ln.startswith("| vswitch-external |")]
    assert "5.00 (1.00× [0.90–1.10])" in row


# -- the noise rule -------------------------------------------------------------------------------

def test_noise_factor_is_how_far_the_controls_middle_half_strays_from_one():
    assert report.noise_factor(report.Spread(1.0, 0.8, 1.05, 7)) == pytest.approx(1.25)
    assert report.noise_factor(report.Spread(1.0, 0.95, 1.2, 7)) == pytest.approx(1.2)
    assert report.noise_factor(report.Spread(1.1, 1.05, 1.15, 7)) == pytest.approx(1.15)  # biased, not spread
    assert report.noise_factor(report.Spread(1.0, 1.0, 1.0, 7)) == 1.0
    assert report.noise_factor(report.Spread(0.0, 0.0, 0.0, 1)) == math.inf


@pytest.mark.parametrize(("m", "limit", "at_least", "noise", "expected"), [
    (0.85, 1.0, True, 1.25, (False, True)),    # the 15 % "miss" inside a ±25 % noisy run
    (0.85, 1.0, True, 1.10, (False, False)),   # a real miss when the control is calm
    (1.30, 1.0, True, 1.25, (True, False)),
    (1.21, 1.0, False, 1.25, (False, True)),   # ping, lower is better: same band
    (0.70, 1.0, False, 1.25, (True, False)),
    (1.0, 1.0, True, 1.0, (True, False)),      # a control without spread: no band at all
    (0.85, 1.0, True, None, (False, False)),   # no control in the run
])
def test_judge(m, limit, at_least, noise, expected):
    assert report.judge(m, limit, at_least, noise) == expected


def test_verdicts_say_within_noise_only_with_the_control():
    bridge = rounds("kernel-bridge", "ping_avg_us", [28, 30, 26, 29, 27, 31, 28])
    setup = rounds("vswitch-kernel", "ping_avg_us", [33, 33, 32, 34, 31, 36, 34])  # ~1.2× the bridge
    noisy = rounds("kernel-bridge-2", "ping_avg_us", [36, 24, 33, 23, 34, 25, 35])  # IQR ~0.83–1.25
    calm = rounds("kernel-bridge-2", "ping_avg_us", [28, 30, 26, 29, 27, 31, 28])
    alone = by_target(report.verdicts(bridge + setup, None), "vswitch-kernel", "ping")
    assert (alone.word, alone.control) == ("MISSED", "")
    v = by_target(report.verdicts(bridge + setup + noisy, None), "vswitch-kernel", "ping")
    assert v.word == "within noise" and v.met is False and "band" in v.control
    v = by_target(report.verdicts(bridge + setup + calm, None), "vswitch-kernel", "ping")
    assert v.word == "MISSED" and v.control.startswith("1.00×")
    table = report.verdict_table(report.verdicts(bridge + setup + noisy, None))
    assert "noise control kernel-bridge-2 ÷ kernel-bridge" in table and "| within noise |" in table


def test_issue12_only_judges_issue_12s_targets():
    records = (rounds("kernel-bridge", "tcp1_gbps", [10]) + rounds("vswitch-tap", "tcp1_gbps", [9])
               + [rec(1, "ovs-netdev", udp_rx_kpps=100), rec(1, "vswitch-tap", udp_rx_kpps=105)])
    vs = report.verdicts(records, None, issue12_only=True)
    assert [(v.target, v.word) for v in vs] == [("TCP 1 stream ≥ 0.8× kernel bridge", "met"),
                                               ("UDP 64 B rx pps ≥ 1.0× OVS userspace (issue 12)", "met")]
    full = [v.target for v in report.verdicts(records, None)]
    assert "UDP 64 B rx pps ≥ 1.2× OVS userspace" in full and "unicast flat / flood linear" in full


# -- run.py --targets -----------------------------------------------------------------------------

def test_targets_run_defaults():
    args = run.parse_args(["--targets"])
    assert (args.rounds, args.modes, args.no_scale, args.no_integrity) == (7, ["unpinned"], True, True)
    assert run.choose_setups(args) == list(report.TARGET_SETUPS)
    assert run.parse_args(["--targets", "--rounds", "2"]).rounds == 2
    assert run.parse_args([]).rounds == 3


def test_targets_run_with_only_keeps_the_bridge_the_control_and_the_baseline():
    args = run.parse_args(["--targets", "--only", "vswitch-external,kernel-bridge-2"])
    assert run.choose_setups(args) == ["kernel-bridge", "vswitch-external", "kernel-bridge-2", "bridge-external"]
    plain = run.parse_args(["--only", "vswitch-kernel"])
    assert run.choose_setups(plain) == ["kernel-bridge", "vswitch-kernel"]


def test_each_round_starts_one_setup_later_so_every_setup_takes_every_place() -> None:
    names = ["a", "b", "c"]
    orders = [run.round_order(names, r) for r in (1, 2, 3, 4)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert {o.index("c") for o in orders[:3]} == {0, 1, 2}

#!/usr/bin/env python3
"""RFC 6201 reset time of vswitchd: how long a daemon restart stops traffic between two VMs.

Topology (every name unique, everything removed afterwards, also on failure or Ctrl-C)::

    A: <if> 10.203.0.1/24 ──┐                         ┌── <if> 10.203.0.2/24 :B
                            └── vswitchd (namespace S) ┘

``tap``: two `tap` ports whose TAPs vswitchd creates in S and which are then moved into A and B
(a VM's NIC). ``link``: veths A–S and B–S whose S ends are `link` ports.

A paced ping (one ICMP echo every ``INTERVAL_S``) runs from A to B while vswitchd is stopped by
SIGTERM (clean shutdown) or SIGKILL (crash) and started again at once, as ``systemctl restart`` or
systemd's ``Restart=`` does (the unit's RestartSec adds to the crash case). The reset time is the
lost interval of that stream (RFC 6201 §4.3): the longest gap between two consecutive replies
around the restart. Each figure is the median of ``--runs`` restarts.

    sudo .venv/bin/python bench/reset_time.py [--runs 3] [--json]

Owns nothing outside its Lab; only pings addresses inside namespaces it creates.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from netlab import Lab, install_signal_handlers, move_link, set_up, unique_name  # noqa: E402

IP_A, IP_B = "10.203.0.1", "10.203.0.2"
INTERVAL_S = 0.01
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 30.0
_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")


class Daemon:
    """vswitchd in namespace ``ns`` with a state directory that outlives restarts."""

    def __init__(self, lab: Lab, ns: str) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="vsreset-")
        lab.callback(tmp.cleanup)
        self.lab = lab
        self.ns = ns
        self.state_dir = os.path.join(tmp.name, "state")
        self.socket = os.path.join(tmp.name, "vswitchd.sock")
        self.log_path = os.path.join(tmp.name, "vswitchd.log")
        self.proc: subprocess.Popen[str] | None = None
        lab.callback(self.stop, signal.SIGTERM)

    def start(self) -> None:
        """Start vswitchd (it restores what the state directory holds) without waiting for it."""
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, str(VENV_BIN / "vswitchd"), "--state-dir", self.state_dir,
                 "--socket", self.socket, "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self) -> None:
        from vswitch.frontends.client import DaemonUnreachable, RestSwitchApi

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"vswitchd exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with RestSwitchApi(socket_path=self.socket, timeout_s=2) as api:
                    api.health()
                return
            except DaemonUnreachable:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vswitchd did not answer within {START_TIMEOUT_S} s:\n{self.log()}") from None
                time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Signal vswitchd (by PID) and wait for it to exit; its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode

    def restart(self, sig: int) -> float:
        """Stop by `sig`, start again at once; the monotonic time the signal was sent."""
        t = time.monotonic()
        self.stop(sig)
        self.start()
        return t

    def api(self):  # noqa: ANN201 - RestSwitchApi, imported lazily like the rest of vswitch
        from vswitch.frontends.client import RestSwitchApi

        return RestSwitchApi(socket_path=self.socket)

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text()
        except OSError:
            return ""


@dataclass
class Setup:
    kind: str
    switch: str
    ns_a: str
    ns_b: str
    ns_s: str
    if_a: str
    if_b: str
    daemon: Daemon


def build(lab: Lab, kind: str) -> Setup:
    """Namespaces A, B, S, vswitchd in S with one private switch joining A and B by `kind` ports."""
    from vswitch.control.model import DatapathMode, PortKind, PortSpec, SwitchSpec, SwitchType

    ns_a, ns_b, ns_s = lab.netns("a"), lab.netns("b"), lab.netns("s")
    d = Daemon(lab, ns_s)
    d.start()
    d.wait_ready()
    sw = unique_name("rs")
    if_a, if_b = unique_name("ia"), unique_name("ib")
    with d.api() as api:
        # the Python datapath: what this measures (the kernel one forwards through a restart)
        api.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=DatapathMode.PYTHON))
        if kind == "tap":
            api.add_port(sw, PortSpec("a", PortKind.TAP, if_a))
            api.add_port(sw, PortSpec("b", PortKind.TAP, if_b))
            move_link(if_a, ns_s, ns_a)
            move_link(if_b, ns_s, ns_b)
        else:
            sa, sb = unique_name("sa"), unique_name("sb")
            lab.veth(if_a, ns_a, sa, ns_s)
            lab.veth(if_b, ns_b, sb, ns_s)
            api.add_port(sw, PortSpec("a", PortKind.LINK, sa))
            api.add_port(sw, PortSpec("b", PortKind.LINK, sb))
    set_up(ns_a, if_a, cidr=f"{IP_A}/24")
    set_up(ns_b, if_b, cidr=f"{IP_B}/24")
    return Setup(kind, sw, ns_a, ns_b, ns_s, if_a, if_b, d)


def wait_netns_noted(setup: Setup, timeout_s: float = 10.0) -> None:
    """Wait until vswitchd has noted where both TAPs are (what a restart re-attaches to)."""
    deadline = time.monotonic() + timeout_s
    want = {"a": setup.ns_a, "b": setup.ns_b}
    while True:
        with setup.daemon.api() as api:
            where = {p.name: p.details.get("netns", "") for p in api.list_ports(setup.switch)}
        if all(repr(ns) in where.get(port, "") for port, ns in want.items()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"vswitchd did not note the TAPs' namespaces within {timeout_s} s: {where}")
        time.sleep(0.05)


class PacedPing:
    """``ping -D -i INTERVAL_S`` from `ns` to `addr`, its replies (time, seq) read from a file."""

    def __init__(self, lab: Lab, ns: str, addr: str, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        fd, self.path = tempfile.mkstemp(prefix="vsping-", suffix=".txt")
        lab.callback(os.unlink, self.path)
        with os.fdopen(fd, "w") as out:
            self.proc = lab.popen(ns, ["ping", "-D", "-n", "-i", str(interval_s), addr], stdout=out)

    def replies(self) -> list[tuple[float, int]]:
        """(wall-clock time, icmp_seq) of every reply so far."""
        with open(self.path) as f:
            return [(float(m.group(1)), int(m.group(2))) for m in map(_REPLY.match, f) if m]

    def wait_reply_after(self, wall_t: float, timeout_s: float) -> bool:
        """True once a reply arrived after wall-clock time `wall_t`; False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            r = self.replies()
            if r and r[-1][0] > wall_t:
                return True
            time.sleep(0.05)
        return False

    def longest_gap(self, since_wall: float) -> float:
        """The longest time between two consecutive replies after `since_wall` (the lost interval)."""
        times = [t for t, _ in self.replies() if t >= since_wall]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=float("inf"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=5)


def measure(lab: Lab, setup: Setup, sig: int, recover_s: float = 30.0) -> float:
    """One reset time in seconds: restart vswitchd by `sig` under a paced ping A → B.

    Raises RuntimeError when traffic does not flow before, or does not come back within `recover_s`.
    """
    ping = PacedPing(lab, setup.ns_a, IP_B)
    try:
        start_wall = time.time()
        if not ping.wait_reply_after(start_wall, 10.0):
            raise RuntimeError(f"{setup.kind}: no reply before the restart")
        # a second of steady stream first, so the gap before the restart is part of the window
        ping.wait_reply_after(time.time() + 0.3, 5.0)
        window = time.time() - 0.2
        setup.daemon.restart(sig)
        restart_wall = time.time()
        if not ping.wait_reply_after(restart_wall, recover_s):
            raise RuntimeError(f"{setup.kind}: no reply within {recover_s} s of the "
                               f"{signal.Signals(sig).name} restart\n{setup.daemon.log()[-3000:]}")
        ping.wait_reply_after(time.time() + 0.2, 5.0)  # a few more, so the gap is closed on both sides
        gap = ping.longest_gap(window)
    finally:
        ping.stop()
    setup.daemon.wait_ready()
    return gap


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="restarts per figure (median; default 3)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (namespaces, TAP devices)", file=sys.stderr)
        return 2
    install_signal_handlers()
    results: dict[str, dict[str, list[float]]] = {}
    for kind in ("tap", "link"):
        with Lab() as lab:
            setup = build(lab, kind)
            if kind == "tap":
                wait_netns_noted(setup)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                runs = [measure(lab, setup, sig) for _ in range(args.runs)]
                results.setdefault(kind, {})[signal.Signals(sig).name] = runs
    if args.json:
        print(json.dumps({k: {s: {"median_s": round(statistics.median(v), 3), "runs_s": [round(x, 3) for x in v]}
                              for s, v in by_sig.items()} for k, by_sig in results.items()}, indent=2))
        return 0
    print(f"vswitchd reset time (RFC 6201 lost interval, ping every {INTERVAL_S * 1000:g} ms, "
          f"median of {args.runs}; restarted at once, without the unit's RestartSec)")
    print(f"{'ports':<6} {'SIGTERM':>9} {'SIGKILL':>9}   runs")
    for kind, by_sig in results.items():
        t, k = by_sig["SIGTERM"], by_sig["SIGKILL"]
        print(f"{kind:<6} {statistics.median(t):>8.2f}s {statistics.median(k):>8.2f}s   "
              f"TERM {' '.join(f'{x:.2f}' for x in t)} / KILL {' '.join(f'{x:.2f}' for x in k)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

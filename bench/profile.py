#!/usr/bin/env python3
"""Profile the switch under load: py-spy samples vswitchd while iperf3 or ping runs through it.

``profile.py [--setup vswitch-tap] [--traffic udp64|tcp1|tcp4|ping] [--seconds 8] [--pinned]``
builds the setup (bench/setups.py), starts the traffic, records vswitchd with
``py-spy record --format raw`` (collapsed stacks, ``--native`` off), and prints the functions with
the most samples on top of the stack (self) and anywhere in it (inclusive), as % of samples of
the busy threads. The collapsed file is kept for flame graphs (``--out``). Needs root and py-spy
(``pip install py-spy``; part of the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from measure import warm_up  # noqa: E402
from netlab import Lab, cpu_prefix, install_signal_handlers  # noqa: E402
from setups import SETUPS  # noqa: E402

TRAFFIC = {
    "udp64": ["iperf3", "-u", "-b", "0", "-l", "64"],
    "tcp1": ["iperf3"],
    "tcp4": ["iperf3", "-P", "4"],
}


def summarise(path: str, top: int) -> str:
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")[1:]  # the first element is the thread
            if not frames:
                continue
            total += n
            self_n[frames[-1]] += n
            for fr in set(frames):
                incl_n[fr] += n
    if not total:
        return "no samples (was the switch busy?)"
    out = [f"{total} samples of busy threads", "", "self (top of stack):"]
    out += [f"  {100 * n / total:5.1f} %  {fr}" for fr, n in self_n.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"  {100 * n / total:5.1f} %  {fr}" for fr, n in incl_n.most_common(top)]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setup", default="vswitch-tap", choices=[s for s in SETUPS if s != "kernel-bridge"])
    p.add_argument("--traffic", default="udp64", choices=[*TRAFFIC, "ping"])
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--pinned", action="store_true", help="switch on CPU 1, traffic on CPU 0")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", default="/tmp/vswitch-profile.txt", help="collapsed stacks (py-spy raw format)")
    args = p.parse_args()
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        sys.exit("needs py-spy: .venv/bin/pip install py-spy (or make bench, which installs the bench extra)")
    install_signal_handlers()
    sw_cpu, tr_cpu = ("1", "0") if args.pinned else (None, None)
    with Lab() as lab:
        pair = SETUPS[args.setup](lab, sw_cpu)
        warm_up(pair, tr_cpu)
        if args.traffic == "ping":
            count = int(args.seconds / 0.002) + 500
            lab.popen(pair.ns_a, ["ping", "-q", "-i", "0.002", "-c", str(count), pair.ip_b], cpus=tr_cpu)
        else:
            lab.popen(pair.ns_b, ["iperf3", "-s", "-1", "-B", pair.ip_b], cpus=tr_cpu)
            time.sleep(0.3)
            lab.popen(pair.ns_a, [*TRAFFIC[args.traffic], "-c", pair.ip_b, "-t", f"{args.seconds + 2:g}"], cpus=tr_cpu)
        time.sleep(1)
        subprocess.run([*cpu_prefix(tr_cpu), spy, "record", "-p", str(pair.switch_pids[0]), "-d", f"{args.seconds:g}",
                        "-r", str(args.rate), "--nonblocking", "-f", "raw", "-o", args.out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{args.setup}, {args.traffic}, {'pinned' if args.pinned else 'unpinned'}; stacks in {args.out}\n")
    print(summarise(args.out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

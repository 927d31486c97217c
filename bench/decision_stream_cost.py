"""What the web UI's live picture costs the datapath (issue 14, item 2: "the page never slows the
datapath: measure UDP 64 B with and without 5 pages open, ≤ 5 % difference").

Two namespaces joined by a vswitch switch (two veth link ports), on the Python datapath and on the
kernel fast path; iperf3 UDP with 64-byte payloads at full rate, frames delivered into B, with no
decision stream open and with 5 (five readers of ``GET /switches/SW/decisions`` on vswitchd's socket,
each reading every event as a page does), interleaved over rounds; medians and the ratio.

Run as root: ``.venv/bin/python bench/decision_stream_cost.py [--rounds 3] [--seconds 5] [--datapath python|kernel]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx  # noqa: E402

from measure import udp64, warm_up  # noqa: E402
from netlab import Lab, install_signal_handlers, unique_name  # noqa: E402
from setups import Pair, Vswitchd, _address  # noqa: E402

PAGES = 5


class Pages:
    """`n` readers of a switch's decision stream, as `n` open pages of the web UI."""

    def __init__(self, socket: str, switch: str, n: int) -> None:
        self.events = [0] * n
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(socket, switch, i), daemon=True) for i in range(n)]
        self._ready = threading.Barrier(n + 1)

    def _read(self, socket: str, switch: str, i: int) -> None:
        with httpx.Client(transport=httpx.HTTPTransport(uds=socket), timeout=30) as client, \
                client.stream("GET", f"http://vswitchd/switches/{switch}/decisions") as r:
            r.raise_for_status()
            self._ready.wait()
            for line in r.iter_lines():
                if line.startswith("event:"):
                    self.events[i] += 1
                if self._stop.is_set():
                    return

    def __enter__(self) -> Pages:
        for t in self._threads:
            t.start()
        self._ready.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # each reader leaves at its next event (a summary comes every second)
        for t in self._threads:
            t.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--datapath", choices=("python", "kernel", "both"), default="both")
    args = p.parse_args(argv)
    datapaths = ("python", "kernel") if args.datapath == "both" else (args.datapath,)
    install_signal_handlers()
    results: dict[tuple[str, int], list[float]] = {}
    for datapath in datapaths:
        with Lab() as lab:
            ns_a, ns_b, ns_s = lab.netns("a"), lab.netns("b"), lab.netns("s")
            if_a, if_b, sa, sb = (unique_name(t) for t in ("ia", "ib", "sa", "sb"))
            lab.veth(if_a, ns_a, sa, ns_s)
            lab.veth(if_b, ns_b, sb, ns_s)
            d = Vswitchd(lab, ns_s, None)
            sw = unique_name("sw")
            label = d.create_private(sw, datapath)
            d.add_port(sw, "a", "link", sa)
            d.add_port(sw, "b", "link", sb)
            _address(ns_a, if_a, ns_b, if_b)
            pair = Pair(f"vswitch-{datapath}", ns_a, ns_b, if_a, if_b, switch_pids=[d.pid], ns_sw=ns_s)
            warm_up(pair, None)
            for _ in range(args.rounds):
                for pages in (0, PAGES):
                    if pages:
                        with Pages(d.socket, sw, pages) as open_pages:
                            r = udp64(pair, args.seconds, None)
                        seen = min(open_pages.events)
                    else:
                        r, seen = udp64(pair, args.seconds, None), 0
                    kpps = r.get("udp_fwd_kpps", 0.0)
                    results.setdefault((datapath, pages), []).append(kpps)
                    print(f"{datapath:6} ({label}) pages={pages}: {kpps:7.1f} kpps delivered into B"
                          + (f", each page read ≥ {seen} events" if pages else ""), flush=True)
    print("\nmedians (UDP 64 B, frames delivered into B):")
    for datapath in datapaths:
        base = statistics.median(results[(datapath, 0)])
        with_pages = statistics.median(results[(datapath, PAGES)])
        # each round's pair measured back to back: the machine's drift between rounds cancels out
        paired = statistics.median(w / b for b, w in zip(results[(datapath, 0)], results[(datapath, PAGES)],
                                                         strict=True) if b)
        print(f"  {datapath:6}: {base:7.1f} kpps without a page, {with_pages:7.1f} with {PAGES} pages: "
              f"{with_pages / base:.3f}× ({100 * (with_pages / base - 1):+.1f} %); "
              f"median of the rounds' ratios {paired:.3f}× ({100 * (paired - 1):+.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

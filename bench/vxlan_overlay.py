"""Overlay throughput across two hosts (issue 15, item 4: "TCP 1 stream across two hosts as a ratio of
the same hosts joined by two kernel vxlan devices and a bridge").

Topology, the same for both setups::

    VM A ── host A ══ underlay veth (1500) ══ host B ── VM B
            10.203.0.1                    10.203.0.2

- ``kernel-vxlan``: on each host a kernel ``vxlan`` device (VNI 100, dstport 4789, over the underlay
  link) and the VM's veth end on a bridge;
- ``vswitch-vxlan``: on each host a vswitchd with a private switch: the VM's veth end as a link port
  and a VXLAN port towards the other host (``--datapath python|kernel`` for the veth end).

The VMs' MTU is the overlay's, 1450, in both (what a user gives a VM behind a VXLAN tunnel).
iperf3 TCP, one stream, VM A → VM B, and a paced ping; rounds interleaved, medians, each round's ratio.

Run as root: ``.venv/bin/python bench/vxlan_overlay.py [--rounds 3] [--seconds 3] [--datapath python]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import ping_rtt, tcp, warm_up  # noqa: E402
from netlab import Lab, install_signal_handlers, run, set_up, unique_name  # noqa: E402
from setups import IP_A, IP_B, PLEN, Pair, Vswitchd  # noqa: E402

UNDERLAY = ("10.203.0.1", "10.203.0.2")
VNI = 100
OVERLAY_MTU = 1450


def _hosts(lab: Lab) -> tuple[list[str], list[str], list[str]]:
    """Four namespaces (VM A, host A, host B, VM B), the underlay between the hosts, each VM's veth
    to its host; returns (VM namespaces, host namespaces, [VM A's if, VM B's if, host A's end, host B's end,
    host A's underlay, host B's underlay])."""
    vms = [lab.netns("va"), lab.netns("vb")]
    hosts = [lab.netns("ha"), lab.netns("hb")]
    ua, ub, ia, ib, sa, sb = (unique_name(t) for t in ("ua", "ub", "ia", "ib", "sa", "sb"))
    lab.veth(ua, hosts[0], ub, hosts[1])
    set_up(hosts[0], ua, cidr=f"{UNDERLAY[0]}/24")
    set_up(hosts[1], ub, cidr=f"{UNDERLAY[1]}/24")
    lab.veth(ia, vms[0], sa, hosts[0])
    lab.veth(ib, vms[1], sb, hosts[1])
    for ns, ifname, ip in ((vms[0], ia, IP_A), (vms[1], ib, IP_B)):
        run(ns, ["ip", "link", "set", ifname, "mtu", str(OVERLAY_MTU)])
        set_up(ns, ifname, cidr=f"{ip}/{PLEN}")
    return vms, hosts, [ia, ib, sa, sb, ua, ub]


def kernel_vxlan(lab: Lab, datapath: str) -> Pair:
    vms, hosts, (ia, ib, sa, sb, ua, ub) = _hosts(lab)
    for i, (host, side, under) in enumerate(((hosts[0], sa, ua), (hosts[1], sb, ub))):
        br, vx = unique_name("br"), unique_name("vx")
        run(host, ["ip", "link", "add", vx, "type", "vxlan", "id", str(VNI), "local", UNDERLAY[i],
                   "remote", UNDERLAY[1 - i], "dstport", "4789", "dev", under])
        lab.bridge(host, br)
        set_up(host, vx, master=br)
        set_up(host, side, master=br)
    return Pair("kernel-vxlan", vms[0], vms[1], ia, ib)


def vswitch_vxlan(lab: Lab, datapath: str) -> Pair:
    from vswitch.control.model import PortKind, PortSpec

    vms, hosts, (ia, ib, sa, sb, _ua, _ub) = _hosts(lab)
    pids = []
    for i, (host, side) in enumerate(((hosts[0], sa), (hosts[1], sb))):
        d = Vswitchd(lab, host, None)
        sw = unique_name("sw")
        d.create_private(sw, datapath)
        d.add_port(sw, "vm", "link", side)
        d.api.add_port(sw, PortSpec("vx", PortKind.VXLAN, UNDERLAY[1 - i], vni=VNI, local_ip=UNDERLAY[i]))
        pids.append(d.pid)
    return Pair(f"vswitch-vxlan ({datapath})", vms[0], vms[1], ia, ib, switch_pids=pids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--datapath", choices=("python", "kernel"), default="python")
    args = ap.parse_args()
    install_signal_handlers()
    builders: list[Callable[[Lab, str], Pair]] = [kernel_vxlan, vswitch_vxlan]
    results: dict[str, list[dict[str, float]]] = {}
    for r in range(args.rounds):
        order = builders if r % 2 == 0 else builders[::-1]
        for build in order:
            with Lab() as lab:
                pair = build(lab, args.datapath)
                warm_up(pair, None)
                got = {**tcp(pair, 1, args.seconds, None), **ping_rtt(pair, 300, None)}
                results.setdefault(pair.name, []).append(got)
                print(f"round {r + 1}: {pair.name}: {got}", flush=True)
    names = list(results)
    base = results[names[0]]
    print("\n| setup | TCP 1 stream Gb/s (median) | ratio to kernel-vxlan (median of rounds) | ping avg µs |")
    print("|---|---|---|---|")
    for name in names:
        rows = results[name]
        gbps = [row.get("tcp1_gbps", 0.0) for row in rows]
        ratios = [row.get("tcp1_gbps", 0.0) / b["tcp1_gbps"] for row, b in zip(rows, base, strict=True)
                  if b.get("tcp1_gbps")]
        ping = [row["ping_avg_us"] for row in rows if "ping_avg_us" in row]
        print(f"| {name} | {statistics.median(gbps):.2f} | {statistics.median(ratios):.3f}× | "
              f"{statistics.median(ping) if ping else float('nan'):.0f} |")


if __name__ == "__main__":
    main()

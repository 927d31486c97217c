"""Offload integrity: TCP from a TAP port (TSO super-frames) to ports that cannot take them.

Owns one check per egress kind, each a fresh switch (``SwitchCore`` + ``Datapath`` in this
process, the same code vswitchd runs) with two ports:

- ``qemu-stream``: the receiver's NIC is a TAP relayed to the switch's ``qemu-stream`` socket by
  the stand-in QEMU client (tests/integration/fakeqemu.py: no vnet header, no offloads);
- ``link-novnet``: a link port *without* PACKET_VNET_HDR on a veth whose peer in the receiver's
  namespace has tx checksum/TSO/GSO off (the only way such a port works: lesson 2b).

The sender's NIC is a TAP port with vnet header + TSO, so the switch must complete checksums and
segment every super-frame itself. ``tcpsha.py`` sends N pseudo-random bytes and both ends hash
what they sent/received; the digests and byte counts must match.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netlab import Lab, move_link, run, set_up, unique_name

HERE = Path(__file__).resolve().parent
FAKEQEMU_DIR = HERE.parent / "tests" / "integration"
KINDS = ("qemu-stream", "link-novnet")
IP_A, IP_B, PORT = "10.203.0.1", "10.203.0.2", 5201


def run_one(kind: str, nbytes: int, *, timeout_s: float = 600) -> dict[str, Any]:
    """Send ``nbytes`` over TCP from a TAP port to a ``kind`` port; both ends' byte counts and SHA-256."""
    from vswitch.core.switch import SwitchCore
    from vswitch.datapath.loop import Datapath
    from vswitch.ports import LinkPort, QemuStreamPort, TapPort

    with Lab() as lab:
        ns_a, ns_b = lab.netns("ia"), lab.netns("ib")
        dp = Datapath(unique_name("in"), SwitchCore())
        dp.start()
        lab.callback(dp.stop)
        tap_a = unique_name("ita")
        port_a = TapPort("a", tap_a)
        port_a.open()
        dp.attach("a", port_a)
        move_link(tap_a, None, ns_a)
        set_up(ns_a, tap_a, cidr=f"{IP_A}/24")
        if kind == "qemu-stream":
            tmp = tempfile.TemporaryDirectory(prefix="pbint-")
            lab.callback(tmp.cleanup)
            path = os.path.join(tmp.name, "b.sock")
            port_b = QemuStreamPort("b", path)
            port_b.open()
            dp.attach("b", port_b)
            sys.path.insert(0, str(FAKEQEMU_DIR))
            from fakeqemu import FakeQemu

            dev = unique_name("itb")
            guest = FakeQemu(dev, path).connect()
            lab.callback(guest.close)
            move_link(dev, None, ns_b)
            set_up(ns_b, dev, cidr=f"{IP_B}/24")
        elif kind == "link-novnet":
            side, dev = unique_name("its"), unique_name("itb")
            lab.veth(side, None, dev, ns_b)
            run(ns_b, ["ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off"])
            port_b = LinkPort("b", side, vnet=False)
            port_b.open()
            assert port_b.vnet_hdr_len == 0
            dp.attach("b", port_b)
            set_up(ns_b, dev, cidr=f"{IP_B}/24")
        else:
            raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
        run(ns_a, ["ping", "-c", "2", "-i", "0.2", "-w", "10", IP_B], timeout=20)
        tcpsha = [sys.executable, str(HERE / "tcpsha.py")]
        receiver = lab.popen(ns_b, [*tcpsha, "recv", IP_B, str(PORT)], stdout=-1, stderr=-1)
        t0 = time.monotonic()
        sender = run(ns_a, [*tcpsha, "send", IP_B, str(PORT), str(nbytes)], timeout=timeout_s, check=False)
        try:
            r_out, r_err = receiver.communicate(timeout=30)
        except Exception:
            receiver.kill()
            r_out, r_err = receiver.communicate()
        elapsed = time.monotonic() - t0
        counters = {}
        with contextlib.suppress(Exception):
            counters = dp.call(lambda: {str(k): v.snapshot() for k, v in dp.core.counters.items()})
    result: dict[str, Any] = {"kind": kind, "bytes_requested": nbytes, "seconds": elapsed}
    try:
        result["sent"] = json.loads(sender.stdout)
        result["received"] = json.loads(r_out)
    except json.JSONDecodeError:
        result["error"] = f"sender: {sender.stdout}{sender.stderr} receiver: {r_out}{r_err}"
        result["ok"] = False
        return result
    result["ok"] = (result["sent"]["bytes"] == result["received"]["bytes"] == nbytes
                    and result["sent"]["sha256"] == result["received"]["sha256"])
    result["gbps"] = 8 * nbytes / elapsed / 1e9
    result["counters"] = counters
    a = counters.get("a", {})
    # > 1514 B on average: the sender's TAP handed the switch TSO super-frames, so segmentation ran
    result["mean_rx_frame_bytes_a"] = a.get("rx_bytes", 0) / max(1, a.get("rx_frames", 0))
    result["frames_to_b"] = counters.get("b", {}).get("tx_frames", 0)
    return result


def run_all(nbytes: int) -> list[dict[str, Any]]:
    out = []
    for kind in KINDS:
        print(f"integrity: {nbytes / 2**20:.0f} MiB TCP from a TAP port to a {kind} port", flush=True)
        try:
            out.append(run_one(kind, nbytes))
        except Exception as exc:
            out.append({"kind": kind, "bytes_requested": nbytes, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        r = out[-1]
        print(f"  {'ok' if r['ok'] else 'FAILED'} {r.get('gbps', 0):.2f} Gb/s {r.get('error', '')}", flush=True)
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["## Offload integrity (TAP port with TSO → port without offloads; software checksum + segmentation)",
             "", "| egress port | bytes sent | bytes received | SHA-256 equal | mean frame in from the TAP (B) | "
             "frames out to the port | Gb/s (Python endpoints) | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "sent" not in r:
            lines.append(f"| {r['kind']} | – | – | – | – | – | – | error: {r.get('error', '?')[:80]} |")
            continue
        same = r["sent"]["sha256"] == r["received"]["sha256"]
        lines.append(f"| {r['kind']} | {r['sent']['bytes']:,} | {r['received']['bytes']:,} | "
                     f"{'yes' if same else 'NO'} | {r['mean_rx_frame_bytes_a']:,.0f} | {r['frames_to_b']:,} | "
                     f"{r['gbps']:.2f} | {'ok' if r['ok'] else 'FAILED'} |")
    return "\n".join(lines)

"""Port mirroring with real parts, on both datapaths (Python: AF_PACKET; the kernel fast path:
tc-bpf, the copies made by bpf_clone_redirect): five namespaces behind veth link ports. `vm` is a
mirroring source and `mon` a destination, with tcpdump on its NIC. A ping between vm and peer
shows at the monitor exactly once per echo request and once per reply; a ping between two other
namespaces never shows there; the monitor's own ping still works; stats count the copies."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from test_dhcp_router_guards import Lab, lab  # noqa: F401  (the fixture: a private switch and its VMs)

import netns as ns_helpers
from vswitch.control.model import PortSettings
from waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

N_PINGS = 10
IP = {"vm": "10.96.0.1", "peer": "10.96.0.2", "other1": "10.96.0.3", "other2": "10.96.0.4", "mon": "10.96.0.9"}
MAC = {"vm": "02:96:00:00:00:01", "peer": "02:96:00:00:00:02", "other1": "02:96:00:00:00:03",
       "other2": "02:96:00:00:00:04", "mon": "02:96:00:00:00:09"}
_ICMP = re.compile(r"(\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): ICMP echo (request|reply)")


def _echoes(path: Path) -> Counter[tuple[str, str, str]]:
    """(source IP, destination IP, request|reply) of each ICMP echo tcpdump printed."""
    return Counter(m.groups() for m in map(_ICMP.search, path.read_text().splitlines()) if m)


def _ping(ns: str, to: str, count: int) -> bool:
    return ns_helpers.run(ns, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", to],
                          check=False, timeout=60).returncode == 0


def test_the_monitor_sees_exactly_the_sources_frames_in_both_directions(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    spaces = {name: lab.vm(name, IP[name] + "/24", MAC[name]) for name in IP}
    mon_ns, mon_nic = spaces["mon"]
    for a, b in (("vm", "peer"), ("other1", "other2"), ("mon", "peer")):  # neighbours resolved first
        wait_until(lambda a=a, b=b: _ping(spaces[a][0], IP[b], 1), what=f"{a} to reach {b}")
    assert lab.m.set_port(lab.sw, "vm", PortSettings(port_mirroring="source")).port_mirroring == "source"
    assert lab.m.set_port(lab.sw, "mon", PortSettings(port_mirroring="destination")).port_mirroring == "destination"
    before = {s.port: s for s in lab.m.stats(lab.sw)}

    out, err = tmp_path / "tcpdump.out", tmp_path / "tcpdump.err"
    with out.open("w") as fout, err.open("w") as ferr:
        dump = ns_helpers.popen(mon_ns, ["tcpdump", "-i", mon_nic, "-l", "-nn", "-e", "icmp"],
                                stdout=fout, stderr=ferr)
    try:
        wait_until(lambda: "listening on" in err.read_text() or dump.poll() is not None, what="tcpdump to listen")
        assert dump.poll() is None, err.read_text()
        assert _ping(spaces["vm"][0], IP["peer"], N_PINGS)
        wait_until(lambda: sum(_echoes(out).values()) >= 2 * N_PINGS, what="the mirrored echoes at the monitor "
                   f"(tcpdump printed: {out.read_text()[:2000]!r}, stats {lab.m.stats(lab.sw)})")
        assert _ping(spaces["other1"][0], IP["other2"], N_PINGS), "the others' traffic flows"
        assert _ping(mon_ns, IP["peer"], 2), "the monitor's own traffic still works"
        wait_until(lambda: _echoes(out)[(IP["peer"], IP["mon"], "reply")] >= 2, what="the monitor's own replies")
    finally:
        dump.terminate()
        try:
            dump.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump.wait()
    seen = _echoes(out)
    assert seen[(IP["vm"], IP["peer"], "request")] == N_PINGS, seen
    assert seen[(IP["peer"], IP["vm"], "reply")] == N_PINGS, seen
    assert not [k for k in seen if IP["other1"] in k or IP["other2"] in k], f"the others' traffic: {seen}"
    assert set(seen) == {(IP["vm"], IP["peer"], "request"), (IP["peer"], IP["vm"], "reply"),
                         (IP["mon"], IP["peer"], "request"), (IP["peer"], IP["mon"], "reply")}, seen

    after = {s.port: s for s in lab.m.stats(lab.sw)}
    copies = after["mon"].mirror_tx - before["mon"].mirror_tx
    assert copies >= 2 * N_PINGS, "every echo, request and reply, counted as a copy to the monitor"
    assert after["vm"].mirrored - before["vm"].mirrored >= 2 * N_PINGS
    assert after["peer"].mirrored == after["other1"].mirrored == 0
    program = getattr(lab.m.datapath(lab.sw), "program", None)
    if program is not None:  # the kernel fast path made the copies itself: no frame of vm went up
        assert program.counters("mon")["mirror_tx"] >= 2 * N_PINGS
        assert program.counters("vm")["upcall"] == program.counters("peer")["upcall"] == 0
    info = lab.m.get_port(lab.sw, "vm")
    assert info.port_mirroring == "source" and info.datapath.startswith(
        "kernel" if program is not None else "python")

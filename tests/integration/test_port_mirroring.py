"""Port mirroring with real parts, on both datapaths (Python: AF_PACKET; the kernel fast path:
tc-bpf, the copies made by bpf_clone_redirect): five namespaces behind veth link ports. `vm` is a
mirroring source and `mon` a destination, with tcpdump on its NIC. A ping between vm and peer
shows at the monitor exactly once per echo request and once per reply; a ping between two other
namespaces never shows there; the monitor's own ping still works; stats count the copies."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from switchlab import move_and_address
from test_dhcp_router_guards import Lab, lab  # noqa: F401  (the fixture: a private switch and its VMs)

import netns as ns_helpers
from vswitch.control.model import PortKind, PortSettings, PortSpec
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


@contextmanager
def _tcpdump(ns: str, nic: str, out: Path) -> Iterator[None]:
    """tcpdump printing the ICMP frames `nic` (in `ns`) receives and sends into `out`, line by line,
    from when it listens until the block ends (stopped by its PID)."""
    err = out.with_suffix(".err")
    with out.open("w") as fout, err.open("w") as ferr:
        dump = ns_helpers.popen(ns, ["tcpdump", "-i", nic, "-l", "-nn", "-e", "icmp"], stdout=fout, stderr=ferr)
    try:
        wait_until(lambda: "listening on" in err.read_text() or dump.poll() is not None, what="tcpdump to listen")
        assert dump.poll() is None, err.read_text()
        yield
    finally:
        dump.terminate()
        try:
            dump.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump.wait()


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

    out = tmp_path / "mon.out"
    with _tcpdump(mon_ns, mon_nic, out):
        assert _ping(spaces["vm"][0], IP["peer"], N_PINGS)
        wait_until(lambda: sum(_echoes(out).values()) >= 2 * N_PINGS, what="the mirrored echoes at the monitor "
                   f"(tcpdump printed: {out.read_text()[:2000]!r}, stats {lab.m.stats(lab.sw)})")
        assert _ping(spaces["other1"][0], IP["other2"], N_PINGS), "the others' traffic flows"
        assert _ping(mon_ns, IP["peer"], 2), "the monitor's own traffic still works"
        wait_until(lambda: _echoes(out)[(IP["peer"], IP["mon"], "reply")] >= 2, what="the monitor's own replies")
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


def test_a_monitor_only_python_serves_gets_the_copies_too(lab: Lab, tmp_path: Path,  # noqa: F811
                                                          datapath: str) -> None:
    """A destination on a TAP port (vswitch owns its fd: only Python can write to it) beside one on a
    veth link: on the fast path the source's frames go up while it is up (the program cannot send that
    copy), Python sends the link monitor's copy back down; both see every echo once."""
    spaces = {name: lab.vm(name, IP[name] + "/24", MAC[name]) for name in ("vm", "peer", "mon")}
    tap_ns, tap = lab.netns("tmon"), ns_helpers.unique_name("gttap")
    lab.m.add_port(lab.sw, PortSpec("tmon", PortKind.TAP, tap, port_mirroring="destination"))
    ns_helpers.run(tap_ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
    move_and_address(tap, tap_ns, "10.96.0.10/24", mac="02:96:00:00:00:10")
    wait_until(lambda: lab.m.get_port(lab.sw, "tmon").up, what="the TAP port to be up in its namespace")
    wait_until(lambda: _ping(spaces["vm"][0], IP["peer"], 1), what="vm to reach peer")
    lab.m.set_port(lab.sw, "vm", PortSettings(port_mirroring="source"))
    lab.m.set_port(lab.sw, "mon", PortSettings(port_mirroring="destination"))
    program = getattr(lab.m.datapath(lab.sw), "program", None)
    assert (program is not None) == (datapath == "kernel"), "a TAP port keeps the switch on its datapath"
    ups = program.counters("vm")["upcall"] if program is not None else 0
    outs = {"mon": tmp_path / "mon.out", "tmon": tmp_path / "tmon.out"}
    with _tcpdump(spaces["mon"][0], spaces["mon"][1], outs["mon"]), _tcpdump(tap_ns, tap, outs["tmon"]):
        assert _ping(spaces["vm"][0], IP["peer"], N_PINGS)
        for name, out in outs.items():
            wait_until(lambda out=out: sum(_echoes(out).values()) >= 2 * N_PINGS, what=f"the echoes at {name}")
        assert _ping(spaces["mon"][0], IP["peer"], 1), "a fence: what was mirrored before it has arrived"
    for name, out in outs.items():
        seen = _echoes(out)
        assert seen[(IP["vm"], IP["peer"], "request")] == seen[(IP["peer"], IP["vm"], "reply")] == N_PINGS, \
            f"{name}: {seen}"
    if program is not None:  # mirrored frames of vm went up: a copy for the TAP only Python can write
        assert program.counters("vm")["upcall"] - ups >= N_PINGS
        assert lab.m.get_port(lab.sw, "vm").datapath == ("kernel (tc-bpf); its mirrored frames through the "
                                                         "upcall path: port mirroring destination tmon only "
                                                         "Python serves")
        assert lab.m.get_port(lab.sw, "peer").datapath == "kernel (tc-bpf)"

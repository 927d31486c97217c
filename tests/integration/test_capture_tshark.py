"""`vswitch capture` end to end: a real vswitchd (TCP listener, a reader's token), real ports — two veth
link ports and a QEMU stream port (fakeqemu's stand-in guest) in their own namespaces — the real
`ping`, the `vswitch` CLI as a process writing a file (`-w FILE`) or a pipe (`-w -`), and Debian's
`tshark` reading what it wrote: the frames (ICMP echo request and reply, the MACs of the namespaces'
NICs), each packet's comment (the switch's decision: FLOOD_BROADCAST for the first ARP, FORWARD_LEARNED
once learned), its direction flag, and the bounds (count, filter, direction). The link ports run on
both datapaths (on the kernel fast path the frames are read whole from the link and the decisions are
the program's); Ctrl-C leaves a readable file and ends the capture in the daemon; a daemon stopping
ends a capture cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakeqemu import FakeQemu
from switchlab import delete_link, move_and_address, veth_pair
from test_daemon_socket import Daemon, daemons, free_port, needs_manager, paths, start  # noqa: F401

import interruptible
import netns as ns_helpers
from datapaths import DATAPATHS, assert_runs_on, require
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.frontends.client import RestSwitchApi
from waiting import wait_until

pytestmark = [pytest.mark.root, needs_manager,
              pytest.mark.skipif(shutil.which("tshark") is None,
                                 reason="tshark is not installed (Debian's tshark package: make test installs it)")]

#: ping's payload: frames of 242 bytes, longer than the kernel fast path's 128-byte decision events
#: (the capture must not be cut to them)
PING_SIZE = 200
FRAME_LEN = PING_SIZE + 8 + 20 + 14
FIELDS = ("frame.comment", "frame.packet_flags_direction", "eth.src", "eth.dst", "icmp.type", "arp.opcode",
          "frame.len", "frame.cap_len")


@dataclass
class Lab:
    daemon: Daemon
    mode: str              # the datapath
    url: str
    token_file: str        # a reader's token: capture is a GET
    sw: str
    ns: dict[str, str]     # port → namespace
    ip: dict[str, str]
    mac: dict[str, str]
    tmp: Path


def _mac_in(ns: str, ifname: str) -> str:
    return json.loads(ns_helpers.run(ns, ["ip", "-j", "link", "show", ifname]).stdout)[0]["address"]


@pytest.fixture(params=DATAPATHS)
def lab(request: pytest.FixtureRequest, netns, daemons, paths, tmp_path: Path) -> Iterator[Lab]:  # noqa: F811
    mode = request.param
    require(mode)
    state, sock = paths
    admin, reader = f"adm-{os.urandom(8).hex()}", f"rdr-{os.urandom(8).hex()}"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin:{admin}\nreader:{reader}\n")
    tokens.chmod(0o600)
    reader_file = tmp_path / "reader.token"
    reader_file.write_text(reader + "\n")
    reader_file.chmod(0o600)
    port = free_port()
    d = start(daemons, state, sock, "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens))
    qemu_dir = tempfile.mkdtemp(prefix="vscap-")
    sw = ns_helpers.unique_name("cap")
    ends = {p: (ns_helpers.unique_name(f"c{p}s"), ns_helpers.unique_name(f"c{p}i")) for p in ("vm1", "vm2")}
    guest = None
    try:
        ns = {"vm1": netns("cp1"), "vm2": netns("cp2"), "vmq": netns("cpq")}
        ip = {"vm1": "10.98.0.1", "vm2": "10.98.0.2", "vmq": "10.98.0.3"}
        with RestSwitchApi(socket_path=str(sock)) as api:
            api.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=mode))
            for p, (side, inner) in ends.items():
                veth_pair(side, inner)
                ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{side}.disable_ipv6=1"], check=False)
                ns_helpers.run(None, ["ip", "link", "set", side, "up"])
                move_and_address(inner, ns[p], f"{ip[p]}/24")
                api.add_port(sw, PortSpec(p, PortKind.LINK, side))
            path = str(Path(qemu_dir) / "vmq.sock")
            api.add_port(sw, PortSpec("vmq", PortKind.QEMU_STREAM, path))
            guest = FakeQemu(ns_helpers.unique_name("cpq"), path).connect()
            move_and_address(guest.ifname, ns["vmq"], f"{ip['vmq']}/24")
            info = api.get_switch(sw)
            assert_runs_on(info.datapath, mode)
            if mode == "kernel":
                assert "kernel" in info.datapath and "1 port" in info.datapath, \
                    f"the link ports are on the fast path: {info.datapath}"
        mac = {p: _mac_in(ns[p], inner) for p, (_, inner) in ends.items()}
        mac["vmq"] = _mac_in(ns["vmq"], guest.ifname)
        for n in ns.values():  # no IPv6 chatter: the frames counted are the test's own
            ns_helpers.run(n, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
        yield Lab(d, mode, f"http://127.0.0.1:{port}", str(reader_file), sw, ns, ip, mac, tmp_path)
    finally:
        if guest is not None:
            guest.close()
        d.kill()
        for side, _ in ends.values():
            delete_link(side)
        shutil.rmtree(qemu_dir, ignore_errors=True)


def _capture(lab: Lab, port: str, *args: str, stdout: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """`vswitch capture` as a process, through the TCP listener with the reader's token."""
    return interruptible.popen([sys.executable, "-m", "vswitch.frontends.cli", "--url", lab.url, "--token-file",
                                lab.token_file, "capture", lab.sw, port, *args],
                               stdout=stdout, stderr=subprocess.PIPE)


def _started(lab: Lab, port: str, n: int = 1) -> None:
    """Wait until the daemon has `n` captures of `port` running (its log says so)."""
    line = f"capture of switch {lab.sw} port {port} started"
    wait_until(lambda: lab.daemon.output().count(line) >= n, what=f"{n} capture(s) of {port} started")


def _finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The CLI's stderr (its summary), after it exited 0."""
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()
    return err.decode()


def tshark(path: str) -> list[dict[str, str]]:
    """The packets of pcapng file `path`, as tshark reads them (each a dict of `FIELDS`); fails when
    tshark cannot read the file whole."""
    cmd = ["tshark", "-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"tshark cannot read {path}: {proc.stderr}"
    return [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in proc.stdout.splitlines()]


INBOUND, OUTBOUND = "0x00000001", "0x00000002"


def test_file_capture_of_a_link_port_with_decisions_direction_and_bounds(lab: Lab) -> None:
    """Two captures of vm1 at once: the first ARP (in, flooded) and the ICMP of a ping (count 4)."""
    arp_file, icmp_file = str(lab.tmp / "arp.pcapng"), str(lab.tmp / "icmp.pcapng")
    arp = _capture(lab, "vm1", "--direction", "in", "--filter", "arp", "--count", "1", "-w", arp_file)
    icmp = _capture(lab, "vm1", "--filter", "icmp", "--count", "4", "-w", icmp_file)
    _started(lab, "vm1", 2)
    ns_helpers.run(lab.ns["vm1"], ["ping", "-c", "2", "-i", "0.2", "-s", str(PING_SIZE), lab.ip["vm2"]])
    arp_summary, icmp_summary = _finish(arp), _finish(icmp)

    (first,) = tshark(arp_file)
    assert first["arp.opcode"] == "1" and first["eth.src"] == lab.mac["vm1"] and first["eth.dst"] == "ff:ff:ff:ff:ff:ff"
    assert first["frame.packet_flags_direction"] == INBOUND
    assert first["frame.comment"].startswith("in vm1 vlan 1: FLOOD_BROADCAST → "), first["frame.comment"]
    assert {"vm2", "vmq"} <= set(first["frame.comment"].split("→ ")[1].split(", ")), "flooded to every other port"
    assert "1 frame written to" in arp_summary and "0 dropped" in arp_summary and "ended: count reached" in arp_summary

    got = tshark(icmp_file)
    assert [(p["icmp.type"], p["frame.packet_flags_direction"]) for p in got] == \
        [("8", INBOUND), ("0", OUTBOUND)] * 2, "echo request in, reply out, twice; nothing else (filter, count)"
    for p in got:
        if p["icmp.type"] == "8":
            assert (p["eth.src"], p["eth.dst"]) == (lab.mac["vm1"], lab.mac["vm2"])
            assert p["frame.comment"].startswith("in vm1 vlan 1: FORWARD_LEARNED → vm2"), p["frame.comment"]
        else:
            assert (p["eth.src"], p["eth.dst"]) == (lab.mac["vm2"], lab.mac["vm1"])
            assert p["frame.comment"].startswith("out vm1 vlan 1: FORWARD_LEARNED from vm2"), p["frame.comment"]
        assert p["frame.len"] == str(FRAME_LEN)
    kernel = all("[kernel fast path]" in p["frame.comment"] for p in got)
    assert kernel == (lab.mode == "kernel"), "frames between two fast-path ports are the program's decisions"
    assert {p["frame.cap_len"] for p in got} == {str(FRAME_LEN)}, \
        "whole frames on both datapaths (the fast path's read from the link, not cut to its 128-byte events)"
    assert "4 frames written to" in icmp_summary and "ended: count reached" in icmp_summary


def test_qemu_port_to_a_pipe_only_the_direction_asked(lab: Lab) -> None:
    """`-w -` into tshark reading its standard input (as `wireshark -k -i -` does): out of vmq only."""
    out = str(lab.tmp / "piped.pcapng")
    cap = _capture(lab, "vmq", "--direction", "out", "--filter", "icmp", "--count", "1", "-w", "-",
                   stdout=subprocess.PIPE)
    assert cap.stdout is not None
    reader = subprocess.Popen(["tshark", "-r", "-", "-w", out], stdin=cap.stdout, stderr=subprocess.PIPE)
    cap.stdout.close()  # the pipe is tshark's now
    _started(lab, "vmq")
    ns_helpers.run(lab.ns["vmq"], ["ping", "-c", "1", "-s", str(PING_SIZE), lab.ip["vm1"]])
    summary = _finish(cap)
    _, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err.decode()
    (reply,) = tshark(out)
    assert reply["icmp.type"] == "0" and reply["frame.packet_flags_direction"] == OUTBOUND, \
        "direction out: the request vmq sent is not in it"
    assert (reply["eth.src"], reply["eth.dst"]) == (lab.mac["vm1"], lab.mac["vmq"])
    assert reply["frame.comment"].startswith("out vmq vlan 1: FORWARD_LEARNED from vm1"), reply["frame.comment"]
    assert "[kernel fast path]" not in reply["frame.comment"], "up from the fast path: Python decided"
    assert reply["frame.cap_len"] == reply["frame.len"] == str(FRAME_LEN), "whole, on both datapaths"
    assert "1 frame written to stdout" in summary, summary


def test_ctrl_c_leaves_a_readable_file_and_ends_the_capture_in_the_daemon(lab: Lab) -> None:
    path = str(lab.tmp / "interrupted.pcapng")
    cap = _capture(lab, "vm2", "--seconds", "600", "-w", path)
    _started(lab, "vm2")
    ns_helpers.run(lab.ns["vm1"], ["ping", "-c", "3", "-i", "0.2", lab.ip["vm2"]])
    wait_until(lambda: any(p["icmp.type"] == "0" for p in tshark(path)), what="the replies in the file")
    cap.send_signal(signal.SIGINT)
    summary = _finish(cap)
    assert "ended: interrupted" in summary, summary
    got = tshark(path)
    assert [p["icmp.type"] for p in got if p["icmp.type"]].count("8") == 3, "every echo request, read whole"
    wait_until(lambda: f"capture of switch {lab.sw} port vm2 ended" in lab.daemon.output(),
               what="the daemon ending the capture whose reader left")


@pytest.mark.parametrize("lab", ["python"], indirect=True)
def test_a_daemon_stopping_ends_a_capture_with_a_readable_file(lab: Lab) -> None:
    path = str(lab.tmp / "stopping.pcapng")
    cap = _capture(lab, "vmq", "--seconds", "600", "-w", path)
    _started(lab, "vmq")
    ns_helpers.run(lab.ns["vmq"], ["ping", "-c", "1", lab.ip["vm1"]])
    wait_until(lambda: any(p["icmp.type"] == "0" for p in tshark(path)), what="the reply in the file")
    assert lab.daemon.stop() == 0, lab.daemon.output()
    summary = _finish(cap, timeout=30)
    assert "ended: vswitchd stopping" in summary and "0 dropped" in summary, summary
    got = tshark(path)
    assert [p["icmp.type"] for p in got if p["icmp.type"]] == ["8", "0"], "the ping, then the daemon's last block"


@pytest.mark.parametrize("lab", ["python"], indirect=True)
def test_a_filter_that_does_not_compile_is_refused_before_a_file_exists(lab: Lab) -> None:
    path = lab.tmp / "never.pcapng"
    cap = _capture(lab, "vm1", "--filter", "icmp and and", "-w", str(path))
    _, err = cap.communicate(timeout=60)
    assert cap.returncode == 1 and err.decode().startswith("Error: ") and "filter" in err.decode(), err.decode()
    assert not path.exists(), "refused before the file was created"
    assert f"capture of switch {lab.sw} port vm1 started" not in lab.daemon.output()

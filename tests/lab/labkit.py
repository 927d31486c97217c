"""Helpers for the lab tests: a lab that is always taken down, pings and counters inside it.

Every lab gets a name unique to the test process (``t<pid>-<tag>``) and is taken down by the
fixture that made it, even when the test fails. Counters come from the switch (its REST API, via
the daemon serving the lab's host) and from the kernel (``ip -s -j link`` inside a node).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import datapaths
from vswitch.control.model import DatapathMode, PortStatsInfo
from vswitch.frontends.client import RestSwitchApi
from vswitch.lab import Lab, Topology, down, up


def api_factory(socket_path: str) -> RestSwitchApi:
    return RestSwitchApi(socket_path=socket_path)


def lab_name(tag: str) -> str:
    return f"t{os.getpid()}-{tag}"


@contextmanager
def running_lab(topology: Topology, tag: str, datapath: str | None = None, *, ui: bool = False) -> Iterator[Lab]:
    """`up` a lab and always take it down afterwards (an `up` that fails cleans up after itself).

    With `datapath` ("python" or "kernel", skipped where the kernel one cannot load) every switch runs on
    it (`lab up --datapath`), checked once the lab is up; without it each switch runs on its topology's.
    With `ui`, each host's vswitchd serves its web UI on a free loopback port (`Lab.ui_link`).
    """
    if datapath is not None:
        datapaths.require(datapath)
        topology = topology.with_datapath(DatapathMode(datapath))
    lab = up(topology, lab_name(tag + (datapath or "")[:1]), api_factory=api_factory, ui_port=0 if ui else None)
    try:
        if datapath is not None:
            for sw in topology.switches:
                with api_factory(lab.switch(sw).socket) as api:
                    datapaths.assert_runs_on(api.get_switch(sw).datapath, datapath)
        yield lab
    finally:
        down(lab.name)


def run(lab: Lab, node: str, argv: list[str], *, check: bool = False, timeout: float = 30
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", "netns", "exec", lab.netns(node), *argv], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{node}: {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def ping(lab: Lab, src: str, dst: str, *, count: int = 3, interval: float = 0.1, deadline: int = 5) -> bool:
    """True when every one of `count` echoes from `src` to `dst`'s address is answered."""
    proc = run(lab, src, ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-w", str(deadline),
                          lab.address(dst)], timeout=deadline + 10)
    return proc.returncode == 0 and f"{count} received" in proc.stdout


def unreachable(lab: Lab, *pairs: tuple[str, str]) -> list[tuple[str, str]]:
    """Of the (src node, dst address) pairs, those where an echo WAS answered (2 tries within 2 s,
    all pairs at once). An empty list means none of them got through."""
    procs = [(pair, subprocess.Popen(["ip", "netns", "exec", lab.netns(pair[0]), "ping", "-n", "-q", "-c", "2",
                                      "-i", "0.2", "-w", "2", pair[1]],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
             for pair in pairs]
    answered = []
    for pair, proc in procs:
        out, _ = proc.communicate(timeout=15)
        if proc.returncode != 1 or " 0 received" not in out:
            answered.append(pair)
    return answered


def stats(lab: Lab, switch: str) -> dict[str, PortStatsInfo]:
    with api_factory(lab.switch(switch).socket) as api:
        return {s.port: s for s in api.stats(switch)}


def fdb(lab: Lab, switch: str) -> dict[str, str]:
    """MAC → port of the switch's MAC table."""
    with api_factory(lab.switch(switch).socket) as api:
        return {e.mac: e.port for e in api.fdb_show(switch)}


def flush(lab: Lab, switch: str) -> None:
    with api_factory(lab.switch(switch).socket) as api:
        api.fdb_flush(switch)


def mac(lab: Lab, node: str, ifname: str) -> str:
    return link_info(lab, node, ifname)["address"]


def link_info(lab: Lab, node: str, ifname: str) -> dict[str, Any]:
    out = run(lab, node, ["ip", "-s", "-j", "link", "show", "dev", ifname], check=True).stdout
    return json.loads(out)[0]


def kernel_counters(lab: Lab, node: str, ifname: str) -> tuple[int, int]:
    """(rx packets, tx packets) of a link, as the kernel counts them."""
    st = link_info(lab, node, ifname)["stats64"]
    return st["rx"]["packets"], st["tx"]["packets"]


def binding(lab: Lab, node: str, ifname: str) -> dict[str, Any] | None:
    for b in lab.bindings(node):
        if b["name"] == ifname:
            return b
    return None


def leftovers(state: dict[str, Any]) -> list[str]:
    """Whatever of a lab (by its recorded state) still exists: namespaces, daemons, sockets, files."""
    from vswitch.lab import daemons
    from vswitch.lab.state import state_path

    found = []
    present = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    found += [f"namespace {ns}" for ns in state["namespaces"].values() if ns in present]
    found += [f"namespace {ns}" for ns in present if ns.startswith(f"vl{state['id']}-")]
    for node, d in state["daemons"].items():
        if os.path.exists(f"/proc/{d['pid']}"):
            try:
                cmd = open(f"/proc/{d['pid']}/cmdline", "rb").read()
            except OSError:
                cmd = b""
            if b"vswitch.app.daemon" in cmd:
                found.append(f"vswitchd of {node} (pid {d['pid']})")
        if os.path.exists(d["socket"]):
            found.append(f"socket {d['socket']}")
    for node, g in state.get("guests", {}).items():
        # a zombie is gone: a guest whose starter exited is reaped by PID 1 whenever PID 1 gets to it
        if daemons.alive(g["pid"]):
            found.append(f"QEMU guest {node} (pid {g['pid']})")
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    marks = (f"lt{state['id']}", f"vl{state['id']}")
    found += [f"link in the root namespace: {line}" for line in root_links.splitlines()
              if any(m in line for m in marks)]
    if os.path.exists(state["dir"]):
        found.append(f"directory {state['dir']}")
    if state_path(state["name"]).exists():
        found.append(f"state file {state_path(state['name'])}")
    return found

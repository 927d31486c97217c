"""The one-nic story built by hand for `lab trace` tests: namespaces, veth cables, a bridge, vswitchd.

    vm ns:     eth (TAP port "vm1" of the switch, moved here)  NET.20/24
    host ns:   vswitchd; External switch on NIC (allow management OS) → host vNIC vs-<sw>  NET.10/24
                 │ veth (the NIC's cable)
    psw ns:    Linux bridge br0 (the physical switch), ports p1, p2
                 │ veth
    srv ns:    eth  NET.1/24

`OneNicByHand` offers what `vswitch.lab.trace.TraceableLab` needs (netns, address, capture_points,
switches), so the trace is tested without depending on the lab builder. Everything is uniquely
named and removed in reverse order, also when building fails halfway.
"""

from __future__ import annotations

import itertools
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass

from pyroute2 import NetNS

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

from switchlab import Daemon, address_in, veth_pair  # noqa: E402

import netns as ns_helpers  # noqa: E402

_subnet = itertools.count(os.getpid() % 97 + 100)


@dataclass(frozen=True)
class Point:
    node: str
    netns: str
    ifname: str
    label: str
    kind: str


@dataclass(frozen=True)
class Switch:
    name: str
    node: str
    type: str
    socket: str


class OneNicByHand:
    """Build with `with OneNicByHand() as lab:`; torn down on exit."""

    def __init__(self) -> None:
        self.name = ns_helpers.unique_name("lab")
        self._stack = ExitStack()
        self.net = f"10.{next(_subnet) % 250}.{os.getpid() % 250}"
        self._ns: dict[str, str] = {}
        self._addr = {"server": f"{self.net}.1/24", "host": f"{self.net}.10/24", "vm": f"{self.net}.20/24"}
        self.sw = ns_helpers.unique_name("x")
        self.vnic = ("vs-" + self.sw)[:15]
        self.nic = ns_helpers.unique_name("eth")
        self.vm_if = ns_helpers.unique_name("vmn")
        self.srv_if = ns_helpers.unique_name("sv")
        self.p1 = ns_helpers.unique_name("p")
        self.p2 = ns_helpers.unique_name("p")
        self.daemon: Daemon | None = None

    def __enter__(self) -> OneNicByHand:
        try:
            self._build()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _netns(self, node: str) -> str:
        name = ns_helpers.unique_name(node)
        ns_helpers.create(name)
        self._stack.callback(ns_helpers.remove, name)
        self._ns[node] = name
        return name

    def _build(self) -> None:
        host, psw, srv, vm = (self._netns(n) for n in ("host", "psw", "server", "vm"))
        self._ns["physical-switch"] = psw
        veth_pair(self.nic, self.p1, host, psw)
        veth_pair(self.srv_if, self.p2, srv, psw)
        with NetNS(psw) as p:
            p.link("add", ifname="br0", kind="bridge")
            br = p.link_lookup(ifname="br0")[0]
            for name in (self.p1, self.p2):
                p.link("set", index=p.link_lookup(ifname=name)[0], master=br, state="up")
            p.link("set", index=br, state="up")
        address_in(srv, self.srv_if, self._addr["server"])
        address_in(host, self.nic, self._addr["host"])
        ns_helpers.run(host, ["ip", "route", "add", "default", "via", f"{self.net}.1"])
        self.daemon = Daemon(host).start()
        self._stack.callback(self.daemon.cleanup)
        self.daemon.cli("switch", "create", self.sw, "--external", self.nic)
        self.daemon.cli("port", "add", self.sw, "vm1", "--tap", self.vm_if)
        with NetNS(host) as h:
            h.link("set", index=h.link_lookup(ifname=self.vm_if)[0], net_ns_fd=vm)
        address_in(vm, self.vm_if, self._addr["vm"])

    # -- what lab trace needs --------------------------------------------------------------------
    def netns(self, node: str) -> str:
        if node not in self._ns:
            raise KeyError(f"no node named {node!r}")
        return self._ns[node]

    def address(self, node: str) -> str:
        if node not in self._addr:
            raise KeyError(f"node {node!r} has no address")
        return self._addr[node]

    def capture_points(self) -> list[Point]:
        ns = self._ns
        return [
            Point("host", ns["host"], self.vnic, f"{self.vnic} (host vNIC of {self.sw})", "host-vnic"),
            Point("host", ns["host"], self.nic, f"{self.nic} (physical NIC)", "physical-nic"),
            Point("vm", ns["vm"], self.vm_if, f"{self.vm_if} (VM NIC)", "vm-nic"),
            Point("physical-switch", ns["physical-switch"], self.p1, "physical switch port to host",
                  "physical-switch-port"),
            Point("physical-switch", ns["physical-switch"], self.p2, "physical switch port to server",
                  "physical-switch-port"),
            Point("server", ns["server"], self.srv_if, f"{self.srv_if} (server NIC)", "server-nic"),
        ]

    def switches(self) -> list[Switch]:
        assert self.daemon is not None
        return [Switch(self.sw, "host", "external", self.daemon.socket)]

"""The scenario switch of memswitch.py on real links: `LinkSwitch` has `MemSwitch`'s driving and
inspecting calls, but each port is a veth cable (the switch's end here, the far end in a namespace
of its own switch) and the datapath is the one a daemon would build (`make_datapath`, "python" or
"kernel"), so the learning story is told on both datapaths through real kernels.

When is a frame "handled"? The switch counts it on its ingress port (rx, drops included) once it
decided; what it sent out of each port is that port's tx count (the core's on Python, the link's own
on the kernel datapath: nothing else sends on a switch end, IPv6 is off). So `send` waits for the rx
count, then for every far end to receive exactly the frames its port's tx count grew by, and reads the
tx counts again until they settle with what arrived — no sleep, and a port that must see nothing is
one whose tx count did not move and whose far end received nothing.

Where the wire cannot follow the in-memory story it says so instead: a frame shorter than an
Ethernet header cannot be sent on a veth (the kernel pads a root's short frame to 14 bytes), and
ageing runs on the real clock (the in-memory switch's is fake).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from typing import Any

from memswitch import MemSwitch
from pyroute2 import IPRoute

import datapaths
import netns as ns_helpers
from vswitch.core.policy import PortPolicy
from vswitch.core.switch import SwitchCore
from vswitch.datapath.fastpath import EXPIRE_EVERY_S, make_datapath
from vswitch.lab import netns as lab_netns
from vswitch.ports.link import LinkPort
from vswitch.ports.netns import run_in
from waiting import wait_until

QUIET = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}


class _FarEnd:
    """The far end of one cable, in the scenario's namespace: sends frames and collects what arrives
    (a LinkPort: it puts back the VLAN tag the kernel moved into metadata)."""

    def __init__(self, ns: str, ifname: str) -> None:
        self.port = LinkPort(ifname, ifname, vnet=False)
        run_in(ns, self.port.open)
        self.got: list[bytes] = []

    def send(self, frame: bytes) -> None:
        assert self.port.write(frame), "the far end's socket took the frame"

    def poll(self) -> list[bytes]:
        for fd in self.port.extra_fds():  # tagged frames wait on their own socket (PACKET_AUXDATA)
            self.port.service(fd)
        while (f := self.port.recv()) is not None:
            self.got.append(f)
        return self.got

    def take(self) -> list[bytes]:
        out, self.got = self.poll(), []
        return out


class LinkSwitch(MemSwitch):
    """A started datapath (`datapath`: "python" or "kernel") over veth cables named after the keys of
    `ports` (value: policy or None). `close` removes every cable and the namespace."""

    carries_runts = False  # the kernel pads a root's short frame to 14 bytes before it is sent

    def __init__(self, ports: Mapping[str, PortPolicy | None], *, datapath: str, ageing_s: float = 300) -> None:
        self.core = SwitchCore(ageing_s=ageing_s)
        self.mode = datapath
        self.ns = ns_helpers.create(ns_helpers.unique_name("scn"))
        self._events: list[Any] = []
        self.ends: dict[str, _FarEnd] = {}
        self.sides: dict[str, str] = {}
        self.ports = {}  # MemSwitch's in-memory ports: none here
        self.dp = None
        try:
            lab_netns.sysctl(self.ns, QUIET)
            # a name of its own: the fast path's upcall TAP is named after the switch, and stories
            # run side by side in the suite's workers (one "scenario" TAP: EBUSY in the second)
            self.dp = make_datapath(ns_helpers.unique_name("scn"), self.core, mode=datapath,
                                    chosen_by="the scenario")
            datapaths.assert_runs_on(self.dp.label, datapath)
            self.dp.on_events = lambda events, dropped: self._events.extend(events)
            for name, policy in ports.items():
                side = self.sides[name] = _cable(self.ns)
                self.ends[name] = _FarEnd(self.ns, side + "f")
                port = LinkPort(name, side, vnet=False)
                self.dp.open_port(port)  # the kernel datapath leaves it closed: no socket sees its frames
                self.dp.attach(name, port, policy)
            self.dp.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            if self.dp is not None:
                self.dp.stop()
            for end in self.ends.values():
                end.port.close()
        finally:
            with IPRoute() as ipr:
                for side in self.sides.values():
                    if found := ipr.link_lookup(ifname=side):
                        ipr.link("del", index=found[0])
            ns_helpers.remove(self.ns)

    # -- driving --------------------------------------------------------------------------------------
    def send(self, frame: bytes, *, on: str) -> dict[str, list[bytes]]:
        """Send `frame` from the far end of port `on`, wait until the switch has handled it (see the
        module docstring); return what each far end got."""
        assert len(frame) >= 14, "test bug: a veth cannot carry a frame shorter than an Ethernet header"
        for end in self.ends.values():
            end.take()
        before = self._counts()
        self.ends[on].send(frame)
        wait_until(lambda: self._counts()[on][0] > before[on][0],
                   what=f"the switch to count the frame sent on {on}")
        self.dp.call(lambda: None)  # Python: the batch that read it has written its outputs
        deadline = time.monotonic() + 10
        sent = {p: c[1] - before[p][1] for p, c in self._counts().items()}
        while True:
            wait_until(lambda want=sent: all(len(self.ends[p].poll()) >= n for p, n in want.items()),
                       what=f"each far end to receive what the switch sent it ({sent})")
            again = {p: c[1] - before[p][1] for p, c in self._counts().items()}
            if again == sent:
                break
            sent = again
            assert time.monotonic() < deadline, "the switch's tx counts did not settle"
        return {p: end.take() for p, end in self.ends.items()}

    def settle(self, on: str) -> None:  # MemSwitch's: send() waits itself
        raise NotImplementedError

    def _counts(self) -> dict[str, tuple[int, int]]:
        """(rx frames, tx frames) of every port, as the switch counts them."""
        return {str(p): (c["rx_frames"], c["tx_frames"]) for p, c in self.dp.port_counters().items()}

    # -- inspecting ------------------------------------------------------------------------------------
    def counters(self, port: str) -> dict[str, Any]:
        return self.dp.port_counters()[port]

    def fdb_port(self, mac: bytes, vlan: int = 1) -> Hashable | None:
        return next((r.port for r in self.dp.fdb_entries() if (r.mac, r.vlan) == (mac, vlan)), None)

    def events(self) -> list[Any]:
        self.later()
        return super().events()

    def later(self) -> None:
        """On the kernel datapath, wait for its next tick: the program's MAC table reaches the core
        (and its events) there, and a move within one tick reads as learned on the new port
        (docs/kernel-fastpath.md "events")."""
        if self.mode == "kernel":
            t = self.dp.call(self.dp._clock)
            wait_until(lambda: self.dp.call(lambda: self.dp._next_expire) > t + EXPIRE_EVERY_S,
                       what="the kernel datapath's next tick")


def _cable(ns: str) -> str:
    """A veth cable: its switch end here (up, IPv6 off before it comes up: it says nothing), its far
    end `<name>f` in `ns` (up)."""
    side = ns_helpers.unique_name("s")
    assert len(side) < 15, f"test bug: {side!r} leaves no room for the far end's 'f'"
    with IPRoute() as ipr:
        ipr.link("add", ifname=side, kind="veth", peer={"ifname": side + "f", "net_ns_fd": ns})
        with open(f"/proc/sys/net/ipv6/conf/{side}/disable_ipv6", "w") as f:
            f.write("1")
        ipr.link("set", index=ipr.link_lookup(ifname=side)[0], state="up")
    lab_netns.set_up(ns, side + "f")
    return side

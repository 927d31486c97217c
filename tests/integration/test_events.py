"""`vswitch events` against a real vswitchd: real frames over veth (AF_PACKET link ports) move a MAC
between two ports; `--follow`, started before, prints the move (MAC, VLAN, old → new port), an
admin down and a link going down as they happen, and Ctrl-C ends it with status 0; the one-shot
listing and the daemon's log say the same.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from switchlab import VENV_BIN, Daemon, address_in, delete_link, veth_pair

import interruptible
import netns as ns_helpers
from vswitch.control.netlink import Netlink
from waiting import GENEROUS_S

pytestmark = pytest.mark.root

MOVER = "02:95:00:00:00:01"
SEND_FROM = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((sys.argv[1], 0))
src = bytes.fromhex(sys.argv[2].replace(":", ""))
for _ in range(int(sys.argv[3])):
    s.send(b"\\xff" * 6 + src + b"\\x88\\xb5" + bytes(46))
"""


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    d = Daemon(None).start()
    try:
        yield d
    finally:
        d.cleanup()


class Follower:
    """`vswitch events SW --follow --json` as a process; its lines parsed on a reader thread."""

    def __init__(self, d: Daemon, switch: str) -> None:
        self.proc = interruptible.popen([str(VENV_BIN / "vswitch"), "--socket", d.socket, "events", switch,
                                         "--follow", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first event printed (from now on) that `match`es; fails after GENEROUS_S."""
        while True:
            try:
                ev = self.lines.get(timeout=GENEROUS_S)
            except queue.Empty:
                raise AssertionError(f"--follow printed no {what}; it printed {self.seen}") from None
            self.seen.append(ev)
            if match(ev):
                return ev

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=GENEROUS_S)
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_a_mac_moving_between_ports_and_an_admin_down_are_followed_live(netns, daemon: Daemon,
                                                                         datapath: str) -> None:
    sw = ns_helpers.unique_name("evs")
    links: list[str] = []
    follower: Follower | None = None
    vms: dict[str, tuple[str, str]] = {}
    try:
        daemon.cli("switch", "create", sw, "--private", "--datapath", datapath)
        for tag in ("vm1", "vm2"):
            ns, here, there = netns(tag), ns_helpers.unique_name("ea"), ns_helpers.unique_name("eb")
            veth_pair(here, there, ns_b=ns)
            links.append(here)
            with Netlink() as nl:
                nl.set_up(here, True)
            address_in(ns, there, None)  # up, IPv6 chatter off
            daemon.cli("port", "add", sw, tag, "--link", here)
            vms[tag] = (ns, there)

        follower = Follower(daemon, sw)
        follower.wait_for(lambda e: (e["kind"], e["port"]) == ("port-added", "vm2"),
                          "backlog up to vm2's port-added (so it follows from before the move)")
        # MOVER speaks from vm1, then at once from vm2: on the kernel path too the learn and the move
        # are told one by one as the program makes them, even within one tick of its table's copy
        for tag in ("vm1", "vm2"):
            ns, ifname = vms[tag]
            proc = ns_helpers.run(ns, [sys.executable, "-c", SEND_FROM, ifname, MOVER, "3"], check=False)
            assert proc.returncode == 0, proc.stderr
        learned = follower.wait_for(lambda e: e["kind"] == "mac-learned", "mac-learned event")
        assert (learned["mac"], learned["port"]) == (MOVER, "vm1"), follower.seen
        moved = follower.wait_for(lambda e: e["kind"] == "mac-moved", "mac-moved event")
        assert (moved["mac"], moved["vlan"], moved["old_port"], moved["port"], moved["switch"]) == (
            MOVER, 1, "vm1", "vm2", sw)
        daemon.cli("port", "set", sw, "vm1", "--admin", "down")
        down = follower.wait_for(lambda e: e["kind"] == "port-down", "port-down event")
        assert (down["port"], down["reason"]) == ("vm1", "admin")
        assert follower.wait_for(lambda e: e["kind"] == "port-set", "port-set event")["detail"] == {"admin_up": False}
        ns, there = vms["vm2"]
        ns_helpers.run(ns, ["ip", "link", "set", there, "down"])  # vm2's end goes down: our end loses carrier
        down = follower.wait_for(lambda e: e["kind"] == "port-down", "port-down event of the link")
        assert (down["port"], down["reason"]) == ("vm2", "link"), "netlink's word, through control/linkwatch.py"
        rc, err = follower.interrupt()
        assert rc == 0 and "Traceback" not in err and "Aborted" not in err, err

        listing = daemon.cli("events", sw).stdout
        assert f"{sw}  mac moved  {MOVER} vlan 1  vm1 → vm2" in listing, listing
        assert f"{sw}  port down  vm1 (admin)" in listing, listing
        assert f"switch {sw}: mac moved  {MOVER} vlan 1  vm1 → vm2" in daemon.log(), "one log line per event"
    finally:
        if follower is not None:
            follower.kill()
        daemon.cli("switch", "delete", sw, check=False)
        for name in links:
            delete_link(name)

"""Value types the lab hands to its users (CLI, trace, demo, tests).

Owns: `CapturePoint` (one link of a running lab that can be watched), `LabSwitch` (a vswitch switch
of a lab and the daemon socket serving it), `LabSummary` (one line of `lab list`), `LabError`, and
`ApiFactory` — how the lab reaches a daemon without importing a front end: the caller passes a
function turning a unix socket path into a `SwitchApi` (the CLI passes `RestSwitchApi`).

Invariants: plain frozen data, JSON-friendly (`asdict`); nothing here touches the kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vswitch.control.api import SwitchApi

#: socket path of a vswitchd → a `SwitchApi` talking to it (e.g. ``lambda s: RestSwitchApi(socket_path=s)``)
ApiFactory = Callable[[str], SwitchApi]

#: what a capture point is, from the story's point of view
CAPTURE_KINDS = ("host-vnic", "physical-nic", "host-nic", "vm-nic", "physical-switch-port", "server-nic")


class LabError(Exception):
    """A lab request was refused or failed; the message names the lab, node or file concerned."""


@dataclass(frozen=True)
class CapturePoint:
    """One link of a running lab, where frames can be captured (AF_PACKET / tcpdump in `netns`)."""

    node: str      # topology node name ("host", "psw", "server", "vm1")
    netns: str     # namespace the link lives in
    ifname: str    # link name in that namespace
    label: str     # human text, e.g. "eth1 (physical NIC)", "vs-ext (host vNIC of ext)", "psw port to server"
    kind: str      # one of CAPTURE_KINDS


@dataclass(frozen=True)
class LabSwitch:
    """A vswitch switch of a lab: its name, the host node running it, its type and the daemon's socket."""

    name: str
    node: str
    type: str      # external | internal | private
    socket: str    # unix socket of the vswitchd (in `node`'s namespace) serving this switch


@dataclass(frozen=True)
class LabSummary:
    """One running (or half-built) lab, as `vswitch lab list` shows it."""

    name: str
    id: str
    topology: str
    phase: str     # building | network | up | failed
    nodes: tuple[str, ...]
    namespaces: tuple[str, ...]
    daemons: tuple[int, ...]   # vswitchd PIDs
    state_file: str
    problems: tuple[str, ...] = ()   # e.g. "vswitchd of host (pid 123) is not running"

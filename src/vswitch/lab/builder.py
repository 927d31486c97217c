"""The lab builder: a `Topology` → namespaces, veth cables, bridges, addresses, vswitchd per host,
switches and VM NICs — and `down`, which undoes all of it.

Interface only for now (bodies follow).
"""

from __future__ import annotations

from vswitch.lab.model import ApiFactory, LabSummary
from vswitch.lab.state import Lab
from vswitch.lab.topology import Topology


def build_network(topology: Topology, name: str | None = None, *, source: str | None = None) -> Lab:
    """Phase 1: namespaces, cables, physical switches, addresses and one vswitchd per host."""
    raise NotImplementedError


def create_switches(lab: Lab, api_factory: ApiFactory) -> Lab:
    """Phase 2: the topology's switches on their hosts' daemons, and the VMs' NICs as TAP ports."""
    raise NotImplementedError


def up(topology: Topology, name: str | None = None, *, api_factory: ApiFactory, source: str | None = None) -> Lab:
    """Both phases; on any failure everything made so far is undone and the error re-raised."""
    raise NotImplementedError


def down(name: str) -> None:
    """Undo everything lab `name` made, in reverse: daemons (by PID), links, namespaces, files."""
    raise NotImplementedError


def list_labs() -> list[LabSummary]:
    """Every lab with a state file."""
    raise NotImplementedError

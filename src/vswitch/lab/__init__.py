"""vswitch.lab: topology files (YAML) → namespaces, veth cables, physical-switch stand-ins, hosts running
vswitchd, their switches and VMs; and back again.

Public surface (what the CLI, `lab trace` and the demo use):
    load_topology(path) / builtin_topology(name) / builtin_names()   → Topology (validated)
    up(topology, name=None, *, api_factory) → Lab     build_network(...) + create_switches(...)
    down(name)                                        undo everything the lab made, in reverse
    list_labs() → list[LabSummary]
    Lab.load(name) → Lab                              a running lab, from its state file
    CapturePoint, LabSwitch, LabSummary, LabError, ApiFactory
"""

from vswitch.lab.builder import build_network, create_switches, down, list_labs, up
from vswitch.lab.model import ApiFactory, CapturePoint, LabError, LabSummary, LabSwitch
from vswitch.lab.state import Lab
from vswitch.lab.topology import Topology, TopologyError, builtin_names, builtin_topology, load_topology

__all__ = [
    "ApiFactory", "CapturePoint", "Lab", "LabError", "LabSummary", "LabSwitch", "Topology", "TopologyError",
    "build_network", "builtin_names", "builtin_topology", "create_switches", "down", "list_labs",
    "load_topology", "up",
]

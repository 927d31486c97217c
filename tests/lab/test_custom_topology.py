"""A topology file of one's own: VMs on access VLANs of one private switch reach only their VLAN.

No link port here (a lab VM's NIC is a TAP port), so `auto` runs it on Python; access VLANs on both
datapaths are tests/integration/test_vlan_trunk.py's.
"""

from __future__ import annotations

import textwrap

import pytest
from labkit import ping, running_lab, unreachable

from vswitch.lab import load_topology

pytestmark = pytest.mark.root

VLANS = """
name: vlans
nodes:
  host: {kind: host}
  a: {kind: vm, interfaces: {eth0: {address: 10.1.0.1/24}}}
  b: {kind: vm, interfaces: {eth0: {address: 10.1.0.2/24}}}
  c: {kind: vm, interfaces: {eth0: {address: 10.1.0.3/24}}}
switches:
  sw: {host: host, type: private}
attachments:
  - {vm: a, switch: sw, vlan: 10}
  - {vm: b, switch: sw, vlan: 10}
  - {vm: c, switch: sw, vlan: 20}
"""


def test_vm_attachments_on_access_vlans_reach_only_their_vlan(tmp_path):
    f = tmp_path / "vlans.yaml"
    f.write_text(textwrap.dedent(VLANS))
    with running_lab(load_topology(f), "vlan") as lab:
        assert ping(lab, "a", "b"), "two VMs on VLAN 10 reach each other"
        got_through = unreachable(lab, ("a", lab.address("c")), ("c", lab.address("b")))
        assert got_through == [], f"VLAN 10 and VLAN 20 must not reach each other: {got_through} did"

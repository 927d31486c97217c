"""A lab VM that is a real QEMU guest (`qemu: true`): the one-nic story with vm1 booted in QEMU on a
qemu-stream port of the External switch. The host reaches it, it reaches the server through the
switch, the uplink and the physical switch (`lab exec` runs in its shell), and `down` stops it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from labkit import fdb, leftovers, ping, running_lab

from vswitch.lab import builtin_topology
from vswitch.lab.topology import Topology

pytestmark = pytest.mark.root



def _one_nic_with_qemu_vm() -> Topology:
    d = copy.deepcopy(builtin_topology("one-nic").to_dict())
    d["nodes"]["vm1"]["qemu"] = True
    return Topology.from_dict(d, "one-nic with a QEMU vm1")


def vswitch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vswitch.frontends.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_a_qemu_guest_vm_in_the_one_nic_story(guest_image):
    with running_lab(_one_nic_with_qemu_vm(), "qemu") as lab:
        vm = lab.guest("vm1")
        assert vm is not None and vm["pid"] > 0

        assert ping(lab, "host", "vm1"), "the host reaches the QEMU guest through the switch"
        r = vswitch("lab", "exec", lab.name, "vm1", "--", "ping", "-c", "2", "-W", "5", "10.0.0.1")
        assert r.returncode == 0 and "2 packets received" in r.stdout, \
            f"the guest reaches the server through uplink and physical switch: {r.stdout}{r.stderr}"
        r = vswitch("lab", "exec", lab.name, "vm1", "--", "ping", "-c", "1", "-W", "1", "10.0.0.99")
        assert r.returncode == 1, "lab exec hands back the guest command's exit status"
        assert fdb(lab, "ext").get(vm["mac"]) == "vm1", "the switch learned the guest behind its port"

        r = vswitch("lab", "trace", lab.name, "--from", "host", "--to", "vm1", "--count", "1", "--json")
        assert r.returncode == 0, r.stderr
        traced = json.dumps(json.loads(r.stdout))
        assert "vm1" in traced and "FORWARD_LEARNED" in traced, "the switch's decision toward the guest's port"
        r = vswitch("lab", "trace", lab.name, "--from", "vm1", "--to", "host")
        assert r.returncode == 1 and "QEMU guest" in r.stderr, "a trace from a guest is refused, saying why"

        listed = json.loads(vswitch("lab", "list", "--json").stdout)
        mine = next(x for x in listed if x["name"] == lab.name)
        assert not mine.get("problems"), mine
        state = copy.deepcopy(lab.state)
    assert leftovers(state) == [], "down stops the guest and removes everything else"

"""`vswitch lab …` end to end as a user types it: up, list, exec (exit code passed through),
bindings, down; and the refusals (unknown node, not root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from labkit import lab_name, leftovers

from vswitch.lab import Lab, list_labs
from vswitch.lab.state import state_path

pytestmark = pytest.mark.root

VSWITCH = str(Path(sys.executable).parent / "vswitch")


def vswitch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VSWITCH, *args], capture_output=True, text=True, timeout=timeout)


def test_up_exec_bindings_list_down_from_the_command_line():
    name = lab_name("cli")
    r = vswitch("lab", "up", "--builtin", "one-nic", "--name", name, "--json")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        shown = json.loads(r.stdout)
        assert shown["name"] == name and shown["phase"] == "up" and shown["addresses"]["server"] == "10.0.0.1"
        assert {p["kind"] for p in shown["capture_points"]} == {
            "physical-nic", "host-vnic", "physical-switch-port", "server-nic", "vm-nic"}

        r = vswitch("lab", "exec", name, "vm1", "--", "ping", "-c", "2", "-i", "0.2", "-w", "5", "10.0.0.1")
        assert r.returncode == 0 and "2 received" in r.stdout, r.stdout + r.stderr
        r = vswitch("lab", "exec", name, "vm1", "--", "sh", "-c", "exit 7")
        assert r.returncode == 7, "the command's exit code is passed through"
        r = vswitch("lab", "exec", name, "nosuch", "--", "true")
        assert r.returncode == 1 and f"lab '{name}' has no node 'nosuch' (nodes: host, psw, server, vm1)" in r.stderr

        r = vswitch("lab", "bindings", name, "host", "--json")
        rows = {b["name"]: b for b in json.loads(r.stdout)}
        assert rows["vs-ext"]["addresses"] == ["10.0.0.10/24"] and rows["eth1"]["addresses"] == []
        r = vswitch("lab", "bindings", name, "host")
        assert "carries only the switch (uplink of ext)" in r.stdout, r.stdout

        r = vswitch("lab", "list")
        assert r.returncode == 0 and name in r.stdout
    finally:
        state = Lab.load(name).state if state_path(name).exists() else None
        r = vswitch("lab", "down", name)
    assert r.returncode == 0 and f"lab {name} is down" in r.stdout, r.stdout + r.stderr
    assert state is not None and leftovers(state) == []
    assert name not in {s.name for s in list_labs()}
    r = vswitch("lab", "down", name)
    assert r.returncode == 1 and f"no lab named '{name}'" in r.stderr


def test_not_root_is_refused_before_anything_is_made():
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        VSWITCH, "lab", "up", "--builtin", "one-nic", "--name", lab_name("nr")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "the lab needs root" in r.stderr, r.stdout + r.stderr
    assert not state_path(lab_name("nr")).exists()

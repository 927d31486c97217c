"""A running lab as its state file describes it: `Lab` and the JSON under /run/vswitch/labs.

Owns the state file format and every question asked of a running lab: which namespace a node is,
its address, the links that can be captured, the switches and the daemon sockets serving them,
and the bindings view (which link holds the host's addresses and routes, which carries only the
switch). The builder writes the file as it goes, so a lab whose build crashed can still be taken
down from another process.

State file (``<LAB_ROOT>/<name>.json``, version 1)::

    {"version": 1, "name", "id", "source", "phase": "building|network|up|failed",
     "dir": per-lab directory (sockets, daemon state dirs, logs),
     "topology": Topology.to_dict(),
     "namespaces": {node: netns},
     "links": [{"node", "netns", "ifname", "kind", "label"}],     # made by the lab, in order
     "daemons": {host node: {"pid", "socket", "state_dir", "log"[, "ui_url", "ui_token"]}},
     "switches": [{"name", "node", "type", "socket", "nic", "vnic"}],   # created switches only
     "undo": [{"kind": "dir|netns|link|daemon", ...}]}             # replayed in reverse by `down`

The lab's view (``<dir>/view.json``): what the web UI's lab page draws, served verbatim by the lab's
daemons at ``GET /lab`` (``vswitchd --lab-view``): the topology, the links and switches made, and the
last `lab trace` result (`Lab.record_trace`), so a browser shows the observed path that a terminal
printed. It holds no token, PID or namespace name.

Invariants: both files are replaced atomically (write + rename); `Lab` never changes the kernel.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vswitch.lab.model import CapturePoint, LabError, LabSwitch
from vswitch.lab.topology import Topology

STATE_VERSION = 1
#: `lab trace` results the web UI's lab page offers (the newest ones)
VIEW_TRACES = 8
#: where lab state lives; VSWITCH_LAB_ROOT overrides it (tests, non-standard /run)
LAB_ROOT = Path(os.environ.get("VSWITCH_LAB_ROOT", "/run/vswitch/labs"))


def lab_root() -> Path:
    """The directory holding every lab's state file and per-lab directory (read at each call)."""
    return LAB_ROOT


def state_path(name: str) -> Path:
    return lab_root() / f"{name}.json"


def read_state(name: str) -> dict[str, Any]:
    """The raw state of lab `name`; LabError naming the running labs when there is none."""
    path = state_path(name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        running = lab_names()
        hint = f"running labs: {', '.join(running)}" if running else "no lab is running"
        raise LabError(f"no lab named {name!r} ({hint})") from None
    except (OSError, ValueError) as e:
        raise LabError(f"cannot read the state of lab {name!r} at {path}: {e}") from None


def write_state(state: dict[str, Any]) -> None:
    """Replace the state file of ``state['name']`` atomically."""
    _replace_json(state_path(state["name"]), state)


def _replace_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def view_path(lab_dir: str | Path) -> Path:
    """Where the lab's view for the web UI lives (given to its daemons as ``--lab-view``)."""
    return Path(lab_dir) / "view.json"


def lab_names() -> list[str]:
    """Names of every lab with a state file."""
    try:
        return sorted(p.stem for p in lab_root().glob("*.json"))
    except OSError:
        return []


@dataclass
class Lab:
    """A lab that has been built (wholly or partly); questions only, no changes."""

    name: str
    state: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, name: str) -> Lab:
        """The lab `name`, from its state file."""
        return cls(name, read_state(name))

    # -- identity --
    @property
    def id(self) -> str:
        return self.state["id"]

    @property
    def phase(self) -> str:
        return self.state.get("phase", "building")

    @property
    def topology(self) -> Topology:
        return Topology.from_dict(self.state["topology"], f"lab {self.name}")

    @property
    def nodes(self) -> list[str]:
        return list(self.state["namespaces"])

    def node_kind(self, node: str) -> str:
        self.netns(node)
        return self.state["topology"]["nodes"][node]["kind"]

    # -- where things are --
    def netns(self, node: str) -> str:
        """The network namespace of `node`; LabError naming the lab's nodes otherwise."""
        try:
            return self.state["namespaces"][node]
        except KeyError:
            raise LabError(f"lab {self.name!r} has no node {node!r} "
                           f"(nodes: {', '.join(self.state['namespaces'])})") from None

    def ui_link(self, node: str, switch: str | None = None, *, lab_page: bool = False) -> str | None:
        """The web UI of `node`'s vswitchd as a link that signs in (its admin token in the fragment, which
        a browser never sends), at `switch`'s page if given, or at the lab's page (its topology and the
        observed paths of `lab trace`); None when the lab was built without the UI."""
        self.netns(node)
        daemon = self.state["daemons"].get(node) or {}
        if not daemon.get("ui_url"):
            return None
        page = "&/lab" if lab_page else f"&/switch/{switch}" if switch else ""
        return f"{daemon['ui_url']}#token={daemon['ui_token']}{page}"

    def address(self, node: str) -> str:
        """The node's first IPv4 address (no prefix): its interfaces first, then its switches' vNICs."""
        self.netns(node)
        spec = self.state["topology"]["nodes"][node]
        for iface in (spec.get("interfaces") or {}).values():
            addr = iface.get("address")
            if addr:
                return (addr[0] if isinstance(addr, list) else addr).split("/")[0]
        for sw in self.state["topology"].get("switches", {}).values():
            if sw.get("host") == node and sw.get("address"):
                return sw["address"].split("/")[0]
        raise LabError(f"node {node!r} of lab {self.name!r} has no IPv4 address")

    def guest(self, node: str) -> dict[str, Any] | None:
        """The QEMU guest of vm `node` (pid, console, log, mac, port), or None when it is a namespace."""
        self.netns(node)
        return self.state.get("guests", {}).get(node)

    def socket(self, node: str) -> str:
        """The unix socket of the vswitchd running in host node `node`."""
        self.netns(node)
        try:
            return self.state["daemons"][node]["socket"]
        except KeyError:
            raise LabError(f"node {node!r} of lab {self.name!r} runs no vswitchd (only hosts do)") from None

    def switches(self) -> list[LabSwitch]:
        """The switches the lab created (empty before `create_switches`)."""
        return [LabSwitch(s["name"], s["node"], s["type"], s["socket"]) for s in self.state.get("switches", [])]

    def switch(self, name: str) -> LabSwitch:
        for s in self.switches():
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.switches()) or "none created yet"
        raise LabError(f"lab {self.name!r} has no switch {name!r} (switches: {known})")

    def port_of(self, vm: str) -> tuple[str, str]:
        """(switch, port) of a VM's first NIC."""
        self.netns(vm)
        for a in self.topology.attachments:
            if a.vm == vm:
                return a.switch, a.port
        raise LabError(f"node {vm!r} of lab {self.name!r} is not a VM attached to a switch")

    def capture_points(self) -> list[CapturePoint]:
        """Every link the lab made (cables, bridge ports, VM NICs) and each created switch's host vNIC.

        A host NIC is ``host-nic`` while the host's stack uses it and ``physical-nic`` once it is a
        switch's uplink. The bridge device of a physical switch is not listed: frames cross its ports.
        """
        points = [CapturePoint(lk["node"], lk["netns"], lk["ifname"], lk["label"], lk["kind"])
                  for lk in self.state.get("links", [])]
        for sw in self.state.get("switches", []):
            if sw.get("vnic"):
                points.append(CapturePoint(sw["node"], self.netns(sw["node"]), sw["vnic"],
                                           f"{sw['vnic']} (host vNIC of {sw['name']})", "host-vnic"))
        uplinks = {(s["node"], s["nic"]): s["name"] for s in self.state.get("switches", []) if s.get("nic")}
        out = []
        for p in points:
            if p.kind == "host-nic" and (p.node, p.ifname) in uplinks:
                p = CapturePoint(p.node, p.netns, p.ifname,
                                 f"{p.ifname} (physical NIC, uplink of {uplinks[(p.node, p.ifname)]})",
                                 "physical-nic")
            out.append(p)
        order = {n: i for i, n in enumerate(self.nodes)}
        return sorted(out, key=lambda p: order.get(p.node, len(order)))

    def bindings(self, node: str) -> list[dict[str, Any]]:
        """Per link in the node's namespace: name, mac, up, addresses, routes and the role it plays now."""
        from vswitch.lab import netns as nsops

        ns = self.netns(node)
        facts = nsops.link_facts(ns)
        uplinks = {s["nic"]: s["name"] for s in self.state.get("switches", []) if s["node"] == node and s.get("nic")}
        vnics = {s["vnic"]: s["name"] for s in self.state.get("switches", []) if s["node"] == node and s.get("vnic")}
        labels = {lk["ifname"]: lk for lk in self.state.get("links", []) if lk["node"] == node}
        out = []
        for f in facts:
            name = f["name"]
            has_proto = bool(f["addresses"])
            if name in vnics:
                role = f"carries host protocols (host vNIC of {vnics[name]})" if has_proto \
                    else f"host vNIC of {vnics[name]}, no addresses"
            elif name in uplinks:
                role = f"carries only the switch (uplink of {uplinks[name]})" if not has_proto \
                    else f"uplink of {uplinks[name]}, still holds host addresses"
            elif name in labels and labels[name]["kind"] == "vm-nic":
                role = f"the VM's NIC ({labels[name]['label'].split('(', 1)[1].rstrip(')')})"
            elif f.get("kind") == "bridge":
                role = "the physical switch (kernel bridge)"
            elif f.get("master"):
                lk = labels.get(name)
                role = f"physical switch port ({lk['label']})" if lk else f"port of bridge {f['master']}"
            elif has_proto:
                role = "carries host protocols"
            else:
                role = "unused (no addresses, no switch)"
            out.append({**f, "role": role})
        return out

    # -- the web UI's view --
    def view(self, traces: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What the web UI's lab page draws: topology, links and switches made, and `traces` (`lab trace`
        results, oldest first)."""
        return {"name": self.name, "topology": self.state["topology"],
                "links": [{k: lk[k] for k in ("node", "ifname", "kind", "label")}
                          for lk in self.state.get("links", [])],
                "switches": [{k: s.get(k) for k in ("name", "node", "type", "nic", "vnic")}
                             for s in self.state.get("switches", [])],
                "traces": traces or []}

    def publish_view(self, traces: list[dict[str, Any]] | None = None) -> None:
        """Write the view where the lab's daemons serve it; OSError when the lab's directory cannot be written."""
        _replace_json(view_path(self.state["dir"]), self.view(traces))

    def record_trace(self, result: dict[str, Any]) -> None:
        """Add `result` (of `vswitch.lab.trace.trace`) to the web UI's lab page, which keeps the last
        `VIEW_TRACES`; a lab whose directory is gone (taken down meanwhile) is left alone. OSError when
        the view cannot be written."""
        path = view_path(self.state["dir"])
        if not path.parent.is_dir():
            return
        try:
            traces = json.loads(path.read_text()).get("traces", [])
        except (FileNotFoundError, ValueError):
            traces = []
        self.publish_view([*traces, result][-VIEW_TRACES:])

    def summary_dict(self) -> dict[str, Any]:
        """What `lab list --json` shows of this lab."""
        return {"name": self.name, "id": self.id, "topology": self.state["topology"]["name"],
                "phase": self.phase, "nodes": self.nodes,
                "namespaces": list(self.state["namespaces"].values()),
                "daemons": {n: d["pid"] for n, d in self.state.get("daemons", {}).items()},
                "guests": {n: g["pid"] for n, g in self.state.get("guests", {}).items()},
                "switches": [s["name"] for s in self.state.get("switches", [])],
                "state_file": str(state_path(self.name))}

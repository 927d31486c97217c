"""The lab builder: a `Topology` → namespaces, veth cables, bridges, addresses, one vswitchd per host,
switches and VM NICs — and `down`, which undoes all of it.

Two phases, so a story can show the host before and after its switches exist:
  `build_network`   namespaces (``vl<id>-<node>``), cables, physical switches (bridges), addresses,
                    default routes, a vswitchd per host node (detached, in the host's namespace);
  `create_switches` each switch on its host's daemon (through `SwitchApi`), an internal switch's
                    vNIC address, and each VM NIC: a TAP port the daemon creates in the host's
                    namespace, which the lab moves into the VM's namespace and names as declared —
                    or, for a ``qemu: true`` VM, a qemu-stream port and a real QEMU guest started
                    on it (inside the VM's namespace, detached; `vswitch.lab.guest`).
`up` runs both. Kernel work is in `netns`, daemons in `daemons`, the state file in `state`.

Invariants:
- Every step that makes something records its undo in the lab's state file *before the next step*
  and on an in-process `ExitStack`; a failure unwinds the stack in reverse and removes the state
  file, and `down` (any process, any time later) replays the recorded undos in reverse. Both run
  the same `undo_step`.
- Names: a lab has a short random id; every namespace is ``vl<id>-<node>``, so two labs (even of
  one topology) coexist. Links live only inside the lab's namespaces (never in the caller's), so
  they keep the topology's own names (``eth1``, ``p-host-eth1``), ≤ 15 bytes as the file checks.
- Lab links run IPv4 only (IPv6 off in every lab namespace: no RS/MLD/DAD noise in counters), and a
  host answers ARP only on the link holding the address (``arp_ignore=1``), as a multi-homed server
  should — otherwise a NIC given to a switch would answer for the host's address.
Must not touch: anything outside the lab's namespaces and directory; switches other than the lab's.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from vswitch.control.model import DatapathMode, PortKind, PortSpec, SwitchSpec, SwitchType, VswitchError
from vswitch.lab import daemons, guest
from vswitch.lab import netns as nsops
from vswitch.lab.model import ApiFactory, LabError, LabSummary
from vswitch.lab.state import (
    STATE_VERSION,
    Lab,
    lab_names,
    lab_root,
    read_state,
    state_path,
    view_path,
    write_state,
)
from vswitch.lab.topology import Attachment, Topology

log = logging.getLogger(__name__)

BRIDGE_NAME = "br0"
LAB_NAME_MAX = 32
_LAB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: every lab namespace: IPv6 off (quiet counters), including links made later
NS_SYSCTLS = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
#: a host with several NICs answers ARP only on the one holding the address
HOST_SYSCTLS = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"}


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it creates network namespaces, veth cables, bridges and TAP devices "
                       "(run it with sudo)")


def namespace_name(lab_id: str, node: str) -> str:
    return f"vl{lab_id}-{node}"


# ---- undo ------------------------------------------------------------------------------------------

def undo_step(entry: dict[str, Any]) -> None:
    """Undo one recorded step. Raises on failure; "already gone" is success."""
    kind = entry["kind"]
    if kind == "daemon":
        daemons.stop(entry["pid"], entry["socket"])
    elif kind == "guest":
        guest.stop_pid(entry["pid"], entry["console"])
    elif kind == "link":
        nsops.delete_link(entry["netns"], entry["ifname"])
    elif kind == "netns":
        nsops.remove(entry["name"])
    elif kind == "dir":
        shutil.rmtree(entry["path"], ignore_errors=True)
    else:
        raise LabError(f"unknown undo step {entry!r}")


def _undo_all(entries: list[dict[str, Any]]) -> list[str]:
    """Undo `entries` in reverse, carrying on past failures; return what failed."""
    errors = []
    for entry in reversed(entries):
        try:
            undo_step(entry)
        except Exception as e:  # keep going: everything else must still be undone
            errors.append(f"{entry['kind']} {entry.get('name') or entry.get('ifname') or entry.get('pid')}: {e}")
    return errors


def _undo_quietly(fn: Callable[..., Any], *args: Any) -> None:
    """Run one undo while unwinding a failed build: log a failure and carry on with the rest."""
    try:
        fn(*args)
    except Exception as e:
        log.error("undo %s%r failed: %s", getattr(fn, "__name__", fn), args, e)


class _Steps:
    """Records each step's undo in the state file and on an ExitStack, and says which step is running."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.stack = ExitStack()
        self.current = "start"

    def doing(self, what: str) -> None:
        self.current = what

    def did(self, entry: dict[str, Any]) -> None:
        self.state["undo"].append(entry)
        write_state(self.state)
        self.stack.callback(_undo_quietly, undo_step, entry)

    def did_in_process(self, fn: Callable[..., Any], *args: Any) -> None:
        """An undo that only this process can run (through a daemon's API); `down` stops the daemon instead."""
        self.stack.callback(_undo_quietly, fn, *args)

    def save(self) -> None:
        write_state(self.state)


# ---- phase 1 ---------------------------------------------------------------------------------------

def _claim_name(topology: Topology, name: str | None) -> str:
    """Pick (or check) the lab's name and create its state file exclusively, so no two labs share one."""
    lab_root().mkdir(parents=True, exist_ok=True, mode=0o755)
    if name is not None:
        if not _LAB_NAME_RE.match(name) or len(name) > LAB_NAME_MAX:
            raise LabError(f"lab name {name!r} must be letters, digits, '_', '.', '-' (max {LAB_NAME_MAX})")
        candidates = [name]
    else:
        candidates = [topology.name] + [f"{topology.name}-{n}" for n in range(2, 100)]
    for cand in candidates:
        try:
            fd = os.open(state_path(cand), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        return cand
    if name is not None:
        raise LabError(f"a lab named {name!r} already exists; take it down (`vswitch lab down {name}`) "
                       "or choose another --name")
    raise LabError(f"too many labs of topology {topology.name!r}; take some down")


def _new_id() -> str:
    used = {n[2:6] for n in nsops.all_namespaces() if n.startswith("vl")}
    for name in lab_names():
        with contextlib.suppress(LabError, KeyError):
            used.add(read_state(name)["id"])
    while True:
        lab_id = secrets.token_hex(2)
        if lab_id not in used:
            return lab_id


def _link_entry(topology: Topology, node: str, ns: str, ifname: str, peer_node: str, peer_if: str) -> dict[str, Any]:
    kind = topology.nodes[node].kind
    if kind == "physical-switch":
        return {"kind": "physical-switch-port", "label": f"{node} port to {peer_node} {peer_if}"}
    if kind == "host":
        return {"kind": "host-nic", "label": f"{ifname} (physical NIC of {node})"}
    return {"kind": "server-nic", "label": f"{ifname} of {node}"}


def build_network(topology: Topology, name: str | None = None, *, source: str | None = None,
                  ui_port: int | None = None) -> Lab:
    """Phase 1: namespaces, cables, physical switches, addresses and one vswitchd per host node.

    `ui_port`: each host's vswitchd also serves its API and web UI on 127.0.0.1 of the caller's
    namespace (the first host on `ui_port`, or any free port when it is taken or 0; the others on
    any free port), with an admin token of the lab's own (`Lab.ui_link`).

    On failure everything made so far is undone and a LabError says which step failed and why.
    """
    require_root()
    name = _claim_name(topology, name)
    lab_id = _new_id()
    lab_dir = lab_root() / name
    state: dict[str, Any] = {
        "version": STATE_VERSION, "name": name, "id": lab_id, "source": source or topology.name,
        "phase": "building", "dir": str(lab_dir), "created_at": time.time(),
        "topology": topology.to_dict(),
        "namespaces": {n: namespace_name(lab_id, n) for n in topology.nodes},
        "links": [], "daemons": {}, "switches": [], "undo": [],
    }
    steps = _Steps(state)
    try:
        with steps.stack:
            steps.save()
            steps.doing(f"create {lab_dir}")
            lab_dir.mkdir(mode=0o755)
            steps.did({"kind": "dir", "path": str(lab_dir)})
            _build_network(topology, state, steps, ui_port)
            state["phase"] = "network"
            steps.save()
            steps.stack.pop_all()
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            state_path(name).unlink()
        if isinstance(e, Exception):
            raise LabError(f"building lab {name!r} failed while trying to {steps.current}: {e}\n"
                           "everything made so far was undone") from e
        raise
    return Lab(name, state)


def _ui_listener(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port` here (any free port when that one is taken)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def _build_network(topology: Topology, state: dict[str, Any], steps: _Steps, ui_port: int | None = None) -> None:
    nsmap: dict[str, str] = state["namespaces"]
    for node in topology.nodes.values():
        ns = nsmap[node.name]
        steps.doing(f"create namespace {ns} for {node.kind} {node.name!r}")
        nsops.create(ns)
        steps.did({"kind": "netns", "name": ns, "node": node.name})
        nsops.sysctl(ns, {**NS_SYSCTLS, **(HOST_SYSCTLS if node.kind == "host" else {})})
    for psw in topology.nodes_of("physical-switch"):
        steps.doing(f"create bridge {BRIDGE_NAME} in {psw.name!r}")
        nsops.bridge(nsmap[psw.name], BRIDGE_NAME)
        steps.did({"kind": "link", "netns": nsmap[psw.name], "ifname": BRIDGE_NAME})
    for lk in topology.links:
        a, b = lk.a, lk.b
        steps.doing(f"cable {a} to {b}")
        nsops.veth(nsmap[a.node], a.ifname, nsmap[b.node], b.ifname)
        steps.did({"kind": "link", "netns": nsmap[a.node], "ifname": a.ifname})
        for ep, other in ((a, b), (b, a)):
            ns = nsmap[ep.node]
            entry = _link_entry(topology, ep.node, ns, ep.ifname, other.node, other.ifname)
            state["links"].append({"node": ep.node, "netns": ns, "ifname": ep.ifname, **entry})
            if topology.nodes[ep.node].kind == "physical-switch":
                nsops.enslave(ns, ep.ifname, BRIDGE_NAME)
            else:
                nsops.set_up(ns, ep.ifname)
        steps.save()
    for node in topology.nodes.values():
        if node.kind == "vm":
            continue  # a VM's NIC arrives with its switch
        for iface in node.interfaces.values():
            for cidr in iface.addresses:
                steps.doing(f"address {node.name}:{iface.name} with {cidr}")
                nsops.add_address(nsmap[node.name], iface.name, cidr)
            if iface.gateway:
                steps.doing(f"route {node.name}'s default via {iface.gateway}")
                nsops.add_default_route(nsmap[node.name], iface.gateway)
    started = []
    for host in topology.nodes_of("host"):
        steps.doing(f"start vswitchd on {host.name!r}")
        lab_dir = Path(state["dir"])
        files = {"socket": str(lab_dir / f"{host.name}.sock"), "state_dir": str(lab_dir / host.name),
                 "log": str(lab_dir / f"{host.name}.log")}
        ui: dict[str, Any] = {}
        if ui_port is None:
            pid = daemons.start(nsmap[host.name], files["state_dir"], files["socket"], files["log"],
                                lab_view=str(view_path(lab_dir)))
        else:
            token = secrets.token_urlsafe(18)
            token_file = lab_dir / f"{host.name}.tokens"
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"admin:{token}\n")
            with _ui_listener(ui_port if not started else 0) as listener:
                pid = daemons.start(nsmap[host.name], files["state_dir"], files["socket"], files["log"],
                                    ui=(listener, str(token_file)), lab_view=str(view_path(lab_dir)))
                ui = {"ui_url": f"http://127.0.0.1:{listener.getsockname()[1]}/ui/", "ui_token": token}
        state["daemons"][host.name] = {"pid": pid, **files, **ui}
        steps.did({"kind": "daemon", "pid": pid, "socket": files["socket"], "node": host.name})
        started.append((host.name, pid, files))
    for node, pid, files in started:  # they start in parallel; wait for each in turn
        steps.doing(f"wait for vswitchd on {node!r} (log: {files['log']})")
        daemons.wait_ready(pid, files["socket"], files["log"])


# ---- phase 2 ---------------------------------------------------------------------------------------

def create_switches(lab: Lab, api_factory: ApiFactory) -> Lab:
    """Phase 2: the topology's switches on their hosts' daemons, and each VM's NIC as a TAP port.

    On failure the switches made by this call are deleted again (the network stays) and LabError says why.
    """
    require_root()
    state = lab.state
    if state.get("phase") != "network":
        raise LabError(f"lab {lab.name!r} is in phase {state.get('phase')!r}; switches are created once, "
                       "right after the network is built")
    topology = lab.topology
    nsmap: dict[str, str] = state["namespaces"]
    steps = _Steps(state)
    apis: dict[str, Any] = {}

    def api_for(node: str) -> Any:
        if node not in apis:
            apis[node] = api_factory(state["daemons"][node]["socket"])
        return apis[node]

    try:
        with steps.stack:
            for sw in topology.switches.values():
                steps.doing(f"create {sw.type} switch {sw.name!r} on {sw.host!r}")
                spec = SwitchSpec(sw.name, SwitchType(sw.type), nic=sw.nic,
                                  allow_management_os=sw.allow_management_os, datapath=DatapathMode(sw.datapath))
                api_for(sw.host).create_switch(spec)
                steps.did_in_process(api_for(sw.host).delete_switch, sw.name)
                state["switches"].append({"name": sw.name, "node": sw.host, "type": sw.type, "nic": sw.nic,
                                          "vnic": sw.vnic, "socket": state["daemons"][sw.host]["socket"]})
                if sw.address and sw.vnic:
                    steps.doing(f"address {sw.vnic} (host vNIC of {sw.name!r}) with {sw.address}")
                    nsops.add_address(nsmap[sw.host], sw.vnic, sw.address)
                    nsops.set_up(nsmap[sw.host], sw.vnic)
                steps.save()
            for n, att in enumerate(topology.attachments):
                sw = topology.switches[att.switch]
                host_ns, vm_ns = nsmap[sw.host], nsmap[att.vm]
                if topology.nodes[att.vm].qemu:
                    _start_guest(lab, att, api_for(sw.host), steps)
                    continue
                tap = f"lt{lab.id}v{n}"
                steps.doing(f"attach vm {att.vm!r} to switch {sw.name!r} (TAP port {att.port!r})")
                api_for(sw.host).add_port(sw.name, PortSpec(att.port, PortKind.TAP, tap, vlan=att.vlan))
                steps.did_in_process(api_for(sw.host).remove_port, sw.name, att.port)
                nsops.move_link(host_ns, tap, vm_ns, att.ifname)
                iface = topology.nodes[att.vm].interfaces.get(att.ifname)
                for cidr in iface.addresses if iface else ():
                    nsops.add_address(vm_ns, att.ifname, cidr)
                nsops.set_up(vm_ns, att.ifname)
                if iface and iface.gateway:
                    nsops.add_default_route(vm_ns, iface.gateway)
                vlan = f", VLAN {att.vlan}" if att.vlan else ""
                state["links"].append({"node": att.vm, "netns": vm_ns, "ifname": att.ifname, "kind": "vm-nic",
                                       "label": f"{att.ifname} of {att.vm} (VM NIC, port {att.port} of "
                                                f"{sw.name}{vlan})"})
                steps.save()
            state["phase"] = "up"
            steps.save()
            lab.publish_view()  # in the lab's directory: removed with it
            steps.stack.pop_all()
    except Exception as e:
        state["switches"] = []
        state["guests"] = {}
        state["links"] = [lk for lk in state["links"] if lk["kind"] != "vm-nic"]
        steps.save()
        if isinstance(e, VswitchError):
            e = LabError(e.message)
        raise LabError(f"lab {lab.name!r}: failed to {steps.current}: {e}\n"
                       "the switches made so far were deleted; the network is still up") from e
    finally:
        for api in apis.values():
            close = getattr(api, "close", None)
            if callable(close):
                close()
    return lab


def guest_mac(lab_id: str, vm: str) -> str:
    """A QEMU guest's MAC: QEMU's 52:54:00 prefix, then bytes of the lab id and VM name (stable per lab)."""
    digest = hashlib.sha256(f"{lab_id}/{vm}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _start_guest(lab: Lab, att: Attachment, api: Any, steps: _Steps) -> None:
    """A qemu-stream port for `att.vm` and a QEMU guest on it, booted, with its address and route."""
    state = lab.state
    sw = lab.topology.switches[att.switch]
    vm_ns = state["namespaces"][att.vm]
    lab_dir = Path(state["dir"])
    files = {"socket": str(lab_dir / f"{att.vm}.sock"), "console": str(lab_dir / f"{att.vm}.console"),
             "log": str(lab_dir / f"{att.vm}.qemu.log")}
    steps.doing(f"attach QEMU vm {att.vm!r} to switch {sw.name!r} (qemu-stream port {att.port!r})")
    info = api.add_port(sw.name, PortSpec(att.port, PortKind.QEMU_STREAM, files["socket"], vlan=att.vlan))
    steps.did_in_process(api.remove_port, sw.name, att.port)
    steps.doing(f"build the QEMU guest image for {att.vm!r}")
    image = guest.ensure_image()
    iface = lab.topology.nodes[att.vm].interfaces.get(att.ifname)
    mac = guest_mac(lab.id, att.vm)
    steps.doing(f"boot QEMU guest {att.vm!r} (log: {files['log']})")
    g = guest.QemuGuest(image, files["console"])
    g.start(info.details["qemu_arg"], mac, addresses=iface.addresses if iface else (),
            gateway=iface.gateway if iface else None, netns=vm_ns, log_path=files["log"])
    pid = g.pid or 0
    state.setdefault("guests", {})[att.vm] = {"pid": pid, "mac": mac, "port": att.port, "switch": sw.name,
                                              **files}
    steps.did({"kind": "guest", "pid": pid, "console": files["console"], "node": att.vm})
    g.detach()


def up(topology: Topology, name: str | None = None, *, api_factory: ApiFactory, source: str | None = None,
       ui_port: int | None = None) -> Lab:
    """Both phases (`ui_port` as in `build_network`); on any failure everything made so far is undone
    and a LabError re-raised."""
    lab = build_network(topology, name, source=source, ui_port=ui_port)
    try:
        return create_switches(lab, api_factory)
    except BaseException:
        try:
            down(lab.name)
        except LabError as e:
            log.error("undoing lab %s after a failed start: %s", lab.name, e)
        raise


# ---- down / list -----------------------------------------------------------------------------------

def down(name: str) -> None:
    """Undo everything lab `name` made, in reverse: daemons (by PID; they give NICs back), links,
    namespaces (and whatever still runs in them), files. Carries on past failures, then reports them."""
    state = read_state(name)  # an unknown lab is named as such, root or not
    require_root()
    errors = _undo_all(state.get("undo", []))
    # a lab interrupted before it recorded a namespace may still have made it: names are the lab's own
    for ns in state.get("namespaces", {}).values():
        if nsops.exists(ns):
            try:
                nsops.remove(ns)
            except Exception as e:
                errors.append(f"netns {ns}: {e}")
    if errors:
        state["phase"] = "failed"
        state["undo"] = [e for e in state.get("undo", []) if e["kind"] in ("daemon", "netns", "dir")]
        write_state(state)
        raise LabError(f"lab {name!r} was only partly taken down:\n  " + "\n  ".join(errors)
                       + f"\n(state kept in {state_path(name)}; `vswitch lab down {name}` retries)")
    with contextlib.suppress(FileNotFoundError):
        state_path(name).unlink()


def list_labs() -> list[LabSummary]:
    """Every lab with a state file (a half-built or failed one too)."""
    out = []
    for name in lab_names():
        try:
            st = read_state(name)
        except LabError:
            continue
        problems = tuple(f"vswitchd of {node} (pid {d['pid']}) is not running"
                         for node, d in st.get("daemons", {}).items()
                         if not (daemons.alive(d["pid"]) and daemons.is_ours(d["pid"], d["socket"])))
        problems += tuple(f"namespace {ns} is missing" for ns in st.get("namespaces", {}).values()
                          if st.get("phase") in ("network", "up") and not nsops.exists(ns))
        problems += tuple(f"QEMU guest {node} (pid {g['pid']}) is not running"
                          for node, g in st.get("guests", {}).items() if not guest.running(g["pid"], g["console"]))
        out.append(LabSummary(
            name=name, id=st.get("id", "?"), topology=st.get("topology", {}).get("name", "?"),
            phase=st.get("phase", "?"), nodes=tuple(st.get("namespaces", {})),
            namespaces=tuple(st.get("namespaces", {}).values()),
            daemons=tuple(d["pid"] for d in st.get("daemons", {}).values()),
            state_file=str(state_path(name)), problems=problems))
    return out

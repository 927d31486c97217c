"""Topology files: YAML (in the spirit of containerlab) → a validated `Topology`.

Owns the file format and every check on it. A topology names nodes, the veth cables between them,
the vswitch switches each host runs and the VMs attached to them::

    name: one-nic
    description: one physical NIC shared by the host and a VM through an External switch
    nodes:
      host:   {kind: host, interfaces: {eth1: {address: 10.0.0.10/24, gateway: 10.0.0.1}}}
      psw:    {kind: physical-switch}
      server: {kind: server, interfaces: {eth0: {address: 10.0.0.1/24}}}
      vm1:    {kind: vm, interfaces: {eth0: {address: 10.0.0.21/24, gateway: 10.0.0.1}}}
    links:                                  # veth cables, "node:ifname" at each end
      - [host:eth1, psw:to-host]
      - [server:eth0, psw:to-server]
    switches:
      ext: {host: host, type: external, nic: eth1, allow_management_os: true}
    attachments:                            # a VM NIC is a TAP port on a switch (ifname default eth0)
      - {vm: vm1, switch: ext, vlan: 10}

Node kinds: ``host`` (a computer holding physical NICs and running vswitchd), ``vm`` (its NIC is a
port of a switch on a host: a TAP moved into the vm's namespace, or with ``qemu: true`` a real QEMU
guest — Debian's kernel and busybox, see `vswitch.lab.guest` — on a qemu-stream port),
``physical-switch`` (a Linux bridge; its interfaces are bridge ports), ``server`` (a computer on the
physical switch). ``address`` is an IPv4 CIDR (or a list of them);
``gateway`` adds a default route. An internal switch may carry ``address``: its host vNIC's.

Invariants: a `Topology` that exists is valid — every reference resolves, names fit the kernel's
15-byte link names, no address is used twice. Errors name the file and the thing that is wrong,
and all of them are reported at once; a thing that is declared but wrong is still declared, so a
mistake is reported once, where it is, never again as "unknown" wherever it is named. What a
switch or a VM's port may be is control/model.py's rule (`SwitchSpec.parse`, the port checkers)
with its words; this module adds only what a lab means (hosts, cables, addresses).
Must not touch: the kernel, files other than the one read.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vswitch.control.config_file import load_yaml
from vswitch.control.model import (
    DatapathMode,
    FieldError,
    InvalidRequest,
    SwitchSpec,
    SwitchType,
    check_nic,
    check_port_name,
    check_vlan,
    host_vnic_name,
)
from vswitch.lab.model import LabError

NODE_KINDS = ("host", "vm", "physical-switch", "server")
NODE_NAME_MAX = 10          # node names end up in port names and namespace names
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
#: the keys of a switch that are `SwitchSpec` fields (the others are the lab's: host, address)
_SPEC_KEYS = ("type", "nic", "allow_management_os", "datapath")


class TopologyError(LabError):
    """A topology file is invalid; `problems` lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid topology ({len(problems)} problem{'s' * (len(problems) != 1)}):\n"
                         f"{lines}")


@dataclass(frozen=True)
class Interface:
    """An interface of a node as the topology declares it (addresses only; links create it)."""

    name: str
    addresses: tuple[str, ...] = ()          # IPv4 CIDRs, e.g. "10.0.0.10/24"
    gateway: str | None = None               # default route via this IPv4 address


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    interfaces: dict[str, Interface] = field(default_factory=dict)
    #: a vm that is a real QEMU guest (on a qemu-stream port) instead of a namespace on a TAP port
    qemu: bool = False


@dataclass(frozen=True)
class Endpoint:
    node: str
    ifname: str

    def __str__(self) -> str:
        return f"{self.node}:{self.ifname}"


@dataclass(frozen=True)
class Link:
    """A veth cable between two nodes."""

    a: Endpoint
    b: Endpoint


@dataclass(frozen=True)
class Switch:
    """A vswitch switch run by `host`'s vswitchd."""

    name: str
    host: str
    type: str
    nic: str | None = None
    allow_management_os: bool = True
    address: str | None = None               # internal switch: the host vNIC's address (CIDR)
    datapath: str = "auto"                   # SwitchSpec.datapath: auto, kernel or python

    @property
    def vnic(self) -> str | None:
        """The host vNIC's link name, or None when the switch has none."""
        if self.type == "internal" or (self.type == "external" and self.allow_management_os):
            return host_vnic_name(self.name)
        return None


@dataclass(frozen=True)
class Attachment:
    """A VM NIC: a TAP port named `port` on `switch`, appearing as `ifname` in the VM."""

    vm: str
    switch: str
    ifname: str = "eth0"
    vlan: int | None = None
    port: str = ""


@dataclass(frozen=True)
class Topology:
    name: str
    description: str
    nodes: dict[str, Node]
    links: tuple[Link, ...] = ()
    switches: dict[str, Switch] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()

    def nodes_of(self, kind: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == kind]

    def with_datapath(self, mode: DatapathMode) -> Topology:
        """The same topology with every switch on datapath `mode` (`lab up --datapath`)."""
        return replace(self, switches={n: replace(s, datapath=str(mode)) for n, s in self.switches.items()})

    def to_dict(self) -> dict[str, Any]:
        """The file format again (round-trips through `from_dict`)."""
        nodes: dict[str, Any] = {}
        for n in self.nodes.values():
            d: dict[str, Any] = {"kind": n.kind}
            if n.qemu:
                d["qemu"] = True
            if n.interfaces:
                d["interfaces"] = {i.name: _iface_dict(i) for i in n.interfaces.values()}
            nodes[n.name] = d
        switches = {}
        for s in self.switches.values():
            sd = {k: v for k, v in asdict(s).items() if k != "name" and v is not None}
            if sd["datapath"] == "auto":
                del sd["datapath"]  # the default: files written before it existed read the same
            switches[s.name] = sd
        return {
            "name": self.name, "description": self.description, "nodes": nodes,
            "links": [[str(lk.a), str(lk.b)] for lk in self.links],
            "switches": switches,
            "attachments": [{k: v for k, v in asdict(a).items() if v is not None and k != "port"}
                            for a in self.attachments],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<topology>") -> Topology:
        return _Parser(source).parse(data)


def _iface_dict(i: Interface) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if i.addresses:
        d["address"] = list(i.addresses) if len(i.addresses) > 1 else i.addresses[0]
    if i.gateway:
        d["gateway"] = i.gateway
    return d


# ---- loading --------------------------------------------------------------------------------------

def parse_topology(text: str, source: str = "<topology>") -> Topology:
    """Parse and validate YAML text; TopologyError naming `source` on any problem."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        raise TopologyError(source, [f"not valid YAML: {e}"]) from None
    return Topology.from_dict(data, source)


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise LabError(f"cannot read topology file {p}: {e.strerror or e}") from None
    return parse_topology(text, str(p))


def builtin_names() -> list[str]:
    """Names of the topologies shipped with vswitch (``vswitch lab up --builtin NAME``)."""
    root = resources.files("vswitch.lab") / "topologies"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def builtin_topology(name: str) -> Topology:
    """A shipped topology by name; LabError listing the known names otherwise."""
    names = builtin_names()
    if name not in names:
        raise LabError(f"no built-in topology {name!r} (built-in: {', '.join(names)})")
    res = resources.files("vswitch.lab") / "topologies" / f"{name}.yaml"
    return parse_topology(res.read_text(), f"builtin:{name}")


# ---- validation -----------------------------------------------------------------------------------

class _Parser:
    """Turns loaded YAML into a Topology, collecting every problem before raising."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        #: every node and switch name the file declares, valid or not: a reference to one that has
        #: a problem of its own is not a second problem
        self.declared_nodes: tuple[Any, ...] = ()
        self.declared_switches: tuple[Any, ...] = ()
        #: (node, ifname) of every interface a cable or an attachment creates, even one refused for
        #: another reason (its other end, its VLAN): that is reported there, not as a missing cable
        self.created: set[tuple[str, str]] = set()

    def bad(self, msg: str) -> None:
        self.problems.append(msg)

    def parse(self, data: Any) -> Topology:
        if not isinstance(data, dict):
            raise TopologyError(self.source, ["the file must be a mapping with 'name' and 'nodes'"])
        unknown = sorted(set(data) - {"name", "description", "nodes", "links", "switches", "attachments"})
        if unknown:
            self.bad(f"unknown top-level key(s): {', '.join(map(str, unknown))} "
                     "(expected name, description, nodes, links, switches, attachments)")
        name = data.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > 32:
            self.bad(f"topology name must be lower-case letters, digits and '-' (max 32), got {name!r}")
            name = "invalid"
        description = data.get("description") or ""
        if not isinstance(description, str):
            self.bad("description must be text")
            description = ""
        nodes = self._nodes(data.get("nodes"))
        links = self._links(data.get("links"), nodes)
        switches = self._switches(data.get("switches"), nodes)
        attachments = self._attachments(data.get("attachments"), nodes, switches)
        self._check_interfaces(nodes)
        self._check_addresses(nodes, switches)
        if self.problems:
            raise TopologyError(self.source, self.problems)
        return Topology(name, description.strip(), nodes, tuple(links), switches, tuple(attachments))

    # -- nodes --
    def _nodes(self, raw: Any) -> dict[str, Node]:
        if not isinstance(raw, dict) or not raw:
            self.bad("'nodes' must be a mapping of node name → node (at least one)")
            return {}
        nodes: dict[str, Node] = {}
        self.declared_nodes = tuple(raw)
        for name, spec in raw.items():
            where = f"node {name!r}"
            if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > NODE_NAME_MAX:
                self.bad(f"{where}: a node name is lower-case letters, digits and '-', starting with a letter, "
                         f"at most {NODE_NAME_MAX} characters")
                continue
            if not isinstance(spec, dict):
                self.bad(f"{where}: must be a mapping with at least 'kind'")
                continue
            unknown = sorted(set(spec) - {"kind", "interfaces", "qemu"})
            if unknown:
                self.bad(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (expected kind, interfaces, qemu)")
            qemu = spec.get("qemu", False)
            if not isinstance(qemu, bool):
                self.bad(f"{where}: qemu must be true or false, got {qemu!r}")
                qemu = False
            if qemu and spec.get("kind") != "vm":
                self.bad(f"{where}: only a vm can be a QEMU guest (qemu: true)")
                qemu = False
            kind = spec.get("kind")
            if kind not in NODE_KINDS:
                # kept, so that the links, switches and attachments naming it are checked as they are
                self.bad(f"{where}: unknown node kind {kind!r} (expected one of {', '.join(NODE_KINDS)})")
            interfaces = self._interfaces(where, spec.get("interfaces") or {})
            if kind == "physical-switch" and any(i.addresses or i.gateway for i in interfaces.values()):
                self.bad(f"{where}: a physical switch's interfaces are bridge ports and take no addresses")
            nodes[name] = Node(name, kind, interfaces, qemu)
        return nodes

    def _interfaces(self, where: str, raw: Any) -> dict[str, Interface]:
        if not isinstance(raw, dict):
            self.bad(f"{where}: 'interfaces' must be a mapping of interface name → {{address, gateway}}")
            return {}
        out: dict[str, Interface] = {}
        gateways = 0
        for ifname, spec in raw.items():
            w = f"{where} interface {ifname!r}"
            if not self._ifname_ok(w, ifname):
                continue
            spec = spec or {}
            if not isinstance(spec, dict):
                self.bad(f"{w}: must be a mapping with 'address' and optionally 'gateway'")
                continue
            unknown = sorted(set(spec) - {"address", "gateway"})
            if unknown:
                self.bad(f"{w}: unknown key(s) {', '.join(map(str, unknown))} (expected address, gateway)")
            raw_addrs = spec.get("address")
            addrs = raw_addrs if isinstance(raw_addrs, list) else ([] if raw_addrs is None else [raw_addrs])
            good: list[str] = []
            for a in addrs:
                cidr = self._cidr(w, a)
                if cidr:
                    good.append(cidr)
            gw = spec.get("gateway")
            if gw is not None:
                gateways += 1
                gw = self._gateway(w, gw, good)
            out[ifname] = Interface(ifname, tuple(good), gw)
        if gateways > 1:
            self.bad(f"{where}: only one interface may have a gateway (one default route per node)")
        return out

    def _ifname_ok(self, where: str, ifname: Any) -> bool:
        try:
            check_nic(ifname)  # a NIC's name: what the kernel takes, never the loopback device
        except FieldError as exc:
            self.bad(f"{where}: {exc}")
            return False
        return True

    def _unknown_node(self, node: Any, nodes: dict[str, Node], kind: str | None = None) -> bool:
        """True when `node` is not declared at all (a node declared with a problem is not unknown).

        With `kind`: also when it is declared with another valid kind."""
        if node not in self.declared_nodes:
            return True
        return kind is not None and node in nodes and nodes[node].kind in NODE_KINDS and nodes[node].kind != kind

    def _cidr(self, where: str, text: Any) -> str | None:
        if not isinstance(text, str) or "/" not in text:
            self.bad(f"{where}: address {text!r} must be an IPv4 CIDR such as 10.0.0.10/24")
            return None
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            self.bad(f"{where}: bad CIDR {text!r}")
            return None
        if iface.version != 4:
            self.bad(f"{where}: address {text!r} is not IPv4 (lab links run IPv4 only)")
            return None
        net = iface.network
        if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
            self.bad(f"{where}: {text!r} is the network or broadcast address of {net}")
            return None
        return str(iface)

    def _gateway(self, where: str, text: Any, cidrs: list[str]) -> str | None:
        try:
            gw = ipaddress.IPv4Address(str(text))
        except ValueError:
            self.bad(f"{where}: gateway {text!r} is not an IPv4 address")
            return None
        if cidrs and not any(gw in ipaddress.ip_interface(c).network for c in cidrs):
            self.bad(f"{where}: gateway {gw} is not in any subnet of this interface ({', '.join(cidrs)})")
            return None
        if not cidrs:
            self.bad(f"{where}: a gateway needs an address on the same interface")
            return None
        return str(gw)

    # -- links --
    def _links(self, raw: Any, nodes: dict[str, Node]) -> list[Link]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.bad("'links' must be a list of [node:ifname, node:ifname] pairs")
            return []
        links: list[Link] = []
        used: dict[str, int] = {}
        for n, item in enumerate(raw, 1):
            where = f"link {n}"
            ends = item.get("endpoints") if isinstance(item, dict) else item
            if not isinstance(ends, list) or len(ends) != 2:
                self.bad(f"{where}: must be two endpoints, e.g. [host:eth1, psw:to-host], got {item!r}")
                continue
            parsed = [self._endpoint(where, e, nodes) for e in ends]
            self.created |= {(ep.node, ep.ifname) for ep in parsed if ep is not None}
            if None in parsed:
                continue
            a, b = parsed
            assert a is not None and b is not None
            if a.node == b.node:
                self.bad(f"{where}: connects node {a.node!r} to itself")
                continue
            for ep in (a, b):
                if str(ep) in used:
                    self.bad(f"{where}: {ep} is already the end of link {used[str(ep)]} (duplicate interface)")
                used[str(ep)] = n
            links.append(Link(a, b))
        return links

    def _endpoint(self, where: str, text: Any, nodes: dict[str, Node]) -> Endpoint | None:
        if not isinstance(text, str) or text.count(":") != 1:
            self.bad(f"{where}: endpoint {text!r} must be 'node:ifname'")
            return None
        node, ifname = text.split(":")
        if self._unknown_node(node, nodes):
            self.bad(f"{where}: endpoint {text!r} names unknown node {node!r}"
                     + (f" (nodes: {', '.join(map(str, self.declared_nodes))})" if self.declared_nodes else ""))
            return None
        if node not in nodes:
            return None  # its own problem is reported where it is declared
        if nodes[node].kind == "vm":
            self.bad(f"{where}: vm {node!r} gets its NIC from a switch (see 'attachments'), not from a cable")
            return None
        if not self._ifname_ok(f"{where} endpoint {text!r}", ifname):
            return None
        return Endpoint(node, ifname)

    # -- switches --
    def _switches(self, raw: Any, nodes: dict[str, Node]) -> dict[str, Switch]:
        if raw is None:
            return {}
        if isinstance(raw, list):  # also accept a list of mappings with 'name'
            as_map: dict[Any, Any] = {}
            for item in raw:
                key = item.get("name") if isinstance(item, dict) else None
                if key in as_map:
                    self.bad(f"switch {key!r}: duplicate switch name")
                as_map[key] = {k: v for k, v in item.items() if k != "name"} if isinstance(item, dict) else item
            raw = as_map
        if not isinstance(raw, dict):
            self.bad("'switches' must be a mapping of switch name → {host, type, ...}")
            return {}
        self.declared_switches = tuple(raw)
        cabled = set(self.created)  # so far: the cable ends (a cable with one bad end still has the other)
        out: dict[str, Switch] = {}
        uplinks: dict[tuple[str, str], str] = {}
        vnics: dict[tuple[str, str], str] = {}
        for name, spec in raw.items():
            where = f"switch {name!r}"
            if not isinstance(spec, dict):
                self.bad(f"{where}: must be a mapping with host and type")
                continue
            unknown = sorted(set(spec) - {"host", *_SPEC_KEYS, "address"})
            if unknown:
                self.bad(f"{where}: unknown key(s) {', '.join(map(str, unknown))} "
                         f"(expected host, {', '.join(_SPEC_KEYS)}, address)")
            host, address = spec.get("host"), spec.get("address")
            if self._unknown_node(host, nodes, "host"):
                hosts = [n.name for n in nodes.values() if n.kind == "host"]
                self.bad(f"{where}: 'host' must name a node of kind host ({', '.join(hosts) or 'none declared'}), "
                         f"got {host!r}")
            # what a switch may be is the model's rule, in its words; `type` is required there too
            try:
                parsed: SwitchSpec | None = SwitchSpec.parse(
                    {"name": name, **{k: spec[k] for k in _SPEC_KEYS if k in spec}})
            except InvalidRequest as exc:
                parsed = None
                self.problems += [f"{where}: {p}" for p in exc.problems]
            if parsed is None:
                continue  # still declared: the attachments naming it are not told it is unknown
            typ, nic = str(parsed.type), parsed.nic
            if parsed.type == SwitchType.EXTERNAL and host in nodes and nodes[host].kind == "host":
                assert nic is not None
                if (host, nic) not in cabled:
                    self.bad(f"{where}: nic: {nic!r} is not a cabled interface of {host!r} (see 'links')")
                elif (host, nic) in uplinks:
                    self.bad(f"{where}: NIC {host}:{nic} is already the uplink of switch {uplinks[(host, nic)]!r}")
                uplinks[(host, nic)] = name
            if address is not None:
                if parsed.type != SwitchType.INTERNAL:
                    why = "its host vNIC takes the NIC's addresses" if parsed.has_host_vnic else "it has no host vNIC"
                    self.bad(f"{where}: only an internal switch takes an 'address' ({why})")
                    address = None
                else:
                    address = self._cidr(where, address)
            sw = Switch(name, host, typ, nic, parsed.allow_management_os if typ == "external" else True, address,
                        str(parsed.datapath))
            if sw.vnic:
                if (host, sw.vnic) in vnics:
                    self.bad(f"{where}: its host vNIC name {sw.vnic!r} clashes with switch {vnics[(host, sw.vnic)]!r}"
                             " (names are cut to 15 bytes)")
                if (host, sw.vnic) in cabled:
                    self.bad(f"{where}: its host vNIC name {sw.vnic!r} is already a cabled interface of {host!r}")
                vnics[(host, sw.vnic)] = name
            out[name] = sw
        return out

    # -- attachments --
    def _attachments(self, raw: Any, nodes: dict[str, Node], switches: dict[str, Switch]) -> list[Attachment]:
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            self.bad("'attachments' must be a list of {vm, switch, ifname, vlan}")
            return []
        seen: set[tuple[str, str]] = set()
        items: list[tuple[str, str, str, int | None]] = []
        per_vm: dict[str, int] = {}  # attachments naming each vm, even those refused for another reason
        for n, item in enumerate(raw, 1):
            where = f"attachment {n}"
            if not isinstance(item, dict):
                self.bad(f"{where}: must be a mapping {{vm, switch, ifname, vlan}}")
                continue
            unknown = sorted(set(item) - {"vm", "switch", "ifname", "vlan"})
            if unknown:
                self.bad(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (expected vm, switch, ifname, vlan)")
            vm, sw, ifname, vlan = item.get("vm"), item.get("switch"), item.get("ifname", "eth0"), item.get("vlan")
            ok = True
            if self._unknown_node(vm, nodes, "vm"):
                self.bad(f"{where}: 'vm' must name a node of kind vm, got {vm!r}")
                ok = False
            elif vm not in nodes or nodes[vm].kind != "vm":
                ok = False  # declared with a problem of its own, reported there
            else:
                per_vm[vm] = per_vm.get(vm, 0) + 1
            if sw not in self.declared_switches:
                declared = ", ".join(map(str, self.declared_switches))
                self.bad(f"{where}: vm {vm!r} is attached to unknown switch {sw!r}"
                         + (f" (switches: {declared})" if declared else " (no switches declared)"))
                ok = False
            elif sw not in switches:
                ok = False  # declared with a problem of its own, reported there
            if not self._ifname_ok(f"{where} ifname", ifname):
                continue
            if isinstance(vm, str):
                self.created.add((vm, ifname))
            if vlan is not None:
                try:
                    check_vlan(vlan)  # the model's rule: what a port's access VLAN may be
                except FieldError as exc:
                    self.bad(f"{where}: vlan: {exc}")
                    ok = False
            if not ok:
                continue
            if (vm, ifname) in seen:
                self.bad(f"{where}: vm {vm!r} already has an interface {ifname!r} (duplicate attachment)")
                continue
            seen.add((vm, ifname))
            items.append((vm, sw, ifname, vlan))
        out = []
        for vm, sw, ifname, vlan in items:
            port = vm if per_vm[vm] == 1 else f"{vm}-{ifname}"
            try:
                check_port_name(port)
            except FieldError as exc:
                self.bad(f"vm {vm!r}: its port name {exc}; rename the vm")
                continue
            out.append(Attachment(vm, sw, ifname, vlan, port))
        for node in nodes.values():
            if node.kind == "vm" and node.name not in per_vm:
                self.bad(f"vm {node.name!r} is attached to no switch (add it to 'attachments')")
            if node.qemu and per_vm.get(node.name, 0) > 1:
                self.bad(f"vm {node.name!r}: a QEMU guest has one NIC (eth0); it has {per_vm[node.name]} attachments")
        for vm, _sw, ifname, _vlan in items:
            if nodes[vm].qemu and ifname != "eth0":
                self.bad(f"vm {vm!r}: a QEMU guest's NIC is eth0, not {ifname!r}")
        return out

    # -- cross checks --
    def _check_interfaces(self, nodes: dict[str, Node]) -> None:
        for node in nodes.values():
            for ifname in node.interfaces:
                if (node.name, ifname) not in self.created:
                    how = "attachment" if node.kind == "vm" else "link"
                    self.bad(f"node {node.name!r}: interface {ifname!r} is declared but no {how} creates it")

    def _check_addresses(self, nodes: dict[str, Node], switches: dict[str, Switch]) -> None:
        owner: dict[str, str] = {}
        pairs = [(f"{n.name}:{i.name}", a) for n in nodes.values() for i in n.interfaces.values() for a in i.addresses]
        pairs += [(f"switch {s.name} host vNIC", s.address) for s in switches.values() if s.address]
        for where, cidr in pairs:
            ip = cidr.split("/")[0]
            if ip in owner:
                self.bad(f"address {ip} is used twice: by {owner[ip]} and by {where}")
            owner[ip] = where

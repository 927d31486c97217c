"""Configuration files: every switch of a host as one document (`vswitch config export` / `apply`).

Owns `ConfigDocument` (switches with their ports and static MAC entries, each one a `SwitchSpec`,
`PortSpec` or `StaticEntry`), its mapping form (`parse` / `to_dict`) and its YAML text. What an
apply changes is control/config_plan.py's.

Invariants:
- Parse once: a document is valid by construction. Every switch, port and static entry goes through
  its own spec's `parse` (the one judge of a field); the document adds only the rules between them
  (a name or target listed twice, a static entry on a port the switch does not list or outside its
  VLANs). `ConfigDocument.parse` reports every problem at once, each named by its path in the file
  (``switches[1].ports[0].vlan``), so a refused file is refused whole.
- ``ports`` / ``static`` left out of a switch (None) mean "as they are": the document says nothing of them.
- The wire form (REST) is the dataclasses' own (`to_jsonable`); the file form (`to_dict`) writes
  trunks as ranges and leaves unset fields out. `parse` reads both.
Must not touch: the kernel, files (the CLI reads and writes them), the running switches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from vswitch.control import ownership
from vswitch.control.model import (
    HOST_PORT,
    UPLINK_PORT,
    InvalidRequest,
    PortSpec,
    Problem,
    StaticEntry,
    SwitchSpec,
    SwitchType,
    VswitchError,
    clip,
    host_vnic_name,
    policy_for,
)
from vswitch.core.policy import PortPolicy

#: the version of the document's layout this vswitch writes and reads (``version:`` in the file)
CONFIG_VERSION = 1
#: a refusal lists at most this many problems (a file of 10,000 bad ports is not 10,000 lines)
PROBLEMS_MAX = 100


# ---- the document -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SwitchConfig:
    """One switch of a document: its spec, its ports (None: the document leaves them as they are) and
    its static MAC entries (None likewise). Valid by construction: InvalidRequest naming each port
    or entry listed twice, a static entry's unknown port or a VLAN its port is not in."""

    switch: SwitchSpec
    ports: list[PortSpec] | None = None
    static: list[StaticEntry] | None = None

    def __post_init__(self) -> None:
        problems = list(_switch_problems(self))
        if problems:
            raise InvalidRequest(problems)

    def static_keys(self) -> dict[tuple[str, int], str]:
        """The static entries as (MAC, VLAN) → port, each VLAN resolved (the port's own when left out)."""
        return {(e.mac, vlan): e.port for e in self.static or () if (vlan := self._vlan_of(e)) is not None}

    def _vlan_of(self, entry: StaticEntry) -> int | None:
        policy = self._policy(entry.port)
        return entry.vlan if entry.vlan is not None else (policy.own_vlan() if policy else None)

    def _policy(self, port: str) -> PortPolicy | None:
        """The policy `port` has on this switch; None when the document does not say."""
        if port == UPLINK_PORT and self.switch.type == SwitchType.EXTERNAL:
            return PortPolicy()  # what the datapath gives the switch's own ports
        if port == HOST_PORT and self.switch.has_host_vnic:
            return PortPolicy()
        for p in self.ports or ():
            if p.name == port:
                return policy_for(p)
        return None


def _switch_problems(sw: SwitchConfig) -> Iterable[Problem]:
    seen: dict[str, int] = {}
    for j, p in enumerate(sw.ports or ()):
        if p.name in seen:
            yield Problem(f"ports[{j}].name", f"port {p.name!r} is listed twice (also ports[{seen[p.name]}])")
        seen.setdefault(p.name, j)
    keys: dict[tuple[str, int], int] = {}
    for k, e in enumerate(sw.static or ()):
        policy = sw._policy(e.port)
        if policy is None:
            if sw.ports is not None:
                yield Problem(f"static[{k}].port", f"switch {sw.switch.name!r} has no port {e.port!r} in this file")
            continue
        vlan = sw._vlan_of(e)
        if vlan is None:
            yield Problem(f"static[{k}].vlan", f"port {e.port!r} is a trunk without a native VLAN "
                                               f"({policy.describe()}): give the VLAN")
        elif not policy.is_member(vlan):
            yield Problem(f"static[{k}].vlan", f"port {e.port!r} is not in VLAN {vlan} ({policy.describe()})")
        elif (e.mac, vlan) in keys:
            yield Problem(f"static[{k}].mac", f"{e.mac} in VLAN {vlan} is listed twice "
                                              f"(also static[{keys[e.mac, vlan]}])")
        else:
            keys[e.mac, vlan] = k


@dataclass(frozen=True)
class ConfigDocument:
    """A host's switches as a configuration file states them (`version` `CONFIG_VERSION`).

    Valid by construction: InvalidRequest naming every problem by its path (``switches[1].ports[0].vlan``)
    — a switch listed twice, a link or socket two of them would hold (control/ownership.py), and
    whatever `SwitchConfig` refuses. `parse` builds one from the mapping a YAML or JSON file holds;
    `to_dict` is that mapping (trunks as ranges, fields left unset left out)."""

    switches: list[SwitchConfig] = field(default_factory=list)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        problems = [] if self.version == CONFIG_VERSION else [_version_problem(self.version)]
        problems += _document_problems(enumerate(self.switches))
        if problems:
            raise InvalidRequest(problems)

    @classmethod
    def parse(cls, data: object) -> ConfigDocument:
        """A document from a mapping (YAML, JSON, a REST body); InvalidRequest listing every problem,
        each named by its path, when anything in it is wrong."""
        if not isinstance(data, Mapping):
            raise InvalidRequest(f"a configuration must be a mapping with 'version' and 'switches', got {clip(data)}")
        problems = _unknown(data, ("version", "switches"), "", "configuration")
        version = data.get("version")
        if "version" not in data:
            problems.append(Problem("version", f"required (this vswitch reads version {CONFIG_VERSION})"))
        elif version != CONFIG_VERSION or isinstance(version, bool):
            problems.append(_version_problem(version))
        items = data.get("switches")
        parsed: list[tuple[int, SwitchConfig]] = []
        if "switches" not in data:
            problems.append(Problem("switches", "required (a list of switches; [] for none)"))
        elif not isinstance(items, list):
            problems.append(Problem("switches", f"must be a list of switches, got {clip(items)}"))
        else:
            for i, item in enumerate(items):
                sw = _parse_switch(item, f"switches[{i}]", problems)
                if sw is not None:
                    parsed.append((i, sw))
        problems += _document_problems(parsed)
        if problems:
            if len(problems) > PROBLEMS_MAX:
                problems = problems[:PROBLEMS_MAX] + [Problem("", f"and {len(problems) - PROBLEMS_MAX} more")]
            raise InvalidRequest(problems)
        return cls([sw for _, sw in parsed], CONFIG_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """The document as a file holds it: switches by name, ports by name, static entries by VLAN and MAC."""
        def bare(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if v is not None}
        out = []
        for sw in sorted(self.switches, key=lambda s: s.switch.name):
            item: dict[str, Any] = {"switch": bare(sw.switch.to_dict())}
            if sw.ports is not None:
                item["ports"] = [bare(p.to_dict()) for p in sorted(sw.ports, key=lambda p: p.name)]
            if sw.static is not None:
                item["static"] = [bare(e.to_dict()) for e in sorted(sw.static, key=lambda e: (e.vlan or 0, e.mac))]
            out.append(item)
        return {"version": self.version, "switches": out}


def _version_problem(version: object) -> Problem:
    return Problem("version", f"{clip(version)} is not a configuration version this vswitch reads ({CONFIG_VERSION})")


def _unknown(data: Mapping[Any, Any], known: tuple[str, ...], path: str, what: str) -> list[Problem]:
    return [Problem(f"{path}.{k}" if path else str(k), f"unknown {what} field (expected {', '.join(known)})")
            for k in list(data)[:8] if k not in known]


def _within(problems: list[Problem], path: str, build: Callable[[], Any]) -> Any:
    """`build()`, or None with its problems added, named inside `path`."""
    try:
        return build()
    except InvalidRequest as exc:
        problems += exc.within(path).problems
        return None


def _parse_list(data: Mapping[str, Any], key: str, path: str, problems: list[Problem],
                parse: Callable[[object], Any]) -> list[Any] | None:
    """The items under `key` each built with `parse` (None when the key is absent or null)."""
    items = data.get(key)
    if items is None:
        return None
    if not isinstance(items, list):
        problems.append(Problem(f"{path}.{key}", f"must be a list, got {clip(items)}"))
        return None
    built = [_within(problems, f"{path}.{key}[{j}]", lambda item=item: parse(item)) for j, item in enumerate(items)]
    return None if any(b is None for b in built) else built


def _parse_static(item: object) -> StaticEntry:
    if isinstance(item, Mapping) and isinstance(item.get("mac"), int) and not isinstance(item.get("mac"), bool):
        # YAML 1.1 reads an unquoted 52:54:00:12:34:56 as a base-60 number
        raise InvalidRequest([Problem("mac", f"{item['mac']} is a number: write the MAC in quotes "
                                             "(YAML reads an unquoted 52:54:00:12:34:56 as a base-60 number)")])
    return StaticEntry.parse(item)


def _parse_switch(item: object, path: str, problems: list[Problem]) -> SwitchConfig | None:
    if not isinstance(item, Mapping):
        problems.append(Problem(path, f"must be a mapping with switch, ports and static, got {clip(item)}"))
        return None
    before = len(problems)
    problems += _unknown(item, ("switch", "ports", "static"), path, "switch entry")
    spec = None
    if "switch" not in item:
        problems.append(Problem(f"{path}.switch", "required (name, type and the switch's settings)"))
    else:
        spec = _within(problems, f"{path}.switch", lambda: SwitchSpec.parse(item["switch"]))
    ports = _parse_list(item, "ports", path, problems, PortSpec.parse)
    static = _parse_list(item, "static", path, problems, _parse_static)
    if len(problems) > before or spec is None:
        return None
    return _within(problems, path, lambda: SwitchConfig(spec, ports, static))  # type: ignore[no-any-return]


def _document_problems(switches: Iterable[tuple[int, SwitchConfig]]) -> list[Problem]:
    """Switch names listed twice; links and socket paths two switches or ports of the document would hold."""
    problems: list[Problem] = []
    names: dict[str, int] = {}
    owners = ownership.OwnerIndex()
    for i, sw in switches:
        spec, path = sw.switch, f"switches[{i}]"
        if spec.name in names:
            problems.append(Problem(f"{path}.switch.name", f"switch {spec.name!r} is listed twice "
                                                            f"(also switches[{names[spec.name]}])"))
            continue
        names[spec.name] = i
        vnic = host_vnic_name(spec.name) if spec.has_host_vnic else None
        for t, role in (((ownership.LINK, spec.nic), "the uplink"), ((ownership.LINK, vnic), "the host vNIC")):
            if t[1] is not None:
                problems += _taken(owners, [t], f"{role} of switch {spec.name!r}", f"{path}.switch")
        owners.add_switch(spec.name, spec.nic, vnic)
        for j, p in enumerate(sw.ports or ()):
            problems += _taken(owners, ownership.port_targets(p), f"{p.kind} port {p.name!r} of switch {spec.name!r}",
                               f"{path}.ports[{j}].target")
            owners.add_port(spec.name, p)
    return problems


def _taken(owners: ownership.OwnerIndex, targets: list[ownership.Target], wanted: str, path: str) -> list[Problem]:
    try:
        owners.refuse_taken(targets, wanted)
    except VswitchError as exc:
        return [Problem(path, exc.message)]
    return []


def document(switches: Iterable[tuple[SwitchSpec, Iterable[PortSpec], Iterable[StaticEntry]]]) -> ConfigDocument:
    """The document of running switches (what `config_export` answers), in a stable order: switches and
    ports by name, static entries by VLAN and MAC."""
    return ConfigDocument(sorted((SwitchConfig(spec, sorted(ports, key=lambda p: p.name),
                                               sorted(static, key=lambda e: (e.vlan or 0, e.mac)))
                                  for spec, ports, static in switches), key=lambda s: s.switch.name))


# ---- YAML -------------------------------------------------------------------------------------------

class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate name {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> Any:
    """`text` as YAML (safe: plain data only; a key given twice is refused). Raises yaml.YAMLError."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def parse_yaml(text: str, source: str) -> ConfigDocument:
    """A document from YAML (or JSON) text; InvalidRequest naming `source` when it is not YAML, else
    naming every problem by its path."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{source} is not valid YAML: {exc}") from None
    return ConfigDocument.parse(data)


def dump_yaml(doc: ConfigDocument, header: Iterable[str] = ()) -> str:
    """The document as YAML to edit by hand, after `header` lines written as comments."""
    comments = "".join(f"# {line}\n" for line in header)
    return comments + yaml.safe_dump(doc.to_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True)

"""Configuration files: every switch of a host as one document, exported and applied.

Owns `ConfigDocument` (the document: switches with their ports and static MAC entries, each one a
`SwitchSpec`, `PortSpec` or `StaticEntry`), its YAML form, and `apply`: desired state (a document)
plus current state (`SwitchApi.config_export`) → a plan of steps → the steps carried out through a
`SwitchApi`, each with its inverse, so a step that fails undoes the ones before it.

Invariants:
- Parse once: a document is valid by construction. Every switch, port and static entry goes through
  its own spec's `parse` (the one judge of a field); the document adds only the rules between them
  (a name or target listed twice, a static entry on a port the switch does not have or outside its
  VLANs). `ConfigDocument.parse` reports every problem at once, each named by its path in the file
  (``switches[1].ports[0].vlan``); a refused document changes nothing.
- What a document states is made true, nothing else: a switch it lists is made to match (its
  settings; its ports when it has a ``ports`` key, its static entries when it has a ``static`` key);
  a switch it does not list is kept unless ``prune`` is asked, because deleting an External switch
  cuts the host off its NIC. Applying the same document twice changes nothing the second time.
- The plan is pure (`plan`: two documents → steps; no I/O); the steps only call `SwitchApi` methods,
  so applying works the same in-process and over REST. Steps that remove things come before the
  steps that add what may reuse their names or targets; deleting pruned switches comes last.
- Apply is all or nothing while vswitchd runs: a failing step undoes the steps done before it, in
  reverse, and the error names the step. (Each step is crash-safe on its own in the manager; a
  SIGKILL in the middle of an apply leaves the steps done so far.)
Must not touch: the manager's internals, the kernel, files (the CLI reads and writes them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from vswitch.control import ownership
from vswitch.control.model import (
    HOST_PORT,
    UPLINK_PORT,
    InvalidRequest,
    PortKind,
    PortSettings,
    PortSpec,
    Problem,
    StaticEntry,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    VswitchError,
    clip,
    host_vnic_name,
    policy_for,
)
from vswitch.core.policy import PortPolicy, format_vlan_list

if TYPE_CHECKING:
    from vswitch.control.api import SwitchApi

log = logging.getLogger(__name__)

#: the version of the document's layout this vswitch writes and reads (``version:`` in the file)
CONFIG_VERSION = 1
#: a refusal lists at most this many problems (a file of 10,000 bad ports is not 10,000 lines)
PROBLEMS_MAX = 100
_SOCKET_KINDS = (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM)


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
        return entry.vlan if entry.vlan is not None else (policy.classify(None) if policy else None)

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


# ---- the plan -------------------------------------------------------------------------------------

@dataclass
class ConfigStep:
    """One change of an apply: `action` (create-switch, delete-switch, set-switch, change-connection,
    add-port, remove-port, set-port, add-static, del-static), the switch, the port or static entry it
    is about (None for a switch's own steps) and the change in words."""

    action: str
    switch: str
    item: str | None
    text: str


@dataclass
class ConfigPlan:
    """What `config_apply` did (or, with `dry_run`, would do): its steps in order, and `notes`
    (switches kept that the document does not list, External switches awaiting confirmation)."""

    dry_run: bool
    steps: list[ConfigStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


Action = Callable[["SwitchApi"], object]


@dataclass
class Step:
    """A planned change: what it says (`info`), how to do it and how to undo it through a `SwitchApi`;
    `refused` says why it cannot be done (the whole apply is refused before anything changes)."""

    info: ConfigStep
    do: Action
    undo: Action
    refused: str | None = None


def _step(action: str, switch: str, item: str | None, text: str, do: Action, undo: Action) -> Step:
    return Step(ConfigStep(action, switch, item, text), do, undo)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _vlan_mode(p: PortSpec) -> str:
    if p.trunk is not None:
        return f"trunk {format_vlan_list(p.trunk)}" + (f" native {p.native}" if p.native is not None else "")
    return f"vlan {p.access_vlan}"


def _port_words(p: PortSpec) -> str:
    flags = [f"{k} {_on(getattr(p, k))}" for k in ("learning", "flooding") if not getattr(p, k)]
    return ", ".join([f"{p.kind} {p.target}", _vlan_mode(p), *(["admin down"] if not p.admin_up else []), *flags])


def _settings_between(have: PortSpec, want: PortSpec) -> tuple[PortSettings | None, list[str]]:
    """The `PortSettings` that turn `have` into `want` (None when nothing differs) and the changes in words."""
    changes: dict[str, Any] = {}
    words = []
    if _vlan_mode(have) != _vlan_mode(want):
        changes.update({"trunk": want.trunk, "native": want.native} if want.trunk is not None
                       else {"vlan": want.access_vlan})
        words.append(f"{_vlan_mode(have)} → {_vlan_mode(want)}")
    for k, shown in (("admin_up", "admin"), ("learning", "learning"), ("flooding", "flooding")):
        if getattr(have, k) != getattr(want, k):
            changes[k] = getattr(want, k)
            show = (lambda f: "up" if f else "down") if k == "admin_up" else _on
            words.append(f"{shown} {show(getattr(have, k))} → {show(getattr(want, k))}")
    return (PortSettings(**changes) if changes else None), words


def _connection(spec: SwitchSpec) -> tuple[str, str | None, bool | None]:
    """What Hyper-V calls the connection type: the type, the NIC, and (External) the management OS flag."""
    return str(spec.type), spec.nic, spec.allow_management_os if spec.type == SwitchType.EXTERNAL else None


def _connection_words(spec: SwitchSpec) -> str:
    if spec.type != SwitchType.EXTERNAL:
        return str(spec.type)
    return f"external on {spec.nic}" + ("" if spec.allow_management_os else " without the management OS")


def _connection_step(have: SwitchSpec, want: SwitchSpec) -> Step:
    """Change a running switch's connection type (type, NIC, allow management OS) to the document's.

    Refused for now: `SwitchSettings` cannot carry a connection type on this branch. Once it can
    (`vswitch switch set --internal | --private | --external NIC`), this function becomes
        do=lambda api: api.set_switch(name, SwitchSettings(type=want.type, nic=want.nic,
                                      allow_management_os=want.allow_management_os,
                                      confirm_timeout_s=want.confirm_timeout_s)),
        undo=lambda api: api.set_switch(name, SwitchSettings(type=have.type, nic=have.nic,
                                        allow_management_os=have.allow_management_os)),
    with `refused` left None.
    """
    name = have.name
    text = f"switch {name}: connection {_connection_words(have)} → {_connection_words(want)}"

    def refuse(api: SwitchApi) -> None:
        raise InvalidRequest(step.refused or text)
    step = _step("change-connection", name, None, text, refuse, refuse)
    step.refused = (f"switch {name}: changing the connection type from {_connection_words(have)} to "
                    f"{_connection_words(want)} is done with `vswitch switch set`")
    return step


def _same_target(want: PortSpec, have: PortSpec, port_socket_dir: str | None) -> bool:
    if want.target == have.target:
        return True
    # a socket given as a plain name lives in vswitchd's port socket directory (as `add_port` puts it)
    return (want.kind in _SOCKET_KINDS and port_socket_dir is not None
            and ownership.resolve_socket_name(want.target, port_socket_dir) == have.target)


def plan(want: ConfigDocument, have: ConfigDocument, *, prune: bool = False,
         port_socket_dir: str | None = None) -> tuple[list[Step], list[str]]:
    """The steps that turn the running switches (`have`, as `config_export` reports them) into what
    `want` states, in the order they must run, and notes for the user. Pure: no step runs here.

    `port_socket_dir`: where vswitchd puts a socket port given a plain name (so the same name is not
    seen as a new target); `prune`: also delete the switches `want` does not list."""
    current = {sw.switch.name: sw for sw in have.switches}
    wanted = {sw.switch.name for sw in want.switches}
    creates: list[Step] = []
    settings: list[Step] = []
    static_dels: list[Step] = []
    port_removes: list[Step] = []
    port_sets: list[Step] = []
    port_adds: list[Step] = []
    static_adds: list[Step] = []
    deletes: list[Step] = []
    notes: list[str] = []

    for sw in want.switches:
        spec, name = sw.switch, sw.switch.name
        old = current.get(name)
        if old is None:
            creates.append(_create(spec))
            if spec.type == SwitchType.EXTERNAL and spec.confirm_timeout_s:
                notes.append(f"switch {name} takes {spec.nic} over and awaits confirmation: run "
                             f"`vswitch switch confirm {name}` within {spec.confirm_timeout_s:g} s, or it is undone")
            old = SwitchConfig(spec, [], [])
        else:
            if _connection(old.switch) != _connection(spec):
                settings.append(_connection_step(old.switch, spec))
            step = _switch_settings(old.switch, spec)
            if step is not None:
                settings.append(step)
        have_ports = {p.name: p for p in old.ports or ()}
        gone: set[str] = set()      # ports removed (absent from the file, or replaced)
        absent: set[str] = set()
        if sw.ports is not None:
            for p in sw.ports:
                q = have_ports.get(p.name)
                if q is None:
                    port_adds.append(_add_port(name, p))
                elif q.kind != p.kind or not _same_target(p, q, port_socket_dir):
                    gone.add(p.name)
                    port_removes.append(_remove_port(name, q, f"replace port {name}/{p.name}: {q.kind} {q.target} → "
                                                              f"{p.kind} {p.target} (removed, then added)"))
                    port_adds.append(_add_port(name, p))
                elif (step := _set_port(name, q, p)) is not None:
                    port_sets.append(step)
            listed = {p.name for p in sw.ports}
            for q in old.ports or ():
                if q.name not in listed:
                    gone.add(q.name)
                    absent.add(q.name)
                    port_removes.append(_remove_port(name, q, f"remove port {name}/{q.name} ({_port_words(q)})"))
        # a removed port takes its static entries along: they are removed first (so undoing the
        # removal brings them back) and added again when the port is only replaced
        have_static = old.static_keys()
        want_static = (sw.static_keys() if sw.static is not None
                       else {k: port for k, port in have_static.items() if port not in absent})
        for key, port in have_static.items():
            if port in gone or want_static.get(key) != port:
                static_dels.append(_del_static(name, key, port))
        for key, port in want_static.items():
            if port in gone or have_static.get(key) != port:
                static_adds.append(_add_static(name, key, port))

    for name, old in current.items():
        if name in wanted:
            continue
        if prune:
            deletes.append(_delete(old))
        else:
            notes.append(f"switch {name} is not in the file: kept (--prune deletes it)")
    steps = creates + settings + static_dels + port_removes + port_sets + port_adds + static_adds + deletes
    return steps, notes


def _create(spec: SwitchSpec) -> Step:
    extra = f" on {spec.nic}" if spec.nic else ""
    return _step("create-switch", spec.name, None, f"create switch {spec.name} ({spec.type}{extra})",
                 lambda api: api.create_switch(spec), lambda api: api.delete_switch(spec.name))


def _delete(old: SwitchConfig) -> Step:
    name = old.switch.name

    def recreate(api: SwitchApi) -> None:
        api.create_switch(old.switch)
        for p in old.ports or ():
            api.add_port(name, p)
        for (mac, vlan), port in old.static_keys().items():
            api.fdb_add(name, StaticEntry(mac, port, vlan))
    return _step("delete-switch", name, None, f"delete switch {name} ({old.switch.type}; not in the file, --prune)",
                 lambda api: api.delete_switch(name), recreate)


def _switch_settings(have: SwitchSpec, want: SwitchSpec) -> Step | None:
    changes: dict[str, Any] = {}
    undo: dict[str, Any] = {}
    words = []
    for k, shown, unit in (("ageing_s", "ageing", " s"), ("max_entries", "max entries", "")):
        if getattr(have, k) != getattr(want, k):
            changes[k], undo[k] = getattr(want, k), getattr(have, k)
            words.append(f"{shown} {getattr(have, k)}{unit} → {getattr(want, k)}{unit}")
    if not changes:
        return None
    name = have.name
    return _step("set-switch", name, None, f"switch {name}: {', '.join(words)}",
                 lambda api: api.set_switch(name, SwitchSettings(**changes)),
                 lambda api: api.set_switch(name, SwitchSettings(**undo)))


def _add_port(switch: str, p: PortSpec) -> Step:
    return _step("add-port", switch, p.name, f"add port {switch}/{p.name} ({_port_words(p)})",
                 lambda api: api.add_port(switch, p), lambda api: api.remove_port(switch, p.name))


def _remove_port(switch: str, q: PortSpec, text: str) -> Step:
    return _step("remove-port", switch, q.name, text,
                 lambda api: api.remove_port(switch, q.name), lambda api: api.add_port(switch, q))


def _set_port(switch: str, have: PortSpec, want: PortSpec) -> Step | None:
    settings, words = _settings_between(have, want)
    if settings is None:
        return None
    back, _ = _settings_between(want, have)
    assert back is not None
    return _step("set-port", switch, want.name, f"port {switch}/{want.name}: {', '.join(words)}",
                 lambda api: api.set_port(switch, want.name, settings),
                 lambda api: api.set_port(switch, want.name, back))


def _del_static(switch: str, key: tuple[str, int], port: str) -> Step:
    mac, vlan = key
    return _step("del-static", switch, f"{mac} vlan {vlan}", f"static {switch} {mac} vlan {vlan}: remove (port {port})",
                 lambda api: api.fdb_del(switch, mac, vlan),
                 lambda api: api.fdb_add(switch, StaticEntry(mac, port, vlan)))


def _add_static(switch: str, key: tuple[str, int], port: str) -> Step:
    mac, vlan = key
    return _step("add-static", switch, f"{mac} vlan {vlan}", f"static {switch} {mac} vlan {vlan}: add (port {port})",
                 lambda api: api.fdb_add(switch, StaticEntry(mac, port, vlan)),
                 lambda api: api.fdb_del(switch, mac, vlan))


# ---- applying -----------------------------------------------------------------------------------------

def apply(api: SwitchApi, document: ConfigDocument, *, dry_run: bool = False, prune: bool = False,
          port_socket_dir: str | None = None) -> ConfigPlan:
    """Make the running switches what `document` states (see the module docstring); with `dry_run`
    only say how. Returns the plan (its steps done, or to do).

    Raises InvalidRequest, before anything changes, when a step cannot be done at all (a connection
    type change); when a step fails, the steps before it are undone in reverse and the step's error
    is raised (same class) naming it."""
    steps, notes = plan(document, api.config_export(), prune=prune, port_socket_dir=port_socket_dir)
    refused = [Problem("", s.refused) for s in steps if s.refused]
    if refused:
        raise InvalidRequest(refused)
    result = ConfigPlan(dry_run, [s.info for s in steps], notes)
    if not dry_run:
        run(api, steps)
    return result


def run(api: SwitchApi, steps: list[Step]) -> None:
    """Carry out `steps` in order; when one fails, undo the ones done, in reverse, and raise its error
    (a VswitchError of the same class, naming the step and what was undone)."""
    done: list[Step] = []
    for i, step in enumerate(steps, 1):
        try:
            step.do(api)
        except BaseException as exc:
            failed_undos = _undo(api, done)
            if not isinstance(exc, Exception):
                raise
            raise _failure(exc, f"step {i} of {len(steps)} ({step.info.text}) failed", len(done),
                           failed_undos) from exc
        done.append(step)


def _undo(api: SwitchApi, done: list[Step]) -> list[str]:
    """Undo `done` in reverse; what could not be undone, in words (every undo is tried)."""
    failed = []
    for step in reversed(done):
        try:
            step.undo(api)
        except Exception as exc:
            log.error("config apply: undoing %r failed: %s", step.info.text, exc)
            failed.append(f"{step.info.text}: {getattr(exc, 'message', exc)}")
    return failed


def _failure(exc: Exception, what: str, undone: int, failed_undos: list[str]) -> VswitchError:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if failed_undos:
        tail = (f"; undoing the steps before it failed for {'; '.join(failed_undos)} — compare with "
                "`vswitch config export`")
    else:
        tail = "; nothing changed" + (f" (the {undone} step{'s' if undone != 1 else ''} before it "
                                       "were undone)" if undone else "")
    text = f"{what}: {message}{tail}"
    if isinstance(exc, VswitchError):
        try:
            err = type(exc)(text)
        except TypeError:  # a subclass with another constructor: keep its status
            err = VswitchError(text)
        err.status = exc.status
        return err
    err = VswitchError(text)
    err.status = 500
    return err

"""What applying a configuration document changes, and applying it all or nothing.

Owns `plan` (desired document + current document → the steps, in order, each with its inverse) and
`apply` (the steps carried out through a `SwitchApi`; a failing step undoes the ones before it). The
document itself is control/config_file.py's.

Invariants:
- What a document states is made true, nothing else: a switch it lists is made to match (its
  settings; its ports when it has a ``ports`` key, its static entries when it has a ``static`` key);
  a switch it does not list is kept unless ``prune`` is asked, because deleting an External switch
  takes its NIC from the host. Settings change in place (`set_switch`, `set_port`); a port is removed
  and added again only when its kind or target changes. Applying the same document twice changes
  nothing the second time.
- `plan` is pure (no I/O; no step runs there); the steps only call `SwitchApi` methods, so applying
  works the same in-process and over REST. Static entries leave before the ports they are on, ports
  leave before the ports that may take their names or targets come, pruned switches go last.
- All or nothing while vswitchd runs: a failing step undoes the steps done before it, in reverse,
  and its error (same class) names the step. Each step is crash-safe on its own in the manager; a
  SIGKILL in the middle of an apply leaves the steps done so far. A TAP port removed and added back
  (by an undo) is a new TAP in vswitchd's namespace.
- A step that cannot be done at all (a connection type change, for now) refuses the whole apply
  before anything changes.
Must not touch: the manager's internals, the kernel, files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any

from vswitch.control import ownership
from vswitch.control.config_file import ConfigDocument, SwitchConfig
from vswitch.control.model import (
    AclRuleSpec,
    PortKind,
    PortSettings,
    PortSpec,
    StaticEntry,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    VswitchError,
)
from vswitch.core.policy import format_vlan_list
from vswitch.core.rates import format_rate

if TYPE_CHECKING:
    from vswitch.control.api import SwitchApi

log = logging.getLogger(__name__)

_SOCKET_KINDS = (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM)


# ---- the plan -------------------------------------------------------------------------------------

@dataclass
class ConfigStep:
    """One change of an apply: `action` (create-switch, delete-switch, set-switch, change-connection,
    add-port, remove-port, set-port, set-acls, add-static, del-static), the switch, the port or static entry it
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
    """A planned change: what it says (`info`), how to do it and how to undo it through a `SwitchApi`."""

    info: ConfigStep
    do: Action
    undo: Action


def _step(action: str, switch: str, item: str | None, text: str, do: Action, undo: Action) -> Step:
    return Step(ConfigStep(action, switch, item, text), do, undo)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _vlan_mode(p: PortSpec) -> str:
    if p.pvlan is not None:
        sec = format_vlan_list(p.secondary_list or ()) if p.secondary is None else str(p.secondary)
        return f"pvlan {p.pvlan} primary {p.primary} secondary {sec}"
    if p.trunk is not None:
        return f"trunk {format_vlan_list(p.trunk)}" + (f" native {p.native}" if p.native is not None else "")
    return f"vlan {p.access_vlan}"


def _port_words(p: PortSpec) -> str:
    flags = [f"{k} {_on(getattr(p, k))}" for k in ("learning", "flooding") if not getattr(p, k)]
    flags += [f"{k.replace('_', ' ')} on" for k in ("dhcp_guard", "router_guard") if getattr(p, k)]
    flags += ["mac spoofing off"] if not p.mac_spoofing else []
    flags += [f"mac limit {p.mac_limit}"] if p.mac_limit else []
    flags += [f"port mirroring {p.port_mirroring}"] if p.port_mirroring != "none" else []
    flags += [f"{len(p.acls)} ACL rule{'' if len(p.acls) == 1 else 's'}"] if p.acls else []
    flags += ["isolated on"] if p.isolated else []
    flags += [f"storm limit {p.storm_limit} pps"] if p.storm_limit else []
    flags += [f"max bandwidth {format_rate(p.max_bandwidth)}"] if p.max_bandwidth else []
    flags += [f"max bandwidth in {format_rate(p.max_bandwidth_in)}"] if p.max_bandwidth_in else []
    flags += [f"min bandwidth weight {p.min_bandwidth_weight}"] if p.min_bandwidth_weight else []
    return ", ".join([f"{p.kind} {p.target}", _vlan_mode(p), *(["admin down"] if not p.admin_up else []), *flags])


#: the VLAN mode is one setting of `PortSettings` in three fields (a private VLAN's in four more)
_VLAN_FIELDS = ("vlan", "trunk", "native", "pvlan", "primary", "secondary", "secondary_list")


def _shown(k: str, value: object) -> str:
    if k == "admin_up":
        return "up" if value else "down"
    if value is None:
        return "unset"
    return _on(value) if isinstance(value, bool) else str(value)


def _settings_between(have: PortSpec, want: PortSpec) -> tuple[PortSettings | None, list[str]]:
    """The `PortSettings` that turn `have` into `want` (None when nothing differs) and the changes in words.

    Every field of `PortSettings` is compared, whatever it holds; a field `want` leaves None is not a
    change (a setting can be given, never taken back to "none": None keeps it)."""
    changes: dict[str, Any] = {}
    words = []
    if _vlan_mode(have) != _vlan_mode(want):
        if want.pvlan is not None:
            changes.update(pvlan=str(want.pvlan), primary=want.primary, secondary=want.secondary,
                           secondary_list=want.secondary_list)
        else:
            changes.update({"trunk": want.trunk, "native": want.native} if want.trunk is not None
                           else {"vlan": want.access_vlan})
        words.append(f"{_vlan_mode(have)} → {_vlan_mode(want)}")
    for k in (f.name for f in dataclass_fields(PortSettings) if f.name not in _VLAN_FIELDS):
        before, after = getattr(have, k), getattr(want, k)
        if after is not None and before != after:
            changes[k] = after
            words.append(f"{'admin' if k == 'admin_up' else k} {_shown(k, before)} → {_shown(k, after)}")
    return (PortSettings(**changes) if changes else None), words


def _connection(spec: SwitchSpec) -> tuple[str, str | None, bool | None]:
    """What Hyper-V calls the connection type: the type, the NIC, and (External) the management OS flag."""
    return str(spec.type), spec.nic, spec.allow_management_os if spec.type == SwitchType.EXTERNAL else None


def _connection_words(spec: SwitchSpec) -> str:
    if spec.type != SwitchType.EXTERNAL:
        return str(spec.type)
    return f"external on {spec.nic}" + ("" if spec.allow_management_os else " without the management OS")


def _connection_settings(spec: SwitchSpec, *, confirm: bool) -> SwitchSettings:
    """`switch set` to `spec`'s connection type: a NIC and the management-OS flag for External only."""
    if spec.type != SwitchType.EXTERNAL:
        return SwitchSettings(type=spec.type)
    return SwitchSettings(type=spec.type, nic=spec.nic, allow_management_os=spec.allow_management_os,
                          confirm_timeout_s=spec.confirm_timeout_s if confirm else None)


def _connection_step(have: SwitchSpec, want: SwitchSpec) -> Step:
    """Change a running switch's connection type (type, NIC, allow management OS) to the document's,
    as `vswitch switch set --internal | --private | --external NIC` does (an External one with the
    document's confirm timeout); undone by setting the old one back."""
    name = have.name
    text = f"switch {name}: connection {_connection_words(have)} → {_connection_words(want)}"
    to_want, to_have = _connection_settings(want, confirm=True), _connection_settings(have, confirm=False)
    return _step("change-connection", name, None, text,
                 lambda api: api.set_switch(name, to_want), lambda api: api.set_switch(name, to_have))


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
                else:
                    if (step := _set_port(name, q, p)) is not None:
                        port_sets.append(step)
                    if (step := _set_acls(name, q, p)) is not None:
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
        # as it ran: not awaiting a confirmation again, which would revert it when nobody confirms
        api.create_switch(replace(old.switch, confirm_timeout_s=None))
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
    back, _ = _settings_between(want, have)  # None: only settings that cannot be taken back were given

    def undo(api: SwitchApi) -> None:
        if back is not None:
            api.set_port(switch, want.name, back)
    return _step("set-port", switch, want.name, f"port {switch}/{want.name}: {', '.join(words)}",
                 lambda api: api.set_port(switch, want.name, settings), undo)


def _acl_key(r: AclRuleSpec) -> tuple[tuple[str, Any], ...]:
    """A rule without its id: what a document and the switch compare (ids are the port's numbering)."""
    return tuple(sorted((k, v) for k, v in r.to_dict().items() if k != "id"))


def _set_acls(switch: str, have: PortSpec, want: PortSpec) -> Step | None:
    """The port's ACL rules made what `want` lists: the ones it does not list removed, the missing added
    (numbered anew by the port); the undo removes what it added and adds back what it removed."""
    wanted = {_acl_key(r) for r in want.acls}
    held = {_acl_key(r) for r in have.acls}
    gone = [r for r in have.acls if _acl_key(r) not in wanted]
    new = [r for r in want.acls if _acl_key(r) not in held]
    if not gone and not new:
        return None
    added: list[int] = []

    removed: list[AclRuleSpec] = []

    def undo(api: SwitchApi) -> None:
        while added:
            api.acl_remove(switch, want.name, str(added.pop()))
        while removed:
            api.acl_add(switch, want.name, replace(removed.pop(0), id=None))

    def do(api: SwitchApi) -> None:
        try:
            for r in gone:
                api.acl_remove(switch, want.name, str(r.id))
                removed.append(r)
            for r in new:
                added.append(api.acl_add(switch, want.name, replace(r, id=None)).id)
        except BaseException:
            undo(api)  # this step is all or nothing too
            raise
    words = [f"remove ACL #{r.id} ({r.rule().describe()})" for r in gone]
    words += [f"add ACL ({r.rule().describe()})" for r in new]
    return _step("set-acls", switch, want.name, f"port {switch}/{want.name}: {', '.join(words)}", do, undo)


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

    When a step fails, the steps before it are undone in reverse and the step's error is raised (same
    class) naming it."""
    steps, notes = plan(document, api.config_export(), prune=prune, port_socket_dir=port_socket_dir)
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

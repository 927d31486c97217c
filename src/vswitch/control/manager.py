"""SwitchManager: the in-process `SwitchApi` — intent in, running switches out.

Owns: the set of running switches (core + datapath + ports + host vNIC + NIC takeover), their
persistence in the `ConfigStore`, and the switch *types*: Private (ports only), Internal (plus a
host vNIC), External (plus an uplink on a physical NIC and, with allow-management-os, the host's
addresses and routes moved to the host vNIC).

Invariants:
- Specs arrive valid (control/model.py checks them when they are built); the manager checks only
  what needs the kernel or the running switches (a NIC that does not exist, a name or target
  taken), before anything changes: a refused request changes nothing (InvalidRequest / NotFound /
  Conflict carry the message). What the host's state refuses (a NIC or link missing, a NIC that is
  the loopback, enslaved or has a qdisc) is a Conflict (409), as a taken name: the same request can
  succeed once the host changes, and the REST schema cannot state it.
- Crash safety by intent: a change that touches the kernel (create/delete a switch, add/remove a
  port, change a switch's connection or rename one with a host vNIC) first writes an intent to the
  store (one transaction), then applies its steps (each registering its undo at once; a failure
  unwinds them in reverse), then commits the result and ends the intent in one transaction. A store
  that cannot be written (StoreError, HTTP 503) undoes what was applied. On start, `restore`
  finishes or undoes every intent it finds (create and add: undone; delete and remove: finished; a
  connection change: undone unless its last step, removing a vNIC, was done; a rename: finished once
  the link was renamed), replays orphaned takeover snapshots, then recreates the
  stored switches, *adopting* what the kernel kept (the persistent host vNIC with its addresses, a
  takeover marked applied) instead of rebuilding it. The takeover snapshot stored before the NIC is
  touched is the very one applied, so a restarted daemon undoes exactly what was done.
- Settings (`set_port`, `set_switch`'s ageing and capacity, static entries `fdb_add`/`fdb_del`) touch
  no kernel object: stored first (one write), then applied on the datapath thread between two
  batches, so the other ports never stop forwarding; static entries come back on `restore` after
  their switch's ports. A connection change keeps the datapath running: only the uplink and host
  vNIC ports come and go, so VM ports forward between each other throughout.
- Confirm deadlines are absolute (epoch seconds, stored); `confirm` is stored before it is answered.
  An unconfirmed `switch set` to External goes back to the connection stored beside its takeover
  snapshot (``revert_to``), live or at the next start.
- Deleting a switch stops its datapath before giving the NIC back (the vNIC and NIC must no longer
  be bridged while IPv6 DAD runs on the NIC again).
- The host vNIC is a persistent TAP: if the daemon dies, the host keeps its addresses on it. A clean
  shutdown keeps an Internal switch's vNIC (and its addresses) for the next start and gives an
  External switch's NIC back (so the host is never cut off while no switch runs).
- One owner per target: a link or socket path is held by one port, uplink or vNIC across kinds and
  switches; the rule is control/ownership.py, asked by `_check_links` and `_check_target` (so by
  create, add and restore alike).
- The kernel is injected: every netlink conversation (its own and the takeover's) goes through the
  `netlink` opener and every port back-end comes from the `port_kinds` registry, so the same rules
  run against an in-memory kernel and memory ports in tests (tests/unit/memkernel.py), without root.
  The switch's tables are read through the datapath's copies (`fdb_entries`, `port_counters`).
- Every change it makes is an event in `event_log` (control/events.py: the daemon's ring, also
  logged), told once it is done: switches created/restored/set/deleted, confirmed or reverted, ports
  added/set/removed, static entries added/deleted, flushes, each takeover step; each datapath hands
  its core's events (MACs, port up/down) to the same log.
- Each switch's datapath is chosen once, in `_build` (`_new_datapath`: its `datapath` field, `auto`
  meaning vswitchd's default): the Python one or the kernel fast path (datapath/fastpath.py); the
  manager talks to either only through `Datapath` methods.
Must not touch: HTTP, argument parsing, frames.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Hashable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, cast

from vswitch.control import capture as captures
from vswitch.control import config_file, config_plan, decision_stream, hostnic, ownership
from vswitch.control.config_file import ConfigDocument
from vswitch.control.config_plan import ConfigPlan
from vswitch.control.crashpoint import crashpoint
from vswitch.control.events import EventLog
from vswitch.control.linkwatch import LinkWatch
from vswitch.control.model import (
    ACL_RULES_MAX,
    EVENTS_LIMIT_DEFAULT,
    HOST_PORT,
    UPLINK_PORT,
    WATCH_MAX_EVENTS,
    WATCH_MAX_S,
    AclRuleInfo,
    AclRuleSpec,
    Conflict,
    DatapathMode,
    EventKind,
    EventsPage,
    FdbEntryInfo,
    FrameEvent,
    IcmpEcho,
    InvalidRequest,
    NicInfo,
    NotFound,
    PortInfo,
    PortKind,
    PortSettings,
    PortSpec,
    PortStatsInfo,
    Problem,
    StaticEntry,
    SwitchInfo,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    TraceInfo,
    TraceStepInfo,
    VswitchError,
    canonical_mac,
    check_acl_id,
    check_events_query,
    check_field,
    clip,
    host_vnic_name,
    policy_for,
    pvlan_conflicts,
    trace_payload,
    vxlan_remotes,
)
from vswitch.control.netlink import LinkNotFound, Netlink, NetlinkApi, NetlinkFailure, OpenNetlink
from vswitch.control.store import ConfigStore, Intent, StoreError
from vswitch.core.frame import push_vlan
from vswitch.core.guards import GUARD_DHCP, GUARD_ROUTER
from vswitch.core.mac import format_mac, parse_mac
from vswitch.core.policy import format_vlan_list
from vswitch.core.switch import SwitchCore
from vswitch.datapath import Datapath
from vswitch.datapath.fastpath import (
    FastPathRefused,
    KernelDatapath,
    PythonDatapath,
    fast_path_filters,
    make_datapath,
    remove_stale_fast_path,
)
from vswitch.datapath.loop import PYTHON_PATH
from vswitch.ports import PORT_KINDS, Port, TapPort
from vswitch.ports.link import LinkPort
from vswitch.ports.packet_tap import PacketTap
from vswitch.ports.qemu import socket_listener
from vswitch.ports.tap import TapGone

log = logging.getLogger(__name__)

#: Where a socket port given a plain name (``--qemu-stream vm2``) gets its socket: ``DIR/vm2.sock``.
DEFAULT_PORT_SOCKET_DIR = "/run/vswitch/ports"
_SOCKET_KINDS = (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM)
#: how often to note where each TAP port's netdev is (one ioctl per TAP); a SIGKILL within this
#: long of a move finds the TAP where it was seen before
TAP_NETNS_CHECK_S = 1.0


@dataclass
class _Attached:
    spec: PortSpec | None     # None for the switch's own ports (uplink, host vNIC)
    port: Port
    role: str


@dataclass
class _Switch:
    spec: SwitchSpec
    core: SwitchCore
    datapath: Datapath
    ports: dict[str, _Attached] = field(default_factory=dict)
    vnic: TapPort | None = None
    takeover: hostnic.Takeover | None = None
    confirm_deadline: float | None = None   # epoch seconds (time.time()), None once confirmed
    deleting: bool = False                  # teardown for good (delete, revert), not a shutdown
    confirm_timer: threading.Timer | None = None
    #: `switch set` to External with a confirm timeout: what an unconfirmed switch goes back to
    revert_to: SwitchSpec | None = None
    #: --min-bandwidth-weight: each weighted VM port's htb class on the uplink (skb->priority 1:minor)
    uplink_classes: dict[str, int] = field(default_factory=dict)


#: link kinds that are never an uplink: TAP/TUN (VM NICs, host vNICs), bridges, tc's ifb
_NOT_UPLINK_KINDS = frozenset({"tun", "bridge", "ifb"})


class SwitchManager:
    """Creates and deletes switches and ports; serves `SwitchApi` in-process (thread-safe).

    `reserved_paths` (vswitchd's API socket, its state directory) are never a port's socket, nor
    anything under them; `port_socket_dir` holds the sockets of ports given a plain name.
    `netlink` opens the kernel (`Netlink`; tests pass an in-memory kernel) and `port_kinds` maps a
    port kind to its back-end class (`PORT_KINDS`; the host vNIC is a "tap", the uplink a "link").
    `busy_poll_us` is trusted (vswitchd checks its option with `model.check_busy_poll_us`).
    `datapath` is what a switch created with ``datapath=auto`` uses (vswitchd ``--datapath``): auto
    (the kernel fast path where it can), kernel or python. With an injected `netlink` (an in-memory
    kernel) every switch is on the Python datapath: the fast path needs the real one.
    """

    def __init__(self, store: ConfigStore | None = None, *, takeover_fail_at: hostnic.FailAt = None,
                 busy_poll_us: int = 0, datapath: DatapathMode = DatapathMode.AUTO,
                 reserved_paths: Iterable[str] = (), port_socket_dir: str = DEFAULT_PORT_SOCKET_DIR,
                 netlink: OpenNetlink = Netlink, port_kinds: Mapping[str, type[Port]] = PORT_KINDS) -> None:
        self.store = store
        self.busy_poll_us = busy_poll_us
        self.default_datapath = DatapathMode(datapath)
        self._netlink = netlink
        self._port_kinds = port_kinds
        self._switches: dict[str, _Switch] = {}
        #: each switch's decision sampler and the datapath it observes (`open_decisions`)
        self._samplers: dict[str, tuple[Any, decision_stream.DecisionSampler]] = {}
        self._lock = threading.RLock()
        self._takeover_fail_at = takeover_fail_at  # tests inject a failure into the NIC takeover
        #: what went wrong while restoring from the store (a switch that could not come back)
        self.restore_errors: list[str] = []
        self.port_socket_dir = os.path.abspath(port_socket_dir)
        # compared as given and with symlinks resolved: /var/run/x and /run/x are one file
        self._reserved_paths = sorted({q for p in reserved_paths
                                       for q in (os.path.abspath(p), os.path.realpath(p))})
        self._linkwatch = LinkWatch()  # netlink link events → every datapath's port state
        self.event_log = EventLog()

    # -- switches -----------------------------------------------------------------------------
    def create_switch(self, spec: SwitchSpec, *, dry_run: bool = False, persist: bool = True,
                      confirm_deadline: float | None = None) -> SwitchInfo | list[str]:
        """Create (or, with ``persist=False``, restore) a switch; see the module docstring for the steps.

        ``confirm_deadline`` (restore only): the stored absolute deadline. Raises InvalidRequest,
        Conflict, StoreError (nothing changed). `spec` was checked when it was built."""
        with self._lock:
            if spec.name in self._switches:
                raise Conflict(f"switch {spec.name!r} already exists")
            vnic_name = host_vnic_name(spec.name) if spec.has_host_vnic else None
            # restore: a takeover the previous run completed and left in place is adopted as it is
            adopted = None if persist or spec.type != SwitchType.EXTERNAL else self._adoptable_takeover(spec)
            self._check_links(spec, vnic_name, nic_taken_by_us=adopted is not None, restoring=not persist)
            if dry_run:
                return self._plan(spec, vnic_name)
            store = self.store if persist else None
            if persist and spec.confirm_timeout_s:
                confirm_deadline = time.time() + spec.confirm_timeout_s
            intent = store.begin_intent("create-switch", spec.name, data={"spec": spec.to_dict()}) if store else None
            crashpoint("create-switch.intent")
            try:
                sw = self._build(spec, vnic_name, confirm_deadline, adopted)
            except BaseException:
                self._end_intent_quietly(intent)
                if adopted is not None and self.store is not None:
                    # no switch will forward for the host: give it its NIC back rather than cut it off
                    self._undo_switch_leftovers(spec.name, self.store.get_snapshot(spec.name), spec)
                raise
            if store is not None:
                try:
                    with store.transaction():
                        store.save_switch(spec, confirm_deadline=confirm_deadline)
                        store.end_intent(intent)  # type: ignore[arg-type]
                except StoreError:
                    self._teardown(sw, delete=True)
                    self._end_intent_quietly(intent)
                    raise
                crashpoint("create-switch.committed")
            self._switches[spec.name] = sw
            self.event_log.emit(spec.name, EventKind.SWITCH_CREATED if persist else EventKind.SWITCH_RESTORED,
                                type=str(spec.type), nic=spec.nic)
            return self._info(sw)

    def _end_intent_quietly(self, intent: int | None) -> None:
        """Forget an intent whose change was undone; if the store fails, the next start undoes it again."""
        if intent is None or self.store is None:
            return
        try:
            self.store.end_intent(intent)
        except StoreError as exc:
            log.warning("intent %d stays for the next start: %s", intent, exc)

    def _check_links(self, spec: SwitchSpec, vnic_name: str | None, *, nic_taken_by_us: bool = False,
                     restoring: bool = False, switch: str | None = None) -> None:
        """Conflict / InvalidRequest unless the NIC and the vNIC name are free (see control/ownership.py);
        `switch` (`switch set`): the running switch changing, whose own uplink and vNIC do not count."""
        owners = self._owner_index(switch)
        with self._netlink() as nl:
            if spec.type == SwitchType.EXTERNAL:
                assert spec.nic is not None
                wanted = f"the uplink of switch {spec.name!r}"
                owners.refuse_taken([(ownership.LINK, spec.nic)], wanted)
                ownership.refuse_reserved_link(spec.nic, wanted)
                try:
                    if not nic_taken_by_us:  # our own ingress drop is on it: that is what is adopted
                        hostnic.validate(nl, spec.nic, None, False, fast_path_filters())
                except hostnic.TakeoverRefused as exc:  # the host's state, not the request's form
                    raise Conflict(str(exc)) from None
            if vnic_name is not None:
                owners.refuse_taken([(ownership.LINK, vnic_name)], f"the host vNIC of switch {spec.name!r}")
                if nl.link_exists(vnic_name) and not _adoptable_vnic(nl, vnic_name, restoring):
                    raise Conflict(f"a link named {vnic_name!r} (the host vNIC name of switch {spec.name!r}) "
                                   "already exists and is not a TAP of ours without addresses")

    def _owner_index(self, except_own_of: str | None = None) -> ownership.OwnerIndex:
        """Every link and socket path the running switches hold (but the uplink and vNIC of `except_own_of`)."""
        owners = ownership.OwnerIndex()
        for sw in self._switches.values():
            if sw.spec.name != except_own_of:
                owners.add_switch(sw.spec.name, sw.spec.nic, sw.vnic.ifname if sw.vnic else None)
            for att in sw.ports.values():
                if att.spec is not None:
                    owners.add_port(sw.spec.name, att.spec)
        return owners

    def _plan(self, spec: SwitchSpec, vnic_name: str | None) -> list[str]:
        steps = [f"create switch {spec.name!r} ({spec.type}; MAC table: {spec.max_entries} entries, "
                 f"ageing {spec.ageing_s} s)"]
        if vnic_name:
            steps.append(f"create host vNIC {vnic_name} (persistent TAP) and attach it as port {HOST_PORT!r}")
        if spec.type == SwitchType.EXTERNAL:
            steps += self._takeover_plan(spec, vnic_name)
        elif vnic_name:
            steps.append(f"bring {vnic_name} up (the host's adapter on this internal switch)")
        return steps

    def _takeover_plan(self, spec: SwitchSpec, vnic_name: str | None, base: dict[str, Any] | None = None,
                       vnic_link: dict[str, Any] | None = None) -> list[str]:
        """The steps of attaching External `spec`'s NIC and taking it over: from the NIC as it is (or as
        `base`, a snapshot, says it was), to a vNIC as `vnic_link` says (a new one: None)."""
        assert spec.nic is not None
        steps = [f"attach {spec.nic} as port {UPLINK_PORT!r} (AF_PACKET, promiscuous)"]
        if base is None:
            with self._netlink() as nl:
                base = hostnic.capture(nl, spec.nic, None, False)
        snap = {**base, "vnic": None, "allow_management_os": False, "vnic_link": None}
        if spec.allow_management_os:
            snap.update(vnic=vnic_name, allow_management_os=True,
                        vnic_link=vnic_link or {"mac": "(new)", "mtu": 1500, "up": False})
        steps += [s.description for s in hostnic.build_plan(snap)]
        if spec.confirm_timeout_s:
            steps.append(f"revert all of the above unless `vswitch switch confirm {spec.name}` "
                         f"arrives within {spec.confirm_timeout_s:g} s")
        return steps

    def _build(self, spec: SwitchSpec, vnic_name: str | None, confirm_deadline: float | None,
               adopted: hostnic.Takeover | None = None) -> _Switch:
        core = SwitchCore(ageing_s=spec.ageing_s, max_entries=spec.max_entries)
        dp = self._new_datapath(spec, core)
        sw = _Switch(spec, core, dp)
        dp.on_events = self.event_log.sink(lambda: sw.spec.name)
        dp.on_claims = lambda claims: self._store_claims(sw, claims)
        sw.deleting = True  # until built, any unwinding removes everything it made
        with ExitStack() as undo:
            dp.start()
            undo.callback(dp.stop)
            if vnic_name is not None:
                self._open_vnic(sw, vnic_name, undo, attach=False)
                crashpoint("create-switch.vnic")
            if spec.type == SwitchType.EXTERNAL:
                self._open_uplink(sw, spec, undo)
            if sw.vnic is not None:
                dp.attach(HOST_PORT, sw.vnic, role="host-vnic")
                sw.ports[HOST_PORT] = _Attached(None, sw.vnic, "host-vnic")
            if spec.type == SwitchType.EXTERNAL:
                takeover = adopted or self._take_over(spec, vnic_name, undo)
                undo.callback(self._give_back, sw, takeover)
                sw.takeover = takeover
                if confirm_deadline is not None:
                    self._start_confirm_timer(sw, confirm_deadline, undo)
            elif vnic_name is not None:
                with self._netlink() as nl:
                    nl.set_up(vnic_name, True)
                crashpoint("create-switch.vnic-up")
            undo.pop_all()  # built: from now on `_teardown_stack` says what a teardown undoes
        sw.deleting = False
        return sw

    def _datapath_mode(self, spec: SwitchSpec) -> tuple[DatapathMode, str]:
        """The mode a switch's `datapath` means here (auto: vswitchd's default; Python on a simulated
        kernel) and who chose it, for its label."""
        mode, chosen_by = spec.datapath, f"--datapath {spec.datapath}"
        if mode == DatapathMode.AUTO and self.default_datapath != DatapathMode.AUTO:
            mode, chosen_by = self.default_datapath, f"vswitchd --datapath {self.default_datapath}"
        if mode != DatapathMode.PYTHON and self._netlink is not Netlink:
            mode, chosen_by = DatapathMode.PYTHON, "the kernel is simulated"
        return mode, chosen_by

    def _new_datapath(self, spec: SwitchSpec, core: SwitchCore) -> Datapath:
        """The switch's datapath as its `datapath` (auto: vswitchd's default) chooses; see
        datapath/fastpath.py. Raises InvalidRequest when the kernel one is required and cannot be had."""
        mode, chosen_by = self._datapath_mode(spec)
        roles = (["uplink"] if spec.type == SwitchType.EXTERNAL else []) + (["host-vnic"] if spec.has_host_vnic else [])
        try:
            return make_datapath(spec.name, core, mode=str(mode), chosen_by=chosen_by, own_roles=roles,
                                 movable=self._netlink is Netlink, busy_poll_s=self.busy_poll_us / 1e6,
                                 link_watch=self._linkwatch)
        except FastPathRefused as exc:
            raise InvalidRequest(str(exc.strerror)) from None

    def _open_vnic(self, sw: _Switch, vnic_name: str, undo: ExitStack, *, attach: bool = True) -> None:
        """Open (create, or adopt what the kernel kept) the host vNIC; `attach` makes it port "host"."""
        vnic = self._port_kinds[PortKind.TAP](HOST_PORT, vnic_name, persist=True)  # type: ignore[call-arg]
        try:
            sw.datapath.open_port(vnic, role="host-vnic")
        except OSError as exc:
            raise InvalidRequest(f"cannot create host vNIC {vnic_name}: {exc}") from exc
        # a vNIC `switch set` adds is removed if it unwinds; one of `_build` follows `_release_vnic`
        undo.callback(self._drop_vnic if attach else self._release_vnic, sw, vnic)
        sw.vnic = vnic  # type: ignore[assignment]
        if attach:
            sw.datapath.attach(HOST_PORT, vnic, role="host-vnic")
            sw.ports[HOST_PORT] = _Attached(None, vnic, "host-vnic")
            undo.callback(self._detach_own, sw, HOST_PORT)

    def _open_uplink(self, sw: _Switch, spec: SwitchSpec, undo: ExitStack) -> None:
        """Open the NIC of External `spec` as port "uplink" and attach it."""
        assert spec.nic is not None
        uplink = self._port_kinds[PortKind.LINK](UPLINK_PORT, spec.nic)  # type: ignore[call-arg]
        try:
            sw.datapath.open_port(uplink, role="uplink")
        except OSError as exc:
            raise InvalidRequest(f"cannot open NIC {spec.nic!r}: {exc}") from exc
        undo.callback(uplink.close)
        sw.datapath.attach(UPLINK_PORT, uplink, role="uplink")
        sw.ports[UPLINK_PORT] = _Attached(None, uplink, "uplink")
        undo.callback(self._detach_own, sw, UPLINK_PORT)

    @staticmethod
    def _detach_own(sw: _Switch, name: str) -> None:
        """Detach the switch's own port `name` (uplink, host) if attached; the caller closes it."""
        if sw.ports.pop(name, None) is not None:
            sw.datapath.detach(name)

    def _start_confirm_timer(self, sw: _Switch, deadline: float, undo: ExitStack) -> None:
        sw.confirm_deadline = deadline
        timer = threading.Timer(max(0.0, deadline - time.time()), self._confirm_expired, (sw,))
        timer.daemon = True
        timer.start()
        undo.callback(timer.cancel)
        sw.confirm_timer = timer

    def _teardown_stack(self, sw: _Switch) -> ExitStack:
        """What tearing `sw` down undoes, from the parts it has now (in `_build`'s order, reversed on close)."""
        undo = ExitStack()
        undo.callback(sw.datapath.stop)
        if sw.vnic is not None:
            undo.callback(self._release_vnic, sw, sw.vnic)
        if UPLINK_PORT in sw.ports:
            undo.callback(sw.ports[UPLINK_PORT].port.close)
        if sw.takeover is not None:
            undo.callback(self._give_back, sw, sw.takeover)
        if sw.confirm_timer is not None:
            undo.callback(sw.confirm_timer.cancel)
        return undo

    def _take_over(self, spec: SwitchSpec, vnic_name: str | None, undo: ExitStack, *, op: str = "create-switch",
                   remember: Mapping[str, Any] | None = None) -> hostnic.Takeover:
        """Run the NIC takeover from a snapshot stored first; the snapshot is marked applied after.

        `op` names the crash points; `remember` is stored in the snapshot beside it (`switch set`:
        the intent that took the NIC, the connection to revert to)."""
        assert spec.nic is not None
        takeover = hostnic.Takeover(spec.nic, vnic_name, allow_management_os=spec.allow_management_os,
                                    fail_at=self._takeover_fail_at, netlink=self._netlink,
                                    on_step=self._step_observer(spec.name), own_filters=fast_path_filters())
        try:
            snap = {**takeover.snapshot(), **(remember or {})}
        except hostnic.TakeoverRefused as exc:
            raise Conflict(str(exc)) from exc
        if self.store is not None:
            # stored before the NIC is touched, and the very plan applied: a crash at any step is
            # undone on restart from exactly this
            self.store.put_snapshot(spec.name, snap)
            undo.callback(self._drop_snapshot_quietly, spec.name)
            crashpoint(f"{op}.snapshot")
        try:
            takeover.apply(snap)
        except hostnic.TakeoverError as exc:
            raise InvalidRequest(f"taking over {spec.nic} failed and was rolled back: {exc}") from exc
        except hostnic.TakeoverRefused as exc:
            raise Conflict(str(exc)) from exc
        undo.callback(takeover.restore)  # (idempotent: the caller's own give-back may have run first)
        if self.store is not None:
            try:
                self.store.put_snapshot(spec.name, {**snap, "applied": True})
            except StoreError:
                takeover.restore()
                raise
            crashpoint(f"{op}.applied")
        return takeover

    def _adoptable_takeover(self, spec: SwitchSpec) -> hostnic.Takeover | None:
        """A takeover a previous run applied in full and left in place (SIGKILL): adopt it, NIC untouched.

        One begun but not finished is given back first (its undos are idempotent) and None is
        returned, so the caller takes the NIC over afresh."""
        if self.store is None:
            return None
        snap = self.store.get_snapshot(spec.name)
        if snap is None:
            return None
        if snap.get("applied") and snap.get("vnic") == (host_vnic_name(spec.name) if spec.allow_management_os
                                                      else None):
            with self._netlink() as nl:
                intact = nl.ingress_qdisc_kind(spec.nic) is not None and (
                    snap["vnic"] is None or nl.link_exists(snap["vnic"]))
                if intact and nl.ingress_qdisc_kind(spec.nic) == "ingress":
                    # a drop made before the fast path: first in an ingress qdisc, where it would stop
                    # every frame before the program; made again, it sits last on a clsact
                    nl.del_ingress(spec.nic, missing_ok=True)
                    nl.add_ingress_drop(spec.nic)
            if intact:
                log.info("switch %s: adopting the takeover of %s left by the previous run", spec.name, spec.nic)
                return hostnic.Takeover.from_snapshot(snap, netlink=self._netlink)
        log.info("switch %s: giving back %s as the previous run left it", spec.name, snap.get("nic"))
        hostnic.Takeover.from_snapshot(snap, netlink=self._netlink).restore()
        self.store.drop_snapshot(spec.name)
        return None

    def _release_vnic(self, sw: _Switch, vnic: TapPort) -> None:
        """Remove the host vNIC, or on a clean shutdown of an Internal switch keep it with its addresses."""
        if sw.deleting or sw.takeover is not None or sw.spec.type == SwitchType.EXTERNAL:
            vnic.destroy()
        else:
            vnic.close()

    def _drop_snapshot_quietly(self, name: str) -> None:
        assert self.store is not None
        try:
            self.store.drop_snapshot(name)
        except StoreError as exc:  # replayed (idempotently) at the next start
            log.warning("switch %s: takeover snapshot stays for the next start: %s", name, exc)

    def _give_back(self, sw: _Switch, takeover: hostnic.Takeover) -> None:
        sw.datapath.stop()  # stop bridging NIC and vNIC before the NIC's stack comes back
        self._unshare_uplink(takeover.nic)
        takeover.restore()

    def _confirm_expired(self, sw: _Switch) -> None:
        """Timer thread: the confirm deadline passed. Revert the takeover and forget the switch, all
        under the manager's lock, so no reader sees a switch whose datapath is already stopped."""
        with self._lock:
            name = sw.spec.name
            if self._switches.get(name) is not sw or sw.confirm_deadline is None:
                return  # confirmed or deleted while this thread waited for the lock
            if sw.revert_to is not None:
                self._revert_connection(sw)
                return
            del self._switches[name]
            error: Exception | None = None
            try:
                self._teardown(sw, delete=True)  # stops the datapath before giving the NIC back
            except Exception as exc:  # a timer thread has nobody else to tell
                error = exc
            log.warning("switch %s was not confirmed in time: reverted%s", name,
                        f" (with errors: {error})" if error else "")
            self.event_log.emit(name, EventKind.SWITCH_REVERTED, reason="not confirmed in time")
            if self.store is not None:
                try:
                    self.store.delete_switch(name)
                except StoreError as exc:  # the next start finds the deadline passed and reverts again
                    log.error("switch %s: reverted, but the store could not forget it: %s", name, exc)

    def _revert_connection(self, sw: _Switch) -> None:
        """The confirm deadline of a `switch set` to External passed: back to the connection before it
        (the other settings as they are now), as a change of its own."""
        assert sw.revert_to is not None
        back = _with_connection(sw.spec, sw.revert_to)
        sw.confirm_deadline, sw.revert_to, sw.confirm_timer = None, None, None
        try:
            self._connect(sw, back)
        except Exception as exc:  # a timer thread has nobody else to tell; the next start reverts again
            log.error("switch %s was not confirmed in time; going back to %s failed: %s", sw.spec.name,
                      _describe(back), exc)
            return
        log.warning("switch %s was not confirmed in time: back to %s", sw.spec.name, _describe(back))
        self.event_log.emit(sw.spec.name, EventKind.SWITCH_REVERTED, reason=f"not confirmed in time: back to "
                            f"{_describe(back)}")

    def _teardown(self, sw: _Switch, *, delete: bool) -> None:
        """Undo the switch's steps in reverse; `delete` removes what a shutdown would keep."""
        sw.deleting = delete
        try:
            self._teardown_stack(sw).close()
        finally:
            if delete:
                self._destroy_tap_ports(sw)
            if self.store is not None:
                self._drop_snapshot_quietly(sw.spec.name)

    def delete_switch(self, name: str) -> None:
        """Delete a switch and give its NIC back. Raises NotFound, StoreError (nothing changed)."""
        with self._lock:
            sw = self._get(name)
            intent = self.store.begin_intent("delete-switch", name) if self.store is not None else None
            crashpoint("delete-switch.intent")
            del self._switches[name]
            try:
                self._teardown(sw, delete=True)
            finally:
                if self.store is not None:
                    try:
                        with self.store.transaction():
                            self.store.delete_switch(name)
                            self.store.end_intent(intent)  # type: ignore[arg-type]
                    except StoreError as exc:  # the switch is gone from the kernel; the next start finishes
                        log.error("switch %s: deleted, the store is finished at the next start: %s", name, exc)
                    crashpoint("delete-switch.committed")
                self.event_log.emit(name, EventKind.SWITCH_DELETED)

    def confirm_switch(self, name: str) -> SwitchInfo:
        """Keep an External switch created with a confirm timeout; stored before it is answered.

        Raises NotFound, Conflict (not awaiting confirmation: the request is fine, the switch's state
        is not), StoreError (not confirmed)."""
        with self._lock:
            sw = self._get(name)
            if sw.takeover is None or sw.confirm_deadline is None:
                raise Conflict(f"switch {name!r} is not waiting for confirmation")
            if self.store is not None:
                self.store.set_confirmed(name)
                crashpoint("confirm-switch.stored")
            sw.confirm_deadline = None  # a timer already waiting for this lock sees it and does nothing
            sw.revert_to = None  # (a snapshot's stale "revert_to" is read only while a deadline is stored)
            if sw.confirm_timer is not None:
                sw.confirm_timer.cancel()
            self.event_log.emit(name, EventKind.SWITCH_CONFIRMED)
            return self._info(sw)

    def list_switches(self) -> list[SwitchInfo]:
        with self._lock:
            return [self._info(sw) for sw in self._switches.values()]

    def get_switch(self, name: str) -> SwitchInfo:
        with self._lock:
            return self._info(self._get(name))

    def set_switch(self, name: str, settings: SwitchSettings, *, dry_run: bool = False) -> SwitchInfo | list[str]:
        """Change the name, MAC ageing time, table capacity and/or connection (type, NIC, management
        OS): stored, applied live; with `dry_run` return the steps instead. Ports, their settings, static
        entries (those on an uplink or vNIC that goes, with it) and the learned MAC table stay; VM ports
        forward between each other throughout. A smaller capacity evicts learned entries fairly.

        A connection change is one intent (see `_connect`); a rename of a switch with a host vNIC renames
        the vNIC too (`_rename`). Raises NotFound, InvalidRequest (bad settings, a NIC that cannot be
        taken), Conflict (the new name or NIC is taken; waiting for confirmation), StoreError (nothing
        changed)."""
        with self._lock:
            sw = self._get(name)
            spec = settings.apply(sw.spec)
            reconnect = _connection(spec) != _connection(sw.spec)
            if spec.name != name and spec.name in self._switches:
                raise Conflict(f"switch {spec.name!r} already exists")
            if settings.confirm_timeout_s is not None and not reconnect:
                raise InvalidRequest([Problem("confirm_timeout_s", f"switch {name!r} is already {_describe(spec)}: "
                                              "there is no change to confirm")])
            if (reconnect or (spec.name != name and sw.vnic is not None)) and sw.confirm_deadline is not None:
                raise Conflict(f"switch {name!r} is waiting for confirmation: confirm it (vswitch switch confirm "
                               f"{name}) or let it revert first")
            if reconnect:
                assert sw.takeover is None or sw.spec.nic is not None
                self._check_links(spec, host_vnic_name(name) if spec.has_host_vnic and sw.vnic is None else None,
                                  nic_taken_by_us=sw.takeover is not None and spec.nic == sw.spec.nic, switch=name)
            elif spec.name != name and sw.vnic is not None:
                self._check_vnic_rename(sw, spec.name)
            moves = spec.datapath != sw.spec.datapath
            if dry_run:
                if moves:
                    self._move_datapath(sw, spec, dry_run=True)
                return self._set_plan(sw, spec, settings.confirm_timeout_s)
            if moves:  # live first (a refusal leaves everything as it was), then stored
                self._move_datapath(sw, spec)
            if reconnect:
                self._connect(sw, spec, settings.confirm_timeout_s)
            elif spec.name != name:
                self._rename(sw, spec)
            elif self.store is not None:
                try:
                    self.store.save_switch(spec, confirm_deadline=self.store.confirm_deadline(spec.name))
                except BaseException:
                    if moves:
                        self._move_datapath(sw, sw.spec)
                    raise
            sw.datapath.set_fdb_limits(spec.ageing_s, spec.max_entries)
            old, sw.spec = sw.spec, spec
            if moves:
                sw.uplink_classes = {}  # the new datapath's ports have none yet
            if reconnect or moves or old.uplink_bandwidth != spec.uplink_bandwidth:
                self._share_uplink(sw, quiet=True)
            renamed = {"old_name": name} if spec.name != name else {}
            self.event_log.emit(spec.name, EventKind.SWITCH_SET, **_given(settings), **renamed)
            return self._info(sw)

    def _move_datapath(self, sw: _Switch, new: SwitchSpec, *, dry_run: bool = False) -> None:
        """`switch set --datapath`: the running switch onto the datapath `new.datapath` means (its ports,
        policies, statics, learned entries and counters kept; datapath/fastpath.py `set_mode`). No
        intent: nothing here outlives the process that a restart would not rebuild from the stored spec
        (a crash before the store keeps the old datapath, after it the new one; a program a killed
        vswitchd left on a link is replaced or removed at start). With `dry_run` only the checks.
        Raises InvalidRequest (kernel, and the fast path cannot serve the switch: unchanged)."""
        mode, chosen_by = self._datapath_mode(new)
        dp = sw.datapath
        assert isinstance(dp, KernelDatapath | PythonDatapath)
        try:
            dp.set_mode(str(mode), chosen_by, dry_run=dry_run)
        except FastPathRefused as exc:
            raise InvalidRequest([Problem("datapath", str(exc.strerror))]) from None

    def _set_plan(self, sw: _Switch, new: SwitchSpec, confirm_timeout_s: float | None) -> list[str]:
        """What `set_switch` would do (its dry run), in order; changes nothing."""
        old, steps = sw.spec, []
        if _connection(new) != _connection(old):
            if sw.takeover is not None:
                steps.append(f"detach {old.nic} (port {UPLINK_PORT!r}) and give it back as it was before the takeover:")
                steps += [f"  undo: {s.description}" for s in reversed(hostnic.build_plan(sw.takeover.snapshot()))]
            vnic_name = host_vnic_name(old.name)
            if new.has_host_vnic and sw.vnic is None:
                steps.append(f"create host vNIC {vnic_name} (persistent TAP) and attach it as port {HOST_PORT!r}")
            if new.type == SwitchType.EXTERNAL:
                # the NIC as it was before any takeover of ours; the vNIC as it is (or will be)
                base = sw.takeover.snapshot() if sw.takeover is not None and new.nic == old.nic else None
                vnic_link = None
                if sw.vnic is not None:  # as it is, or as the give-back leaves it
                    vnic_link = sw.takeover.snapshot().get("vnic_link") if sw.takeover is not None else None
                    if vnic_link is None:
                        with self._netlink() as nl:
                            v = nl.link(sw.vnic.ifname)
                        vnic_link = {"mac": v.mac, "mtu": v.mtu, "up": v.up}
                steps += self._takeover_plan(replace(new, confirm_timeout_s=confirm_timeout_s), vnic_name,
                                             base, vnic_link)
            elif new.has_host_vnic:
                steps.append(f"bring {vnic_name} up (the host's adapter on this internal switch)")
            if sw.vnic is not None and not new.has_host_vnic:
                steps.append(f"remove host vNIC {sw.vnic.ifname} (port {HOST_PORT!r})"
                             + (": the host loses its connection through this switch" if sw.takeover else ""))
        if new.name != old.name:
            steps.append(f"rename switch {old.name!r} to {new.name!r}" + (
                f" and its host vNIC {sw.vnic.ifname} to {host_vnic_name(new.name)}" if sw.vnic is not None else ""))
        if (new.ageing_s, new.max_entries) != (old.ageing_s, old.max_entries):
            steps.append(f"set the MAC table to {new.max_entries} entries, ageing {new.ageing_s} s")
        if new.datapath != old.datapath:
            mode, chosen_by = self._datapath_mode(new)
            steps.append(f"move switch {old.name!r} from its datapath now ({sw.datapath.label}) to "
                         + ("the Python datapath" if mode == DatapathMode.PYTHON else
                            "the kernel fast path" + (" where it can" if mode == DatapathMode.AUTO else ""))
                         + f" ({chosen_by}), keeping its ports, static and learned entries and counters")
        return steps or [f"nothing to change: switch {old.name!r} is already so"]

    def _connect(self, sw: _Switch, new: SwitchSpec, confirm_timeout_s: float | None = None) -> None:
        """Change running switch `sw` to the connection of `new` (checked by `_check_links`), live.

        One intent: written first, then the steps, each registering its undo — give the old NIC back
        (the uplink detached first), create the host vNIC, take the new NIC over (`_take_over`, the
        snapshot stored first), bring an Internal vNIC up, remove a vNIC no longer wanted (last: it
        cannot be undone exactly) — then the new spec stored and the intent ended in one transaction.
        A failure unwinds the steps (the old NIC taken over again); `_recover` finishes or undoes a
        crash. With `confirm_timeout_s` the switch reverts to its old connection unless confirmed."""
        old, name, store = sw.spec, sw.spec.name, self.store
        deadline = time.time() + confirm_timeout_s if confirm_timeout_s else None
        intent = store.begin_intent("set-switch", name, data={"old": old.to_dict(), "new": new.to_dict(),
                                                               "deadline": deadline}) if store else None
        crashpoint("set-switch.intent")
        # static entries pinned to the uplink or the vNIC: detaching a port drops its entries
        own_statics = [(r.mac, r.vlan, r.port) for r in sw.datapath.fdb_entries()
                       if r.static and r.port in (UPLINK_PORT, HOST_PORT)]
        try:
            with ExitStack() as rollback:
                self._change_connection(sw, old, new, rollback, revert_to=old if deadline else None)
                if store is not None:
                    with store.transaction():
                        store.save_switch(new, confirm_deadline=deadline)
                        for own in (UPLINK_PORT, HOST_PORT):
                            if own not in sw.ports:
                                store.delete_port(name, own)  # no port row: its static entries
                        store.end_intent(intent)  # type: ignore[arg-type]
                rollback.pop_all()
        except BaseException:
            self._end_intent_quietly(intent)
            raise
        finally:
            for mac, vlan, port in own_statics:
                if port in sw.ports:
                    sw.datapath.add_static(mac, vlan, port)
        crashpoint("set-switch.committed")
        sw.spec = new
        if deadline is not None:
            sw.revert_to = old
            self._start_confirm_timer(sw, deadline, ExitStack())

    def _change_connection(self, sw: _Switch, old: SwitchSpec, new: SwitchSpec, rollback: ExitStack, *,
                           revert_to: SwitchSpec | None) -> None:
        """The kernel steps of `_connect`, each registering its undo on `rollback`."""
        vnic_name = host_vnic_name(old.name)
        if sw.takeover is not None:
            uplink = sw.ports[UPLINK_PORT].port
            self._release_takeover(sw)
            uplink.close()
            if self.store is not None:
                self.store.drop_snapshot(old.name)
            rollback.callback(self._retake, sw, old)
            crashpoint("set-switch.given-back")
        if new.has_host_vnic and sw.vnic is None:
            self._open_vnic(sw, vnic_name, rollback)
            crashpoint("set-switch.vnic")
        if new.type == SwitchType.EXTERNAL:
            self._open_uplink(sw, new, rollback)
            remember = {"revert_to": revert_to.to_dict()} if revert_to is not None else None
            sw.takeover = self._take_over(new, vnic_name if new.has_host_vnic else None, rollback, op="set-switch",
                                          remember=remember)
            rollback.callback(self._release_takeover, sw)
        elif new.has_host_vnic:
            with self._netlink() as nl:
                if not nl.link(vnic_name).up:
                    nl.set_up(vnic_name, True)
                    rollback.callback(self._set_link_up, vnic_name, False)
            crashpoint("set-switch.vnic-up")
        if sw.vnic is not None and not new.has_host_vnic:
            vnic = sw.vnic
            self._detach_own(sw, HOST_PORT)
            sw.vnic = None
            vnic.destroy()
            rollback.callback(self._retake_vnic, sw, old)
            crashpoint("set-switch.vnic-removed")

    def _set_link_up(self, name: str, up: bool) -> None:
        with self._netlink() as nl:
            nl.set_up(name, up)

    def _release_takeover(self, sw: _Switch) -> None:
        """Give the NIC back: the uplink detached first (the NIC and the vNIC must no longer be bridged
        while the NIC's stack comes back), then every takeover step undone. Raises TakeoverError."""
        self._detach_own(sw, UPLINK_PORT)
        if sw.takeover is None:
            return
        try:
            sw.takeover.restore()
        except hostnic.TakeoverError as exc:  # a refused undo is tried once more
            log.warning("switch %s: giving %s back: %s; trying once more", sw.spec.name, sw.spec.nic, exc)
            sw.takeover.restore_again()
        sw.takeover = None

    def _retake(self, sw: _Switch, spec: SwitchSpec) -> None:
        """Undo of a give-back: take the NIC of External `spec` over again (a fresh snapshot)."""
        with ExitStack() as undo:
            self._open_uplink(sw, spec, undo)
            sw.takeover = self._take_over(spec, host_vnic_name(spec.name) if spec.has_host_vnic else None, undo,
                                          op="set-switch")
            undo.pop_all()

    def _retake_vnic(self, sw: _Switch, spec: SwitchSpec) -> None:
        """Undo of a vNIC removal: a host vNIC again (its own addresses, if it had any, are gone)."""
        with ExitStack() as undo:
            self._open_vnic(sw, host_vnic_name(spec.name), undo)
            if spec.type == SwitchType.INTERNAL:
                self._set_link_up(host_vnic_name(spec.name), True)
            undo.pop_all()

    def _drop_vnic(self, sw: _Switch, vnic: TapPort) -> None:
        """Undo of a vNIC `switch set` created: removed (a persistent TAP outlives its descriptor)."""
        if sw.vnic is vnic:
            sw.vnic = None
        vnic.destroy()

    def _check_vnic_rename(self, sw: _Switch, new_name: str) -> None:
        """Conflict unless the host vNIC of `sw` may take the name of switch `new_name`'s."""
        assert sw.vnic is not None
        new_vnic, wanted = host_vnic_name(new_name), f"the host vNIC of switch {new_name!r}"
        if new_vnic == sw.vnic.ifname:
            return
        self._owner_index().refuse_taken([(ownership.LINK, new_vnic)], wanted)
        with self._netlink() as nl:
            if nl.link_exists(new_vnic):
                raise Conflict(f"a link named {new_vnic!r} ({wanted}) already exists")

    def _rename(self, sw: _Switch, new: SwitchSpec) -> None:
        """Rename switch `sw` and its host vNIC (the link keeps its addresses and routes; an External
        switch's takeover snapshot follows the name), as one intent; `_recover` finishes a crash once
        the link was renamed. Raises InvalidRequest (the kernel refused), StoreError (nothing changed)."""
        old, store = sw.spec, self.store
        vnic = sw.vnic
        old_vnic, new_vnic = (vnic.ifname, host_vnic_name(new.name)) if vnic is not None else (None, None)
        intent = store.begin_intent("rename-switch", old.name, data={
            "old": old.to_dict(), "new": new.to_dict(), "vnic": old_vnic, "new_vnic": new_vnic}) if store else None
        crashpoint("rename-switch.intent")
        renamed = False
        try:
            if vnic is not None and old_vnic != new_vnic:
                assert old_vnic is not None and new_vnic is not None
                with self._netlink() as nl:
                    try:
                        nl.rename_link(old_vnic, new_vnic)
                    except OSError as exc:
                        raise InvalidRequest(f"cannot rename host vNIC {old_vnic} to {new_vnic}: {exc}") from exc
                renamed = True
                vnic.ifname = new_vnic
                crashpoint("rename-switch.vnic")
            snap = None
            if sw.takeover is not None:
                snap = (store.get_snapshot(old.name) if store is not None else None) or sw.takeover.snapshot()
                if snap.get("vnic"):
                    snap = {**snap, "vnic": new_vnic}
            if store is not None:
                with store.transaction():
                    store.rename_switch(old.name, new)
                    if snap is not None:
                        store.put_snapshot(new.name, snap)
                    store.end_intent(intent)  # type: ignore[arg-type]
        except BaseException:
            if renamed:
                assert vnic is not None and old_vnic is not None and new_vnic is not None
                with self._netlink() as nl:
                    nl.rename_link(new_vnic, old_vnic)
                vnic.ifname = old_vnic
            self._end_intent_quietly(intent)
            raise
        crashpoint("rename-switch.committed")
        if snap is not None:
            # the undos name the vNIC: rebuilt from the snapshot with its new name (all applied)
            sw.takeover = hostnic.Takeover.from_snapshot(snap, netlink=self._netlink)
        self._switches[new.name] = self._switches.pop(old.name)

    # -- ports --------------------------------------------------------------------------------
    def add_port(self, switch: str, spec: PortSpec, *, persist: bool = True) -> PortInfo:
        with self._lock:
            sw = self._get(switch)
            if spec.name in sw.ports:
                raise Conflict(f"switch {switch!r} already has a port {spec.name!r}")
            spec = self._check_target(switch, spec)
            self._check_pvlan(sw, spec)
            store = self.store if persist else None
            intent = store.begin_intent("add-port", switch, spec.name, {"spec": spec.to_dict()}) if store else None
            crashpoint("add-port.intent")
            port = self._make_port(spec, switch)
            try:
                sw.datapath.open_port(port)
            except OSError as exc:
                self._end_intent_quietly(intent)
                where = (f"UDP port {spec.udp_port} ({spec.target})" if spec.kind == PortKind.VXLAN
                         else repr(spec.target))
                raise InvalidRequest(f"cannot open {spec.kind} port {spec.name!r} on {where}: "
                                     f"{exc.strerror or exc}") from exc
            crashpoint("add-port.opened")
            try:
                sw.datapath.attach(spec.name, port, policy_for(spec), role="vm")
                crashpoint("add-port.attached")
                if spec.max_bandwidth_in:
                    self._shape(spec, spec.max_bandwidth_in)
                if store is not None:
                    with store.transaction():
                        store.save_port(switch, spec)
                        store.end_intent(intent)  # type: ignore[arg-type]
            except BaseException:
                if sw.datapath.has_port(spec.name):
                    sw.datapath.detach(spec.name)
                _discard_port(port)
                self._end_intent_quietly(intent)
                raise
            crashpoint("add-port.committed")
            sw.ports[spec.name] = _Attached(spec, port, "vm")
            if spec.min_bandwidth_weight:
                self._share_uplink(sw)
            if persist:
                self.event_log.emit(switch, EventKind.PORT_ADDED, port=spec.name, kind=str(spec.kind),
                                    target=spec.target)
            return self._port_info(sw, spec.name)

    def _check_target(self, switch: str, spec: PortSpec) -> PortSpec:
        """`spec` with a plain socket name resolved under `port_socket_dir`, once its target is free.

        Conflict when another switch, port, uplink or vNIC holds the target (control/ownership.py),
        when it is reserved for vswitchd, or when a live socket is there (naming who listens);
        InvalidRequest for a missing link or a path that cannot be a socket."""
        wanted = f"{spec.kind} port {spec.name!r} of switch {switch!r}"
        if spec.kind in _SOCKET_KINDS:
            spec = replace(spec, target=ownership.resolve_socket_name(spec.target, self.port_socket_dir))
        self._owner_index().refuse_taken(ownership.port_targets(spec), wanted)
        if spec.kind in (PortKind.TAP, PortKind.LINK):
            ownership.refuse_reserved_link(spec.target, wanted)
        if spec.kind == PortKind.LINK:
            with self._netlink() as nl:
                if not nl.link_exists(spec.target):
                    raise Conflict(f"interface {spec.target!r} does not exist")
        if spec.kind in _SOCKET_KINDS:
            for _ns, path in ownership.port_targets(spec):
                for form in {path, os.path.realpath(path)}:
                    ownership.refuse_reserved_path(form, self._reserved_paths, wanted)
            try:
                who = socket_listener(spec.target)
            except OSError as exc:
                raise InvalidRequest(f"socket path {spec.target!r} cannot be used: {exc.strerror or exc}") from None
            if who is not None:
                raise Conflict(f"socket path {spec.target!r} is a live socket of {who}; it is not removed or "
                               f"taken over for {wanted}")
            if ownership.is_under(spec.target, self.port_socket_dir):
                try:
                    os.makedirs(os.path.dirname(spec.target), mode=0o755, exist_ok=True)
                except OSError as exc:
                    raise InvalidRequest(f"cannot create the port socket directory {self.port_socket_dir}: "
                                         f"{exc.strerror or exc}") from None
        return spec

    def _make_port(self, spec: PortSpec, switch: str | None = None) -> Port:
        cls = self._port_kinds[str(spec.kind)]
        if spec.kind == PortKind.MEMORY:
            return cls(spec.name)  # type: ignore[call-arg]
        if spec.kind == PortKind.TAP:
            # Persistent: a VM's NIC outlives a daemon restart or crash, in the namespace the VM
            # moved it to, with its MAC, addresses and up state; re-attached there on the next start.
            facts = self.store.get_port_runtime(switch, spec.name) if self.store is not None and switch else None
            where = facts["netns"] if facts and facts.get("ifname") == spec.target else None
            self._track_tap_netns()
            return cls(spec.name, spec.target, persist=True, netns=where, mac=spec.mac)  # type: ignore[call-arg]
        if spec.kind == PortKind.VXLAN:
            return cls(spec.name, vxlan_remotes(spec.target), spec.vni, local=spec.local_ip,  # type: ignore[call-arg]
                       dstport=spec.udp_port)
        return cls(spec.name, spec.target)  # type: ignore[call-arg]

    def remove_port(self, switch: str, port: str) -> None:
        with self._lock:
            sw = self._get(switch)
            att = self._vm_port(sw, switch, port, "delete the switch instead")
            intent = self.store.begin_intent("remove-port", switch, port, {"spec": att.spec.to_dict()}) \
                if self.store is not None else None
            crashpoint("remove-port.intent")
            sw.datapath.detach(port)
            del sw.ports[port]
            if att.spec.max_bandwidth_in:
                self._shape(att.spec, 0, quiet=True)  # the link as it was before the port
            if att.spec.min_bandwidth_weight:
                self._share_uplink(sw, quiet=True)
            try:
                _discard_port(att.port)
                crashpoint("remove-port.closed")
            finally:
                if self.store is not None:
                    try:
                        with self.store.transaction():
                            self.store.delete_port(switch, port)
                            self.store.end_intent(intent)  # type: ignore[arg-type]
                    except StoreError as exc:  # the port is gone; the next start finishes forgetting it
                        log.error("port %s/%s: removed, the store is finished at the next start: %s",
                                  switch, port, exc)
                    crashpoint("remove-port.committed")
                self.event_log.emit(switch, EventKind.PORT_REMOVED, port=port)

    def list_ports(self, switch: str) -> list[PortInfo]:
        with self._lock:
            sw = self._get(switch)
            return [self._port_info(sw, name) for name in sw.ports]

    def get_port(self, switch: str, port: str) -> PortInfo:
        with self._lock:
            sw = self._get(switch)
            if port not in sw.ports:
                raise NotFound(f"switch {switch!r} has no port {port!r}")
            return self._port_info(sw, port)

    def set_port(self, switch: str, port: str, settings: PortSettings) -> PortInfo:
        """Change a port's VLAN mode, admin state, learning, flooding or guards: stored first, then applied on
        the datapath thread between two batches, so the other ports forward on without a gap.

        Raises NotFound, InvalidRequest (bad settings; a port of the switch itself), Conflict (a static
        entry of the port would leave its VLANs), StoreError (nothing changed)."""
        with self._lock:
            sw = self._get(switch)
            att = self._vm_port(sw, switch, port, "its settings cannot be changed")
            spec = settings.apply(att.spec)
            self._check_pvlan(sw, spec)
            policy = replace(policy_for(spec), uplink_class=sw.uplink_classes.get(port, 0))
            left = [f"{format_mac(e.mac)} in VLAN {e.vlan}" for e in sw.datapath.fdb_entries()
                    if e.static and e.port == port and not policy.is_member(e.vlan)]
            if left:
                raise Conflict(f"port {port!r} has static entries outside its new VLANs ({', '.join(left[:4])}); "
                               f"delete them first (vswitch fdb del)")
            shaped = spec.max_bandwidth_in != att.spec.max_bandwidth_in
            if shaped:
                self._shape(spec, spec.max_bandwidth_in)  # first: a link that refuses changes nothing
            try:
                if spec.mac != att.spec.mac and spec.mac is not None:
                    self._set_tap_mac(sw, att, spec)
                elif self.store is not None:
                    self.store.save_port(switch, spec)
            except BaseException:
                if shaped:
                    self._shape(att.spec, att.spec.max_bandwidth_in, quiet=True)
                raise
            sw.datapath.set_policy(port, policy)
            weighted = spec.min_bandwidth_weight != att.spec.min_bandwidth_weight
            att.spec = spec
            if weighted:
                self._share_uplink(sw)
            self.event_log.emit(switch, EventKind.PORT_SET, port=port, **_given(settings))
            return self._port_info(sw, port)

    def _check_pvlan(self, sw: _Switch, spec: PortSpec) -> None:
        """Refuse a private VLAN that contradicts another port's (model.pvlan_conflicts)."""
        problems = pvlan_conflicts(spec, (a.spec for a in sw.ports.values() if a.spec is not None))
        if problems:
            raise Conflict("; ".join(str(p) for p in problems))
    def _shape(self, spec: PortSpec, rate_bps: int, *, quiet: bool = False) -> None:
        """Shape what the switch delivers to link port `spec` to `rate_bps` (0: no shaper): a tbf
        qdisc on its link's egress, which both datapaths send through (docs/port-features.md).
        InvalidRequest naming max_bandwidth_in when the kernel refuses; `quiet`: logged instead."""
        try:
            with self._netlink() as nl:
                nl.set_shaper(spec.target, rate_bps)
        except (NetlinkFailure, LinkNotFound) as exc:
            if quiet:
                log.warning("port %s: the shaper of %s not changed: %s", spec.name, spec.target, exc)
                return
            raise InvalidRequest(f"max_bandwidth_in: cannot shape {spec.target!r}: {exc}") from exc

    def _share_uplink(self, sw: _Switch, *, quiet: bool = False) -> None:
        """Share an External switch's uplink by its VM ports' --min-bandwidth-weight: an htb on the NIC
        (`NetlinkApi.set_uplink_shares`) of `uplink_bandwidth`, a class ``1:minor`` per weighted port
        guaranteed its weight's part (weight / (sum of weights + 1): the + 1 is everything unweighted —
        the host, the other ports — in the default class), and each weighted port's frames marked for
        its class (`PortPolicy.uplink_class`, skb->priority; datapaths: docs/port-features.md). No
        weight, no capacity, or no uplink: no htb. InvalidRequest naming min_bandwidth_weight when the
        kernel refuses (`quiet`: logged)."""
        spec = sw.spec
        weights = {n: a.spec.min_bandwidth_weight for n, a in sorted(sw.ports.items())
                   if a.role == "vm" and a.spec is not None and a.spec.min_bandwidth_weight}
        on = spec.type == SwitchType.EXTERNAL and spec.nic is not None and spec.uplink_bandwidth > 0 and weights
        classes = {n: 0x10000 | (0x100 + i) for i, n in enumerate(weights)} if on else {}
        total = sum(weights.values()) + 1
        try:
            if spec.nic is not None and (on or sw.uplink_classes):
                with self._netlink() as nl:
                    nl.set_uplink_shares(spec.nic, spec.uplink_bandwidth if on else 0,
                                         {c & 0xFFFF: spec.uplink_bandwidth * weights[n] // total
                                          for n, c in classes.items()})
        except (NetlinkFailure, LinkNotFound) as exc:
            if not quiet:
                raise InvalidRequest(f"min_bandwidth_weight: cannot share the uplink {spec.nic!r}: {exc}") from exc
            log.warning("switch %s: the uplink's shares not changed: %s", spec.name, exc)
            return
        for name, att in sw.ports.items():
            if att.role == "vm" and att.spec is not None and classes.get(name, 0) != sw.uplink_classes.get(name, 0):
                sw.datapath.set_policy(name, replace(policy_for(att.spec), uplink_class=classes.get(name, 0)))
        sw.uplink_classes = classes
        sw.datapath.set_uplink_classes(UPLINK_PORT if on else None, classes)

    def _unshare_uplink(self, nic: str) -> None:
        """The NIC without the weights' htb, as it is given back (nothing when it has none)."""
        try:
            with self._netlink() as nl:
                if nl.link_exists(nic) and nl.uplink_shares(nic) is not None:
                    nl.set_uplink_shares(nic, 0, {})
        except (NetlinkFailure, LinkNotFound) as exc:
            log.warning("NIC %s: the weights' htb stays: %s", nic, exc)

    def _store_claims(self, sw: _Switch, claims: list[tuple[Hashable, bytes]]) -> None:
        """On the datapath thread: the MACs ports with spoofing off adopted (their first source), to
        be stored so a restart keeps them. Stored from a thread of its own under the manager lock:
        the datapath thread may not wait for that lock (a `port set` holds it while it calls the
        datapath thread), and without it a `port set` storing the port meanwhile would be overwritten
        by the spec read before it. Adoptions are once per port: a thread each costs nothing."""
        threading.Thread(target=self._store_claims_locked, args=(sw, claims), daemon=True,
                         name=f"claims-{sw.spec.name}").start()

    def _store_claims_locked(self, sw: _Switch, claims: list[tuple[Hashable, bytes]]) -> None:
        """`_store_claims`' work, each MAC checked against the port as it is now (removed, spoofing
        turned on, or given another MAC since: not stored); a store failure is logged, the port keeps
        its MAC until the next restart."""
        with self._lock:
            if self._switches.get(sw.spec.name) is not sw:  # deleted (or shut down) meanwhile
                return
            self._store_claims_now(sw, claims)

    def _store_claims_now(self, sw: _Switch, claims: list[tuple[Hashable, bytes]]) -> None:
        for pid, mac in claims:
            att = sw.ports.get(str(pid))
            if att is None or att.spec is None or att.spec.mac_spoofing or att.spec.mac is not None:
                continue
            spec = att.spec.updated({"port_mac": format_mac(mac)})
            try:
                if self.store is not None:
                    self.store.save_port(sw.spec.name, spec)
            except StoreError as exc:
                log.warning("switch %s: port %s's MAC %s is not stored: %s", sw.spec.name, pid,
                            format_mac(mac), exc)
                continue
            att.spec = spec

    def _set_tap_mac(self, sw: _Switch, att: _Attached, spec: PortSpec) -> None:
        """Give a tap port's netdev `spec.mac` and store `spec`: the MAC first (a MAC the kernel refuses
        changes nothing), given back when the store fails. Raises InvalidRequest, StoreError."""
        tap, mac = cast(TapPort, att.port), spec.mac
        assert mac is not None
        try:
            # on the datapath thread: it owns the TAP's descriptor
            before = sw.datapath.call(lambda: tap.set_mac(mac))
        except OSError as exc:
            raise InvalidRequest(f"the kernel refused MAC {mac} for TAP {tap.ifname}: "
                                 f"{exc.strerror or exc}") from None
        try:
            if self.store is not None:
                self.store.save_port(sw.spec.name, spec)
        except BaseException:
            old = att.spec.mac if before is None else before
            if old is not None:
                sw.datapath.call(lambda: tap.set_mac(old))
            else:
                tap.mac = None
            raise

    def port_object(self, switch: str, port: str) -> Port:
        """The live back-end of a port (tests and the lab use it, e.g. to inject into a memory port)."""
        with self._lock:
            sw = self._get(switch)
            if port not in sw.ports:
                raise NotFound(f"switch {switch!r} has no port {port!r}")
            return sw.ports[port].port

    def datapath(self, switch: str) -> Datapath:
        with self._lock:
            return self._get(switch).datapath

    # -- tables and counters --------------------------------------------------------------------
    def fdb_show(self, switch: str) -> list[FdbEntryInfo]:
        """The MAC table, each entry with where behind its port the MAC is (a VXLAN port's VTEP)."""
        with self._lock:
            sw = self._get(switch)
            ports = {name: att.port for name, att in sw.ports.items()}
        rows = sw.datapath.fdb_entries()

        def remote(r: Any) -> str | None:
            port = ports.get(r.port)
            return None if port is None else port.where(r.mac)
        return sorted((FdbEntryInfo(format_mac(r.mac), r.vlan, str(r.port), r.age_s, r.static, remote(r))
                       for r in rows), key=lambda e: (e.vlan, e.port, e.mac))

    def fdb_flush(self, switch: str) -> int:
        removed = self.datapath(switch).fdb_flush()
        self.event_log.emit(switch, EventKind.FDB_FLUSH, removed=removed)
        return removed

    def fdb_add(self, switch: str, entry: StaticEntry, *, persist: bool = True) -> FdbEntryInfo:
        """Pin `entry.mac` to `entry.port` (in the port's own VLAN unless one is given): stored, then
        live. It never ages and never moves: a frame from that MAC on another port is counted
        (``static_refused``), not learned. Raises NotFound (switch, port), InvalidRequest (bad entry),
        Conflict (a VLAN the port is not in, a trunk without native VLAN and no VLAN given: the port's
        state, not the request, refuses them), StoreError."""
        with self._lock:
            sw = self._get(switch)
            if entry.port not in sw.ports:
                raise NotFound(f"switch {switch!r} has no port {entry.port!r}")
            policy = sw.datapath.policy(entry.port)
            vlan = entry.vlan if entry.vlan is not None else policy.own_vlan()
            if vlan is None:
                raise Conflict(f"port {entry.port!r} is a trunk without a native VLAN ({policy.describe()}): "
                            "give the VLAN (--vlan)")
            if not policy.is_member(vlan):
                raise Conflict(f"port {entry.port!r} is not in VLAN {vlan} ({policy.describe()})")
            if persist and self.store is not None:
                self.store.save_static(switch, entry.mac, vlan, entry.port)
            sw.datapath.add_static(parse_mac(entry.mac), vlan, entry.port)
            if persist:
                self.event_log.emit(switch, EventKind.FDB_ADD, port=entry.port, mac=entry.mac, vlan=vlan)
            return FdbEntryInfo(entry.mac, vlan, entry.port, 0.0, True)

    def fdb_del(self, switch: str, mac: str, vlan: int | None = None) -> None:
        """Remove a static entry (from the store, then live). Raises NotFound (switch, or no such static
        entry), InvalidRequest (bad MAC or VLAN; no VLAN given and the MAC is static in several)."""
        mac = canonical_mac("MAC", mac)
        if vlan is not None:
            check_field(PortSpec, "vlan", vlan)
        with self._lock:
            sw = self._get(switch)
            key = parse_mac(mac)
            vlans = sorted(e.vlan for e in sw.datapath.fdb_entries() if e.static and e.mac == key)
            if vlan is not None:
                vlans = [v for v in vlans if v == vlan]
            if not vlans:
                raise NotFound(f"switch {switch!r} has no static entry for {mac}"
                               + (f" in VLAN {vlan}" if vlan is not None else ""))
            if len(vlans) > 1:
                raise InvalidRequest(f"{mac} is static in VLANs {', '.join(map(str, vlans))}: give the VLAN (--vlan)")
            if self.store is not None:
                self.store.delete_static(switch, mac, vlans[0])
            sw.datapath.remove_static(key, vlans[0])
            self.event_log.emit(switch, EventKind.FDB_DEL, mac=mac, vlan=vlans[0])

    # -- port ACLs ------------------------------------------------------------------------------
    def acl_add(self, switch: str, port: str, rule: AclRuleSpec) -> AclRuleInfo:
        """Add a rule to a port's ACLs: numbered (the port's next id), stored, then live. Raises NotFound,
        InvalidRequest (a port of the switch itself; too many rules), Conflict (the same rule exists; an
        extended rule of that weight and direction exists), StoreError (nothing changed)."""
        with self._lock:
            sw = self._get(switch)
            att = self._vm_port(sw, switch, port, "it takes no ACLs")
            assert att.spec is not None
            have = att.spec.acls
            if len(have) >= ACL_RULES_MAX:
                raise InvalidRequest(f"port {port!r} has {len(have)} ACL rules, the most a port may have")
            for r in have:
                if r.selector() == rule.selector() or (rule.extended and r.extended and r.weight == rule.weight
                                                       and r.direction == rule.direction):
                    raise Conflict(f"port {port!r} has that rule already (#{r.id}: {r.rule().describe()})")
            new = replace(rule, id=max((r.id or 0 for r in have), default=0) + 1)
            spec = att.spec.updated({"acls": [*have, new]})
            if self.store is not None:
                self.store.save_port(switch, spec)
            sw.datapath.set_policy(port, policy_for(spec))
            att.spec = spec
            self.event_log.emit(switch, EventKind.PORT_SET, port=port, acl_added=new.id)
            return self._acl_info(sw, port, new, (0, 0))

    def acl_list(self, switch: str, port: str | None = None) -> list[AclRuleInfo]:
        """The ACL rules of every port of a switch (or of `port`), each with its hits and bytes."""
        with self._lock:
            sw = self._get(switch)
            if port is not None:
                self._vm_port(sw, switch, port, "it takes no ACLs")
            names = [port] if port is not None else [n for n, a in sw.ports.items() if a.spec is not None]
            out: list[AclRuleInfo] = []
            for n in names:
                spec = sw.ports[n].spec
                if spec is None or not spec.acls:
                    continue
                counts, flows = sw.datapath.call(lambda n=n: (sw.core.acl_counts(n),  # type: ignore[misc]
                                                             sw.core.acl_flows(n)))
                out += [replace(self._acl_info(sw, n, r, counts.get(r.id or 0, (0, 0))),
                                flows=flows.get(r.id or 0, 0)) for r in spec.acls]
            return out

    def acl_remove(self, switch: str, port: str, rule: str) -> None:
        """Remove rule number `rule` of a port: from the store, then live (its counters go with it).
        Raises NotFound (switch, port, no such rule), InvalidRequest (not a rule id), StoreError."""
        rid = check_acl_id(rule)
        with self._lock:
            sw = self._get(switch)
            att = self._vm_port(sw, switch, port, "it takes no ACLs")
            assert att.spec is not None
            if not any(r.id == rid for r in att.spec.acls):
                raise NotFound(f"port {port!r} has no ACL rule #{rid}")
            spec = att.spec.updated({"acls": [r for r in att.spec.acls if r.id != rid]})
            if self.store is not None:
                self.store.save_port(switch, spec)
            sw.datapath.set_policy(port, policy_for(spec))
            att.spec = spec
            self.event_log.emit(switch, EventKind.PORT_SET, port=port, acl_removed=rid)

    @staticmethod
    def _acl_info(sw: _Switch, port: str, r: AclRuleSpec, counts: tuple[int, int]) -> AclRuleInfo:
        return AclRuleInfo(port, r.id or 0, r.direction, r.action, r.rule().describe(), counts[0], counts[1],
                           r.weight, r.remote_mac, r.remote_ip, r.local_ip, r.protocol, r.remote_port,
                           r.local_port, r.stateful, r.idle_timeout)

    def stats(self, switch: str) -> list[PortStatsInfo]:
        return [PortStatsInfo(str(pid), s["rx_frames"], s["rx_bytes"], s["tx_frames"], s["tx_bytes"],
                              s["floods"], s["learned"], s["moved"], s["drops"], s["static_refused"],
                              s.get("mirrored", 0), s.get("mirror_tx", 0))
                for pid, s in self.datapath(switch).port_counters().items()]

    def trace(self, switch: str, in_port: str, src: str, dst: str, vlan: int | None = None,
              payload: str | None = None) -> TraceInfo:
        """What the switch would do now with a frame src → dst (tagged `vlan`, if given) on `in_port`:
        `SwitchCore.process` with a report, on the datapath thread, so nothing is learned or counted.

        Raises InvalidRequest for a bad MAC, a VLAN outside 0-4094 or a payload that is not hex (naming
        ``payload``), NotFound for an unknown switch or port.
        """
        dp = self.datapath(switch)
        try:
            src_b, dst_b = parse_mac(src), parse_mac(dst)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if vlan is not None and not 0 <= vlan <= 4094:
            raise InvalidRequest(f"VLAN must be 0-4094, got {vlan}")
        frame = dst_b + src_b + trace_payload(payload)
        if vlan is not None:
            frame = push_vlan(frame, vlan)

        try:
            d, steps = dp.trace(in_port, frame)
        except KeyError:
            raise NotFound(f"switch {switch!r} has no port {in_port!r}") from None
        return TraceInfo(
            switch=switch, in_port=in_port, src=format_mac(src_b), dst=format_mac(dst_b), tag=vlan,
            vlan=d.vlan or None, reason=d.reason.name, explanation=d.reason.value,
            out_ports=[str(p) for p in d.out_ports],
            steps=[TraceStepInfo(s.stage, s.result, s.reason.name if s.reason else None, dict(s.detail))
                   for s in steps])

    def watch(self, switch: str, seconds: float = 1.0, limit: int = 1000) -> list[FrameEvent]:
        """Record the switch's per-frame decisions for `seconds` (at most `limit` events); see `SwitchApi.watch`.

        Raises InvalidRequest when `seconds` is not in (0, WATCH_MAX_S] or `limit` not in
        1..WATCH_MAX_EVENTS, NotFound for an unknown switch. While recording, each event is one small
        tuple holding the frame's first bytes (never the frame), turned into a FrameEvent only at the end.
        """
        if not (isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 < seconds <= WATCH_MAX_S):
            raise InvalidRequest(f"watch time must be more than 0 and at most {WATCH_MAX_S:.0f} s, got {clip(seconds)}")
        if not (isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= WATCH_MAX_EVENTS):
            raise InvalidRequest(f"watch limit must be 1-{WATCH_MAX_EVENTS} events, got {clip(limit)}")
        dp = self.datapath(switch)
        raw: list[tuple[Any, ...]] = []
        done = threading.Event()

        def observe(pid: Any, buf: bytes, hdr: int, d: Any, length: int | None = None, t: float | None = None,
                    path: str = PYTHON_PATH) -> None:
            # runs on the datapath thread, only while someone watches: keep it to one slice and one tuple.
            # The Python datapath passes the whole frame; the kernel fast path its first bytes, the
            # frame's length and when it decided (datapath/kernel/events.py)
            if len(raw) >= limit:
                done.set()
                return
            # 18 bytes of L2 header + 60 of IPv4 header + 8 of ICMP are all _event() reads
            raw.append((time.time() if t is None else t, pid, buf[hdr:hdr + 86],
                        len(buf) - hdr if length is None else length, d.reason, d.vlan, d.out_ports, path))

        dp.call(lambda: dp.frame_observers.append(observe))
        end = time.monotonic() + seconds
        try:
            # in slices: a switch deleted (or a daemon shutting down) ends its watches within a slice
            while not done.wait(min(0.25, max(0.0, end - time.monotonic()))) and time.monotonic() < end:
                with self._lock:
                    current = self._switches.get(switch)
                if current is None or current.datapath is not dp:
                    break
        finally:
            dp.call(lambda: dp.frame_observers.remove(observe))
        del raw[limit:]
        # converted oldest first while the tuples are dropped, so both forms never coexist in full;
        # equal MACs and output lists are one shared object each (a watch sees few distinct ones)
        shared: dict[Any, Any] = {}
        raw.reverse()
        events = []
        while raw:
            events.append(_event(switch, *raw.pop(), shared))
        return events

    # -- the sampled decision stream (the web UI's live picture; control/decision_stream.py) -------
    def open_decisions(self, switch: str) -> decision_stream.DecisionReader:
        """A reader of `switch`'s sampled decisions; give it back with `close_decisions`. The switch's
        one sampler (its frame observer) is added with its first reader. Raises NotFound."""
        with self._lock:
            dp = self._get(switch).datapath
            entry = self._samplers.get(switch)
            new = entry is None or entry[0] is not dp
            if new:
                entry = self._samplers[switch] = (dp, decision_stream.DecisionSampler())
            sampler = entry[1]
            sampler.readers += 1
        if new:
            dp.call(lambda: dp.add_sampler(sampler.observe))
        reader = decision_stream.DecisionReader(sampler)
        reader.switch, reader.datapath = switch, dp
        reader.start(self._decision_totals(sampler, dp))
        return reader

    def _decision_totals(self, sampler: decision_stream.DecisionSampler, dp: Datapath) -> list[int]:
        """The switch's frames by kind from its counters, read at most twice a second for all of
        its readers (a read is a call on the datapath thread)."""
        now = time.monotonic()
        if sampler.totals is None or now - sampler.totals_at >= decision_stream.SUMMARY_S / 2:
            sampler.totals = decision_stream.totals(dp.port_counters().values())
            sampler.totals_at = now
        return sampler.totals

    def decision_summary(self, reader: decision_stream.DecisionReader) -> dict[str, Any] | None:
        """`reader`'s summary of every frame decided since its last one (from the switch's counters),
        or None when the switch's datapath is stopped (the stream is ending). Waits for the datapath
        thread: call it off the REST event loop."""
        try:
            counts = self._decision_totals(reader.sampler, reader.datapath)
        except (RuntimeError, TimeoutError):  # the datapath stopped (the switch deleted, vswitchd stopping)
            return None
        return reader.summary(counts)

    def read_decisions(self, reader: decision_stream.DecisionReader) -> tuple[list[dict[str, Any]], str | None]:
        """The decisions `reader` has not seen (as the stream's JSON objects), and why the stream ends
        (the switch deleted, renamed or its datapath replaced) or None. Never blocks (it takes no lock)."""
        shared: dict[Any, Any] = {}
        events = []
        for _seq, *sample in reader.take():
            e = _event(reader.switch, *sample, shared)
            events.append({"t": e.t, "in_port": e.in_port, "src": e.src, "dst": e.dst, "vlan": e.vlan,
                           "reason": e.reason, "kind": decision_stream.KINDS[decision_stream.kind_of(sample[4])],
                           "out_ports": e.out_ports,
                           "path": "python" if e.path == PYTHON_PATH else "kernel"})
        # no manager lock: this runs on the REST event loop, which must never wait for a switch being
        # made (a dict read is atomic; a change seen one poll late ends the stream one poll late)
        current = self._switches.get(reader.switch)
        if current is None:
            return events, f"switch {reader.switch!r} was deleted or renamed"
        if current.datapath is not reader.datapath:
            return events, f"switch {reader.switch!r} moved to another datapath: open it again"
        return events, None

    def close_decisions(self, reader: decision_stream.DecisionReader) -> None:
        """Give `reader` back; the last reader of a switch takes its sampler off the datapath."""
        sampler, dp = reader.sampler, reader.datapath
        with self._lock:
            sampler.readers -= 1
            last = sampler.readers == 0
            entry = self._samplers.get(reader.switch)
            if last and entry is not None and entry[1] is sampler:
                del self._samplers[reader.switch]
        if last:
            try:
                dp.call(lambda: dp.remove_sampler(sampler.observe))
            except RuntimeError:
                pass  # its datapath is stopped (the switch is gone): nothing observes any more

    def capture(self, switch: str, port: str, direction: str = "both", count: int = captures.COUNT_DEFAULT,
                seconds: float = captures.SECONDS_DEFAULT, max_bytes: int = captures.BYTES_DEFAULT,
                filter: str | None = None) -> captures.Capture:
        """Port `port`'s frames as pcapng chunks, each packet commented with the switch's decision (see
        control/capture.py); iterate the answer (from one thread) and `close` it when done early.

        On the kernel fast path a link port's frames are read whole from its link (ports/packet_tap.py)
        and paired with the program's decisions.

        Raises InvalidRequest (a parameter out of bounds or a filter that does not compile, named),
        NotFound (unknown switch or port), Conflict (the link cannot be read) — before any frame is
        observed."""
        request = captures.CaptureRequest.parse(direction, count, seconds, max_bytes, filter)
        with self._lock:
            sw = self._get(switch)
            if port not in sw.ports:
                raise NotFound(f"switch {switch!r} has no port {port!r}")
            dp, core, port_obj = sw.datapath, sw.core, sw.ports[port].port
        note, wire = None, None
        if isinstance(dp, KernelDatapath) and dp.program is not None and isinstance(port_obj, LinkPort):
            # the program's decision events carry a frame's first 128 bytes: the frames themselves are
            # read whole from the link, the events give their decisions (the frames of a port only
            # Python serves are Python's, whole, as on the Python datapath)
            try:
                wire = PacketTap(port_obj.ifname)
            except OSError as e:
                raise Conflict(f"cannot capture port {port!r}: link {port_obj.ifname}: {e.strerror}") from None
            note = f"kernel fast path: frames read from link {port_obj.ifname}, decisions from the program"

        def alive() -> bool:
            with self._lock:
                current = self._switches.get(switch)
            return current is not None and current.datapath is dp and port in current.ports

        return captures.Capture(switch, port, request, dp, alive, core.egress_edit, captures.SNAPLEN_FULL, note,
                                wire)

    def events(self, switch: str | None = None, since: int = 0, limit: int = EVENTS_LIMIT_DEFAULT,
               wait_s: float = 0.0) -> EventsPage:
        """The events after sequence `since` (of `switch`, or every switch), waiting up to `wait_s` for
        one; see `SwitchApi.events`. Raises InvalidRequest (bad argument, naming it), NotFound (a switch
        that neither exists nor has events left in the ring)."""
        check_events_query(since, limit, wait_s)
        if switch is not None:
            with self._lock:
                known = switch in self._switches
            if not known and not self.event_log.mentions(switch):
                raise NotFound(f"no switch named {switch!r}")
        return self.event_log.read(switch, since, limit, wait_s)

    def _step_observer(self, switch: str) -> hostnic.StepObserver:
        """A takeover's `on_step`: each step done (or undone) is an event of `switch`."""
        def observe(outcome: str, step: hostnic.Step) -> None:
            self.event_log.emit(switch, EventKind.TAKEOVER_STEP, reason=outcome, step=step.description, key=step.key)
        return observe

    # -- the host -------------------------------------------------------------------------------
    def list_nics(self) -> list[NicInfo]:
        """The links that could be the uplink of an External switch: not loopback, a TAP, a bridge (or
        enslaved to one), tc's ifb or a host vNIC; not held by any switch (control/ownership.py); not the
        peer of a veth another switch holds. With addresses and whether they carry a default route."""
        with self._lock:
            owners = self._owner_index()
        out = []
        with self._netlink() as nl:
            links = nl.links()
            held = {i.index for i in links if owners.owner((ownership.LINK, i.name)) is not None}
            for link in links:
                if (link.loopback or link.kind in _NOT_UPLINK_KINDS or link.master is not None
                        or link.name.startswith(ownership.VNIC_PREFIX) or link.index in held
                        or (link.kind == "veth" and link.peer_netns is None and link.peer in held)):
                    continue
                try:
                    addresses = [f"{a.address}/{a.prefixlen}" for a in nl.addresses(link.name)]
                    default = any(r.dst_len == 0 for r in nl.routes(link.name))
                except LookupError:  # gone while we looked
                    continue
                out.append(NicInfo(link.name, link.mac, link.up, link.kind or "device", addresses, default,
                                   link.mtu, nl.speed_mbps(link.name)))
        return out

    # -- configuration files ------------------------------------------------------------------
    def config_export(self) -> ConfigDocument:
        """Every switch's spec, the specs of the ports users added and its static entries (each with its VLAN)."""
        with self._lock:
            return config_file.document(
                (sw.spec, [a.spec for a in sw.ports.values() if a.spec is not None],
                 [StaticEntry(e.mac, e.port, e.vlan) for e in self.fdb_show(name) if e.static])
                for name, sw in self._switches.items())

    def config_apply(self, document: ConfigDocument, *, dry_run: bool = False, prune: bool = False) -> ConfigPlan:
        """`config_plan.apply` on this manager, under its lock: no other change lands between the plan,
        its steps and their undo. Raises what a failing step raised (after undoing the others)."""
        with self._lock:
            return config_plan.apply(self, document, dry_run=dry_run, prune=prune,
                                     port_socket_dir=self.port_socket_dir)

    # -- life cycle -----------------------------------------------------------------------------
    def restore(self) -> None:
        """Start-up: finish or undo every interrupted change, then recreate every stored switch and port.

        Problems are logged and collected in ``restore_errors``; one broken switch never keeps the
        others from coming back."""
        if self.store is None:
            return
        for intent in self.store.intents():
            try:
                self._recover(intent)
            except (VswitchError, OSError, hostnic.TakeoverError) as exc:
                self._restore_error(f"interrupted {intent.op} of {intent.switch!r} could not be finished: {exc}")
        stored = self.store.load()
        names = {spec.name for spec, _ in stored}
        for name, snap in self.store.list_snapshots().items():
            if name not in names:  # a takeover whose switch was never committed: give the NIC back
                try:
                    self._undo_switch_leftovers(name, snap)
                except (VswitchError, OSError, hostnic.TakeoverError) as exc:
                    self._restore_error(f"orphaned takeover of {snap.get('nic')!r} could not be given back: {exc}")
        for spec, ports in stored:
            deadline = self.store.confirm_deadline(spec.name)
            snap = self.store.get_snapshot(spec.name) if deadline is not None else None
            revert_to = SwitchSpec.parse(snap["revert_to"]) if snap and snap.get("revert_to") else None
            try:
                if deadline is not None and deadline <= time.time():
                    if revert_to is not None:  # a `switch set` to External: back to the connection before
                        spec, deadline = self._revert_stored(spec, revert_to, snap), None  # type: ignore[arg-type]
                    else:
                        log.warning("switch %s was not confirmed before its deadline: reverted", spec.name)
                        self.event_log.emit(spec.name, EventKind.SWITCH_REVERTED,
                                            reason="not confirmed before its deadline")
                        self._undo_switch_leftovers(spec.name, snap, spec)
                        self.store.delete_switch(spec.name)
                        continue
                self.create_switch(spec, persist=False, confirm_deadline=deadline)
                if deadline is not None and revert_to is not None:
                    self._switches[spec.name].revert_to = revert_to
                    now = self.store.get_snapshot(spec.name)
                    if now is not None and "revert_to" not in now:  # taken over afresh: remember it again
                        self.store.put_snapshot(spec.name, {**now, "revert_to": revert_to.to_dict()})
            except (VswitchError, OSError, hostnic.TakeoverError) as exc:
                self._restore_error(f"switch {spec.name!r} could not be restored: {exc}")
                continue
            for pspec in ports:
                try:
                    self.add_port(spec.name, pspec, persist=False)
                except (VswitchError, OSError) as exc:
                    if not self._attach_down_tap_port(spec.name, pspec, exc):
                        self._restore_error(f"port {pspec.name!r} of switch {spec.name!r} could not be restored: "
                                            f"{exc}")
            for mac, vlan, port in self.store.statics(spec.name):
                try:
                    self.fdb_add(spec.name, StaticEntry(mac, port, vlan), persist=False)
                except VswitchError as exc:
                    self._restore_error(f"static entry {mac} (VLAN {vlan}) of switch {spec.name!r} could not be "
                                        f"restored: {exc}")

    def _revert_stored(self, spec: SwitchSpec, revert_to: SwitchSpec, snap: dict[str, Any]) -> SwitchSpec:
        """Start-up: stored External `spec` (a `switch set`) passed its deadline unconfirmed; give its NIC
        back, keep a vNIC the old connection has too, and store (and return) the old connection."""
        assert self.store is not None
        back = _with_connection(spec, revert_to)
        log.warning("switch %s was not confirmed before its deadline: back to %s", spec.name, _describe(back))
        self.event_log.emit(spec.name, EventKind.SWITCH_REVERTED, reason=f"not confirmed before its deadline: back "
                            f"to {_describe(back)}")
        hostnic.Takeover.from_snapshot(snap, netlink=self._netlink).restore()
        with self.store.transaction():
            self.store.drop_snapshot(spec.name)
            self.store.save_switch(back)
        if spec.has_host_vnic and not back.has_host_vnic:
            with self._netlink() as nl:
                nl.delete_link(host_vnic_name(spec.name), missing_ok=True)
        return back

    def _restore_error(self, msg: str) -> None:
        log.error("%s", msg)
        self.restore_errors.append(msg)

    def _recover(self, intent: Intent) -> None:
        """Finish (delete, remove) or undo (create, add) one change a crash interrupted."""
        assert self.store is not None
        log.info("finishing an interrupted %s of %s%s", intent.op, intent.switch,
                 f"/{intent.port}" if intent.port else "")
        if intent.op == "create-switch":
            spec = SwitchSpec.parse(intent.data["spec"])
            self._undo_switch_leftovers(spec.name, self.store.get_snapshot(spec.name), spec)
            with self.store.transaction():
                self.store.delete_switch(spec.name)  # never committed; removes its snapshot too
                self.store.end_intent(intent.id)
        elif intent.op == "delete-switch":
            for spec, ports in self.store.load():
                if spec.name == intent.switch:
                    for pspec in ports:
                        _discard_port(self._make_port(pspec, spec.name))
                    self._undo_switch_leftovers(spec.name, self.store.get_snapshot(spec.name), spec)
            with self.store.transaction():
                self.store.delete_switch(intent.switch)
                self.store.end_intent(intent.id)
        elif intent.op == "set-switch":
            self._recover_set(intent)
        elif intent.op == "rename-switch":
            old, new = SwitchSpec.parse(intent.data["old"]), SwitchSpec.parse(intent.data["new"])
            vnic, new_vnic = intent.data["vnic"], intent.data["new_vnic"]
            with self._netlink() as nl:
                renamed = vnic != new_vnic and nl.link_exists(new_vnic) and not nl.link_exists(vnic)
            with self.store.transaction():
                if renamed:  # the one kernel step was done: finish
                    snap = self.store.get_snapshot(old.name)
                    self.store.rename_switch(old.name, new)
                    if snap is not None and snap.get("vnic"):
                        self.store.put_snapshot(new.name, {**snap, "vnic": new_vnic})
                self.store.end_intent(intent.id)
        elif intent.op in ("add-port", "remove-port"):
            pspec = PortSpec.parse(intent.data["spec"])
            _discard_port(self._make_port(pspec, intent.switch))
            with self.store.transaction():
                self.store.delete_port(intent.switch, pspec.name)
                self.store.end_intent(intent.id)
        else:
            raise InvalidRequest(f"unknown intent {intent.op!r} (written by a newer vswitch?)")

    def _recover_set(self, intent: Intent) -> None:
        """A connection change (`_connect`) a crash interrupted: finished when its last step (removing
        the vNIC, with whatever was on it) was done; else undone — a NIC taken by either connection is
        given back (the old one is taken over afresh when its switch is restored), a vNIC only the new
        connection has is removed."""
        assert self.store is not None
        old, new = SwitchSpec.parse(intent.data["old"]), SwitchSpec.parse(intent.data["new"])
        vnic = host_vnic_name(old.name)
        with self._netlink() as nl:
            vnic_gone = not nl.link_exists(vnic)
        if old.has_host_vnic and not new.has_host_vnic and vnic_gone:
            with self.store.transaction():
                self.store.save_switch(new, confirm_deadline=intent.data.get("deadline"))
                self.store.delete_port(old.name, HOST_PORT)
                if new.type != SwitchType.EXTERNAL:
                    self.store.delete_port(old.name, UPLINK_PORT)
                self.store.end_intent(intent.id)
            return
        snap = self.store.get_snapshot(old.name)
        if snap is not None:
            hostnic.Takeover.from_snapshot(snap, netlink=self._netlink).restore()
        if new.has_host_vnic and not old.has_host_vnic:
            with self._netlink() as nl:
                nl.delete_link(vnic, missing_ok=True)
        with self.store.transaction():
            self.store.drop_snapshot(old.name)
            self.store.end_intent(intent.id)

    def _undo_switch_leftovers(self, name: str, snap: dict[str, Any] | None, spec: SwitchSpec | None = None
                               ) -> None:
        """Give back a takeover from its snapshot (idempotent undos) and remove the switch's host vNIC."""
        assert self.store is not None
        if snap is not None:
            log.info("switch %s: giving back %s as the previous run left it", name, snap.get("nic"))
            hostnic.Takeover.from_snapshot(snap, netlink=self._netlink).restore()
            self.store.drop_snapshot(name)
        vnic = snap.get("vnic") if snap else None
        if spec is not None and spec.has_host_vnic:
            vnic = host_vnic_name(spec.name)
        if vnic:
            with self._netlink() as nl:
                nl.delete_link(vnic, missing_ok=True)

    def shutdown(self) -> None:
        """Stop every switch and give every NIC back; the stored configuration stays (and VM TAPs too)."""
        self._stop_tap_tracker()
        with self._lock:
            for name in list(self._switches):
                sw = self._switches.pop(name)
                try:
                    self._teardown(sw, delete=False)
                except Exception as exc:  # keep going: every other NIC must still be given back
                    log.error("switch %s: shutdown: %s", name, exc)
            self._linkwatch.close()
        self.event_log.close()

    # -- TAP ports: where their netdevs live, so a restart re-attaches them there -----------------
    _tap_tracker: threading.Thread | None = None
    _tap_tracker_stop: threading.Event | None = None

    def _track_tap_netns(self) -> None:
        """Start (once) the thread that notes, every TAP_NETNS_CHECK_S, where each TAP port's netdev is.

        Polled, not event-driven: a TAP moved between two other namespaces sends no event to ours,
        and the check is one ioctl per TAP (the namespace scan runs only when one moved).
        """
        with self._lock:
            if self._tap_tracker is not None:
                return
            stop = threading.Event()
            self._tap_tracker = threading.Thread(target=self._tap_tracker_loop, args=(stop,),
                                                 name="tap-netns", daemon=True)
            self._tap_tracker_stop = stop
            self._tap_tracker.start()

    def _tap_tracker_loop(self, stop: threading.Event) -> None:
        while not stop.wait(TAP_NETNS_CHECK_S):
            try:
                self.record_tap_netns()
            except Exception:  # keep watching: the next round may succeed
                log.exception("noting where TAP ports are")

    def _stop_tap_tracker(self) -> None:
        """Note where every TAP is one last time (a clean stop), then stop watching."""
        stop, thread = self._tap_tracker_stop, self._tap_tracker
        if stop is None or thread is None:
            return
        stop.set()
        thread.join(timeout=5)
        self.record_tap_netns()

    def record_tap_netns(self) -> None:
        """Note where each open TAP port's netdev is now; store it for the next start when it moved."""
        with self._lock:
            work = [(sw, [(name, att.port) for name, att in sw.ports.items()
                          if att.spec is not None and isinstance(att.port, TapPort)])
                    for sw in self._switches.values()]
        for sw, taps in work:
            if not taps:
                continue

            def grab(taps: list[tuple[str, Port]] = taps, dp: Datapath = sw.datapath) -> list[tuple[str, TapPort, int]]:
                # on the datapath thread: it alone opens and closes the ports' descriptors
                found = []
                for name, port in taps:
                    assert isinstance(port, TapPort)
                    try:
                        found.append((name, port, port.device_netns()))
                    except OSError as exc:
                        if exc.errno == errno.EBADFD:  # its netdev is gone (with its namespace): fail it
                            dp.port_failed(name, exc)
                        # else closed: keep what we knew
                return found
            try:
                found = sw.datapath.call(grab, timeout=2.0)
            except Exception as exc:
                log.debug("switch %s: cannot check its TAP ports now: %s", sw.spec.name, exc)
                continue
            for name, port, ns_fd in found:
                before = port.netns
                try:
                    moved = port.note_netns(ns_fd)
                finally:
                    os.close(ns_fd)
                if not moved:
                    continue
                log.info("switch %s: TAP %s of port %s is in %s", sw.spec.name, port.ifname, name,
                         port.describe()["netns"])
                if self.store is not None:
                    try:
                        self.store.put_port_runtime(sw.spec.name, name, {"netns": port.netns, "ifname": port.ifname})
                    except Exception:
                        port.netns = before  # not stored: the next round tries again
                        raise

    def _attach_down_tap_port(self, switch: str, spec: PortSpec, exc: BaseException) -> bool:
        """Restore: a TAP port whose TAP is gone (its namespace went, taking it along) comes back down,
        with the reason, rather than missing or as a new TAP in our namespace. False: not that case."""
        gone = exc.__cause__ if isinstance(exc.__cause__, TapGone) else exc
        if not isinstance(gone, TapGone):
            return False
        with self._lock:
            sw = self._get(switch)
            if spec.name in sw.ports:
                return False
            port = self._make_port(spec, switch)
            sw.datapath.attach_failed(spec.name, port, gone, policy_for(spec), role="vm")
            sw.ports[spec.name] = _Attached(spec, port, "vm")
        log.warning("switch %s: port %s is down: %s", switch, spec.name, gone.strerror)
        return True

    @staticmethod
    def _destroy_tap_ports(sw: _Switch) -> None:
        """A deleted switch's VM TAPs go with it (persistent, so closing them is not enough)."""
        for name, att in sw.ports.items():
            if att.spec is not None and att.spec.kind == PortKind.TAP:
                try:
                    att.port.destroy()  # type: ignore[attr-defined]
                except OSError as exc:
                    log.warning("switch %s: removing the TAP of port %s: %s", sw.spec.name, name, exc)

    # -- helpers --------------------------------------------------------------------------------
    def _get(self, name: str) -> _Switch:
        sw = self._switches.get(name)
        if sw is None:
            raise NotFound(f"no switch named {name!r}")
        return sw

    @staticmethod
    def _vm_port(sw: _Switch, switch: str, port: str, instead: str) -> _Attached:
        """The attachment of a port a user added; NotFound, or InvalidRequest (saying `instead`) for
        the switch's own uplink or host vNIC."""
        att = sw.ports.get(port)
        if att is None:
            raise NotFound(f"switch {switch!r} has no port {port!r}")
        if att.spec is None:
            raise InvalidRequest(f"port {port!r} is the switch's own {att.role}; {instead}")
        return att

    def _port_info(self, sw: _Switch, name: str) -> PortInfo:
        att = sw.ports[name]
        state = sw.datapath.port_state(name)
        policy = state["policy"]
        details = att.port.describe()
        if state["error"]:
            details["error"] = state["error"]
        if not state["up"]:
            # why, in words: a failed back-end's error, or a link that is down for now
            details["down_reason"] = (state["error"] or state["down_reason"]
                                      or ("link down" if state["link_down"] else "administratively down"))
        if att.role == "host-vnic" and sw.vnic is not None:
            # the host's addresses on its vNIC, for the picture's "management OS" box
            try:
                with self._netlink() as nl:
                    details["addresses"] = [f"{a.address}/{a.prefixlen}" for a in nl.addresses(sw.vnic.ifname)]
            except LookupError:
                pass
        if att.spec is not None:
            kind, target = str(att.spec.kind), att.spec.target
        else:
            kind = att.port.kind
            target = getattr(att.port, "ifname", "")
        return PortInfo(name, kind, target, policy.describe(), bool(state["up"]), att.role, details,
                        policy.admin_up, policy.learning, policy.flooding,
                        att.spec.mac if att.spec is not None else None,
                        bool(policy.guards & GUARD_DHCP), bool(policy.guards & GUARD_ROUTER),
                        policy.mac_spoofing, policy.mac_limit,
                        format_mac(policy.mac) if policy.mac is not None else None, state["path"],
                        port_mirroring=policy.port_mirroring.label,
                        acl_rules=len(att.spec.acls) if att.spec is not None else 0,
                        isolated=policy.isolated, pvlan=str(policy.pvlan) if policy.pvlan is not None else None,
                        primary=policy.primary_vlan or None, secondary=sorted(policy.secondary_vlans),
                        storm_limit=policy.storm_limit, max_bandwidth=policy.max_bandwidth,
                        bandwidth_burst=policy.bandwidth_burst,
                        max_bandwidth_in=att.spec.max_bandwidth_in if att.spec is not None else 0,
                        min_bandwidth_weight=att.spec.min_bandwidth_weight if att.spec is not None else 0)

    def _info(self, sw: _Switch) -> SwitchInfo:
        spec = sw.spec
        deadline = None
        if sw.confirm_deadline is not None:
            deadline = max(0.0, round(sw.confirm_deadline - time.time(), 1))
        return SwitchInfo(
            name=spec.name, type=str(spec.type), nic=spec.nic, allow_management_os=spec.allow_management_os,
            host_vnic=sw.vnic.ifname if sw.vnic else None,
            state="awaiting-confirm" if deadline is not None else "up",
            ports=[self._port_info(sw, n) for n in sw.ports], ageing_s=spec.ageing_s,
            max_entries=spec.max_entries, confirm_deadline_s=deadline, watches=len(sw.datapath.frame_observers),
            datapath=sw.datapath.label,
            watch_events_lost=sw.datapath.events_lost() if isinstance(sw.datapath, KernelDatapath) else 0,
            uplink_bandwidth=spec.uplink_bandwidth, fdb_evictions=sw.datapath.fdb_evictions())


def _connection(spec: SwitchSpec) -> tuple[SwitchType, str | None, bool]:
    """What `switch set` changes by taking a NIC over or giving it back: type, NIC, host vNIC."""
    return spec.type, spec.nic, spec.has_host_vnic


def _with_connection(spec: SwitchSpec, other: SwitchSpec) -> SwitchSpec:
    """`spec` with the connection of `other` (type, NIC, management OS), no confirm timeout."""
    return replace(spec, type=other.type, nic=other.nic, allow_management_os=other.allow_management_os,
                   confirm_timeout_s=None)


def _describe(spec: SwitchSpec) -> str:
    """A switch's connection in words: "internal", "external on eth1 with the management OS"."""
    if spec.type != SwitchType.EXTERNAL:
        return str(spec.type)
    return f"external on {spec.nic} {'with' if spec.allow_management_os else 'without'} the management OS"


def _adoptable_vnic(nl: NetlinkApi, name: str, restoring: bool) -> bool:
    """A host vNIC the kernel kept (a persistent TAP) that a switch may adopt: when restoring its own
    switch, with its addresses (that is the point); for a new switch only without an address of its
    own (kernel-owned IPv6 link-local aside), so nothing stale comes with it."""
    try:
        return nl.link(name).kind == "tun" and (restoring or not nl.addresses(name))
    except LookupError:
        return False


def _given(settings: PortSettings | SwitchSettings) -> dict[str, Any]:
    """What a `set` changed, as an event's detail (a trunk as ranges, not 4094 numbers)."""
    given = settings.to_dict()
    if given.get("trunk") is not None:
        given["trunk"] = format_vlan_list(given["trunk"])
    return given


def _discard_port(port: Port) -> None:
    """Release a port for good: a TAP it made (persistent or not) is removed, a socket port's stale file too,
    a link's fast-path filter that a killed vswitchd left (an interrupted add-port or delete-switch)."""
    remove_stale_fast_path(port)
    destroy = getattr(port, "destroy", None)
    if destroy is not None:
        destroy()
    else:
        port.close()


def _event(switch: str, t: float, pid: Any, f: bytes, length: int, reason: Any, vlan: int | None,
           out_ports: Any, path: str, shared: dict[Any, Any]) -> FrameEvent:
    """One `watch` event from what the datapath thread kept of a frame (its first bytes).

    `shared` holds the strings and lists already made for this watch, reused for equal values."""
    ethertype = int.from_bytes(f[12:14], "big") if len(f) >= 14 else None
    vid = None
    if ethertype in (0x8100, 0x88A8) and len(f) >= 18:
        vid = int.from_bytes(f[14:16], "big") & 0x0FFF
        ethertype = int.from_bytes(f[16:18], "big")
    src = shared.setdefault(f[6:12], format_mac(f[6:12])) if len(f) >= 12 else None
    dst = shared.setdefault(f[0:6], format_mac(f[0:6])) if len(f) >= 6 else None
    outs = shared.get(("out", *out_ports))
    if outs is None:
        outs = shared[("out", *out_ports)] = [str(p) for p in out_ports]
    return FrameEvent(t=t, switch=switch, in_port=shared.setdefault(("in", pid), str(pid)), src=src, dst=dst,
                      vid=vid, vlan=vlan or None, ethertype=ethertype, length=length, reason=reason.name,
                      out_ports=outs, path=path,
                      # lets `lab trace` match the switch's decisions to the pings it sent and captured
                      icmp=IcmpEcho.from_frame(f, 18 if vid is not None else 14) if ethertype == 0x0800 else None)



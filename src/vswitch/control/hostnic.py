"""External-switch host NIC takeover: the NIC's protocols move to the host vNIC, and come back.

Owns: the decision of *what* moves and *in which order* when an External switch binds a
physical NIC, the undo of every step, the snapshot of the NIC's original state (JSON, so a
restarted daemon can still give everything back). The confirm-or-revert deadline is the manager's
(it must stop the switch and forget it under one lock).

Hyper-V semantics. With *allow management OS* the host vNIC (a TAP ``vs-<switch>`` made by
someone else) takes the NIC's MAC and MTU, is brought up, and receives the NIC's IPv4/IPv6
addresses (flags, lifetimes, labels) and every route whose output link is the NIC (all tables,
both families; metric/scope/proto/gateway/src kept). The NIC keeps only the switch: no
addresses, ``disable_ipv6=1``, ``arp_ignore=8``, a clsact qdisc whose last ingress filter drops
everything (packet taps see frames before tc ingress, so the switch's Python uplink still does; the
kernel fast path's program runs before the drop), up and promiscuous. Without management OS the
addresses and routes are only removed (and remembered).

Order, and why:
  1. vNIC MAC, MTU, up        (IPv4 adds prefix routes only on an up link)
  2. addresses added to vNIC  (kernel order: IPv4 primaries first, so they stay primaries)
  3. routes withdrawn from NIC, dependants first (gateway routes before the link routes they use)
  4. routes installed on vNIC, link routes first  (two phases: the same route on two links with
     the same metric is EEXIST, and the reverse of 3 re-adds the NIC's routes in dependency order)
  5. addresses removed from NIC, secondaries first (deleting a primary deletes its secondaries)
  6. NIC sysctls, 7. tc ingress drop, 8. NIC promiscuous and up.
Every step registers its undo the moment it succeeds; a failure unwinds in reverse. Undos are
idempotent ("already so" is success; a vanished vNIC took its state with it), which is what lets
``restore()`` replay them all after a daemon crash from nothing but the snapshot.

Invariants: nothing changes before validation passes; after ``apply()`` either everything is
done or everything is undone (``TakeoverError`` tells which undos, if any, failed); kernel-owned
state (IPv6 link-local, SLAAC, ``proto kernel``/``ra`` routes) is never moved: each link makes its own.

Must not touch: frames, ports, the datapath, or pyroute2 (all kernel access goes through the
``NetlinkApi`` the takeover is given: ``netlink.Netlink`` unless a test passes an in-memory kernel).
The NIC's clsact qdisc may already hold the switch's fast-path filter (``own_filters``, attached
with the uplink before the takeover); the drop goes behind it, and the undo removes the qdisc with
both, so a give-back leaves no tc state of vswitch on the NIC.
Restore expects the switch to have stopped bridging NIC and vNIC: otherwise IPv6 DAD on the NIC
would hear the vNIC, which has the same MAC and addresses.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, replace
from socket import AF_INET6
from typing import Any

from vswitch.control.crashpoint import crashpoint
from vswitch.control.netlink import Address, LinkNotFound, Netlink, NetlinkApi, OpenNetlink, Route

__all__ = [
    "FailAt", "InjectedFailure", "Step", "StepObserver", "Takeover", "TakeoverError", "TakeoverRefused",
    "build_plan", "capture", "validate",
]

log = logging.getLogger(__name__)
SNAPSHOT_VERSION = 1
ARP_IGNORE_NO_LOCAL = "8"  # "do not reply for all local addresses"
IFA_F_NODAD = 0x02

FailAt = int | str | Callable[[int, "Step"], bool] | None
#: told of each step as it is "done" by `apply`, or "undone" by a rollback or `restore`
StepObserver = Callable[[str, "Step"], None]


class TakeoverRefused(ValueError):
    """Validation failed; nothing was changed. The message names the problem."""


class InjectedFailure(RuntimeError):
    """Raised by the test hook ``fail_at`` before the chosen step."""


class TakeoverError(RuntimeError):
    """A step failed (``step``, ``cause``) and everything done so far was undone.

    ``rollback_errors`` lists undos that failed too: if it is not empty the NIC may NOT be as it
    was, and the snapshot is the only record of the original state.
    """

    def __init__(self, step: Step | None, cause: BaseException,
                 rollback_errors: list[tuple[Step, BaseException]] | None = None) -> None:
        self.step = step
        self.cause = cause
        self.rollback_errors = list(rollback_errors or [])
        where = f"step {step.description!r}" if step else "restore"
        text = f"{where} failed: {cause}"
        if self.rollback_errors:
            text += f"; {len(self.rollback_errors)} undo(s) failed too, first: {self.rollback_errors[0][1]}"
        else:
            text += "; everything was rolled back"
        super().__init__(text)


@dataclass(frozen=True)
class Step:
    """One change and its undo. ``key`` is stable (for ``fail_at`` and logs); undo is idempotent."""

    key: str
    description: str
    do: Callable[[NetlinkApi], None]
    undo: Callable[[NetlinkApi], None]

    def __str__(self) -> str:
        return self.description


# -- reading the kernel ---------------------------------------------------------------------------

def _sysctl_paths(nic: str) -> dict[str, str]:
    return {"disable_ipv6": f"net/ipv6/conf/{nic}/disable_ipv6",
            "arp_ignore": f"net/ipv4/conf/{nic}/arp_ignore"}


def validate(nl: NetlinkApi, nic: str, vnic: str | None, allow_management_os: bool,
             own_filters: Collection[str] = ()) -> None:
    """Raise ``TakeoverRefused`` naming the problem; reads only. ``own_filters``: the names of the
    filters the switch itself may have put on the NIC's clsact ingress already (its fast path)."""
    if not nl.link_exists(nic):
        raise TakeoverRefused(f"NIC {nic!r} does not exist")
    info = nl.link(nic)
    if info.loopback:
        raise TakeoverRefused(f"NIC {nic!r} is the loopback; an External switch needs a physical NIC")
    if info.master is not None:
        what = "a port of a bridge" if info.slave_kind == "bridge" else f"enslaved ({info.slave_kind})"
        raise TakeoverRefused(f"NIC {nic!r} is already {what} (master ifindex {info.master}); "
                              "release it first")
    kind = nl.ingress_qdisc_kind(nic)
    if kind and not (kind == "clsact" and set(nl.ingress_filter_names(nic)) <= set(own_filters)):
        raise TakeoverRefused(f"NIC {nic!r} already has an ingress qdisc ({kind}); "
                              "vswitch would have to replace it and could not give it back")
    if allow_management_os:
        if not vnic:
            raise TakeoverRefused("allow management OS needs a host vNIC name")
        if vnic == nic:
            raise TakeoverRefused(f"host vNIC and NIC are the same link {nic!r}")
        if not nl.link_exists(vnic):
            raise TakeoverRefused(f"host vNIC {vnic!r} does not exist")


def capture(nl: NetlinkApi, nic: str, vnic: str | None, allow_management_os: bool) -> dict[str, Any]:
    """The JSON-serialisable original state that ``build_plan`` and ``restore`` work from."""
    info = nl.link(nic)
    vnic_link = None
    if allow_management_os and vnic:
        v = nl.link(vnic)
        vnic_link = {"mac": v.mac, "mtu": v.mtu, "up": v.up}
    sysctls = {path: nl.get_sysctl(path) for path in _sysctl_paths(nic).values() if nl.has_sysctl(path)}
    return {
        "version": SNAPSHOT_VERSION, "netns": nl.netns, "nic": nic,
        "vnic": vnic if allow_management_os else None,
        "allow_management_os": allow_management_os, "captured_at": time.time(),
        "nic_link": {"mac": info.mac, "mtu": info.mtu, "up": info.up, "promisc": info.promisc},
        "vnic_link": vnic_link,
        "addresses": [a.to_dict() for a in nl.addresses(nic)],
        "routes": [r.to_dict() for r in nl.routes(nic)],
        "sysctls": sysctls,
    }


# -- the plan: pure, from a snapshot --------------------------------------------------------------

def _tolerate_gone(fn: Callable[[NetlinkApi], None]) -> Callable[[NetlinkApi], None]:
    """An undo on the vNIC: if the vNIC is gone, its moved state went with it."""
    def undo(nl: NetlinkApi) -> None:
        try:
            fn(nl)
        except LinkNotFound:
            pass
    return undo


def _relabel(a: Address, nic: str, vnic: str) -> Address:
    """IPv4 labels start with the link's name (``eth1:0``); on the vNIC they become ``vs-ext0:0``."""
    if a.label and a.label != nic and a.label.startswith(nic):
        return replace(a, label=vnic + a.label[len(nic):])
    return replace(a, label=None)


def _vnic_steps(snap: dict[str, Any], addrs: list[Address]) -> list[Step]:
    nic, vnic, orig, target = snap["nic"], snap["vnic"], snap["vnic_link"], snap["nic_link"]
    steps = [Step("vnic-mac", f"set {vnic} MAC to {target['mac']} (the MAC of {nic})",
                  lambda nl: nl.set_mac(vnic, target["mac"]),
                  _tolerate_gone(lambda nl: nl.set_mac(vnic, orig["mac"])))]
    if orig["mtu"] != target["mtu"]:
        steps.append(Step("vnic-mtu", f"set {vnic} MTU to {target['mtu']} (the MTU of {nic})",
                          lambda nl: nl.set_mtu(vnic, target["mtu"]),
                          _tolerate_gone(lambda nl: nl.set_mtu(vnic, orig["mtu"]))))
    if not orig["up"]:
        steps.append(Step("vnic-up", f"bring {vnic} up", lambda nl: nl.set_up(vnic, True),
                          _tolerate_gone(lambda nl: nl.set_up(vnic, False))))
    for a in (_relabel(a, nic, vnic) for a in addrs):
        # IPv6 without DAD: the NIC already proved the address unique on this segment, and it stops
        # answering in this same takeover; DAD would only cut the host's IPv6 for a second.
        extra = IFA_F_NODAD if a.family == AF_INET6 else 0
        steps.append(Step(f"vnic-addr {a}", f"move {a} from {nic} to {vnic}: add it to {vnic}",
                          lambda nl, a=a, extra=extra: nl.add_address(vnic, a, extra_flags=extra),
                          _tolerate_gone(lambda nl, a=a: nl.del_address(vnic, a, missing_ok=True))))
    return steps


def _route_steps(snap: dict[str, Any], routes: list[Route]) -> tuple[list[Step], list[Step]]:
    nic, vnic = snap["nic"], snap["vnic"]
    # scope universe (0) routes may depend on scope link (253) routes for their gateway
    moving = f" (moving to {vnic})" if vnic else ""
    withdraw = [Step(f"nic-route {r}", f"withdraw route {r} from {nic}{moving}",
                     lambda nl, r=r: nl.del_route(nic, r),
                     lambda nl, r=r: nl.add_route(nic, r, exist_ok=True))
                for r in sorted(routes, key=lambda r: r.scope)]
    install = [Step(f"vnic-route {r}", f"move route {r} from {nic} to {vnic}: install it on {vnic}",
                    lambda nl, r=r: nl.add_route(vnic, r),
                    _tolerate_gone(lambda nl, r=r: nl.del_route(vnic, r, missing_ok=True)))
               for r in sorted(routes, key=lambda r: -r.scope)] if vnic else []
    return withdraw, install


def _nic_steps(snap: dict[str, Any], addrs: list[Address]) -> list[Step]:
    nic, link, captured_at = snap["nic"], snap["nic_link"], snap["captured_at"]

    def readd(nl: NetlinkApi, a: Address) -> None:
        aged = a.aged(time.time() - captured_at)  # finite lifetimes kept ticking meanwhile
        if aged is not None:
            nl.add_address(nic, aged, exist_ok=True)

    now_on = f" (now on {snap['vnic']})" if snap["vnic"] else ""
    steps = [Step(f"nic-addr {a}", f"remove {a} from {nic}{now_on}",
                  lambda nl, a=a: nl.del_address(nic, a), lambda nl, a=a: readd(nl, a))
             for a in reversed(addrs)]
    paths = _sysctl_paths(nic)
    wanted = {paths["disable_ipv6"]: ("1", "disable IPv6 on"), paths["arp_ignore"]: (ARP_IGNORE_NO_LOCAL,
                                                                                 "set arp_ignore=8 on")}
    for path, (value, verb) in wanted.items():
        if path in snap["sysctls"]:
            old = snap["sysctls"][path]
            steps.append(Step(f"nic-sysctl {path}", f"{verb} {nic} (sysctl {path}={value}, was {old})",
                              lambda nl, p=path, v=value: nl.set_sysctl(p, v),
                              lambda nl, p=path, o=old: nl.set_sysctl(p, o)))
    steps.append(Step("nic-ingress-drop", f"drop ingress on {nic} for the host stack (tc ingress drop)",
                      lambda nl: nl.add_ingress_drop(nic), lambda nl: nl.del_ingress(nic, missing_ok=True)))
    if not link["promisc"]:
        steps.append(Step("nic-promisc", f"set {nic} promiscuous for the switch's uplink",
                          lambda nl: nl.set_promisc(nic, True), lambda nl: nl.set_promisc(nic, False)))
    if not link["up"]:
        steps.append(Step("nic-up", f"bring {nic} up for the switch's uplink",
                          lambda nl: nl.set_up(nic, True), lambda nl: nl.set_up(nic, False)))
    return steps


def build_plan(snap: dict[str, Any]) -> list[Step]:
    """The ordered steps for snapshot ``snap`` (see the module docstring for the order). Pure."""
    if snap.get("version") != SNAPSHOT_VERSION:
        raise TakeoverRefused(f"snapshot version {snap.get('version')!r} is not {SNAPSHOT_VERSION}")
    addrs = [Address.from_dict(a) for a in snap["addresses"]]
    routes = [Route.from_dict(r) for r in snap["routes"]]
    withdraw, install = _route_steps(snap, routes)
    vnic = _vnic_steps(snap, addrs) if snap["vnic"] else []
    return vnic + withdraw + install + _nic_steps(snap, addrs)


# -- running it -----------------------------------------------------------------------------------

class Takeover:
    """Bind ``nic`` to an External switch, moving the host's protocols to ``vnic`` (or dropping them).

    ``fail_at`` (tests): a step index, a step key, or ``callable(index, step) -> bool``, checked
    before each step; a match raises ``InjectedFailure`` there. ``netlink`` opens the kernel
    (``netlink.Netlink``; tests pass an in-memory kernel). ``on_step`` (a `StepObserver`) hears of
    each step done and undone, after the fact; what it raises is not the takeover's concern.
    """

    def __init__(self, nic: str, vnic: str | None = None, *, allow_management_os: bool = True,
                 netns: str | None = None, fail_at: FailAt = None, netlink: OpenNetlink = Netlink,
                 on_step: StepObserver | None = None, own_filters: Collection[str] = ()) -> None:
        self.nic, self.vnic, self.netns = nic, vnic, netns
        self.own_filters = tuple(own_filters)
        self._netlink = netlink
        self.on_step = on_step
        self.allow_management_os = allow_management_os
        self.fail_at = fail_at
        self._snapshot: dict[str, Any] | None = None
        self._done: list[Step] = []
        self._lock = threading.RLock()

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any], *, netlink: OpenNetlink = Netlink) -> Takeover:
        """A takeover that may have been (partly) applied by an earlier process; ``restore()`` undoes it."""
        self = cls(snap["nic"], snap["vnic"], allow_management_os=snap["allow_management_os"],
                   netns=snap["netns"], netlink=netlink)
        self._snapshot = copy.deepcopy(snap)
        self._done = build_plan(self._snapshot)  # every undo is idempotent, so replaying all is safe
        return self

    @property
    def applied(self) -> bool:
        return bool(self._done)

    def snapshot(self) -> dict[str, Any]:
        """The NIC's original state (JSON-serialisable); captured now if not yet."""
        with self._lock:
            if self._snapshot is None:
                with self._netlink(self.netns) as nl:
                    validate(nl, self.nic, self.vnic, self.allow_management_os, self.own_filters)
                    self._snapshot = capture(nl, self.nic, self.vnic, self.allow_management_os)
            return copy.deepcopy(self._snapshot)

    def plan(self) -> list[Step]:
        """Validate and describe what ``apply()`` would do (``--dry-run``); changes nothing."""
        return build_plan(self.snapshot())

    def apply(self, snapshot: dict[str, Any] | None = None) -> None:
        """Run the plan. On any failure undo what was done and raise ``TakeoverError``.

        ``snapshot``: the one the caller stored (crash safety: the plan run is exactly the one a
        restarted daemon would undo); None captures the NIC afresh (a dry run's may be stale)."""
        with self._lock:
            if self._done:
                raise TakeoverRefused(f"NIC {self.nic!r} is already taken over; restore() first")
            with self._netlink(self.netns) as nl:
                validate(nl, self.nic, self.vnic, self.allow_management_os, self.own_filters)
                if snapshot is None:
                    snapshot = capture(nl, self.nic, self.vnic, self.allow_management_os)
                self._snapshot = copy.deepcopy(snapshot)
                steps = build_plan(self._snapshot)
                errors: list[tuple[Step, BaseException]] = []
                current: Step | None = None
                try:
                    with ExitStack() as undo:
                        for index, current in enumerate(steps):
                            self._maybe_inject(index, current)
                            current.do(nl)
                            undo.callback(self._undo_step, nl, current, errors)  # registered at once
                            self._tell("done", current)
                            crashpoint(f"takeover.step{index}")
                        undo.pop_all()  # success: the undos live on in self._done
                except Exception as exc:
                    raise TakeoverError(current, exc, errors) from exc
                self._done = steps

    def restore(self) -> None:
        """Give everything back, in reverse. Idempotent; raises ``TakeoverError`` if an undo failed."""
        with self._lock:
            if not self._done:
                return
            errors: list[tuple[Step, BaseException]] = []
            with self._netlink(self.netns) as nl:
                for index, step in enumerate(reversed(self._done)):
                    self._undo_step(nl, step, errors)
                    crashpoint(f"giveback.step{index}")
            if errors:  # keep self._done: a later restore() may finish the job
                raise TakeoverError(None, errors[0][1], errors)
            self._done = []

    def restore_again(self) -> None:
        """Replay ``restore()`` after one whose undo failed. The NIC's addresses that came back meanwhile
        are removed first: re-added out of order, a secondary would have become a primary. Raises
        ``TakeoverError`` as ``restore()``."""
        with self._lock:
            if not self._done or self._snapshot is None:
                return
            with self._netlink(self.netns) as nl:
                for a in (Address.from_dict(d) for d in self._snapshot["addresses"]):
                    nl.del_address(self.nic, a, missing_ok=True)
            self.restore()

    # -- helpers ----------------------------------------------------------------------------------

    def _maybe_inject(self, index: int, step: Step) -> None:
        hit = (self.fail_at(index, step) if callable(self.fail_at)
               else index == self.fail_at if isinstance(self.fail_at, int)
               else step.key == self.fail_at if isinstance(self.fail_at, str) else False)
        if hit:
            raise InjectedFailure(f"injected failure before step {index} ({step.key})")

    def _undo_step(self, nl: NetlinkApi, step: Step, errors: list[tuple[Step, BaseException]]) -> None:
        # one failed undo must not stop the others: the host's connectivity depends on all of them
        try:
            step.undo(nl)
        except Exception as exc:
            errors.append((step, exc))
        else:
            self._tell("undone", step)

    def _tell(self, outcome: str, step: Step) -> None:
        if self.on_step is not None:
            try:
                self.on_step(outcome, step)
            except Exception:  # an observer's failure must never stop or undo a takeover
                log.exception("takeover of %s: telling of step %s", self.nic, step.key)

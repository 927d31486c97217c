"""Attaching the fast path to links: a tc clsact qdisc and a direct-action bpf filter on a link's
ingress (or, for the host vNIC, its egress).

Owns: every netlink conversation of the kernel fast path (pyroute2), nothing else.
Invariants: our filter is recognised by its priority (`PRIO`) and name; `detach_ingress` removes
only that filter, and the clsact qdisc only when `attach_ingress` created it (it says so) and no
other filter is on it now (an External switch's takeover puts its drop filter on the uplink's
clsact after ours), so a link's own tc set-up (another program, a shaper) is left as it was. An
existing `ingress` qdisc (not clsact) takes our ingress filter as well (it has no egress hook).
Must not touch: BPF objects and maps (libbpf.py), the switch's layout.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute, NetlinkError, NetNS

PRIO = 0xBEEF & 0x7FFF      # tc filter priority of the fast path's filter (any fixed value)
_INGRESS_PARENT = 0xFFFFFFF2  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
_EGRESS_PARENT = 0xFFFFFFF3   # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
_CLSACT_HANDLE = 0xFFFF0000
_INGRESS_HOOK = 0xFFFFFFF1    # TC_H_INGRESS: where a clsact or an ingress qdisc hangs


@contextmanager
def _ipr(netns: str | None) -> Iterator[Any]:
    ipr = NetNS(netns) if netns is not None else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _hook_kind(ipr: Any, ifindex: int) -> str | None:
    """"clsact", "ingress" or None: the qdisc on the link's ingress hook."""
    for q in ipr.get_qdiscs(index=ifindex):
        if q["parent"] == _INGRESS_HOOK:
            return str(q.get_attr("TCA_KIND"))
    return None


def _filters(ipr: Any, ifindex: int, egress: bool) -> list[str]:
    """One name per filter on the hook: a bpf filter's program name, else the classifier's kind."""
    kind = _hook_kind(ipr, ifindex)
    if kind is None or (egress and kind != "clsact"):
        return []
    out = []
    for f in ipr.get_filters(index=ifindex, parent=_EGRESS_PARENT if egress else _INGRESS_PARENT):
        opts = f.get_attr("TCA_OPTIONS")
        if opts is None:  # a priority's head in the dump, not a filter
            continue
        out.append(opts.get_attr("TCA_BPF_NAME") or str(f.get_attr("TCA_KIND")))
    return out


def has_clsact(ifindex: int, *, netns: str | None = None) -> bool:
    """Whether the link has a clsact qdisc. Raises NetlinkError (ENODEV: no such link)."""
    with _ipr(netns) as ipr:
        return _hook_kind(ipr, ifindex) == "clsact"


def ingress_filters(ifindex: int, *, netns: str | None = None, egress: bool = False) -> list[str]:
    """Names of the filters on the link's ingress (egress: its clsact egress), a bpf filter's by its
    program's name; empty without clsact/ingress qdisc. Raises NetlinkError."""
    with _ipr(netns) as ipr:
        return _filters(ipr, ifindex, egress)


def attach_ingress(ifindex: int, prog_fd: int, *, name: str, netns: str | None = None,
                   egress: bool = False) -> bool:
    """Attach the program `prog_fd` to the link's tc ingress (`egress`: its egress) as a direct-action
    filter named `name`, creating the clsact qdisc if needed (an `ingress` qdisc there takes an
    ingress filter as well). Returns whether it created the qdisc (pass that to `detach_ingress`).

    A filter of ours already there (a vswitchd that died: its program kept forwarding) is replaced,
    never doubled: removed first, with its clsact qdisc when it was the only filter (that qdisc was
    ours). Raises NetlinkError (ENODEV: no such link; EOPNOTSUPP: egress on an `ingress` qdisc)."""
    remove_stale(ifindex, name, netns=netns, egress=egress)
    with _ipr(netns) as ipr:
        created = False
        kind = _hook_kind(ipr, ifindex)
        if kind is None:
            ipr.tc("add", "clsact", ifindex)
            created = True
        elif kind != "clsact" and egress:
            raise NetlinkError(errno.EOPNOTSUPP, f"link {ifindex} has an {kind} qdisc, which has no egress hook")
        try:
            ipr.tc("add-filter", "bpf", ifindex, fd=prog_fd, name=name,
                   parent=_EGRESS_PARENT if egress else _INGRESS_PARENT, prio=PRIO, classid=1, direct_action=True)
        except BaseException:
            if created:
                ipr.tc("del", "clsact", ifindex)
            raise
        return created


def remove_stale(ifindex: int, name: str, *, netns: str | None = None, egress: bool = False) -> bool:
    """Remove a filter named `name` that a vswitchd which died left on the link's ingress (`egress`:
    egress; its program still forwards there), with the clsact qdisc when it was the only filter
    (that qdisc was ours). Returns whether there was one. Raises NetlinkError (ENODEV: no such link)."""
    if name not in ingress_filters(ifindex, netns=netns, egress=egress):
        return False
    detach_ingress(ifindex, remove_qdisc=True, netns=netns, egress=egress)
    return True


def detach_ingress(ifindex: int, *, remove_qdisc: bool, netns: str | None = None, egress: bool = False) -> None:
    """Remove our filter from the link's ingress (`egress`: egress), and the clsact qdisc too when
    `remove_qdisc` and ours was its only filter. A link that is gone (ENODEV) or a filter already
    gone (ENOENT) is not an error: both mean detached. Raises NetlinkError otherwise."""
    with _ipr(netns) as ipr:
        try:
            if remove_qdisc and _hook_kind(ipr, ifindex) == "clsact" and \
                    len(_filters(ipr, ifindex, False)) + len(_filters(ipr, ifindex, True)) <= 1:
                ipr.tc("del", "clsact", ifindex)  # takes its filter with it
            else:
                ipr.tc("del-filter", "bpf", ifindex, parent=_EGRESS_PARENT if egress else _INGRESS_PARENT,
                       prio=PRIO)
        except NetlinkError as e:
            if e.code not in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                raise


def set_link_up(ifindex: int, *, netns: str | None = None) -> None:
    """Bring a link up (the upcall TAP: a TAP that is down neither takes redirected frames nor
    writes). Raises NetlinkError."""
    with _ipr(netns) as ipr:
        ipr.link("set", index=ifindex, state="up")


def delete_link(ifname: str, *, netns: str | None = None) -> bool:
    """Delete the link named `ifname` (a stale upcall TAP); False when there is none. Raises
    NetlinkError."""
    with _ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise
        return True

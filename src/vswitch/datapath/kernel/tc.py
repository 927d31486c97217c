"""Attaching the fast path to links: a tc clsact qdisc and a direct-action bpf filter on ingress.

Owns: every netlink conversation of the kernel fast path (pyroute2), nothing else.
Invariants: our filter is recognised by its priority (`PRIO`) and name; `detach_ingress` removes
only that filter, and the clsact qdisc only when `attach_ingress` created it (it says so), so a
link's own tc set-up (another program, a shaper) is left as it was.
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
_CLSACT_HANDLE = 0xFFFF0000


@contextmanager
def _ipr(netns: str | None) -> Iterator[Any]:
    ipr = NetNS(netns) if netns is not None else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def has_clsact(ifindex: int, *, netns: str | None = None) -> bool:
    """Whether the link has a clsact qdisc. Raises NetlinkError (ENODEV: no such link)."""
    with _ipr(netns) as ipr:
        return any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=ifindex))


def ingress_filters(ifindex: int, *, netns: str | None = None) -> list[str]:
    """Names of the bpf programs attached to the link's clsact ingress (empty without clsact).
    Raises NetlinkError."""
    with _ipr(netns) as ipr:
        if not any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=ifindex)):
            return []
        out = []
        for f in ipr.get_filters(index=ifindex, parent=_INGRESS_PARENT):
            opts = f.get_attr("TCA_OPTIONS")
            name = opts.get_attr("TCA_BPF_NAME") if opts is not None else None
            if name:
                out.append(name)
        return out


def attach_ingress(ifindex: int, prog_fd: int, *, name: str, netns: str | None = None) -> bool:
    """Attach the program `prog_fd` to the link's tc ingress (direct action) under `name`, creating
    the clsact qdisc if needed. Returns whether it created the qdisc (pass that to `detach_ingress`).

    A filter of ours already there (a vswitchd that died: its program kept forwarding) is replaced,
    never doubled: removed first, with its clsact qdisc when it was the only ingress filter (that
    qdisc was ours). Raises NetlinkError (ENODEV: no such link)."""
    remove_stale(ifindex, name, netns=netns)
    with _ipr(netns) as ipr:
        created = False
        try:
            ipr.tc("add", "clsact", ifindex)
            created = True
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        try:
            ipr.tc("add-filter", "bpf", ifindex, fd=prog_fd, name=name, parent=_INGRESS_PARENT, prio=PRIO,
                   classid=1, direct_action=True)
        except BaseException:
            if created:
                ipr.tc("del", "clsact", ifindex)
            raise
        return created


def remove_stale(ifindex: int, name: str, *, netns: str | None = None) -> bool:
    """Remove a filter named `name` that a vswitchd which died left on the link's ingress (its program
    still forwards there), with the clsact qdisc when it was the only ingress filter (that qdisc was
    ours). Returns whether there was one. Raises NetlinkError (ENODEV: no such link)."""
    stale = ingress_filters(ifindex, netns=netns)
    if name not in stale:
        return False
    detach_ingress(ifindex, remove_qdisc=stale == [name], netns=netns)
    return True


def detach_ingress(ifindex: int, *, remove_qdisc: bool, netns: str | None = None) -> None:
    """Remove our filter from the link's ingress, and the clsact qdisc when `remove_qdisc`. A link
    that is gone (ENODEV) or a filter already gone (ENOENT) is not an error: both mean detached.
    Raises NetlinkError otherwise."""
    with _ipr(netns) as ipr:
        try:
            if remove_qdisc:
                ipr.tc("del", "clsact", ifindex)  # takes its filters with it
            else:
                ipr.tc("del-filter", "bpf", ifindex, parent=_INGRESS_PARENT, prio=PRIO)
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

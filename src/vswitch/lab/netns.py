"""Kernel operations of the lab, in data: namespaces, veth cables, bridges, addresses, routes (pyroute2).

Owns every netlink conversation of `vswitch.lab` (the one pyroute2 user of this room) plus the
few per-namespace sysctls the lab sets; veth cables and sysctls go through control's
``Netlink.create_veth`` and ``write_sysctl`` (the one veth creator, the one way into a namespace).
Each function does one thing to one namespace and is idempotent where that makes undo safe
(`delete_link` and `remove` accept "already gone").

Invariants: nothing here runs in, or changes, the caller's own namespace except `veth` creation,
which puts both ends straight into their namespaces; processes are only ever signalled by PID.
Must not touch: switches (those belong to vswitchd), state files.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from pyroute2 import NetNS
from pyroute2 import netns as pr_netns

from vswitch.control.netlink import Netlink, write_sysctl
from vswitch.lab.signals import escalate

NETNS_DIR = "/run/netns"
RT_TABLE_MAIN = 254
#: a physical switch forgets a silent MAC after 300 s, like real ones (netlink takes centiseconds)
BRIDGE_AGEING_CS = 300 * 100


class NetnsError(Exception):
    """A kernel operation of the lab failed; the message names the namespace and link."""


def _opened(name: str) -> NetNS:
    """A netlink socket inside the existing namespace `name` (pyroute2 would create a misspelt one).
    Raises NetnsError when there is none."""
    try:
        return NetNS(name, flags=0)
    except FileNotFoundError:
        raise NetnsError(f"no network namespace {name!r}") from None


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def all_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def create(name: str) -> None:
    """Create namespace `name` with lo up; NetnsError if it already exists."""
    if exists(name):
        raise NetnsError(f"network namespace {name!r} already exists")
    pr_netns.create(name)
    with _opened(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def pids_in(name: str) -> list[int]:
    """PIDs of the processes whose network namespace is `name` (found through /proc/*/ns/net)."""
    try:
        ino = os.stat(os.path.join(NETNS_DIR, name)).st_ino
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                    pids.append(int(entry))
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


def remove(name: str, *, grace_s: float = 3.0) -> None:
    """Stop what still runs inside `name` (SIGTERM, then SIGKILL, by PID) and delete it. Silent if gone."""
    def running() -> list[int]:
        _reap(pids_in(name))
        return pids_in(name)
    escalate(running, grace_s, grace_s)
    if exists(name):
        try:
            pr_netns.remove(name)
        except OSError as e:
            raise NetnsError(f"cannot delete network namespace {name!r}: {e}") from None


def _reap(pids: list[int]) -> None:
    """Collect those of `pids` that are our own exited children (else they stay zombies in the namespace)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def sysctl(ns: str, values: dict[str, str]) -> None:
    """Set sysctls inside namespace `ns` (keys like ``net.ipv6.conf.all.disable_ipv6``; no dotted
    interface names in them). NetnsError names the key that failed."""
    for key, value in values.items():
        try:
            write_sysctl(key.replace(".", "/"), value, netns=ns)
        except OSError as e:
            raise NetnsError(f"sysctl {key}={value} in {ns} failed: {e}") from None


def _index(ns: NetNS, nsname: str, ifname: str) -> int:
    found = ns.link_lookup(ifname=ifname)
    if not found:
        raise NetnsError(f"no link {ifname!r} in namespace {nsname!r}")
    return found[0]


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth cable: end `if_a` in `ns_a`, end `if_b` in `ns_b` (both down)."""
    try:
        with Netlink(ns_a) as nl:
            nl.create_veth(if_a, if_b, peer_netns=ns_b)
    except (OSError, LookupError) as e:
        raise NetnsError(f"cannot create cable {ns_a}:{if_a} — {ns_b}:{if_b}: {e}") from None


def bridge(ns_name: str, ifname: str, *, ageing_cs: int = BRIDGE_AGEING_CS) -> None:
    """A Linux bridge without STP (a plain unmanaged switch), up."""
    with _opened(ns_name) as ns:
        ns.link("add", ifname=ifname, kind="bridge", br_stp_state=0, br_ageing_time=ageing_cs,
                br_forward_delay=0, br_mcast_snooping=0)
        ns.link("set", index=_index(ns, ns_name, ifname), state="up")


def enslave(ns_name: str, ifname: str, bridge_name: str) -> None:
    """Make `ifname` a port of `bridge_name` and bring it up."""
    with _opened(ns_name) as ns:
        ns.link("set", index=_index(ns, ns_name, ifname), master=_index(ns, ns_name, bridge_name), state="up")


def set_up(ns_name: str, ifname: str) -> None:
    with _opened(ns_name) as ns:
        ns.link("set", index=_index(ns, ns_name, ifname), state="up")


def add_address(ns_name: str, ifname: str, cidr: str) -> None:
    iface = ipaddress.ip_interface(cidr)
    with _opened(ns_name) as ns:
        ns.addr("add", index=_index(ns, ns_name, ifname), address=str(iface.ip), prefixlen=iface.network.prefixlen)


def add_default_route(ns_name: str, gateway: str) -> None:
    with _opened(ns_name) as ns:
        ns.route("add", dst="0.0.0.0/0", gateway=gateway)


def move_link(from_ns: str, ifname: str, to_ns: str, new_name: str | None = None) -> None:
    """Move `ifname` from one namespace to another, renaming it there (it must be down to rename)."""
    with _opened(from_ns) as ns:
        ns.link("set", index=_index(ns, from_ns, ifname), net_ns_fd=to_ns)
    if new_name and new_name != ifname:
        with _opened(to_ns) as ns:
            ns.link("set", index=_index(ns, to_ns, ifname), ifname=new_name)


def link_exists(ns_name: str, ifname: str) -> bool:
    if not exists(ns_name):
        return False
    with _opened(ns_name) as ns:
        return bool(ns.link_lookup(ifname=ifname))


def delete_link(ns_name: str, ifname: str) -> None:
    """Delete a link; silent when it (or its namespace) is already gone."""
    if not exists(ns_name):
        return
    with _opened(ns_name) as ns:
        found = ns.link_lookup(ifname=ifname)
        if found:
            ns.link("del", index=found[0])


def link_facts(ns_name: str) -> list[dict[str, Any]]:
    """Every link of a namespace but lo: name, mac, up, kind, master, addresses (CIDR), routes (text)."""
    with _opened(ns_name) as ns:
        links = ns.get_links()
        names = {lk["index"]: lk.get_attr("IFLA_IFNAME") for lk in links}
        addrs: dict[int, list[str]] = {}
        for a in ns.get_addr():
            addr = a.get_attr("IFA_ADDRESS")
            if a["family"] == socket.AF_INET6 and addr.lower().startswith("fe80"):
                continue
            addrs.setdefault(a["index"], []).append(f"{addr}/{a['prefixlen']}")
        routes: dict[int, list[str]] = {}
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in ns.get_routes(family=fam, table=RT_TABLE_MAIN):
                oif = r.get_attr("RTA_OIF")
                dst = r.get_attr("RTA_DST")
                dst = f"{dst}/{r['dst_len']}" if dst else "default"
                if fam == socket.AF_INET6 and dst.startswith(("fe80", "ff00", "multicast")):
                    continue
                gw = r.get_attr("RTA_GATEWAY")
                routes.setdefault(oif, []).append(f"{dst} via {gw}" if gw else dst)
    out = []
    for lk in links:
        name = lk.get_attr("IFLA_IFNAME")
        if name == "lo":
            continue
        info = lk.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        master = lk.get_attr("IFLA_MASTER")
        out.append({
            "name": name, "mac": lk.get_attr("IFLA_ADDRESS"),
            "up": bool(lk["flags"] & 1), "kind": kind or "",
            "master": names.get(master) if master else None,
            "addresses": addrs.get(lk["index"], []), "routes": routes.get(lk["index"], []),
        })
    return out

"""An in-memory kernel for the control plane, like Open vSwitch's netdev-dummy: no root, no I/O.

Owns: namespaces, each with links (name, ifindex, MAC, MTU, up, promiscuous, kind, master), their
addresses, routes, two sysctls per link and an ingress qdisc flag; the TAP devices a switch opens
(persistent or not, one holder at a time) and the AF_PACKET "sockets" of link ports, both as memory
ports. ``MemKernel`` is an ``OpenNetlink``: ``SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds)``
and ``Takeover(..., netlink=kernel)`` run their real rules against it.

It answers as the target kernel does through ``Netlink`` (tests/integration/test_memkernel_fidelity.py
runs one script of calls on both and compares every answer):
- a missing link is ``LinkNotFound`` (the real message); a missing namespace too;
- an address twice on one link is EEXIST; deleting a missing address is EADDRNOTAVAIL; deleting an
  IPv4 primary deletes its secondaries, and the last IPv4 address takes every IPv4 route of the
  link along; ``disable_ipv6=1`` and setting a link down wipe its IPv6 addresses; a link going
  down loses every route through it; addresses are listed IPv4 first, primaries before secondaries;
  a renamed link (up or not, as Linux 6.2+) keeps its index, addresses (IPv4 labels follow the name),
  routes and sysctls; a name taken is EEXIST;
- the next hop is checked first: an IPv4 gateway outside every on-link prefix of that (up) link is
  ENETUNREACH, an IPv4 route on a down link ENETDOWN, an IPv6 gateway outside the link's prefixes
  (link-local aside) EHOSTUNREACH, an IPv4 ``prefsrc`` that is no local address EINVAL; then a route
  whose (family, table, dst, metric, tos) exists on any link is EEXIST; deleting a missing one ESRCH;
- opening a TAP creates it when missing (carrier down), EBUSY when another descriptor holds it,
  EINVAL when the name is another kind of link; a link port on a missing link is ENODEV.
``after_crash()`` is what vswitchd's SIGKILL leaves: the same kernel with its descriptors closed.
Not modelled: kernel-owned addresses and routes (IPv6 link-local, SLAAC, ``proto kernel`` prefix
routes — ``addresses()``/``routes()`` leave them out anyway), DAD, multipath, neighbours, frames
between links (the ports are memory ports: the test is their far end).

Test hooks: ``fail_at(n, errno)`` makes the n-th state-changing call from now fail like the kernel
refusing it; ``calls`` counts those calls; ``hold(name)`` plays another process holding a TAP;
``state()`` is a deep, comparable picture of everything.
"""

from __future__ import annotations

import copy
import errno
import ipaddress
from dataclasses import dataclass, field, replace
from socket import AF_INET, AF_INET6
from typing import Any

from vswitch.control.netlink import (
    DROP_FILTER_NAME,
    IFA_F_SETTABLE,
    IFF_LOOPBACK,
    IFF_PROMISC,
    IFF_UP,
    INFINITY_LFT,
    RTNH_F_ONLINK,
    Address,
    LinkInfo,
    LinkNotFound,
    NetlinkFailure,
    Route,
)
from vswitch.ports import PORT_KINDS, MemoryPort, Port

IFA_F_SECONDARY = 0x01
IFA_F_PERMANENT = 0x80
RT_SCOPE_LINK = 253
SYSCTLS = ("net/ipv6/conf/{}/disable_ipv6", "net/ipv4/conf/{}/arp_ignore")


@dataclass
class _Link:
    index: int
    name: str
    mac: str
    mtu: int = 1500
    up: bool = False
    promisc: bool = False
    kind: str | None = None
    master: int | None = None
    slave_kind: str | None = None
    loopback: bool = False
    addresses: list[Address] = field(default_factory=list)
    ingress: str | None = None      # "ingress" / "clsact" when the link has one of those qdiscs
    persist: bool = False           # TAP: survives its last descriptor
    holder: object | None = None    # TAP: who holds its descriptor (a port, or another "process")
    speed_mbps: int | None = None   # what ethtool reports (None: nothing, as a virtual link)
    shaper: int | None = None       # the rate of a root tbf qdisc (port set --max-bandwidth-in)
    shares: dict[int, int] | None = None  # a root htb qdisc's classes (--min-bandwidth-weight)

    def info(self) -> LinkInfo:
        flags = (IFF_UP if self.up else 0) | (IFF_PROMISC if self.promisc else 0) | (
            IFF_LOOPBACK if self.loopback else 0)
        return LinkInfo(self.index, self.name, self.mac, flags, self.mtu, self.kind, self.master, self.slave_kind)


@dataclass
class _Namespace:
    name: str | None
    links: dict[str, _Link] = field(default_factory=dict)
    routes: list[tuple[int, Route]] = field(default_factory=list)   # (output ifindex, route)
    sysctls: dict[str, str] = field(default_factory=dict)
    next_index: int = 1


class MemKernel:
    """The whole in-memory kernel; call it like ``Netlink(netns)`` to get a handle on one namespace."""

    def __init__(self) -> None:
        self.namespaces: dict[str | None, _Namespace] = {}
        self.calls = 0
        self._fail: tuple[int, int] | None = None
        self.add_netns(None)
        self.add_link("lo", mac="00:00:00:00:00:00", mtu=65536, up=True, loopback=True)
        self.port_kinds: dict[str, type[Port]] = {
            **PORT_KINDS,
            "tap": type("MemTapPort", (MemTapPort,), {"kernel": self}),
            "link": type("MemLinkPort", (MemLinkPort,), {"kernel": self}),
        }

    def __call__(self, netns: str | None = None) -> MemNetlink:
        return MemNetlink(self, netns)

    # -- set-up for tests ---------------------------------------------------------------------
    def add_netns(self, name: str | None) -> None:
        self.namespaces.setdefault(name, _Namespace(name))

    def add_link(self, name: str, *, netns: str | None = None, kind: str | None = "veth", mac: str | None = None,
                 mtu: int = 1500, up: bool = False, loopback: bool = False, persist: bool = False) -> LinkInfo:
        ns = self._ns(netns)
        if name in ns.links:
            raise NetlinkFailure.refused(errno.EEXIST, f"add link {name}")
        index = ns.next_index
        ns.next_index += 1
        link = _Link(index, name, mac or f"02:00:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}", mtu, up,
                     kind=kind, loopback=loopback, persist=persist)
        ns.links[name] = link
        for path in SYSCTLS:
            ns.sysctls[path.format(name)] = "0"
        return link.info()

    def hold(self, name: str, netns: str | None = None, holder: object = "another process") -> None:
        """Another process opens the TAP ``name`` (its descriptor has one owner: EBUSY for us)."""
        self._ns(netns).links[name].holder = holder

    def fail_at(self, n: int, code: int = errno.EPERM) -> None:
        """The ``n``-th (0-based) state-changing call from now fails with ``code``; once."""
        self._fail = (self.calls + n, code)

    def after_crash(self) -> MemKernel:
        """What a reboot-less crash of vswitchd leaves: a copy of this kernel where every descriptor
        vswitchd held is closed (its non-persistent TAPs gone with them); other holders stay."""
        copy_ = MemKernel()
        copy_.namespaces = {}
        for name, ns in self.namespaces.items():
            links = {n: replace(li, addresses=list(li.addresses),
                                holder=li.holder if isinstance(li.holder, str) else None)
                     for n, li in ns.links.items() if li.persist or li.holder is None or isinstance(li.holder, str)}
            kept = {li.index for li in links.values()}
            copy_.namespaces[name] = _Namespace(name, links, [(i, r) for i, r in ns.routes if i in kept],
                                                dict(ns.sysctls), ns.next_index)
        return copy_

    def state(self) -> dict[str, Any]:
        """Everything, deep-copied and comparable (routes in a fixed order, as the kernel lists them)."""
        out = {}
        for name, ns in self.namespaces.items():
            links = {n: {k: v for k, v in vars(li).items() if k != "holder"} for n, li in ns.links.items()}
            out[name] = copy.deepcopy({"links": links, "sysctls": ns.sysctls,
                                       "routes": sorted((ns_link_name(ns, i), repr(r)) for i, r in ns.routes)})
        return out

    # -- internals, used by MemNetlink and the ports -------------------------------------------
    def _ns(self, netns: str | None) -> _Namespace:
        if netns not in self.namespaces:
            raise LinkNotFound.namespace(str(netns))
        return self.namespaces[netns]

    def _mutate(self, what: str) -> None:
        """Every state-changing call passes here first: counted, and failed when a test asked."""
        n = self.calls
        self.calls += 1
        if self._fail is not None and self._fail[0] == n:
            code = self._fail[1]
            self._fail = None
            raise NetlinkFailure.refused(code, what)

    def _remove_link(self, ns: _Namespace, link: _Link) -> None:
        del ns.links[link.name]
        ns.routes = [(i, r) for i, r in ns.routes if i != link.index]
        for path in SYSCTLS:
            ns.sysctls.pop(path.format(link.name), None)


def ns_link_name(ns: _Namespace, index: int) -> str:
    return next((li.name for li in ns.links.values() if li.index == index), f"if{index}")


def _net(a: Address) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"{a.local or a.address}/{a.prefixlen}", strict=False)


def _same(a: Address, b: Address) -> bool:
    return (a.family, a.local or a.address, a.prefixlen) == (b.family, b.local or b.address, b.prefixlen)


class MemNetlink:
    """One namespace of a ``MemKernel``, with the verbs of ``control.netlink.NetlinkApi``."""

    def __init__(self, kernel: MemKernel, netns: str | None = None) -> None:
        self.kernel = kernel
        self.netns = netns
        self._ns = kernel._ns(netns)  # LinkNotFound for a missing namespace, as Netlink(netns) raises

    def close(self) -> None:
        pass

    def __enter__(self) -> MemNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, name: str) -> _Link:
        link = self._ns.links.get(name)
        if link is None:
            raise LinkNotFound.link(name, self.netns)
        return link

    # -- links --------------------------------------------------------------------------------
    def links(self) -> list[LinkInfo]:
        return sorted((li.info() for li in self._ns.links.values()), key=lambda i: i.index)

    def link(self, name: str) -> LinkInfo:
        return self._get(name).info()

    def link_exists(self, name: str) -> bool:
        return name in self._ns.links

    def speed_mbps(self, name: str) -> int | None:
        link = self._ns.links.get(name)
        return None if link is None else link.speed_mbps

    def set_up(self, name: str, up: bool) -> None:
        link = self._get(name)
        self.kernel._mutate(f"set {name} {'up' if up else 'down'}")
        if link.up and not up:  # the kernel flushes a downed link's routes and IPv6 addresses
            self._ns.routes = [(i, r) for i, r in self._ns.routes if i != link.index]
            link.addresses = [a for a in link.addresses if a.family != AF_INET6]
        link.up = up

    def set_mac(self, name: str, mac: str) -> None:
        link = self._get(name)
        self.kernel._mutate(f"set {name} address {mac}")
        link.mac = mac

    def set_mtu(self, name: str, mtu: int) -> None:
        link = self._get(name)
        self.kernel._mutate(f"set {name} mtu {mtu}")
        link.mtu = mtu

    def set_promisc(self, name: str, on: bool) -> None:
        link = self._get(name)
        self.kernel._mutate(f"set {name} promisc {'on' if on else 'off'}")
        link.promisc = on

    def delete_link(self, name: str, *, missing_ok: bool = False) -> None:
        if missing_ok and not self.link_exists(name):
            return
        link = self._get(name)
        self.kernel._mutate(f"delete link {name}")
        self.kernel._remove_link(self._ns, link)

    def rename_link(self, name: str, new_name: str) -> None:
        link = self._get(name)
        what = f"rename {name} to {new_name}"
        self.kernel._mutate(what)
        if new_name in self._ns.links:
            raise NetlinkFailure.refused(errno.EEXIST, what)
        del self._ns.links[name]
        link.name = new_name
        self._ns.links[new_name] = link
        # IPv4 labels follow the name (eth1:0 becomes new:0); routes follow the index
        link.addresses = [replace(a, label=new_name + a.label[len(name):]) if a.label and a.label.startswith(name)
                          else a for a in link.addresses]
        for path in SYSCTLS:
            self._ns.sysctls[path.format(new_name)] = self._ns.sysctls.pop(path.format(name), "0")

    # -- addresses ----------------------------------------------------------------------------
    def addresses(self, name: str, *, include_kernel_owned: bool = False) -> list[Address]:
        # as the kernel dumps them: IPv4 first, primaries before secondaries, then IPv6
        return sorted(self._get(name).addresses, key=lambda a: (a.family != AF_INET, bool(a.flags & IFA_F_SECONDARY)))

    def add_address(self, name: str, addr: Address, *, extra_flags: int = 0, exist_ok: bool = False) -> None:
        link = self._get(name)
        what = f"add {addr} to {name}"
        self.kernel._mutate(what)
        if any(_same(a, addr) for a in link.addresses):
            if exist_ok:
                return
            raise NetlinkFailure.refused(errno.EEXIST, what)
        flags = (addr.flags & IFA_F_SETTABLE) | extra_flags
        if addr.valid_lft == INFINITY_LFT:
            flags |= IFA_F_PERMANENT
        kept: dict[str, Any] = {}
        if addr.family == AF_INET:
            if any(a.family == AF_INET and _net(a) == _net(addr) for a in link.addresses):
                flags |= IFA_F_SECONDARY
            kept = {"local": addr.local or addr.address, "broadcast": addr.broadcast,
                    "label": addr.label if addr.label and addr.label != name else name}
        else:
            kept = {"local": None, "broadcast": None, "label": None}
        link.addresses.append(replace(addr, flags=flags, scope=0, proto=0, **kept))

    def del_address(self, name: str, addr: Address, *, missing_ok: bool = False) -> None:
        link = self._get(name)
        what = f"delete {addr} from {name}"
        self.kernel._mutate(what)
        found = next((a for a in link.addresses if _same(a, addr)), None)
        if found is None:
            if missing_ok:
                return
            raise NetlinkFailure.refused(errno.EADDRNOTAVAIL, what)
        gone = [found]
        if found.family == AF_INET and not found.flags & IFA_F_SECONDARY:  # promote_secondaries=0
            gone += [a for a in link.addresses if a.family == AF_INET and a.flags & IFA_F_SECONDARY
                     and _net(a) == _net(found)]
        link.addresses = [a for a in link.addresses if not any(a is g for g in gone)]
        if found.family == AF_INET and not any(a.family == AF_INET for a in link.addresses):
            # a link without IPv4 addresses loses every IPv4 route through it (fib_disable_ip)
            self._ns.routes = [(i, r) for i, r in self._ns.routes if i != link.index or r.family != AF_INET]
        for g in gone:  # routes preferring an address no link has any more go with it
            if g.family == AF_INET and not self._is_local(g.local or g.address):
                self._ns.routes = [(i, r) for i, r in self._ns.routes if r.prefsrc != (g.local or g.address)]

    def _is_local(self, ip: str) -> bool:
        return any((a.local or a.address) == ip for li in self._ns.links.values() for a in li.addresses)

    # -- routes -------------------------------------------------------------------------------
    def routes(self, name: str) -> list[Route]:
        index = self._get(name).index
        return [r for i, r in self._ns.routes if i == index]  # in the order they came (the kernel: its own)

    def _on_link(self, link: _Link, route: Route) -> bool:
        """Whether ``route``'s gateway is reachable through ``link`` (an address prefix or a link route)."""
        gw = ipaddress.ip_address(route.gateway)  # type: ignore[arg-type]
        if route.flags & RTNH_F_ONLINK or (gw.version == 6 and gw.is_link_local):
            return True
        if route.family == AF_INET and not link.up:
            return False  # a down link has no prefix routes
        prefixes = [_net(a) for a in link.addresses if a.family == route.family]
        prefixes += [ipaddress.ip_network(f"{r.dst}/{r.dst_len}") for i, r in self._ns.routes
                     if i == link.index and r.family == route.family and r.gateway is None and r.dst_len
                     and r.scope == RT_SCOPE_LINK]
        return any(gw in p for p in prefixes)

    def add_route(self, name: str, route: Route, *, exist_ok: bool = False) -> None:
        link = self._get(name)
        what = f"add route {route} dev {name}"
        self.kernel._mutate(what)
        # the kernel checks the next hop before it looks for the same route
        if route.gateway is not None and not self._on_link(link, route):
            raise NetlinkFailure.refused(errno.ENETUNREACH if route.family == AF_INET else errno.EHOSTUNREACH, what)
        if route.family == AF_INET and not link.up:
            raise NetlinkFailure.refused(errno.ENETDOWN, what)
        if route.family == AF_INET and route.prefsrc and not self._is_local(route.prefsrc):
            raise NetlinkFailure.refused(errno.EINVAL, what)
        key = (route.family, route.table, route.dst, route.dst_len, route.priority, route.tos)
        if any((r.family, r.table, r.dst, r.dst_len, r.priority, r.tos) == key for _i, r in self._ns.routes):
            if exist_ok:  # as Netlink.add_route: any EEXIST, even the same route on another link
                return
            raise NetlinkFailure.refused(errno.EEXIST, what)  # on any link, as `ip route add`
        self._ns.routes.append((link.index, route))

    def del_route(self, name: str, route: Route, *, missing_ok: bool = False) -> None:
        link = self._get(name)
        what = f"delete route {route} dev {name}"
        self.kernel._mutate(what)
        if (link.index, route) not in self._ns.routes:
            if missing_ok:
                return
            raise NetlinkFailure.refused(errno.ESRCH, what)
        self._ns.routes.remove((link.index, route))

    # -- tc ingress drop ----------------------------------------------------------------------
    def ingress_qdisc_kind(self, name: str) -> str | None:
        return self._get(name).ingress

    def ingress_filter_names(self, name: str) -> list[str]:
        return [DROP_FILTER_NAME] if self._get(name).ingress else []  # no fast path here: only the drop

    def add_ingress_drop(self, name: str) -> None:
        link = self._get(name)
        what = f"add drop filter to {name}"
        self.kernel._mutate(what)
        if link.ingress is not None:
            raise NetlinkFailure.refused(errno.EEXIST, what)
        link.ingress = "clsact"

    def del_ingress(self, name: str, *, missing_ok: bool = False) -> None:
        link = self._get(name)
        what = f"delete ingress qdisc of {name}"
        self.kernel._mutate(what)
        if link.ingress is None:
            if missing_ok:
                return
            raise NetlinkFailure.refused(errno.EINVAL, what)
        link.ingress = None

    # -- the egress shaper --------------------------------------------------------------------
    def shaper_rate(self, name: str) -> int | None:
        return self._get(name).shaper

    def set_shaper(self, name: str, rate_bps: int) -> None:
        link = self._get(name)
        self.kernel._mutate(f"shape {name}")
        link.shaper = rate_bps or None

    def uplink_shares(self, name: str) -> dict[int, int] | None:
        return self._get(name).shares

    def set_uplink_shares(self, name: str, capacity_bps: int, shares: dict[int, int]) -> None:
        link = self._get(name)
        self.kernel._mutate(f"share {name}")
        link.shaper = None
        link.shares = ({**shares, 0xFFFF: max(capacity_bps - sum(shares.values()), capacity_bps // 100)}
                       if capacity_bps else None)

    # -- sysctls ------------------------------------------------------------------------------
    def get_sysctl(self, path: str) -> str:
        if path not in self._ns.sysctls:
            raise FileNotFoundError(errno.ENOENT, f"no such sysctl /proc/sys/{path}")
        return self._ns.sysctls[path]

    def set_sysctl(self, path: str, value: str) -> None:
        self.get_sysctl(path)
        self.kernel._mutate(f"sysctl {path}={value}")
        self._ns.sysctls[path] = value
        parts = path.split("/")
        if parts[:3] == ["net", "ipv6", "conf"] and parts[4] == "disable_ipv6" and value == "1":
            link = self._get(parts[3])
            link.addresses = [a for a in link.addresses if a.family != AF_INET6]
            self._ns.routes = [(i, r) for i, r in self._ns.routes if i != link.index or r.family != AF_INET6]

    def has_sysctl(self, path: str) -> bool:
        return path in self._ns.sysctls


class MemTapPort(MemoryPort):
    """A TAP port on a ``MemKernel``: open creates or attaches the TAP link, as TUNSETIFF does."""

    kind = "tap"
    kernel: MemKernel  # set by MemKernel.port_kinds

    def __init__(self, name: str, ifname: str, vnet: bool = True, *, persist: bool = False,
                 netns: Any = None, mac: str | None = None) -> None:
        super().__init__(name)
        self.ifname = ifname
        self.persist = persist
        self.netns = netns
        self.mac = mac

    def set_mac(self, mac: str) -> str | None:
        self.mac = mac
        link = self.kernel._ns(None).links.get(self.ifname) if self.fileno() >= 0 else None
        if link is None:
            return None
        before, link.mac = link.mac, mac
        return before

    def open(self) -> None:
        if self.fileno() >= 0:
            return
        ns = self.kernel._ns(None)
        link = ns.links.get(self.ifname)
        if link is None:
            self.kernel._mutate(f"create TAP {self.ifname}")
            self.kernel.add_link(self.ifname, kind="tun")
            link = ns.links[self.ifname]
        elif link.kind != "tun":
            raise OSError(errno.EINVAL, f"{self.ifname} exists and is not a TAP device, "
                                        "or the TAP was created with other flags")
        elif link.holder is not None and link.holder is not self:
            raise OSError(errno.EBUSY, f"TAP {self.ifname} is already held by another process "
                                       "(a TAP descriptor has one owner)")
        link.holder = self
        link.persist = link.persist or self.persist
        if self.mac is not None:
            link.mac = self.mac
        super().open()

    def close(self, remove: bool = False) -> None:
        if self.fileno() < 0:
            return
        super().close()
        ns = self.kernel._ns(None)
        link = ns.links.get(self.ifname)
        if link is not None and link.holder is self:
            link.holder = None
            if remove or not link.persist:
                self.kernel._remove_link(ns, link)

    def destroy(self) -> None:
        if self.fileno() < 0:
            link = self.kernel._ns(None).links.get(self.ifname)
            if link is None or link.kind != "tun":
                return
            self.open()
        self.close(remove=True)


class MemLinkPort(MemoryPort):
    """A link port (AF_PACKET on a kernel link) on a ``MemKernel``: the link must exist."""

    kind = "link"
    kernel: MemKernel

    def __init__(self, name: str, ifname: str) -> None:
        super().__init__(name)
        self.ifname = ifname

    def open(self) -> None:
        if self.ifname not in self.kernel._ns(None).links:
            raise OSError(errno.ENODEV, f"no link named {self.ifname!r}")
        super().open()


def record_datapaths(monkeypatch: Any) -> list[Any]:
    """Every datapath the manager makes from now on (this test only), so a test that abandons a
    "crashed" manager can stop what it left running: threads, epoll and wake-up descriptors."""
    from vswitch.control import manager as manager_module
    made: list[Any] = []
    real = manager_module.make_datapath

    def recording(*args: Any, **kwargs: Any) -> Any:
        dp = real(*args, **kwargs)
        made.append(dp)
        return dp
    monkeypatch.setattr(manager_module, "make_datapath", recording)
    return made

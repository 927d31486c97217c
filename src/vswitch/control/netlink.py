"""The one pyroute2 user of ``control/``: thin, typed verbs over rtnetlink, tc and net sysctls.

Owns: the netlink socket (``Netlink``, one per call site and thread, optionally inside a named
network namespace), the interface the rest of ``control`` programs against (``NetlinkApi``, and
``OpenNetlink`` for whatever opens one: ``Netlink`` itself, or an in-memory kernel in tests), the
value types the rest of ``control`` sees (``LinkInfo``, ``Address``, ``Route``), the few sysctls
under ``/proc/sys/net`` that control needs, and the tiny eBPF program behind the tc ingress drop.

Invariants:
- Nothing outside this module imports pyroute2 or sees a ``NetlinkError``: failures surface as
  ``LinkNotFound`` or ``NetlinkFailure`` (an ``OSError`` carrying the errno).
- A namespace is never created by accident: sockets and sysctl threads open existing ones only.
- Functions are verbs on one object; they decide nothing (which routes to move, in which order,
  and what to undo belongs to ``hostnic``).
- Undo-friendly: ``exist_ok`` / ``missing_ok`` let a caller replay an undo that already happened.

Must not touch: switch types, ports, frames, policy decisions.

Kernel facts behind choices here (measured on the target kernel, see DESIGN.md section 7):
``cls_matchall`` and ``act_gact`` are not built in, ``cls_bpf`` and the bpf() syscall are; so
"drop everything the host stack would see" is a clsact qdisc's ingress plus a direct-action cls_bpf
filter whose two-instruction program returns TC_ACT_SHOT, at the last priority: the switch's kernel
fast path shares that clsact and runs first (its undecided frames fall through to the drop). Packet
taps (AF_PACKET) run before tc ingress, so the switch's Python uplink still sees every frame.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from socket import AF_INET, AF_INET6
from typing import Any, Protocol, TypeVar

from pyroute2 import IPRoute
from pyroute2.ethtool import Ethtool
from pyroute2.ethtool.ioctl import NotSupportedError
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError

from vswitch.ports.netns import run_in

__all__ = [
    "Address", "LinkInfo", "LinkNotFound", "Netlink", "NetlinkApi", "NetlinkFailure", "OpenNetlink", "Route",
    "read_sysctl", "write_sysctl",
]

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_PROMISC = 0x100
INFINITY_LFT = 0xFFFFFFFF
RT_TABLE_LOCAL = 255
RTPROT_KERNEL = 2
RTPROT_RA = 9
IFAPROT_KERNEL_RA = 2  # SLAAC: the kernel makes these again from router advertisements
IFAPROT_KERNEL_LL = 3
IFA_F_TEMPORARY = 0x01
#: a dump the kernel marks interrupted (NLM_F_DUMP_INTR: the table changed meanwhile) is asked again this often
DUMP_ATTEMPTS = 5
# Address flags a caller may ask for; the rest (secondary, tentative, permanent...) the kernel owns.
IFA_F_SETTABLE = 0x02 | 0x10 | 0x100 | 0x200 | 0x400  # nodad homeaddress mngtmpaddr noprefixroute autojoin
RTNH_F_ONLINK = 0x4
TC_H_CLSACT_INGRESS = 0xFFFFFFF2  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
DROP_FILTER_NAME = "vswitch_drop"
#: the drop runs last on the NIC's ingress: the switch's fast-path program, if any, decides first and
#: hands on (TC_ACT_UNSPEC) only what it leaves undecided, which the drop keeps from the host stack
DROP_PRIO = 0xFFFF

T = TypeVar("T")


class LinkNotFound(LookupError):
    """No link of that name (in that namespace), or no such namespace."""

    @classmethod
    def link(cls, name: str, netns: str | None) -> LinkNotFound:
        where = f" in namespace {netns}" if netns else ""
        return cls(f"no link named {name!r}{where}")

    @classmethod
    def namespace(cls, netns: str) -> LinkNotFound:
        return cls(f"network namespace {netns!r} does not exist")


class NetlinkFailure(OSError):
    """The kernel refused a request; ``errno`` says why, the message says what was asked."""

    @classmethod
    def refused(cls, code: int, what: str) -> NetlinkFailure:
        return cls(code, f"{what}: {os.strerror(code)}")


@dataclass(frozen=True)
class LinkInfo:
    """What control needs to know about a link, read in one dump."""

    index: int
    name: str
    mac: str
    flags: int
    mtu: int
    kind: str | None
    master: int | None
    slave_kind: str | None
    #: IFLA_LINK: a veth's peer (an index in `peer_netns`, our namespace when None), a VLAN's parent
    peer: int | None = None
    peer_netns: int | None = None

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)


@dataclass(frozen=True)
class Address:
    """One interface address as the kernel reported it. JSON-friendly through ``to_dict``."""

    family: int
    address: str
    prefixlen: int
    flags: int = 0
    scope: int = 0
    local: str | None = None
    broadcast: str | None = None
    label: str | None = None
    valid_lft: int = INFINITY_LFT
    preferred_lft: int = INFINITY_LFT
    proto: int = 0

    def __post_init__(self) -> None:
        # plain int, not socket.AddressFamily: equal and identically printed after a JSON round trip
        object.__setattr__(self, "family", int(self.family))

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen}"

    @property
    def link_local(self) -> bool:
        return self.family == AF_INET6 and self.address.lower().startswith("fe80:")

    def aged(self, elapsed_s: float) -> Address | None:
        """This address with finite lifetimes reduced by ``elapsed_s``; None once it would have expired."""
        def age(lft: int) -> int:
            return lft if lft == INFINITY_LFT else max(int(lft - elapsed_s), 0)
        valid = age(self.valid_lft)
        if valid == 0:
            return None
        return replace(self, valid_lft=valid, preferred_lft=min(age(self.preferred_lft), valid))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Address:
        return cls(**data)


@dataclass(frozen=True)
class Route:
    """One route whose output link is known; ``oif`` is left out on purpose (links move)."""

    family: int
    dst: str | None
    dst_len: int
    table: int = 254
    gateway: str | None = None
    prefsrc: str | None = None
    priority: int | None = None
    scope: int = 0
    proto: int = 4
    type: int = 1
    tos: int = 0
    flags: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", int(self.family))  # see Address.__post_init__

    def __str__(self) -> str:
        if self.dst_len == 0:
            text = "default"
        else:
            text = f"{self.dst}/{self.dst_len}"
        if self.gateway:
            text += f" via {self.gateway}"
        if self.prefsrc:
            text += f" src {self.prefsrc}"
        if self.priority is not None:
            text += f" metric {self.priority}"
        if self.table != 254:
            text += f" table {self.table}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Route:
        return cls(**data)


def _in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` inside ``netns`` (None: here) on a throw-away thread (``ports.netns.run_in``), so
    no caller thread ever changes namespace: /proc/sys/net resolves against the calling *thread's*
    namespace. A missing namespace raises FileNotFoundError; none is ever created.
    """
    return fn() if netns is None else run_in(netns, fn)


def read_sysctl(path: str, netns: str | None = None) -> str:
    """Value of /proc/sys/<path> (e.g. ``net/ipv4/conf/eth1/arp_ignore``), stripped."""
    def read() -> str:
        with open(f"/proc/sys/{path}") as f:
            return f.read().strip()
    return _in_netns(netns, read)


def write_sysctl(path: str, value: str, netns: str | None = None) -> None:
    """Write /proc/sys/<path> inside ``netns``."""
    def write() -> None:
        with open(f"/proc/sys/{path}", "w") as f:
            f.write(f"{value}\n")
    _in_netns(netns, write)


def sysctl_exists(path: str, netns: str | None = None) -> bool:
    return _in_netns(netns, lambda: os.path.exists(f"/proc/sys/{path}"))


def _load_drop_program() -> int:
    """bpf(BPF_PROG_LOAD) of ``r0 = TC_ACT_SHOT; exit`` as a sched_cls program; returns its fd."""
    nr_bpf = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
    if nr_bpf is None:
        raise NetlinkFailure(errno.ENOSYS, f"bpf() syscall number unknown on {platform.machine()}")
    tc_act_shot = 2
    insns = struct.pack("<BBhi", 0xB7, 0, 0, tc_act_shot) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    bpf_prog_type_sched_cls, bpf_prog_load = 3, 5
    attr = struct.pack("<IIQQIIQII16s", bpf_prog_type_sched_cls, 2, ctypes.addressof(insn_buf),
                       ctypes.addressof(license_buf), 0, 0, 0, 0, 0, b"vs_drop")
    attr_buf = ctypes.create_string_buffer(attr, 128)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(nr_bpf, bpf_prog_load, attr_buf, 128)
    if fd < 0:
        err = ctypes.get_errno()
        raise NetlinkFailure(err, f"loading the tc drop program: {os.strerror(err)}")
    return int(fd)


def _link_info(msg: Any) -> LinkInfo:
    return LinkInfo(
        index=msg["index"], name=msg.get("IFLA_IFNAME"), mac=msg.get("IFLA_ADDRESS") or "",
        flags=msg["flags"], mtu=msg.get("IFLA_MTU"),
        kind=msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")),
        master=msg.get("IFLA_MASTER"),
        slave_kind=msg.get(("IFLA_LINKINFO", "IFLA_INFO_SLAVE_KIND")),
        peer=msg.get("IFLA_LINK"), peer_netns=msg.get("IFLA_LINK_NETNSID"),
    )


class Netlink:
    """An rtnetlink socket, optionally inside network namespace ``netns``. Use as a context manager.

    One instance per thread: the synchronous pyroute2 socket runs its own event loop.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        try:
            # flags=0: open an existing namespace only (pyroute2's default would create it)
            self._ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
        except FileNotFoundError as exc:
            raise LinkNotFound.namespace(netns) from exc  # type: ignore[arg-type]

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        for attempt in range(DUMP_ATTEMPTS):
            try:
                return fn(*args, **kwargs)
            except NetlinkDumpInterrupted as exc:
                # the table changed while the kernel dumped it (links come and go on a busy host):
                # a dump is a read, so dump again
                if attempt == DUMP_ATTEMPTS - 1:
                    raise NetlinkFailure(errno.EAGAIN, f"{what}: the kernel's table kept changing while it "
                                         f"was listed ({DUMP_ATTEMPTS} tries)") from exc
            except NetlinkError as exc:
                raise NetlinkFailure.refused(exc.code, what) from exc
        raise AssertionError("unreachable")

    # -- links --------------------------------------------------------------------------------

    def links(self) -> list[LinkInfo]:
        """Every link of this namespace, by ifindex."""
        return sorted((_link_info(m) for m in self._call("list links", self._ipr.get_links)),
                      key=lambda info: info.index)

    def link(self, name: str) -> LinkInfo:
        """The link called ``name``; ``LinkNotFound`` when there is none."""
        found = self._ipr.link_lookup(ifname=name)
        if not found:
            raise LinkNotFound.link(name, self.netns)
        try:
            return _link_info(self._ipr.get_links(found[0])[0])
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:  # deleted between the lookup and the get
                raise LinkNotFound.link(name, self.netns) from exc
            raise NetlinkFailure.refused(exc.code, f"get link {name}") from exc

    def link_exists(self, name: str) -> bool:
        return bool(self._ipr.link_lookup(ifname=name))

    def speed_mbps(self, name: str) -> int | None:
        """The link's speed in Mb/s as its driver reports it (ethtool); None when it reports none
        (down, a virtual NIC without one, no such link)."""
        def read() -> int | None:
            ethtool = Ethtool()
            try:
                speed = ethtool.get_link_mode(name).speed
            except (NotSupportedError, OSError, NetlinkError):
                return None
            finally:
                ethtool.close()
            return speed if isinstance(speed, int) and 0 < speed < 0xFFFFFFFF else None
        return _in_netns(self.netns, read)

    def is_loopback(self, name: str) -> bool:
        return self.link(name).loopback

    def set_up(self, name: str, up: bool) -> None:
        self._call(f"set {name} {'up' if up else 'down'}", self._ipr.link, "set",
                   index=self.link(name).index, state="up" if up else "down")

    def set_mac(self, name: str, mac: str) -> None:
        self._call(f"set {name} address {mac}", self._ipr.link, "set", index=self.link(name).index,
                   address=mac)

    def set_mtu(self, name: str, mtu: int) -> None:
        self._call(f"set {name} mtu {mtu}", self._ipr.link, "set", index=self.link(name).index, mtu=mtu)

    def set_promisc(self, name: str, on: bool) -> None:
        """Set or clear the IFF_PROMISC flag (packet sockets keep their own promiscuity count)."""
        self._call(f"set {name} promisc {'on' if on else 'off'}", self._ipr.link, "set",
                   index=self.link(name).index, flags=IFF_PROMISC if on else 0, change=IFF_PROMISC)

    def create_veth(self, name: str, peer: str, *, peer_netns: str | None = None) -> None:
        """A veth pair, both ends down: ``name`` in this namespace, ``peer`` here too or, born there,
        in the (existing) namespace ``peer_netns``. The one veth creator of the project.

        Raises NetlinkFailure (e.g. EEXIST for a name taken, ENOENT-like for a missing namespace).
        """
        where = {"ifname": peer, "net_ns_fd": peer_netns} if peer_netns else {"ifname": peer}
        self._call(f"add veth {name}/{peer}" + (f" (peer in {peer_netns})" if peer_netns else ""),
                   self._ipr.link, "add", ifname=name, kind="veth", peer=where)

    def create_tap(self, name: str) -> None:
        """A persistent TAP nobody has opened yet (carrier down until a process attaches)."""
        self._call(f"add tap {name}", self._ipr.link, "add", ifname=name, kind="tuntap", mode="tap")

    def delete_link(self, name: str, *, missing_ok: bool = False) -> None:
        if missing_ok and not self.link_exists(name):
            return
        self._call(f"delete link {name}", self._ipr.link, "del", index=self.link(name).index)

    def rename_link(self, name: str, new_name: str) -> None:
        """Rename link ``name``; it keeps its index, addresses (IPv4 labels follow the name) and routes.

        Linux 6.2 and later rename an up link in place; older kernels refuse it (EBUSY) unless it is down.
        Raises LinkNotFound, NetlinkFailure (EEXIST when ``new_name`` is taken, EBUSY)."""
        self._call(f"rename {name} to {new_name}", self._ipr.link, "set", index=self.link(name).index,
                   ifname=new_name)

    def move_to_netns(self, name: str, netns: str) -> None:
        """Move link ``name`` into the (existing) namespace ``netns``."""
        self._call(f"move {name} to netns {netns}", self._ipr.link, "set", index=self.link(name).index,
                   net_ns_fd=netns)

    # -- addresses ----------------------------------------------------------------------------

    def addresses(self, name: str, *, include_kernel_owned: bool = False) -> list[Address]:
        """IPv4+IPv6 addresses of ``name`` in kernel order (IPv4 primaries before their secondaries).

        By default leaves out what the kernel owns per link and makes again by itself: IPv6
        link-local, SLAAC and temporary (privacy) addresses.
        """
        out = []
        for msg in self._call(f"list addresses of {name}", self._ipr.addr, "dump",
                              index=self.link(name).index):
            cache = msg.get("IFA_CACHEINFO") or {}
            addr = Address(
                family=msg["family"], address=msg.get("IFA_ADDRESS"), prefixlen=msg["prefixlen"],
                flags=msg.get("IFA_FLAGS") or msg["flags"], scope=msg["scope"],
                local=msg.get("IFA_LOCAL"), broadcast=msg.get("IFA_BROADCAST"), label=msg.get("IFA_LABEL"),
                valid_lft=cache.get("ifa_valid", INFINITY_LFT),
                preferred_lft=cache.get("ifa_preferred", INFINITY_LFT), proto=msg.get("IFA_PROTO") or 0,
            )
            kernel_owned = (addr.link_local or addr.proto in (IFAPROT_KERNEL_RA, IFAPROT_KERNEL_LL)
                            or (addr.family == AF_INET6 and addr.flags & IFA_F_TEMPORARY))
            if include_kernel_owned or not kernel_owned:
                out.append(addr)
        return out

    def add_address(self, name: str, addr: Address, *, extra_flags: int = 0, exist_ok: bool = False) -> None:
        """Add ``addr`` to ``name`` with its settable flags, lifetimes, broadcast and label."""
        kwargs: dict[str, Any] = {
            "index": self.link(name).index, "family": addr.family, "address": addr.address,
            "prefixlen": addr.prefixlen, "flags": (addr.flags & IFA_F_SETTABLE) | extra_flags,
        }
        if addr.family == AF_INET:
            kwargs["local"] = addr.local or addr.address
            if addr.broadcast:
                kwargs["broadcast"] = addr.broadcast
            if addr.label and addr.label != name:
                kwargs["label"] = addr.label
        if addr.valid_lft != INFINITY_LFT:
            kwargs["valid_lft"] = addr.valid_lft
            kwargs["preferred_lft"] = addr.preferred_lft
        try:
            self._call(f"add {addr} to {name}", self._ipr.addr, "add", **kwargs)
        except NetlinkFailure as exc:
            if not (exist_ok and exc.errno == errno.EEXIST):
                raise

    def del_address(self, name: str, addr: Address, *, missing_ok: bool = False) -> None:
        try:
            self._call(f"delete {addr} from {name}", self._ipr.addr, "del", index=self.link(name).index,
                       family=addr.family, address=addr.address, prefixlen=addr.prefixlen,
                       **({"local": addr.local or addr.address} if addr.family == AF_INET else {}))
        except NetlinkFailure as exc:
            if not (missing_ok and exc.errno in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH)):
                raise

    # -- routes -------------------------------------------------------------------------------

    def routes(self, name: str) -> list[Route]:
        """Routes whose output link is ``name``, in every table and both families.

        Leaves out what the kernel re-creates by itself: ``proto kernel`` (prefix routes of
        addresses, fe80::/64), ``proto ra`` (router advertisements) and the local table
        (local/broadcast/multicast). Multipath routes have no single output link and are not listed.
        """
        index = self.link(name).index
        out = []
        for family in (AF_INET, AF_INET6):
            for msg in self._call(f"list routes of {name}", self._ipr.route, "dump", family=family):
                table = msg.get("RTA_TABLE") or msg["table"]
                if (msg.get("RTA_OIF") != index or table == RT_TABLE_LOCAL
                        or msg["proto"] in (RTPROT_KERNEL, RTPROT_RA)):
                    continue
                out.append(Route(
                    family=family, dst=msg.get("RTA_DST"), dst_len=msg["dst_len"], table=table,
                    gateway=msg.get("RTA_GATEWAY"), prefsrc=msg.get("RTA_PREFSRC"),
                    priority=msg.get("RTA_PRIORITY"), scope=msg["scope"], proto=msg["proto"],
                    type=msg["type"], tos=msg["tos"], flags=msg["flags"] & RTNH_F_ONLINK,
                ))
        return out

    def _route_kwargs(self, name: str, route: Route) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "family": route.family, "oif": self.link(name).index, "table": route.table,
            "scope": route.scope, "proto": route.proto, "type": route.type, "tos": route.tos,
        }
        if route.dst_len:
            kwargs["dst"] = f"{route.dst}/{route.dst_len}"
        for key in ("gateway", "prefsrc", "priority"):
            if getattr(route, key) is not None:
                kwargs[key] = getattr(route, key)
        if route.flags:
            kwargs["flags"] = route.flags
        return kwargs

    def add_route(self, name: str, route: Route, *, exist_ok: bool = False) -> None:
        """Install ``route`` with output link ``name`` (exclusive create, like ``ip route add``)."""
        try:
            self._call(f"add route {route} dev {name}", self._ipr.route, "add",
                       **self._route_kwargs(name, route))
        except NetlinkFailure as exc:
            if not (exist_ok and exc.errno == errno.EEXIST):
                raise

    def del_route(self, name: str, route: Route, *, missing_ok: bool = False) -> None:
        try:
            self._call(f"delete route {route} dev {name}", self._ipr.route, "del",
                       **self._route_kwargs(name, route))
        except NetlinkFailure as exc:
            if not (missing_ok and exc.errno in (errno.ESRCH, errno.ENOENT)):
                raise

    # -- tc ingress drop ----------------------------------------------------------------------

    def ingress_qdisc_kind(self, name: str) -> str | None:
        """``"ingress"`` or ``"clsact"`` when ``name`` has one of those qdiscs, else None."""
        for msg in self._call(f"list qdiscs of {name}", self._ipr.get_qdiscs, self.link(name).index):
            if msg["parent"] == 0xFFFFFFF1:  # TC_H_INGRESS: where ingress and clsact hang
                return msg.get("TCA_KIND")
        return None

    def ingress_filter_names(self, name: str) -> list[str]:
        """The filters on ``name``'s ingress (a bpf filter by its program's name), empty without an
        ingress or clsact qdisc."""
        from vswitch.datapath.kernel import tc  # the one reader of a link's tc filters
        return self._call(f"list ingress filters of {name}", tc.ingress_filters, self.link(name).index,
                          netns=self.netns)

    def add_ingress_drop(self, name: str) -> None:
        """A clsact qdisc (the one the switch's fast path made on ``name``, or a new one) + a
        match-everything filter that drops, last (``DROP_PRIO``): the host stack sees nothing from
        ``name``. EEXIST when the drop is there already."""
        index = self.link(name).index
        created = self.ingress_qdisc_kind(name) != "clsact"
        if created:
            self._call(f"add clsact qdisc to {name}", self._ipr.tc, "add", "clsact", index)
        try:
            fd = _load_drop_program()
            try:  # the kernel keeps its own reference to the program; our fd can go
                self._call(f"add drop filter to {name}", self._ipr.tc, "add-filter", "bpf", index, ":1",
                           fd=fd, name=DROP_FILTER_NAME, parent=TC_H_CLSACT_INGRESS, prio=DROP_PRIO,
                           direct_action=True)
            finally:
                os.close(fd)
        except BaseException:
            if created:
                self.del_ingress(name, missing_ok=True)  # no half-made ingress left behind
            raise

    def del_ingress(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete the clsact qdisc of ``name`` (an ``ingress`` one, as vswitch made before the fast
        path) and every filter on it, the fast path's too."""
        kind = self.ingress_qdisc_kind(name) or "clsact"
        try:
            self._call(f"delete {kind} qdisc of {name}", self._ipr.tc, "del", kind, self.link(name).index)
        except NetlinkFailure as exc:
            if not (missing_ok and exc.errno in (errno.ENOENT, errno.EINVAL)):
                raise

    # -- the egress shaper of a link port (port set --max-bandwidth-in) -----------------------

    def shaper_rate(self, name: str) -> int | None:
        """The rate (bits per second) of ``name``'s root ``tbf`` qdisc, or None when it has none."""
        for msg in self._call(f"list qdiscs of {name}", self._ipr.get_qdiscs, self.link(name).index):
            if msg["parent"] == 0xFFFFFFFF and msg.get("TCA_KIND") == "tbf":  # TC_H_ROOT
                parms = msg.get_nested("TCA_OPTIONS", "TCA_TBF_PARMS") or {}
                rate64 = msg.get_nested("TCA_OPTIONS", "TCA_TBF_RATE64")
                return int(rate64 if rate64 else parms.get("rate", 0)) * 8
        return None

    def set_shaper(self, name: str, rate_bps: int) -> None:
        """Shape what leaves ``name`` to ``rate_bps`` bits per second: a root ``tbf`` qdisc (replacing
        the root qdisc), its bucket 10 ms of the rate and at least 64 KiB + a frame (a GSO segment
        fits whole), 100 ms of queue; 0 removes it (the link's default qdisc again)."""
        index = self.link(name).index
        if rate_bps == 0:
            if self.shaper_rate(name) is not None:
                try:
                    self._call(f"delete the shaper of {name}", self._ipr.tc, "del", index=index, parent=0xFFFFFFFF)
                except NetlinkFailure as exc:
                    if exc.errno not in (errno.ENOENT, errno.EINVAL):
                        raise
            return
        burst = max(rate_bps // 8 // 100, 65536 + 1600)
        self._call(f"shape {name} to {rate_bps} bit/s", self._ipr.tc, "replace", "tbf", index, 0x10000,
                   rate=rate_bps // 8, burst=burst, latency=100_000)

    def uplink_shares(self, name: str) -> dict[int, int] | None:
        """The classes (minor → guaranteed bits per second) of ``name``'s root htb qdisc made by
        `set_uplink_shares` (1:1, the whole, left out), or None when it has no htb root."""
        index = self.link(name).index
        if not any(q["parent"] == 0xFFFFFFFF and q.get("TCA_KIND") == "htb"
                   for q in self._call(f"list qdiscs of {name}", self._ipr.get_qdiscs, index)):
            return None
        out = {}
        for c in self._call(f"list classes of {name}", self._ipr.get_classes, index):
            if c["handle"] & 0xFFFF != 1:
                parms = c.get_nested("TCA_OPTIONS", "TCA_HTB_PARMS") or {}
                rate64 = c.get_nested("TCA_OPTIONS", "TCA_HTB_RATE64")
                out[c["handle"] & 0xFFFF] = int(rate64 if rate64 else parms.get("rate", 0)) * 8
        return out

    def set_uplink_shares(self, name: str, capacity_bps: int, shares: dict[int, int]) -> None:
        """Share what leaves ``name`` (an External switch's uplink) by weight: a root htb qdisc
        ``1:`` of `capacity_bps`, class ``1:minor`` guaranteed ``shares[minor]`` bits per second and
        allowed all of it, the rest (what no weighted port sends: the host, unweighted ports) in the
        default class ``1:ffff``. A frame picks its class by ``skb->priority`` = ``1:minor`` (htb's own
        rule, no filter). Rebuilt whole each time; ``capacity_bps`` 0 removes it."""
        index = self.link(name).index
        if self.uplink_shares(name) is not None or self.shaper_rate(name) is not None:
            self._call(f"delete the root qdisc of {name}", self._ipr.tc, "del", index=index, parent=0xFFFFFFFF)
        if not capacity_bps:
            return
        whole = capacity_bps // 8
        burst = max(whole // 100, 65536 + 1600)  # 10 ms, and a GSO segment whole
        self._call(f"share {name}'s {capacity_bps} bit/s by weight", self._ipr.tc, "add", "htb", index, 0x10000,
                   default=0xFFFF)
        try:
            self._call(f"add the whole of {name}", self._ipr.tc, "add-class", "htb", index, 0x10001,
                       parent=0x10000, rate=whole, ceil=whole, burst=burst, cburst=burst)
            rest = max(capacity_bps - sum(shares.values()), capacity_bps // 100)
            for minor, rate in [*shares.items(), (0xFFFF, rest)]:
                self._call(f"add class 1:{minor:x} to {name}", self._ipr.tc, "add-class", "htb", index,
                           0x10000 | minor, parent=0x10001, rate=max(rate // 8, 1), ceil=whole, burst=burst,
                           cburst=burst)
        except BaseException:
            self._call(f"delete the root qdisc of {name}", self._ipr.tc, "del", index=index, parent=0xFFFFFFFF)
            raise

    # -- sysctls, in this socket's namespace --------------------------------------------------

    def get_sysctl(self, path: str) -> str:
        return read_sysctl(path, self.netns)

    def set_sysctl(self, path: str, value: str) -> None:
        write_sysctl(path, value, self.netns)

    def has_sysctl(self, path: str) -> bool:
        return sysctl_exists(path, self.netns)


class NetlinkApi(Protocol):
    """The kernel verbs the control plane (manager, takeover) uses, on one namespace.

    ``Netlink`` is the real one; tests pass an in-memory kernel of the same shape. Errors are the
    real one's: ``LinkNotFound`` for a missing link, ``NetlinkFailure`` (with the kernel's errno)
    for a refused request; ``missing_ok`` / ``exist_ok`` turn "already so" into success.
    """

    netns: str | None

    def close(self) -> None: ...
    def __enter__(self) -> NetlinkApi: ...
    def __exit__(self, *exc: object) -> None: ...

    def links(self) -> list[LinkInfo]: ...
    def link(self, name: str) -> LinkInfo: ...
    def link_exists(self, name: str) -> bool: ...
    def speed_mbps(self, name: str) -> int | None: ...
    def set_up(self, name: str, up: bool) -> None: ...
    def set_mac(self, name: str, mac: str) -> None: ...
    def set_mtu(self, name: str, mtu: int) -> None: ...
    def set_promisc(self, name: str, on: bool) -> None: ...
    def delete_link(self, name: str, *, missing_ok: bool = False) -> None: ...
    def rename_link(self, name: str, new_name: str) -> None: ...

    def addresses(self, name: str, *, include_kernel_owned: bool = False) -> list[Address]: ...
    def add_address(self, name: str, addr: Address, *, extra_flags: int = 0, exist_ok: bool = False) -> None: ...
    def del_address(self, name: str, addr: Address, *, missing_ok: bool = False) -> None: ...

    def routes(self, name: str) -> list[Route]: ...
    def add_route(self, name: str, route: Route, *, exist_ok: bool = False) -> None: ...
    def del_route(self, name: str, route: Route, *, missing_ok: bool = False) -> None: ...

    def ingress_qdisc_kind(self, name: str) -> str | None: ...
    def ingress_filter_names(self, name: str) -> list[str]: ...
    def add_ingress_drop(self, name: str) -> None: ...
    def del_ingress(self, name: str, *, missing_ok: bool = False) -> None: ...

    def shaper_rate(self, name: str) -> int | None: ...
    def set_shaper(self, name: str, rate_bps: int) -> None: ...
    def uplink_shares(self, name: str) -> dict[int, int] | None: ...
    def set_uplink_shares(self, name: str, capacity_bps: int, shares: dict[int, int]) -> None: ...

    def get_sysctl(self, path: str) -> str: ...
    def set_sysctl(self, path: str, value: str) -> None: ...
    def has_sysctl(self, path: str) -> bool: ...


class OpenNetlink(Protocol):
    """What opens a ``NetlinkApi`` on namespace ``netns`` (None: our own); ``Netlink`` is one.

    Raises ``LinkNotFound`` when the namespace does not exist. Called once per use, because a
    real socket belongs to one thread."""

    def __call__(self, netns: str | None = None) -> NetlinkApi: ...

"""tests/unit/memkernel.py answers as the kernel does: the same calls on both, the same outcomes.

The non-root manager tests (tests/unit/test_manager_kernel.py, test_hostnic_plan.py) are only as
good as the in-memory kernel's answers. This feeds one script of ``NetlinkApi`` calls — the ones
the takeover makes and the mistakes it must never make — to ``Netlink`` in a fresh namespace (two
veths) and to a ``MemKernel`` with the same two links, and compares, call by call, the outcome
(success, or the exception and errno) and the addresses and routes the links are left with.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from socket import AF_INET, AF_INET6
from typing import Any

import pytest

from vswitch.control.netlink import Address, LinkNotFound, Netlink, NetlinkApi, NetlinkFailure, Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from memkernel import MemKernel  # noqa: E402

pytestmark = pytest.mark.root

NODAD = 0x02
A1 = Address(AF_INET, "192.0.2.10", 24, broadcast="192.0.2.255")
A2 = Address(AF_INET, "192.0.2.11", 24, broadcast="192.0.2.255", label="va:0")
A_B = Address(AF_INET, "192.0.2.20", 24)
A6 = Address(AF_INET6, "2001:db8::10", 64)
A6_B = Address(AF_INET6, "2001:db8::20", 64)
R_LINK = Route(AF_INET, "198.51.100.0", 24, scope=253, proto=3)
R_VIA_LINK = Route(AF_INET, "203.0.113.0", 24, gateway="198.51.100.1")
R_DEFAULT = Route(AF_INET, None, 0, gateway="192.0.2.1", priority=100, proto=3)
R_SRC = Route(AF_INET, "10.1.0.0", 16, gateway="192.0.2.1", prefsrc="192.0.2.10")
R_BAD_SRC = Route(AF_INET, "10.2.0.0", 16, gateway="192.0.2.1", prefsrc="192.0.2.99")
R_TABLE = Route(AF_INET, None, 0, table=100, gateway="192.0.2.1")
R_V6 = Route(AF_INET6, None, 0, gateway="2001:db8::1", priority=1024, proto=3)
R_V6_FAR = Route(AF_INET6, "2001:db8:7::", 48, gateway="2001:db8:5::1", priority=1024)

Call = Callable[[NetlinkApi], object]
SCRIPT: list[tuple[str, Call]] = [
    ("add A1", lambda nl: nl.add_address("va", A1)),
    ("add A1 again", lambda nl: nl.add_address("va", A1)),
    ("add A1 again, exist_ok", lambda nl: nl.add_address("va", A1, exist_ok=True)),
    ("add A2, a secondary", lambda nl: nl.add_address("va", A2)),
    ("add A6", lambda nl: nl.add_address("va", A6, extra_flags=NODAD)),
    ("route via an off-link gateway", lambda nl: nl.add_route("va", R_VIA_LINK)),
    ("link route", lambda nl: nl.add_route("va", R_LINK)),
    ("route via the link route", lambda nl: nl.add_route("va", R_VIA_LINK)),
    ("default route", lambda nl: nl.add_route("va", R_DEFAULT)),
    ("route with prefsrc", lambda nl: nl.add_route("va", R_SRC)),
    ("route with a foreign prefsrc", lambda nl: nl.add_route("va", R_BAD_SRC)),
    ("route in table 100", lambda nl: nl.add_route("va", R_TABLE)),
    ("IPv6 default", lambda nl: nl.add_route("va", R_V6)),
    ("IPv6 off-link gateway", lambda nl: nl.add_route("va", R_V6_FAR)),
    ("same default on vb, no address there", lambda nl: nl.add_route("vb", R_DEFAULT)),
    ("address on vb", lambda nl: nl.add_address("vb", A_B)),
    ("same default on vb", lambda nl: nl.add_route("vb", R_DEFAULT)),
    ("same default on vb, exist_ok", lambda nl: nl.add_route("vb", R_DEFAULT, exist_ok=True)),
    ("IPv6 address on vb", lambda nl: nl.add_address("vb", A6_B, extra_flags=NODAD)),
    ("same IPv6 default on vb", lambda nl: nl.add_route("vb", R_V6)),
    ("delete a missing address", lambda nl: nl.del_address("va", Address(AF_INET, "192.0.2.99", 24))),
    ("delete a missing IPv6 address", lambda nl: nl.del_address("va", Address(AF_INET6, "2001:db8::99", 64))),
    ("delete a missing address, missing_ok",
     lambda nl: nl.del_address("va", Address(AF_INET, "192.0.2.99", 24), missing_ok=True)),
    ("delete a missing route", lambda nl: nl.del_route("vb", R_TABLE)),
    ("delete a missing route, missing_ok", lambda nl: nl.del_route("vb", R_TABLE, missing_ok=True)),
    ("delete the default route", lambda nl: nl.del_route("va", R_DEFAULT)),
    ("delete the primary: its secondary goes too, and routes preferring it",
     lambda nl: nl.del_address("va", A1)),
    ("disable IPv6 on vb", lambda nl: nl.set_sysctl("net/ipv6/conf/vb/disable_ipv6", "1")),
    ("enable IPv6 on vb", lambda nl: nl.set_sysctl("net/ipv6/conf/vb/disable_ipv6", "0")),
    ("add A1 back", lambda nl: nl.add_address("va", A1)),
    ("add A6 back", lambda nl: nl.add_address("va", A6, extra_flags=NODAD)),
    ("default route back", lambda nl: nl.add_route("va", R_DEFAULT, exist_ok=True)),
    ("va down", lambda nl: nl.set_up("va", False)),
    ("link route on a down link", lambda nl: nl.add_route("va", R_LINK)),
    ("gateway route on a down link", lambda nl: nl.add_route("va", R_TABLE)),
    ("va up", lambda nl: nl.set_up("va", True)),
    ("default route after up", lambda nl: nl.add_route("va", R_DEFAULT)),
    ("ingress drop", lambda nl: nl.add_ingress_drop("va")),
    ("ingress drop again", lambda nl: nl.add_ingress_drop("va")),
    ("ingress qdisc kind", lambda nl: nl.ingress_qdisc_kind("va")),
    ("delete the ingress", lambda nl: nl.del_ingress("va")),
    ("delete a missing ingress", lambda nl: nl.del_ingress("va")),
    ("delete a missing ingress, missing_ok", lambda nl: nl.del_ingress("va", missing_ok=True)),
    ("no ingress qdisc", lambda nl: nl.ingress_qdisc_kind("va")),
    ("a missing link", lambda nl: nl.link("nope")),
    ("addresses of a missing link", lambda nl: nl.addresses("nope")),
    ("delete a missing link, missing_ok", lambda nl: nl.delete_link("nope", missing_ok=True)),
    ("links", lambda nl: [(i.name, i.kind, i.up) for i in nl.links() if i.name in ("va", "vb")]),
    ("promiscuous", lambda nl: nl.set_promisc("va", True)),
    ("MTU", lambda nl: nl.set_mtu("va", 1400)),
    ("MAC", lambda nl: nl.set_mac("va", "02:00:00:00:01:01")),
    ("what the link says", lambda nl: (lambda i: (i.mac, i.mtu, i.up, i.promisc))(nl.link("va"))),
    ("add A2 back, a labelled secondary", lambda nl: nl.add_address("va", A2)),
    ("rename onto a taken name", lambda nl: nl.rename_link("va", "vb")),
    ("rename a missing link", lambda nl: nl.rename_link("nope", "vc")),
    ("rename an up link and back: addresses, labels, routes, up and sysctls stay",
     lambda nl: (nl.rename_link("va", "vc"), [(str(a), a.label) for a in nl.addresses("vc")],
                 sorted(str(r) for r in nl.routes("vc")), nl.link("vc").up,
                 nl.get_sysctl("net/ipv6/conf/vc/disable_ipv6"), nl.link_exists("va"),
                 nl.rename_link("vc", "va"))[1:6]),
]


def _outcome(fn: Callable[[], object]) -> Any:
    try:
        value = fn()
    except LinkNotFound as exc:
        return ("LinkNotFound", str(exc))
    except NetlinkFailure as exc:
        return ("NetlinkFailure", exc.errno)
    return ("ok", value)


def _links_state(nl: NetlinkApi) -> Any:
    def addr(a: Address) -> tuple[Any, ...]:
        return (str(a), a.flags & 0x01, a.label)  # IFA_F_SECONDARY; the rest (tentative...) is the kernel's
    return {name: ([addr(a) for a in nl.addresses(name)], sorted(str(r) for r in nl.routes(name)))
            for name in ("va", "vb")}


def _run(nl: NetlinkApi) -> list[tuple[str, Any, Any]]:
    return [(what, _outcome(lambda fn=fn: fn(nl)), _links_state(nl)) for what, fn in SCRIPT]  # type: ignore[misc]


def test_memkernel_answers_as_the_kernel_does(netns: Callable[[str], str]) -> None:
    ns = netns("memk")
    with Netlink(ns) as nl:
        for name, peer in (("va", "pa"), ("vb", "pb")):
            nl.create_veth(name, peer)
            nl.set_up(peer, True)
            nl.set_up(name, True)
        real = _run(nl)
    kernel = MemKernel()
    kernel.add_netns(ns)
    for name in ("va", "vb"):
        kernel.add_link(name, netns=ns, up=True)
    with kernel(ns) as mem:
        fake = _run(mem)
    differences = [f"{what}: the kernel answered {r_out} and has {r_state}; memkernel {f_out}, {f_state}"
                   for (what, r_out, r_state), (_, f_out, f_state) in zip(real, fake, strict=True)
                   if (r_out, r_state) != (f_out, f_state)]
    assert differences == [], "\n".join(differences)


def test_a_missing_namespace_is_the_same_error(netns: Callable[[str], str]) -> None:
    missing = netns("memk") + "-gone"
    real = _outcome(lambda: Netlink(missing))
    fake = _outcome(lambda: MemKernel()(missing))
    assert fake == real and real[0] == "LinkNotFound"


def test_a_link_deleted_between_its_lookup_and_its_get_is_not_found(netns: Callable[[str], str]) -> None:
    """`nic list` walks the links while tests and users delete them: a link that goes between
    the name lookup and the get is LinkNotFound (skipped by the listing), not an internal error."""
    ns = netns("memk")
    with Netlink(ns) as nl:
        nl.create_veth("va", "pa")
        lookup = nl._ipr.link_lookup

        def lookup_then_delete(**kwargs: Any) -> list[int]:
            found = lookup(**kwargs)
            nl._ipr.link_lookup = lookup
            nl.delete_link("va")  # the race, made certain: the link goes right after its lookup
            return found

        nl._ipr.link_lookup = lookup_then_delete
        with pytest.raises(LinkNotFound):
            nl.link("va")


def test_a_dump_the_kernel_marks_interrupted_is_asked_again(netns: Callable[[str], str]) -> None:
    """A link made or deleted while the kernel dumps the table marks the dump interrupted
    (NLM_F_DUMP_INTR): the listing is asked again, not answered with an internal error."""
    from pyroute2.netlink.exceptions import NetlinkDumpInterrupted

    ns = netns("memk")
    with Netlink(ns) as nl:
        nl.create_veth("va", "pa")
        dump, interrupted = nl._ipr.get_links, [2]

        def sometimes_interrupted(*args: Any, **kwargs: Any) -> Any:
            if interrupted[0]:
                interrupted[0] -= 1
                raise NetlinkDumpInterrupted()
            return dump(*args, **kwargs)

        nl._ipr.get_links = sometimes_interrupted
        assert {"va", "pa"} <= {link.name for link in nl.links()} and interrupted == [0]
        interrupted[0] = 99
        with pytest.raises(NetlinkFailure, match="kept changing"):
            nl.links()

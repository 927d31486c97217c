"""The host vNIC and an External switch's uplink on the kernel fast path (and the same on Python).

The host vNIC is a TAP: the program sits on its clsact egress (what the host sends) and delivers
to it with BPF_F_INGRESS; the uplink NIC's clsact ingress carries the program first and the
takeover's drop last. Real vswitchd processes in a "host" namespace, real ping and TCP.

Topologies (every name unique per test):
- Internal: host ns (vswitchd, host vNIC 10.95.N.10/24) ↔ switch ↔ veth ↔ vm ns (10.95.N.2/24).
- External: test_external_switch.py's lab: host ns (vswitchd, NIC) ↔ veth ↔ pswitch ns (a Linux
  bridge) ↔ veth ↔ server ns; after the takeover the host's addresses live on the vNIC.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
from kernel_fastpath import require_fastpath
from pyroute2 import NetNS
from switchlab import Daemon, address_in, veth_pair
from test_external_switch import _link_state, daemon_factory, lab  # noqa: F401  (fixtures)

import netns as ns_helpers
from vswitch.control.netlink import DROP_FILTER_NAME, Netlink, _load_drop_program
from vswitch.datapath.fastpath import KERNEL_LABEL
from vswitch.datapath.kernel import libbpf, tc
from vswitch.datapath.kernel.program import SwitchProgram
from waiting import wait_until

pytestmark = pytest.mark.root

_subnet = iter(range(10, 250))


def _filters(ns: str, dev: str, hook: str) -> list[tuple[str, int]]:
    """(program name, kernel id) of each bpf filter on `dev`'s `hook` ("ingress"/"egress"), as tc shows
    them (pyroute2 does not decode TCA_BPF_ID); the takeover's drop program is `vs_drop`."""
    out = ns_helpers.run(ns, ["tc", "filter", "show", "dev", dev, hook], check=False).stdout
    return [(m.group(2), int(m.group(1))) for m in re.finditer(r"\bid (\d+) name (\S+)", out)]


def _names(ns: str, dev: str, hook: str) -> list[str]:
    return [name for name, _ in _filters(ns, dev, hook)]


def _ids(ns: str, *hooks: tuple[str, str]) -> set[int]:
    """Kernel ids of the fast path's programs (not the takeover's drop) on these (link, hook)s."""
    return {i for dev, hook in hooks for name, i in _filters(ns, dev, hook) if name in ("vs_ingress", "vs_egress")}


def _qdiscs(ns: str, dev: str) -> str:
    return ns_helpers.run(ns, ["tc", "qdisc", "show", "dev", dev], check=False).stdout


def _datapath(d: Daemon, sw: str) -> str:
    return json.loads(d.cli("switch", "show", sw, "--json").stdout)["datapath"]


@pytest.fixture
def internal(netns):
    """A host namespace with a VM namespace behind a veth whose switch end is in the host ns."""
    require_fastpath()
    host, vm = netns("ihost"), netns("ivm")
    side, inner = ns_helpers.unique_name("is"), ns_helpers.unique_name("ii")
    net = f"10.95.{next(_subnet)}"
    veth_pair(side, inner, host, vm)
    ns_helpers.run(host, ["sysctl", "-qw", f"net.ipv6.conf.{side}.disable_ipv6=1"])
    address_in(host, side, None)
    address_in(vm, inner, f"{net}.2/24")
    return host, vm, side, net


def test_an_internal_switch_carries_host_to_vm_traffic_on_the_kernel_datapath(internal, daemon_factory):  # noqa: F811
    host, vm, side, net = internal
    d = daemon_factory(host)
    sw = ns_helpers.unique_name("ik")
    vnic = ("vs-" + sw)[:15]
    d.cli("switch", "create", sw, "--internal")
    d.cli("port", "add", sw, "vm", "--link", side)
    ns_helpers.run(host, ["ip", "addr", "add", f"{net}.10/24", "dev", vnic])
    assert _datapath(d, sw) == KERNEL_LABEL, "auto puts an Internal switch on the kernel datapath"
    assert _names(host, vnic, "egress") == ["vs_egress"] and _names(host, side, "ingress") == ["vs_ingress"]
    assert ns_helpers.ping(host, f"{net}.2"), "the host reaches the VM through its vNIC"
    assert ns_helpers.ping(vm, f"{net}.10"), "the VM reaches the host"
    ns_helpers.tcp_transfer(vm, host, f"{net}.10", 20_000_000)  # TSO frames into the TAP's ingress
    ns_helpers.tcp_transfer(host, vm, f"{net}.2", 20_000_000)  # and from its egress
    stats = {s["port"]: s for s in json.loads(d.cli("stats", sw, "--json").stdout)}
    assert stats["host"]["rx_frames"] > 0 and stats["vm"]["rx_frames"] > 0, stats

    # a watch moves the switch to Python (the TAP read again), and the end of the watch moves it back
    with d.api() as api:
        events = api.watch(sw, seconds=1.5)
    assert _datapath(d, sw) == KERNEL_LABEL
    assert _names(host, vnic, "egress") == ["vs_egress"], "back on the fast path: one egress filter"
    assert ns_helpers.ping(host, f"{net}.2") and events is not None

    ids = _ids(host, (vnic, "egress"), (side, "ingress"))
    d.cli("switch", "delete", sw)
    assert _names(host, side, "ingress") == [] and "clsact" not in _qdiscs(host, side), "nothing of ours left"
    wait_until(lambda: not set(libbpf.program_ids()) & ids, what="the switch's programs to be unloaded")


@pytest.mark.parametrize("datapath", ["kernel", "python"])
def test_the_hosts_own_traffic_crosses_an_external_switch(lab, daemon_factory, datapath):  # noqa: F811
    """host vNIC → switch → uplink → server and back, on both datapaths; the NIC's ingress keeps
    the drop behind the program; delete gives everything back and leaves nothing of ours."""
    if datapath == "kernel":
        require_fastpath()
    before = _link_state(lab.host, lab.nic)
    d = daemon_factory(lab.host)
    sw = ns_helpers.unique_name("xk")
    vnic = ("vs-" + sw)[:15]
    d.cli("switch", "create", sw, "--external", lab.nic, "--datapath", datapath)
    shown = _datapath(d, sw)
    if datapath == "kernel":
        assert shown == KERNEL_LABEL, shown
        assert _names(lab.host, lab.nic, "ingress") == ["vs_ingress", "vs_drop"], \
            "the program first, the takeover's drop last on the NIC"
        assert _names(lab.host, vnic, "egress") == ["vs_egress"]
    else:
        assert shown.startswith("python"), shown
        assert _names(lab.host, lab.nic, "ingress") == ["vs_drop"]
    assert ns_helpers.ping(lab.host, lab.server_ip), "the host reaches the server across the switch"
    ns_helpers.tcp_transfer(lab.server, lab.host, lab.host_ip, 20_000_000)
    ns_helpers.tcp_transfer(lab.host, lab.server, lab.server_ip, 20_000_000)
    stats = {s["port"]: s for s in json.loads(d.cli("stats", sw, "--json").stdout)}
    assert stats["host"]["rx_frames"] > 0 and stats["uplink"]["rx_frames"] > 0, stats
    if datapath == "kernel":  # a watch: to Python (the program off, the drop kept) and back
        with d.api() as api:
            api.watch(sw, seconds=1.0)
        assert _datapath(d, sw) == KERNEL_LABEL
        assert _names(lab.host, lab.nic, "ingress") == ["vs_ingress", "vs_drop"], "the drop outlived the move"
        assert ns_helpers.ping(lab.host, lab.server_ip)
    ids = _ids(lab.host, (vnic, "egress"), (lab.nic, "ingress"))

    d.cli("switch", "delete", sw)
    assert _link_state(lab.host, lab.nic) == before, "deleting the switch gives the NIC back exactly"
    assert _names(lab.host, lab.nic, "ingress") == [] and "clsact" not in _qdiscs(lab.host, lab.nic), \
        "no qdisc or filter of ours is left on the NIC"
    wait_until(lambda: not set(libbpf.program_ids()) & ids, what="the switch's programs to be unloaded")
    assert ns_helpers.ping(lab.host, lab.server_ip)


def test_sigkill_of_vswitchd_leaves_an_external_switch_forwarding_and_a_restart_replaces_it(lab):  # noqa: F811
    require_fastpath()
    before = _link_state(lab.host, lab.nic)
    d = Daemon(lab.host)
    try:
        d.start()
        sw = ns_helpers.unique_name("xs")
        vnic = ("vs-" + sw)[:15]
        d.cli("switch", "create", sw, "--external", lab.nic)
        assert _datapath(d, sw) == KERNEL_LABEL, "auto: an External switch with management OS on the kernel"
        assert ns_helpers.ping(lab.host, lab.server_ip)
        hooks = ((vnic, "egress"), (lab.nic, "ingress"))
        old = _ids(lab.host, *hooks)
        assert len(old) == 2, f"one object: its ingress and egress programs: {old}"

        d.stop(signal.SIGKILL)
        assert ns_helpers.ping(lab.host, lab.server_ip, count=5), \
            "with vswitchd killed the kernel keeps forwarding the host's traffic (the TAP has no carrier)"

        d.start()
        wait_until(lambda: _ids(lab.host, *hooks) and not _ids(lab.host, *hooks) & old,
                   what="the restarted daemon to replace its programs")
        assert _names(lab.host, lab.nic, "ingress") == ["vs_ingress", "vs_drop"], "one program, one drop"
        assert _names(lab.host, vnic, "egress") == ["vs_egress"], "one filter on the vNIC"
        assert _datapath(d, sw) == KERNEL_LABEL
        assert ns_helpers.ping(lab.host, lab.server_ip), "the new program forwards"
        wait_until(lambda: not set(libbpf.program_ids()) & old, what="the old programs to be unloaded")

        new = _ids(lab.host, *hooks)
        d.cli("switch", "delete", sw)
        assert _link_state(lab.host, lab.nic) == before
        assert "clsact" not in _qdiscs(lab.host, lab.nic)
        wait_until(lambda: not set(libbpf.program_ids()) & new, what="delete to unload the programs")
    finally:
        d.cleanup()


def test_what_the_program_leaves_undecided_on_an_uplink_falls_through_to_the_takeovers_drop(netns):
    """The program's upcall verdict is TC_ACT_UNSPEC: alone on a link the frame passes (as TC_ACT_OK
    did), behind it the takeover's drop keeps it from the host stack; detaching the program leaves
    the drop (and the clsact it sits on) in place."""
    require_fastpath()
    host, peer = netns("uh"), netns("up")
    nic, far = ns_helpers.unique_name("un"), ns_helpers.unique_name("uf")
    net = f"10.96.{next(_subnet)}"
    veth_pair(nic, far, host, peer)
    address_in(host, nic, f"{net}.10/24")
    address_in(peer, far, f"{net}.1/24")
    ifindex = int(ns_helpers.run(host, ["cat", f"/sys/class/net/{nic}/ifindex"]).stdout)
    with SwitchProgram() as prog:
        prog.add_port("uplink", ifindex=ifindex, upcall=True)  # every frame from it left undecided
        prog.attach("uplink", netns=host)
        assert ns_helpers.ping(peer, f"{net}.10"), "alone on the link, an undecided frame reaches the stack"
        with Netlink(host) as nl:
            nl.add_ingress_drop(nic)  # the takeover's step, on the clsact the program made
        assert tc.ingress_filters(ifindex, netns=host) == ["vs_ingress", "vswitch_drop"]
        assert not ns_helpers.ping(peer, f"{net}.10", count=3, deadline=2), "behind the program, the drop"
        assert prog.counters("uplink")["upcall_port"] > 0, "the program saw the frames first"
    assert tc.ingress_filters(ifindex, netns=host) == ["vswitch_drop"], "closing the program kept the drop"
    assert not ns_helpers.ping(peer, f"{net}.10", count=2, deadline=2)
    with Netlink(host) as nl:
        nl.del_ingress(nic)
        assert nl.ingress_qdisc_kind(nic) is None, "the takeover's undo leaves no qdisc"


def test_a_takeover_an_older_vswitchd_left_gets_its_drop_behind_the_program(lab):  # noqa: F811
    """Before the fast path the drop was first, in an `ingress` qdisc: adopted as it is, it would stop
    every frame before the program. The restarted daemon makes it again on a clsact, last."""
    require_fastpath()
    d = Daemon(lab.host)
    try:
        d.start()
        sw = ns_helpers.unique_name("xu")
        d.cli("switch", "create", sw, "--external", lab.nic)
        d.stop(signal.SIGKILL)
        with NetNS(lab.host) as ipr:  # the NIC as an older vswitchd left it
            index = ipr.link_lookup(ifname=lab.nic)[0]
            ipr.tc("del", "clsact", index)
            ipr.tc("add", "ingress", index)
            fd = _load_drop_program()
            try:
                ipr.tc("add-filter", "bpf", index, ":1", fd=fd, name=DROP_FILTER_NAME, parent=0xFFFF0000, prio=1,
                       direct_action=True)
            finally:
                os.close(fd)
        assert not ns_helpers.ping(lab.host, lab.server_ip, count=2, deadline=2), "the old drop stops everything"

        d.start()
        wait_until(lambda: _names(lab.host, lab.nic, "ingress") == ["vs_ingress", "vs_drop"],
                   what="the restarted daemon to put the drop behind its program")
        assert "qdisc clsact" in _qdiscs(lab.host, lab.nic)
        assert ns_helpers.ping(lab.host, lab.server_ip), "the host reaches the server again"
    finally:
        d.cleanup()


def test_the_program_goes_on_an_existing_ingress_qdisc_and_leaves_it_as_it_was(netns):
    """A link with an `ingress` qdisc (not clsact: no egress hook) takes the program's filter; attaching
    again replaces it (one filter); closing removes the filter and keeps the qdisc, which was not ours."""
    require_fastpath()
    ns = netns("iq")
    a, b = ns_helpers.unique_name("qa"), ns_helpers.unique_name("qb")
    veth_pair(a, b, ns, ns)
    ns_helpers.run(ns, ["tc", "qdisc", "add", "dev", a, "ingress"])
    ifindex = int(ns_helpers.run(ns, ["cat", f"/sys/class/net/{a}/ifindex"]).stdout)
    with SwitchProgram() as prog:
        prog.add_port("uplink", ifindex=ifindex)
        prog.attach("uplink", netns=ns)
        assert tc.ingress_filters(ifindex, netns=ns) == ["vs_ingress"] and not tc.has_clsact(ifindex, netns=ns)
        tc.attach_ingress(ifindex, prog.prog_fd, name="vs_ingress", netns=ns)
        assert tc.ingress_filters(ifindex, netns=ns) == ["vs_ingress"], "replaced, not doubled"
    assert tc.ingress_filters(ifindex, netns=ns) == []
    assert "qdisc ingress" in _qdiscs(ns, a), "the link's own qdisc stays"


def test_an_unconfirmed_external_switch_on_the_kernel_datapath_reverts_leaving_nothing_of_ours(lab, daemon_factory):  # noqa: F811
    require_fastpath()
    before = _link_state(lab.host, lab.nic)
    d = daemon_factory(lab.host)
    sw = ns_helpers.unique_name("xr")
    vnic = ("vs-" + sw)[:15]
    d.cli("switch", "create", sw, "--external", lab.nic, "--confirm-timeout", "3")
    ids = _ids(lab.host, (vnic, "egress"), (lab.nic, "ingress"))
    assert len(ids) == 2, f"on the kernel datapath: {_datapath(d, sw)}"
    wait_until(lambda: "not confirmed in time" in d.log(), what="the unconfirmed switch to revert by itself")
    assert _link_state(lab.host, lab.nic) == before, "the revert gives the NIC back exactly"
    assert _names(lab.host, lab.nic, "ingress") == [] and "clsact" not in _qdiscs(lab.host, lab.nic)
    wait_until(lambda: not set(libbpf.program_ids()) & ids, what="the revert to unload the programs")
    assert ns_helpers.ping(lab.host, lab.server_ip)

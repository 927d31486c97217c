"""Private VLANs and port isolation with real parts, on both datapaths: namespaces behind veth link
ports (Python: AF_PACKET; the kernel fast path: tc-bpf, where the program decides both rules)
and the full reachability matrix by ping — every ordered pair checked, allowed or denied as the rules
say. Each namespace knows every other's MAC (permanent neighbour entries), so a denied ping is a
known-unicast frame the switch refuses (counted as `drop_private_vlan` / `drop_isolated`), not an
ARP request that went nowhere."""

from __future__ import annotations

import subprocess
from itertools import permutations
from pathlib import Path

import pytest
from switchlab import veth_pair
from test_dhcp_router_guards import Lab, lab  # noqa: F401  (the fixture: a private switch and its VMs)

import netns as ns_helpers
from vswitch.control.model import DatapathMode, PortKind, PortSettings, PortSpec, SwitchSpec, SwitchType
from waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

P, ISO, COM1, COM2 = 100, 101, 102, 103
#: port → (its private VLAN settings, its address's last byte)
PVLAN = {
    "prom": (PortSettings(pvlan="promiscuous", primary=P, secondary_list=(ISO, COM1, COM2)), 1),
    "c1a": (PortSettings(pvlan="community", primary=P, secondary=COM1), 2),
    "c1b": (PortSettings(pvlan="community", primary=P, secondary=COM1), 3),
    "c2a": (PortSettings(pvlan="community", primary=P, secondary=COM2), 4),
    "c2b": (PortSettings(pvlan="community", primary=P, secondary=COM2), 5),
    "i1": (PortSettings(pvlan="isolated", primary=P, secondary=ISO), 6),
    "i2": (PortSettings(pvlan="isolated", primary=P, secondary=ISO), 7),
}


def allowed(a: str, b: str) -> bool:
    """The rule: promiscuous reaches all; a community its own and promiscuous; isolated only promiscuous."""
    return "prom" in (a, b) or (a[:2] == b[:2] and a.startswith("c"))


def _addr(n: int) -> str:
    return f"10.96.0.{n}"


def _mac(n: int) -> str:
    return f"02:96:00:00:00:{n:02x}"


def _vms(lab: Lab, names: dict[str, int], switch_of: dict[str, str] | None = None) -> dict[str, str]:  # noqa: F811
    """A VM per name (on `lab`'s switch, or the one `switch_of` names), each knowing every other's
    MAC: name → namespace."""
    vms = {}
    home = lab.sw
    try:
        for name, n in names.items():
            lab.sw = (switch_of or {}).get(name, home)  # Lab.vm adds its port to lab.sw
            vms[name] = lab.vm(name, f"{_addr(n)}/24", _mac(n))
    finally:
        lab.sw = home
    for name, (ns, nic) in vms.items():
        for other, n in names.items():
            if other != name:
                ns_helpers.run(ns, ["ip", "neigh", "replace", _addr(n), "lladdr", _mac(n), "nud", "permanent",
                                    "dev", nic])
    return {name: ns for name, (ns, _) in vms.items()}


def _pings(pairs: list[tuple[str, str]], spaces: dict[str, str], names: dict[str, int]) -> dict[tuple[str, str], bool]:
    """One ping per ordered pair, all at once (-c1 -W1): which got their answer."""
    procs = {(a, b): ns_helpers.popen(spaces[a], ["ping", "-n", "-q", "-c", "1", "-W", "1", _addr(names[b])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for a, b in pairs}
    return {pair: p.wait(timeout=30) == 0 for pair, p in procs.items()}


def _matrix(spaces: dict[str, str], names: dict[str, int], rule, hub: str) -> None:
    """Every host reaches `hub` first (so the switch knows every MAC: a denied frame is then known
    unicast, not a flood); then every ordered pair pinged at once; an allowed pair that failed (a
    first frame racing a settings change, or a loaded machine) is tried again until it answers; a
    denied one must never answer."""
    for name in names:
        if name != hub:
            wait_until(lambda name=name: _pings([(name, hub)], spaces, names)[(name, hub)],
                       what=f"{name} to reach {hub}")
    got = _pings(list(permutations(names, 2)), spaces, names)
    wrong = sorted(pair for pair, ok in got.items() if ok and not rule(*pair))
    assert not wrong, f"denied pairs that answered: {wrong}"
    for pair in sorted(pair for pair, ok in got.items() if not ok and rule(*pair)):
        wait_until(lambda pair=pair: _pings([pair], spaces, names)[pair], what=f"{pair[0]} to reach {pair[1]}")


def test_the_private_vlan_reachability_matrix(lab: Lab, datapath: str) -> None:  # noqa: F811
    names = {name: n for name, (_, n) in PVLAN.items()}
    spaces = _vms(lab, names)
    for name, (settings, _) in PVLAN.items():
        info = lab.m.set_port(lab.sw, name, settings)
        assert info.pvlan == settings.pvlan
        assert info.datapath == ("kernel (tc-bpf)" if datapath == "kernel" else "python"), "it runs there"
    _matrix(spaces, names, allowed, "prom")
    assert {e.vlan for e in lab.m.fdb_show(lab.sw) if e.mac in {_mac(n) for n in names.values()}} == {P}, \
        "shared learning: a primary and its secondaries are one learning domain"
    for sender in ("i1", "c1a", "c2b"):
        assert lab.drops(sender, "drop_private_vlan") > 0, f"{sender}'s denied unicast counted"
    assert lab.drops("prom", "drop_private_vlan") == 0
    program = getattr(lab.m.datapath(lab.sw), "program", None)
    if datapath == "kernel":
        assert program is not None and program.counters("i1")["drop_private_vlan"] > 0, "the program's own drop"
        assert all(program.counters(p)["upcall"] == 0 for p in names), "nothing went up"


def test_port_isolation_on_and_off(lab: Lab, datapath: str) -> None:  # noqa: F811
    names = {"a": 11, "b": 12, "n": 13}
    spaces = _vms(lab, names)
    for port in ("a", "b"):
        info = lab.m.set_port(lab.sw, port, PortSettings(isolated=True))
        assert info.isolated
        assert info.datapath == ("kernel (tc-bpf)" if datapath == "kernel" else "python"), "isolation runs there"
    _matrix(spaces, names, lambda x, y: "n" in (x, y), "n")
    assert lab.drops("a", "drop_isolated") > 0 and lab.drops("b", "drop_isolated") > 0
    program = getattr(lab.m.datapath(lab.sw), "program", None)
    if datapath == "kernel":
        assert program is not None and program.counters("a")["drop_isolated"] > 0, "the program's own drop"
    lab.m.set_port(lab.sw, "b", PortSettings(isolated=False))
    _matrix(spaces, names, lambda x, y: True, "n")


def test_a_trunk_to_another_switch_extends_the_private_vlan(lab: Lab, datapath: str,  # noqa: F811
                                                            tmp_path: Path) -> None:
    """Two switches joined by a veth trunk carrying the primary and two secondaries: the far switch's
    isolated host reaches the near promiscuous port (tagged 101 one way, 100 back: tcpdump on the
    trunk says so) and nobody else, a community spans both switches, and each switch learns the other
    side's MACs under the primary."""
    far = ns_helpers.unique_name("pf")
    lab.m.create_switch(SwitchSpec(far, SwitchType.PRIVATE, datapath=DatapathMode(datapath)))
    near_end, far_end = ns_helpers.unique_name("pta"), ns_helpers.unique_name("ptb")
    veth_pair(near_end, far_end)
    lab.sides.append(near_end)  # deleting one end deletes the pair
    for end in (near_end, far_end):
        ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{end}.disable_ipv6=1"])
        ns_helpers.run(None, ["ip", "link", "set", end, "up"])
    carried = (P, ISO, COM1)
    lab.m.add_port(lab.sw, PortSpec("trunk", PortKind.LINK, near_end, trunk=carried))
    lab.m.add_port(far, PortSpec("trunk", PortKind.LINK, far_end, trunk=carried))
    names = {"prom": 1, "i1": 6, "c1a": 2, "i2": 7, "c1b": 3}
    where = {"i2": far, "c1b": far}
    spaces = _vms(lab, names, where)
    for name in names:
        settings = PVLAN[name][0]
        if name == "prom":
            settings = PortSettings(pvlan="promiscuous", primary=P, secondary_list=(ISO, COM1))
        assert lab.m.set_port(where.get(name, lab.sw), name, settings).pvlan == settings.pvlan
    _matrix(spaces, names, allowed, "prom")
    far_entries = {e.mac: (e.vlan, e.port) for e in lab.m.fdb_show(far)}
    assert far_entries[_mac(1)] == (P, "trunk"), "the promiscuous port's MAC, learned across the trunk"
    assert far_entries[_mac(3)][0] == P and far_entries[_mac(7)] == (P, "i2"), "hosts under the primary"
    near_entries = {e.mac: (e.vlan, e.port) for e in lab.m.fdb_show(lab.sw)}
    assert near_entries[_mac(7)] == (P, "trunk"), "the far isolated host, from frames tagged 101"
    # on the wire: the isolated host's echo crosses the trunk tagged with its secondary, the answer
    # from the promiscuous port with the primary
    err = tmp_path / "tcpdump.err"
    with err.open("w") as err_file:
        dump = subprocess.Popen(["tcpdump", "-i", near_end, "-e", "-n", "-l", "--immediate-mode", "-c", "2",
                                 "vlan and icmp"], stdout=subprocess.PIPE, stderr=err_file, text=True)
    try:
        wait_until(lambda: "listening on" in err.read_text(), what="tcpdump to listen")
        wait_until(lambda: _pings([("i2", "prom")], spaces, names)[("i2", "prom")], what="i2 to reach prom")
        out, _ = dump.communicate(timeout=20)
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    lines = out.splitlines()
    assert any(f"vlan {ISO}," in ln and "echo request" in ln for ln in lines), out
    assert any(f"vlan {P}," in ln and "echo reply" in ln for ln in lines), out

"""layout.py repeats switch.h: every number, the counter enum's order and the struct sizes agree.

Reads the header as text (no compiler needed), so a change on one side only fails here, before a
program ever loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vswitch.core.guards import MAX_EXT_HEADERS
from vswitch.core.policy import PortPolicy
from vswitch.core.rates import COST_SHIFT, police_bucket, storm_bucket
from vswitch.core.reasons import Reason
from vswitch.datapath.kernel import layout as L

HEADER = (Path(L.__file__).with_name("switch.h")).read_text()
_SIZES = {"__u8": 1, "__u16": 2, "__u32": 4, "__u64": 8}


def _defines() -> dict[str, int]:
    out = {}
    for name, value in re.findall(r"^#define\s+(VS_\w+)\s+(0x[0-9a-fA-F]+|\d+)", HEADER, re.M):
        out[name] = int(value, 0)
    return out


def _struct_size(name: str) -> int:
    body = re.search(r"struct " + name + r" \{(.*?)\};", HEADER, re.S)
    assert body, f"struct {name} not in switch.h"
    size = 0
    defines = {**_defines(), "VS_NR_COUNTERS": L.NR_COUNTERS}
    for typ, _field, count in re.findall(r"(__u\d+)\s+(\w+)(?:\[(\w+)\])?;", body.group(1)):
        n = 1 if not count else (int(count) if count.isdigit() else defines[count])
        width = _SIZES[typ]
        assert size % width == 0, f"struct {name}: {_field} is not naturally aligned (a hidden hole)"
        size += width * n
    return size


@pytest.mark.parametrize(("c_name", "value"), [
    ("VS_MAX_PORTS", L.MAX_PORTS), ("VS_VLAN_WORDS", L.VLAN_WORDS), ("VS_HEAD_BYTES", L.HEAD_BYTES),
    ("VS_PF_ADMIN_UP", L.PF_ADMIN_UP), ("VS_PF_OPER_UP", L.PF_OPER_UP), ("VS_PF_LEARN", L.PF_LEARN),
    ("VS_PF_FLOOD", L.PF_FLOOD), ("VS_PF_KERNEL", L.PF_KERNEL), ("VS_PF_TRUNK", L.PF_TRUNK),
    ("VS_PF_UPCALL", L.PF_UPCALL), ("VS_FDB_STATIC", L.FDB_STATIC), ("VS_CFG_TEST", L.CFG_TEST),
    ("VS_ST_ADDED", L.ST_ADDED), ("VS_ST_REMOVED", L.ST_REMOVED), ("VS_NR_STATE", L.NR_STATE),
    ("VS_CFG_EVENTS", L.CFG_EVENTS), ("VS_ST_EVENTS_LOST", L.ST_EVENTS_LOST), ("VS_EV_DECISION", L.EV_DECISION),
    ("VS_EV_HEAD", L.EV_HEAD), ("VS_EV_OUT_WORDS", L.EV_OUT_WORDS), ("VS_EV_RING_BYTES", L.EV_RING_BYTES),
    ("VS_PF_INGRESS", L.PF_INGRESS), ("VS_ST_FDB_EVENTS_LOST", L.ST_FDB_EVENTS_LOST),
    ("VS_FE_LEARNED", L.FE_LEARNED), ("VS_FE_MOVED", L.FE_MOVED), ("VS_FE_RING_BYTES", L.FE_RING_BYTES),
    ("VS_UPCALL_TPID", L.UPCALL_TPID), ("VS_PF_DHCP_GUARD", L.PF_DHCP_GUARD),
    ("VS_PF_ROUTER_GUARD", L.PF_ROUTER_GUARD), ("VS_GUARD_EXT_MAX", L.GUARD_EXT_MAX),
    ("VS_GUARD_EXT_MAX", MAX_EXT_HEADERS), ("VS_PF_MAC_LOCK", L.PF_MAC_LOCK),
    ("VS_PF_ISOLATED", L.PF_ISOLATED), ("VS_PF_PVLAN", L.PF_PVLAN), ("VS_VLAN_IDS", L.VLAN_IDS),
    ("VS_PF_STORM", L.PF_STORM), ("VS_PF_POLICE", L.PF_POLICE), ("VS_RATE_COST_SHIFT", L.RATE_COST_SHIFT),
    ("VS_RATE_COST_SHIFT", COST_SHIFT),
])
def test_defines_agree(c_name: str, value: int) -> None:
    assert _defines()[c_name] == value, f"switch.h {c_name} = {_defines()[c_name]}, layout.py says {value}"


def test_counter_enum_in_the_same_order() -> None:
    body = re.search(r"enum vs_counter \{(.*?)\};", HEADER, re.S)
    assert body
    names = re.findall(r"^\s*VS_C_(\w+)", body.group(1), re.M)
    assert [n.lower() for n in names] == list(L.COUNTERS)
    assert "VS_NR_COUNTERS" in body.group(1)


@pytest.mark.parametrize(("struct_name", "packer"), [
    ("vs_port", L.PORT), ("vs_fdb_key", L.FDB_KEY), ("vs_fdb_val", L.FDB_VAL), ("vs_config", L.CONFIG),
    ("vs_test_run", L.TEST_RUN), ("vs_counters", L.COUNTER_ROW), ("vs_event", L.EVENT),
    ("vs_fdb_event", L.FDB_EVENT),
])
def test_struct_sizes_agree(struct_name: str, packer: object) -> None:
    assert _struct_size(struct_name) == packer.size  # type: ignore[attr-defined]


def test_every_decision_reason_has_a_counter() -> None:
    """What SwitchCore.process can decide, the program counts under the same name."""
    decided = [r for r in Reason if not r.name.startswith(("DROP_QUEUE", "DROP_LINK", "DROP_TX", "DROP_OVER",
                                                           "DROP_INTERNAL", "DROP_RUNT", "DROP_BAD", "DROP_TRUNC",
                                                           "DROP_VXLAN"))]
    assert {r for r in L.COUNTER_REASON.values()} == set(decided)


def test_pack_port_trunk_bitmap() -> None:
    packed = L.pack_port(PortPolicy.trunk({10, 20, 4094}, native=5, flooding=False), ifindex=7, oper_up=True,
                         kernel=True)
    ifindex, flags, access, native, _pad, *words, _mac, _pad2, _si, _st, _pc, _pt, _pr, _p3 = L.PORT.unpack(packed)
    assert (ifindex, access, native) == (7, 0, 5)
    assert flags == L.PF_ADMIN_UP | L.PF_OPER_UP | L.PF_LEARN | L.PF_KERNEL | L.PF_TRUNK
    assert {w * 64 + b for w, word in enumerate(words) for b in range(64) if word >> b & 1} == {10, 20, 4094}


def test_pack_port_source_rules() -> None:
    """Spoofing off with its MAC known: locked to it in the slot; with none yet, or with a MAC limit
    (no per-port count in the program): every frame goes up to Python."""
    mac = bytes.fromhex("525400000001")
    flags_of = {}
    for name, pol in (("locked", PortPolicy.access(mac_spoofing=False, mac=mac)),
                      ("no mac yet", PortPolicy.access(mac_spoofing=False)),
                      ("limited", PortPolicy.access(mac_limit=4)), ("free", PortPolicy.access())):
        slot_mac = L.PORT.unpack(L.pack_port(pol, ifindex=7, oper_up=True, kernel=True))[5 + L.VLAN_WORDS]
        flags_of[name] = (L.PORT.unpack(L.pack_port(pol, ifindex=7, oper_up=True, kernel=True))[1], slot_mac)
    assert flags_of["locked"][0] & L.PF_MAC_LOCK and flags_of["locked"][1] == mac
    assert not flags_of["locked"][0] & L.PF_UPCALL
    for name in ("no mac yet", "limited"):
        assert flags_of[name][0] & L.PF_UPCALL and not flags_of[name][0] & L.PF_MAC_LOCK, name
    assert not flags_of["free"][0] & (L.PF_UPCALL | L.PF_MAC_LOCK) and flags_of["free"][1] == bytes(6)


def test_pack_port_storm_limit() -> None:
    """A storm limit: VS_PF_STORM and the bucket of core.rates in the slot; the port stays in the program."""
    row = L.PORT.unpack(L.pack_port(PortPolicy.access(storm_limit=1000), ifindex=7, oper_up=True, kernel=True))
    assert row[1] & L.PF_STORM and not row[1] & L.PF_UPCALL
    assert tuple(row[-6:-4]) == storm_bucket(1000) == (1_000_000, 99_000_000)
    free = L.PORT.unpack(L.pack_port(PortPolicy.access(), ifindex=7, oper_up=True, kernel=True))
    assert not free[1] & (L.PF_STORM | L.PF_POLICE) and tuple(free[-6:]) == (0, 0, 0, 0, 0, 0)


def test_pack_port_max_bandwidth() -> None:
    """A maximum bandwidth: VS_PF_POLICE and the policer of core.rates in the slot; the port stays in the program."""
    row = L.PORT.unpack(L.pack_port(PortPolicy.access(max_bandwidth=100_000_000, bandwidth_burst=10_000), ifindex=7,
                                    oper_up=True, kernel=True))
    assert row[1] & L.PF_POLICE and not row[1] & (L.PF_UPCALL | L.PF_STORM)
    assert tuple(row[-4:-2]) == police_bucket(100_000_000, 10_000) == (80 << COST_SHIFT, 800_000)
    weighted = L.PORT.unpack(L.pack_port(PortPolicy.access(uplink_class=0x10101), ifindex=7, oper_up=True, kernel=True))
    assert weighted[-2:] == (0x10101, 0), "its frames leave the uplink in htb class 1:101"

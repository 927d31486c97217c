"""The fast path's numbers and struct layouts as Python sees them: switch.h, repeated.

Owns: the packing of every map key and value (`struct` formats), the counter indexes and their
meaning in the core's vocabulary (`COUNTER_REASON`), and the translation of a `PortPolicy` into a
`struct vs_port`. tests/unit/test_kernel_layout.py reads switch.h and checks every number here.
Pure: no I/O. Must not touch: maps, libbpf (libbpf.py, tables.py).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from vswitch.core.acl import DIR_IN
from vswitch.core.guards import GUARD_DHCP, GUARD_ROUTER
from vswitch.core.policy import PortMirroring, PortPolicy, VlanMode
from vswitch.core.rates import police_bucket, storm_bucket
from vswitch.core.reasons import Reason

MAX_PORTS = 1024
VLAN_WORDS = 64
HEAD_BYTES = 32

PF_ADMIN_UP = 0x01
PF_OPER_UP = 0x02
PF_LEARN = 0x04
PF_FLOOD = 0x08
PF_KERNEL = 0x10
PF_TRUNK = 0x20
PF_UPCALL = 0x40
PF_INGRESS = 0x80
PF_DHCP_GUARD = 0x100
PF_ROUTER_GUARD = 0x200
PF_MAC_LOCK = 0x400
PF_MIRROR_SRC = 0x10000
PF_MIRROR_DST = 0x20000
PF_ISOLATED = 0x800
PF_PVLAN = 0x1000
VLAN_IDS = 4096
PF_STORM = 0x4000
PF_POLICE = 0x8000
RATE_COST_SHIFT = 16
GUARD_EXT_MAX = 8

FDB_STATIC = 0x01
CFG_TEST = 0x01
CFG_EVENTS = 0x02
CFG_SAMPLE = 0x04

U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
PORT = struct.Struct(f"<IIHHI{VLAN_WORDS}Q6sHQQQQII")  # struct vs_port
FDB_KEY = struct.Struct("<6sH")                        # struct vs_fdb_key
FDB_VAL = struct.Struct("<IIQ")                        # struct vs_fdb_val
CONFIG = struct.Struct(f"<QQQIIII{VLAN_WORDS}QII{VLAN_WORDS}QII{VLAN_IDS}HQ")  # struct vs_config
ST_ADDED, ST_REMOVED, ST_EVENTS_LOST, ST_FDB_EVENTS_LOST, NR_STATE = 0, 1, 2, 3, 4   # vs_state keys
TEST_RUN = struct.Struct("<IIII")                      # struct vs_test_run

# enum vs_counter, in order
COUNTERS = (
    "rx_frames", "rx_bytes", "floods", "learned", "moved", "static_refused",
    "forward_learned", "flood_unknown", "flood_broadcast", "flood_multicast",
    "drop_same_port", "drop_reserved_group", "drop_malformed", "drop_invalid_src",
    "drop_vlan_ingress", "drop_port_down", "drop_egress_down",
    "upcall", "upcall_port", "upcall_dest", "upcall_flood", "upcall_table_full",
    "flood_copies", "redirect_fail", "tag_fail", "upcall_fail", "downcall", "tx_frames", "tx_bytes",
    "drop_dhcp_guard", "drop_router_guard", "drop_spoofed_mac", "drop_mac_limit",
    "mirrored", "mirror_tx",
    "drop_acl",
    "drop_isolated", "drop_private_vlan",
    "drop_storm_limit", "drop_max_bandwidth",
)
NR_COUNTERS = len(COUNTERS)
C = {name: i for i, name in enumerate(COUNTERS)}
#: counter index → the core's Reason it counts (the decision block)
COUNTER_REASON = {C[r.label]: r for r in Reason if r.label in C}
#: counter indexes of the upcall causes
UPCALL_CAUSES = tuple(C[n] for n in ("upcall_port", "upcall_dest", "upcall_flood", "upcall_table_full"))
#: the S-tag's TPID on the upcall path; its PCP is the cause (its counter index - C["upcall"])
UPCALL_TPID = 0x88A8
#: the counters named like PortCounters fields
PORT_COUNTER_FIELDS = COUNTERS[:6]


_MIRROR_FLAGS = {PortMirroring.NONE: 0, PortMirroring.SOURCE: PF_MIRROR_SRC, PortMirroring.DESTINATION: PF_MIRROR_DST}


def vlan_bits(vlans: frozenset[int] | set[int]) -> tuple[int, ...]:
    """A set of VLAN ids as the VLAN_WORDS 64-bit words of a bitmap (bit v%64 of word v//64)."""
    words = [0] * VLAN_WORDS
    for v in vlans:
        words[v >> 6] |= 1 << (v & 63)
    return tuple(words)


def upcall_reasons(policy: PortPolicy) -> tuple[str, ...]:
    """Why the program sends every frame from a kernel port with `policy` up to Python, in words for
    `port show` (empty: the program decides its frames). A port feature the program does not run
    adds its reason here, and only here: `pack_port` and the datapath's port state both read it."""
    reasons: list[str] = []
    if not policy.mac_spoofing and policy.mac is None:
        reasons.append("MAC spoofing off and no MAC yet (Python adopts its first source)")
    if policy.mac_limit > 0:
        reasons.append("a MAC limit (the program keeps no count of MACs per port)")
    if policy.acl is not None:
        reasons.append("port ACLs (the program does not run them)")
    return tuple(reasons)


def delivers_through_python(policy: PortPolicy) -> bool:
    """Whether what the switch delivers to a kernel port with `policy` must be decided by Python: its
    ACLs have an "in" rule (to the VM), which the program does not run. A flood in its VLANs goes up
    (`py_vlans`), and so does a known unicast to it (the program sends a frame for any VS_PF_UPCALL
    port up, VS_C_UPCALL_DEST)."""
    return policy.acl is not None and policy.acl.has(DIR_IN)


def pack_port(policy: PortPolicy, *, ifindex: int, oper_up: bool, kernel: bool, upcall: bool = False,
              ingress: bool = False) -> bytes:
    """`struct vs_port` for a port with `policy`: `kernel` when the program can send to `ifindex`
    (a link in its namespace), `upcall` when every frame from it must go to Python, `ingress` when
    frames for it go into the link's ingress (the host vNIC). A port with MAC spoofing off and its
    MAC known is locked to it in the program; one with any of `upcall_reasons` goes up."""
    locked = not policy.mac_spoofing and policy.mac is not None
    upcall = upcall or bool(upcall_reasons(policy))
    flags = ((PF_ADMIN_UP if policy.admin_up else 0) | (PF_OPER_UP if oper_up else 0)
             | (PF_LEARN if policy.learning else 0) | (PF_FLOOD if policy.flooding else 0)
             | (PF_KERNEL if kernel else 0) | (PF_UPCALL if upcall else 0) | (PF_INGRESS if ingress else 0)
             | (PF_DHCP_GUARD if policy.guards & GUARD_DHCP else 0)
             | (PF_ROUTER_GUARD if policy.guards & GUARD_ROUTER else 0) | (PF_MAC_LOCK if locked else 0)
             | _MIRROR_FLAGS[policy.port_mirroring] | (PF_ISOLATED if policy.isolated else 0)
             | (PF_STORM if policy.storm_limit else 0) | (PF_POLICE if policy.max_bandwidth else 0))
    mac = policy.mac if locked and policy.mac is not None else bytes(6)
    storm = storm_bucket(policy.storm_limit) if policy.storm_limit else (0, 0)
    storm += police_bucket(policy.max_bandwidth, policy.bandwidth_burst) if policy.max_bandwidth else (0, 0)
    if policy.pvlan is not None:  # it sends in access_vlan, receives the VLANs in `allowed`
        return PORT.pack(ifindex, flags | PF_PVLAN, policy.access_vlan, 0, 0, *vlan_bits(policy.egress_vlans()),
                         mac, 0, *storm, policy.uplink_class, 0)
    if policy.mode == VlanMode.TRUNK:
        return PORT.pack(ifindex, flags | PF_TRUNK, 0, policy.native_vlan or 0, 0, *vlan_bits(policy.allowed_vlans),
                         mac, 0, *storm, policy.uplink_class, 0)
    return PORT.pack(ifindex, flags, policy.access_vlan, 0, 0, *vlan_bits(frozenset()), mac, 0, *storm,
                     policy.uplink_class, 0)


def pack_config(*, ageing_ns: int, refresh_ns: int, max_dynamic: int, group_fwd_mask: int, n_slots: int,
                py_vlans: frozenset[int] = frozenset(), test_now_ns: int | None = None, events: bool = False,
                upcall_ifindex: int = 0, mirror_vlans: frozenset[int] = frozenset(), mirror_dests: int = 0,
                mirror_py: int = 0, domains: Mapping[int, int] | None = None, sample_gap_ns: int = 0) -> bytes:
    """`struct vs_config`; `n_slots` is the highest slot in use + 1; `test_now_ns` (not None) turns
    on test mode with that clock; `events` the decision events (vs_events); `upcall_ifindex` the
    upcall TAP (0: frames that go up are left to the stack). Port mirroring: `mirror_vlans` the
    VLANs with a source up and flooding, `mirror_dests` the destinations up, `mirror_py` how many of
    them only Python serves. `domains` the private VLANs' learning domains
    (isolation.learning_domains: secondary → primary), each primary its own too. `sample_gap_ns`
    (with `events` off): the decision events sampled, at most one per that many ns per CPU."""
    flags = ((CFG_TEST if test_now_ns is not None else 0) | (CFG_EVENTS if events else 0)
             | (CFG_SAMPLE if sample_gap_ns and not events else 0))
    return CONFIG.pack(ageing_ns, refresh_ns, test_now_ns or 0, max_dynamic, group_fwd_mask, flags, n_slots,
                       *vlan_bits(py_vlans), upcall_ifindex, 0, *vlan_bits(mirror_vlans), mirror_dests, mirror_py,
                       *domain_table(domains or {}), sample_gap_ns)


def domain_table(domains: Mapping[int, int]) -> list[int]:
    """`vs_config.domain`: the primary of every VLAN of a private VLAN (its primary and secondaries), 0
    for the others — so the program learns and looks up under the core's key and knows which
    VLANs' known unicast needs the receive test (SwitchCore._unicast_decision's `shared`)."""
    table = [0] * VLAN_IDS
    for secondary, primary in domains.items():
        table[secondary] = table[primary] = primary
    return table


COUNTER_ROW = struct.Struct(f"<{NR_COUNTERS}Q")           # struct vs_counters


def unpack_test_out(raw: bytes) -> tuple[int, int, bool, int, int, bytes]:
    """(slot, len, vlan_present, vlan_proto, vlan_tci, head) of a `struct vs_test_out`: host-order
    integers except vlan_proto, which __sk_buff keeps in network order."""
    slot, length, present = struct.unpack_from("<III", raw)
    proto = int.from_bytes(raw[12:14], "big")
    (tci,) = struct.unpack_from("<H", raw, 14)
    return slot, length, bool(present), proto, tci, raw[16:16 + HEAD_BYTES]


# vs_events: struct vs_event
EV_DECISION = 1
EV_HEAD = 128
EV_OUT_WORDS = 16
EV_RING_BYTES = 262144
EVENT = struct.Struct(f"<IIIIIIQI2sH{EV_OUT_WORDS}Q{EV_HEAD}s")   # struct vs_event (vlan_proto kept raw)

# vs_fdb_events: struct vs_fdb_event
FE_LEARNED = 1
FE_MOVED = 2
FE_RING_BYTES = 65536
FDB_EVENT = struct.Struct("<6sHIIIIQ")                # struct vs_fdb_event

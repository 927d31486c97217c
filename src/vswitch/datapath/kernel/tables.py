"""The fast path's maps as Python reads and writes them: ports, config, MAC table, counters, and
the test-mode record of the last run.

Owns: the keys and values of every map (through layout.py's packing; the event ring's records are
events.py's), summing per-CPU counters,
and the count of dynamic MAC entries (the program adds to `vs_state[ADDED]`, this module alone to
`vs_state[REMOVED]`, so the two writers never overwrite each other).
Invariants: a dynamic entry removed here is counted removed exactly once; static entries are not
counted. Must not touch: links and tc (tc.py), the program's life (program.py).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from vswitch.datapath.kernel import layout as L
from vswitch.datapath.kernel.libbpf import BPF_NOEXIST, BpfError, BpfObject

_ZERO = L.U32.pack(0)


@dataclass(frozen=True, slots=True)
class FdbRecord:
    """One MAC table entry as the program keeps it (`seen_ns` on CLOCK_MONOTONIC; 0 for statics)."""

    mac: bytes
    vlan: int
    slot: int
    static: bool
    seen_ns: int


@dataclass(frozen=True, slots=True)
class TestOutput:
    """One frame the program would have sent in test mode: the out slot and the frame as it would
    be on the wire (a metadata tag put back into the bytes), cut to `layout.HEAD_BYTES` + the tag."""

    slot: int
    head: bytes
    length: int


class SwitchTables:
    """Typed access to one loaded switch object's maps. Raises BpfError from the map calls."""

    def __init__(self, obj: BpfObject) -> None:
        self.fdb = obj.map("vs_fdb")
        self.ports = obj.map("vs_ports")
        self.slot_of = obj.map("vs_slot_of")
        self.config = obj.map("vs_config")
        self.state = obj.map("vs_state")
        self.counters = obj.map("vs_counters")
        self.test_run = obj.map("vs_test_run")
        self.test_out = obj.map("vs_test_out")
        self.events = obj.map("vs_events")
        self.event_buf = obj.map("vs_event_buf")
        self.sample_at = obj.map("vs_sample_at")
        self.fdb_events = obj.map("vs_fdb_events")
        self.storm = obj.map("vs_storm")
        self.police = obj.map("vs_police")
        for m, size in ((self.ports, L.PORT.size), (self.config, L.CONFIG.size), (self.fdb, L.FDB_VAL.size),
                        (self.counters, L.COUNTER_ROW.size), (self.event_buf, L.EVENT.size)):
            if m.value_size != size:
                raise ValueError(f"map {m.name}: value of {m.value_size} bytes in the object, layout.py says "
                                 f"{size}: switch.h and layout.py disagree")

    # -- ports and config ---------------------------------------------------------------------
    def write_port(self, slot: int, packed: bytes, ifindex: int | None) -> None:
        """Set slot `slot` to a packed `struct vs_port`; frames from `ifindex` are that slot's."""
        self.ports.update(L.U32.pack(slot), packed)
        if ifindex:
            self.slot_of.update(L.U32.pack(ifindex), L.U32.pack(slot))

    def unmap_ifindex(self, ifindex: int) -> None:
        """Frames from `ifindex` belong to no slot any more (its link is gone)."""
        self.slot_of.delete(L.U32.pack(ifindex))

    def clear_port(self, slot: int, ifindex: int | None) -> None:
        """Empty the slot and zero its counters (a port added there later starts from 0)."""
        if ifindex:
            self.slot_of.delete(L.U32.pack(ifindex))
        self.ports.update(L.U32.pack(slot), bytes(L.PORT.size))
        self.counters.update(L.U32.pack(slot), bytes(L.COUNTER_ROW.size))
        self.reset_storm(slot)
        self.reset_police(slot)

    def reset_storm(self, slot: int) -> None:
        """The slot's storm bucket full again (a new limit starts full, as SwitchCore.set_policy's)."""
        self.storm.update(L.U32.pack(slot), L.U64.pack(0))

    def reset_police(self, slot: int) -> None:
        """The slot's policer full again (a new rate or burst, as SwitchCore.set_policy's)."""
        self.police.update(L.U32.pack(slot), L.U64.pack(0))

    def write_config(self, packed: bytes) -> None:
        self.config.update(_ZERO, packed)

    # -- MAC table ----------------------------------------------------------------------------
    def fdb_entries(self) -> list[FdbRecord]:
        """Every entry, aged or not (the program ignores an aged one; removing it is `delete`'s job)."""
        out = []
        for k, v in self.fdb.items():
            mac, vlan = L.FDB_KEY.unpack(k)
            slot, flags, seen = L.FDB_VAL.unpack(v)
            out.append(FdbRecord(mac, vlan, slot, bool(flags & L.FDB_STATIC), seen))
        return out

    def add_static(self, mac: bytes, vlan: int, slot: int) -> None:
        """Pin (mac, vlan) to `slot`, replacing a dynamic entry (MacTable.add_static). Raises BpfError
        (E2BIG: the map has no room left)."""
        key = L.FDB_KEY.pack(mac, vlan)
        old = self.fdb.lookup(key)
        self.fdb.update(key, L.FDB_VAL.pack(slot, L.FDB_STATIC, 0))
        if old is not None and not L.FDB_VAL.unpack(old)[1] & L.FDB_STATIC:
            self._count_removed(1)

    def preload(self, entries: list[tuple[bytes, int, int, int]]) -> int:
        """Learned entries (mac, vlan, slot, seen_ns) into the MAC table, counted as the program counts
        what it learns. Only before the program is on any link: `vs_state[ADDED]` is the program's
        counter, and has no other writer only then. An entry there already is left as it is; returns
        how many were added. Raises BpfError (E2BIG: the map is full)."""
        n = 0
        for mac, vlan, slot, seen_ns in entries:
            try:
                self.fdb.update(L.FDB_KEY.pack(mac, vlan), L.FDB_VAL.pack(slot, 0, seen_ns), BPF_NOEXIST)
            except BpfError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                continue
            n += 1
        if n:
            key = L.U32.pack(L.ST_ADDED)
            cur = L.U64.unpack(self.state.lookup(key) or bytes(8))[0]
            self.state.update(key, L.U64.pack(cur + n))
        return n

    def delete(self, mac: bytes, vlan: int) -> bool:
        """Remove one entry; False when it was not there."""
        key = L.FDB_KEY.pack(mac, vlan)
        old = self.fdb.lookup(key)
        if old is None or not self.fdb.delete(key):
            return False
        if not L.FDB_VAL.unpack(old)[1] & L.FDB_STATIC:
            self._count_removed(1)
        return True

    def flush(self, *, slot: int | None = None, include_static: bool = False, vlan: int | None = None) -> int:
        """Remove entries (dynamic only unless `include_static`), optionally only those of a slot or VLAN."""
        n = 0
        for e in self.fdb_entries():
            if (slot is None or e.slot == slot) and (vlan is None or e.vlan == vlan) \
                    and (include_static or not e.static):
                n += self.delete(e.mac, e.vlan)
        return n

    def write_dynamic(self, mac: bytes, vlan: int, slot: int, seen_ns: int) -> bool:
        """Learn (mac, vlan) behind `slot`, last seen at `seen_ns`, as the program would (what Python
        learned: a port only Python serves, a MAC the core let in at the cap). A new entry is counted
        (`vs_state[REMOVED]` goes down: this module is its one writer). False, and nothing written,
        when the key is static. Raises BpfError (E2BIG: no room in the map)."""
        key = L.FDB_KEY.pack(mac, vlan)
        old = self.fdb.lookup(key)
        if old is not None and L.FDB_VAL.unpack(old)[1] & L.FDB_STATIC:
            return False
        self.fdb.update(key, L.FDB_VAL.pack(slot, 0, seen_ns))
        if old is None:
            self._count_removed(-1)
        return True

    def dynamic_count(self) -> int:
        """Dynamic entries in the table, as the program counts them against the cap (both counters
        are u64 and wrap: the program compares their difference)."""
        added = self.state.lookup(L.U32.pack(L.ST_ADDED))
        removed = self.state.lookup(L.U32.pack(L.ST_REMOVED))
        return (L.U64.unpack(added or bytes(8))[0] - L.U64.unpack(removed or bytes(8))[0]) % (1 << 64)

    def events_lost(self) -> int:
        """Decision events the program had no room for in vs_events since it was loaded."""
        return L.U64.unpack(self.state.lookup(L.U32.pack(L.ST_EVENTS_LOST)) or bytes(8))[0]

    def fdb_events_lost(self) -> int:
        """MAC table events the program had no room for in vs_fdb_events since it was loaded."""
        return L.U64.unpack(self.state.lookup(L.U32.pack(L.ST_FDB_EVENTS_LOST)) or bytes(8))[0]

    def _count_removed(self, n: int) -> None:
        key = L.U32.pack(L.ST_REMOVED)
        cur = L.U64.unpack(self.state.lookup(key) or bytes(8))[0]
        self.state.update(key, L.U64.pack((cur + n) % (1 << 64)))

    # -- counters -----------------------------------------------------------------------------
    def port_counters(self, slot: int) -> dict[str, int]:
        """Every counter of a slot, summed over the CPUs, by name (layout.COUNTERS)."""
        totals = [0] * L.NR_COUNTERS
        for row in self.counters.lookup_percpu(L.U32.pack(slot)) or []:
            for i, n in enumerate(L.COUNTER_ROW.unpack(row)):
                totals[i] += n
        return dict(zip(L.COUNTERS, totals, strict=True))

    # -- test mode ----------------------------------------------------------------------------
    def last_run(self) -> tuple[str, int, list[TestOutput]]:
        """Test mode: (the counter name of the last frame's decision or upcall cause, its VLAN, what
        it sent). Only meaningful right after a BPF_PROG_TEST_RUN with test mode on."""
        reason, vlan, n_out, _ = L.TEST_RUN.unpack(self.test_run.lookup(_ZERO) or bytes(L.TEST_RUN.size))
        outs = []
        for i in range(min(n_out, L.MAX_PORTS)):
            raw = self.test_out.lookup(L.U32.pack(i))
            if raw is None:
                continue
            slot, length, present, proto, tci, head = L.unpack_test_out(raw)
            if present:  # the wire has the metadata tag after the MAC addresses
                head = head[:12] + proto.to_bytes(2, "big") + tci.to_bytes(2, "big") + head[12:]
                length += 4
            outs.append(TestOutput(slot, head[:length], length))  # a frame under HEAD_BYTES: all of it
        return L.COUNTERS[reason], vlan, outs


"""MAC flooding (macof-style) on a real switch: one port sends frames from thousands of random
source MACs into a table of 1,024 entries. The fair eviction policy takes entries only from the port
that holds the most, so the two quiet namespaces keep their entries and their traffic keeps going
to one port only — no loss, and no copy of it leaks to the flooding port. (With a global LRU the
quiet ports' older entries would be evicted first: checked once by hand with that mutant, which fails
here.)
"""

from __future__ import annotations

import sys

import pytest
from switchlab import move_and_address

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from waiting import wait_until

pytestmark = pytest.mark.root

CAPACITY = 1024
MACOF = """
import os, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((sys.argv[1], 0))
n = int(sys.argv[2])
for i in range(n):
    src = bytes([0x02]) + os.urandom(5)
    s.send(b"\\x02\\xee\\xee\\xee\\xee\\xee" + src + b"\\x88\\xb5" + bytes(46))
print(n)
"""


def test_a_mac_flood_from_one_port_does_not_evict_the_others(netns):
    m = SwitchManager()
    try:
        sw = ns_helpers.unique_name("mf")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, max_entries=CAPACITY))
        nss, ifs = {}, {}
        for i, who in enumerate(("attacker", "b", "c"), 1):
            nss[who] = netns("mf" + who[0])
            ifs[who] = ns_helpers.unique_name("mt" + who[0])
            m.add_port(sw, PortSpec(who, PortKind.TAP, ifs[who]))
            move_and_address(ifs[who], nss[who], f"10.89.0.{i}/24")
        assert ns_helpers.ping(nss["b"], "10.89.0.3"), "B and C talk before the flood"
        # The FDB's clock is whole seconds: once it has ticked past B's and C's entries they are the
        # oldest in the table, and a global LRU would take them first.
        wait_until(lambda: all(e.age_s >= 1 for e in m.fdb_show(sw) if e.port in ("b", "c")),
                   what="the FDB clock to tick past B's and C's entries")

        def flood_once() -> int:
            flood = ns_helpers.popen(nss["attacker"], [sys.executable, "-c", MACOF, ifs["attacker"], "20000"])
            assert flood.wait(timeout=60) == 0
            return sum(1 for e in m.fdb_show(sw) if e.port == "attacker")

        # How many of a burst reach the switch depends on the flooder's speed against the switch's
        # (the TAP's queue drops the rest), so flood until the table is full rather than once.
        wait_until(lambda: flood_once() >= CAPACITY - 2, 120, "the flood to fill the table", interval=0)
        entries = m.fdb_show(sw)
        by_port = {p: sum(1 for e in entries if e.port == p) for p in ("attacker", "b", "c")}
        assert len(entries) <= CAPACITY, f"the table stays within its capacity: {len(entries)}"
        assert by_port["attacker"] >= CAPACITY - 2, f"the flood filled the table: {by_port}"
        assert by_port["b"] == 1 and by_port["c"] == 1, f"the quiet ports keep their entries: {by_port}"

        to_attacker = {s.port: s.tx_frames for s in m.stats(sw)}["attacker"]
        assert ns_helpers.ping(nss["b"], "10.89.0.3", count=20, interval=0.01)
        leaked = {s.port: s.tx_frames for s in m.stats(sw)}["attacker"] - to_attacker
        assert leaked == 0, f"B ↔ C stays known unicast after the flood, yet {leaked} frames reached the attacker"

        flood = ns_helpers.popen(nss["attacker"], [sys.executable, "-c", MACOF, ifs["attacker"], "20000"])
        ping = ns_helpers.run(nss["b"], ["ping", "-n", "-q", "-c", "100", "-i", "0.01", "10.89.0.3"],
                              check=False, timeout=60).stdout
        assert flood.wait(timeout=60) == 0
        assert "100 received" in ping, f"B ↔ C lose nothing during a flood: {ping}"
    finally:
        m.shutdown()

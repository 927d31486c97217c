#!/usr/bin/env python3
"""A million-entry MAC table: memory, learn rate, lookup rate of ``vswitch.core.fdb.MacTable``.

Run as its own process (``mactable.py [ENTRIES]``) so its resident-set growth is the table's alone.
The MAC keys are built before the clock starts; "memory" is the RSS growth while learning, i.e.
the table's entries, dicts and per-port LRU links (not the key bytes objects, which the frames
would bring anyway). Prints one JSON object.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

from vswitch.core.fdb import MacTable

PORTS = 64


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    macs = [(0x020000000000 + i).to_bytes(6, "big") for i in range(n)]
    table = MacTable(ageing_s=300, max_entries=max(16, n))
    gc.collect()
    gc.disable()  # a full collection in the middle would be timed as "learning"
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    for i, mac in enumerate(macs):
        table.learn(mac, 1, i % PORTS, 1.0)
    learn_s = time.perf_counter() - t0
    rss1 = rss_bytes()
    t0 = time.perf_counter()
    for i, mac in enumerate(macs):
        table.learn(mac, 1, i % PORTS, 2.0)
    refresh_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = 0
    lookup = table.lookup
    for mac in macs:
        if lookup(mac, 1, 3.0) is not None:
            hits += 1
    lookup_s = time.perf_counter() - t0
    gc.enable()
    print(json.dumps({
        "entries": len(table), "hits": hits,
        "memory_mib": (rss1 - rss0) / 2**20, "bytes_per_entry": (rss1 - rss0) / n,
        "learn_per_s": n / learn_s, "refresh_per_s": n / refresh_s, "lookup_per_s": n / lookup_s,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

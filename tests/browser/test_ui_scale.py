"""The page with a full switch (issue 14, item 6): 64 ports and 8,192 MAC table entries, learned
from real frames on a TAP port. The MAC table stays a screenful of rows in the DOM (virtualised),
filters and scrolls to its last entry; the load time is measured and written to
build/figures/ui-load.json (a figure for the closing note, not an assertion: machines are noisy)."""

# ruff: noqa: F811  (the fixtures `browser`, `ui`, `paths`, `daemons` are imported, then requested by name)
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from browserkit import Ui, browser, console_errors, daemons, paths, screenshot, ui, wait_for, wait_until  # noqa: F401 (fixtures)

from vswitch.control.model import PortKind, PortSpec, StaticEntry, SwitchSpec, SwitchType
from vswitch.frontends.client import RestSwitchApi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from netns import unique_name  # noqa: E402

PORTS = 64
ENTRIES = 8192
SINK = "02:ff:00:00:00:01"
FIGURES = Path(__file__).resolve().parents[2] / "build" / "figures"


def _frame(i: int) -> bytes:
    src = bytes([0x02, 0x00, 0x01, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
    # to the TAP port's own static MAC: learned, then dropped (same port), never flooded to 63 ports
    return bytes.fromhex(SINK.replace(":", "")) + src + b"\x88\xb5" + bytes(46)


def test_the_page_with_64_ports_and_8192_mac_entries(ui: Ui, browser: object) -> None:
    name = f"ui{uuid.uuid4().hex[:8]}"
    tap = unique_name("uit")
    learned = ENTRIES - 1  # and the one static entry
    with RestSwitchApi(url=ui.url, token=ui.admin) as api:
        api.create_switch(SwitchSpec(name, SwitchType.PRIVATE, max_entries=ENTRIES * 2))
        api.add_port(name, PortSpec("vm00", PortKind.TAP, tap))
        for i in range(1, PORTS):
            api.add_port(name, PortSpec(f"vm{i:02d}", PortKind.MEMORY, f"vm{i:02d}"))
        api.fdb_add(name, StaticEntry(SINK, "vm00"))
        # the TAP's host side, up as a VM's NIC would be (IPv6 off: its chatter would add sources)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{tap}.disable_ipv6=1"], check=False)
        subprocess.run(["ip", "link", "set", tap, "up"], check=True)
        wait_until(browser, lambda d: api.get_port(name, "vm00").up, "the TAP port up")
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((tap, 0))
            missing = set(range(learned))
            for _ in range(20):  # a TAP's queue may drop a burst: send again what was not learned
                for i in sorted(missing):
                    s.send(_frame(i))
                have = {e.mac for e in api.fdb_show(name)}
                missing = {i for i in missing if ":".join(f"{b:02x}" for b in _frame(i)[6:12]) not in have}
                if not missing:
                    break
            assert not missing, f"{len(missing)} sources never learned"
        total = len(api.fdb_show(name))
        assert total >= ENTRIES

    browser.get(f"{ui.url}/ui/#token={ui.reader}")  # type: ignore[attr-defined]
    wait_for(browser, "table#switches")
    start = time.monotonic()
    browser.execute_script(f"location.hash = '#/switch/{name}'")  # type: ignore[attr-defined]
    wait_for(browser, f'#fdb-count[data-total="{total}"]')
    wait_until(browser, lambda d: len(d.find_elements("css selector", "svg#picture g.port")) == PORTS,
               "every port drawn")
    load_s = time.monotonic() - start
    rows = browser.find_elements("css selector", "#fdb-list .fdb-row")  # type: ignore[attr-defined]
    assert 0 < len(rows) < 100, f"{len(rows)} rows in the DOM for {total} entries: not virtualised"

    # scrolled to the end, the last entry is drawn (and still only a screenful of rows)
    browser.execute_script("const l = document.getElementById('fdb-list'); l.scrollTop = l.scrollHeight;"  # type: ignore[attr-defined]
                           "l.dispatchEvent(new Event('scroll'));")
    last = browser.execute_script("return VsPicture.fdb[VsPicture.fdb.length - 1].mac")  # type: ignore[attr-defined]
    wait_for(browser, f'#fdb-list .fdb-row[data-mac="{last}"]')
    assert len(browser.find_elements("css selector", "#fdb-list .fdb-row")) < 100  # type: ignore[attr-defined]

    # filtered by a MAC: exactly its row
    mac = ":".join(f"{b:02x}" for b in _frame(4242)[6:12])
    browser.find_element("id", "fdb-filter").send_keys(mac)  # type: ignore[attr-defined]
    wait_for(browser, '#fdb-count[data-shown="1"]')
    assert [r.get_attribute("data-mac") for r in browser.find_elements(  # type: ignore[attr-defined]
        "css selector", "#fdb-list .fdb-row")] == [mac]
    screenshot(browser, "switch-64-ports.png")
    assert console_errors(browser) == []
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / "ui-load.json").write_text(json.dumps(
        {"ports": PORTS, "fdb_entries": total, "load_s": round(load_s, 3),
         "what": "from the switch page's route to its MAC table counted and every port drawn"}) + "\n")
    print(f"switch page with {PORTS} ports and {total} MAC entries drawn in {load_s:.3f} s")

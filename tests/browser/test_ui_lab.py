"""A lab's switch in the browser (issue 14, items 2, 3 and 6): the built-in one-nic lab with its
vswitchd serving the web UI (as `make demo` prints it), the External switch drawn with its host vNIC
and uplink, the host's real `ping` to the server seen as decisions on the picture (the first echo
flooded while the switch acts as a hub, then known unicast), and a trace drawn as numbered hops."""

# ruff: noqa: F811  (the fixtures `browser`, `ui`, `paths`, `daemons` are imported, then requested by name)
from __future__ import annotations

import sys
from pathlib import Path

from browserkit import browser, console_errors, daemons, paths, screenshot, ui, wait_for, wait_until  # noqa: F401 (fixtures)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import labkit  # noqa: E402

from vswitch.lab import builtin_topology  # noqa: E402


def test_a_labs_switch_page_shows_the_ping_and_a_trace(browser: object) -> None:
    with labkit.running_lab(builtin_topology("one-nic"), "ui", ui=True) as lab:
        sw = lab.switches()[0]
        link = lab.ui_link(sw.node, sw.name)
        assert link is not None and "#token=" in link
        assert labkit.ping(lab, "host", "server", count=1)  # ARP resolved: the story is the echoes
        labkit.flush(lab, sw.name)
        browser.get(link)  # type: ignore[attr-defined]
        wait_for(browser, 'svg#picture g.port[data-role="host-vnic"]')
        wait_for(browser, 'svg#picture g.port[data-role="uplink"]')
        wait_for(browser, "#decision-summary[data-frames]")  # the decision stream is open
        assert labkit.ping(lab, "host", "server", count=3, interval=0.2)

        flood = wait_for(browser, '#decisions li[data-kind="flood"][data-in-port="host"]')
        assert flood.get_attribute("data-reason") == "FLOOD_UNKNOWN", flood.text  # type: ignore[attr-defined]
        wait_for(browser, '#decisions li[data-kind="unicast"][data-in-port="host"]')
        wait_for(browser, '#decisions li[data-kind="unicast"][data-in-port="uplink"]')
        screenshot(browser, "lab-learning.png")

        # a trace of the host's frame to the server, now learned: in at host, out at the uplink
        server_mac = labkit.mac(lab, "server", "eth0")
        with labkit.api_factory(sw.socket) as api:
            host_mac = next(e.mac for e in api.fdb_show(sw.name) if e.port == "host")
        form = browser.find_element("css selector", "details#trace-panel")  # type: ignore[attr-defined]
        form.find_element("css selector", "summary").click()
        from selenium.webdriver.support.ui import Select

        Select(form.find_element("name", "in_port")).select_by_value("host")
        form.find_element("name", "src").send_keys(host_mac)
        form.find_element("name", "dst").send_keys(server_mac)
        form.find_element("css selector", 'button[type="submit"]').click()
        verdict = wait_for(browser, "#trace-verdict")
        assert verdict.get_attribute("data-reason") == "FORWARD_LEARNED", verdict.text  # type: ignore[attr-defined]
        wait_until(browser, lambda d: d.find_elements("css selector", '#trace-overlay g.hop[data-stage="egress"]'),
                   "the egress hop drawn")
        screenshot(browser, "lab-trace.png")
        assert console_errors(browser) == []

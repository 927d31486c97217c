"""A lab's switch in the browser (issue 14, items 2, 3 and 6): the built-in one-nic lab with its
vswitchd serving the web UI (as `make demo` prints it), the External switch drawn with its host vNIC
and uplink, the host's real `ping` to the server seen as decisions on the picture (the first echo
flooded while the switch acts as a hub, then known unicast), a trace drawn as numbered hops, and the
lab's page: `lab trace`'s observed path (request and reply, hops 1–12) drawn across the lab, with
the flood's copy that vm1 received and did not ask for."""

# ruff: noqa: F811  (the fixtures `browser`, `ui`, `paths`, `daemons` are imported, then requested by name)
from __future__ import annotations

import sys
from pathlib import Path

from browserkit import browser, console_errors, daemons, paths, screenshot, ui, wait_for, wait_until  # noqa: F401 (fixtures)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import labkit  # noqa: E402

from vswitch.frontends.lab_trace_cli import run_trace  # noqa: E402
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

        # `lab trace` as a user runs it (it records the result for the lab's page), the MAC table
        # forgotten first so that the first echo is flooded
        labkit.flush(lab, sw.name)
        result = run_trace(lab.name, "host", "server", 2)
        assert result["received"] == 2, result.get("ping_error")
        browser.find_element("css selector", "#lab-link").click()  # type: ignore[attr-defined]
        wait_for(browser, 'svg#lab-picture g.lab-node[data-node="server"]')
        wait_for(browser, 'svg#lab-picture g.lab-switch[data-switch="ext"]')
        title = wait_for(browser, "#lab-trace-title")
        assert title.get_attribute("data-seq") == "1", title.text  # type: ignore[attr-defined]
        hops = browser.find_elements("css selector", "#lab-hops li")  # type: ignore[attr-defined]
        expected = result["echoes"][0]["hops"]
        assert [h.get_attribute("data-n") for h in hops] == [str(h["n"]) for h in expected]
        messages = [h.get_attribute("data-message") for h in hops]
        assert "request" in messages and "reply" in messages and len(hops) >= 12, messages
        copies = browser.find_elements("css selector", '#lab-hops li[data-copy="unasked"]')  # type: ignore[attr-defined]
        assert copies and "vm1" in copies[0].text, [h.text for h in hops]
        drawn = browser.find_elements("css selector", "#lab-overlay g.hop")  # type: ignore[attr-defined]
        assert len(drawn) == len(expected), "every observed hop is drawn on the lab"
        assert browser.find_elements("css selector", '#lab-overlay g.hop[data-copy="unasked"]')  # type: ignore[attr-defined]
        assert browser.find_elements("css selector", 'polyline[data-message="reply"]')  # type: ignore[attr-defined]
        screenshot(browser, "lab-observed-path.png")

        # a second trace, run while the page is open, appears on it without a reload
        run_trace(lab.name, "vm1", "server", 1)
        wait_until(browser, lambda d: d.execute_script(
            "const t = document.querySelector('#lab-trace-title'); return t && t.dataset.from;") == "vm1",
            "the new trace shown")
        assert console_errors(browser) == []

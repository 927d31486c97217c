"""Learning, live, in a real browser (issue 14, items 2 and 6): two namespaces on a switch (veth
link ports), the real `ping` between them, and the page's picture receiving the switch's decisions
from the sampled stream — the first ARP request flooded ("acting as a hub"), then known unicast to
one port — with the ports' counters moving. Both datapaths."""

# ruff: noqa: F811  (the fixtures `browser`, `ui`, `paths`, `daemons` are imported, then requested by name)
from __future__ import annotations

import sys
import uuid
from pathlib import Path

from browserkit import Ui, browser, console_errors, daemons, paths, screenshot, ui, wait_for, wait_until  # noqa: F401 (fixtures)

import datapaths
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.control.netlink import Netlink
from vswitch.frontends.client import RestSwitchApi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from switchlab import delete_link, move_and_address, veth_pair  # noqa: E402

import netns as ns_helpers  # noqa: E402


def test_the_picture_shows_floods_then_known_unicast_as_a_ping_passes(
        ui: Ui, browser: object, netns, datapath: str) -> None:  # type: ignore[no-untyped-def]
    ns_a, ns_b = netns("ula"), netns("ulb")
    links = []
    name = f"ui{uuid.uuid4().hex[:8]}"
    try:
        for ns, cidr in ((ns_a, "10.77.0.1/24"), (ns_b, "10.77.0.2/24")):
            outer, inner = ns_helpers.unique_name("ulo"), ns_helpers.unique_name("uli")
            veth_pair(outer, inner)
            links.append(outer)
            move_and_address(inner, ns, cidr)
            with Netlink() as nl:
                nl.set_up(outer, True)
        with RestSwitchApi(url=ui.url, token=ui.admin) as api:
            api.create_switch(SwitchSpec(name, SwitchType.PRIVATE, datapath=datapath))
            api.add_port(name, PortSpec("a", PortKind.LINK, links[0]))
            api.add_port(name, PortSpec("b", PortKind.LINK, links[1]))
            datapaths.assert_runs_on(api.get_switch(name).datapath, datapath)

        browser.get(f"{ui.url}/ui/#token={ui.reader}")  # type: ignore[attr-defined]
        browser.execute_script(f"location.hash = '#/switch/{name}'")  # type: ignore[attr-defined]
        # the stream is open once its first summary (sent every second) has arrived
        wait_for(browser, "#decision-summary[data-frames]")
        assert ns_helpers.ping(ns_a, "10.77.0.2", count=3, interval=0.2)

        flood = wait_for(browser, '#decisions li[data-kind="flood"][data-in-port="a"]')
        assert flood.get_attribute("data-reason") == "FLOOD_BROADCAST", flood.text  # type: ignore[attr-defined]
        assert "→ b" in flood.text  # type: ignore[attr-defined]
        unicast = wait_for(browser, '#decisions li[data-kind="unicast"]')
        assert unicast.get_attribute("data-reason") == "FORWARD_LEARNED"  # type: ignore[attr-defined]
        # the counters on the picture move with the frames
        wait_until(browser, lambda d: int(d.find_element("css selector", 'svg#picture g.port[data-port="a"]')
                                          .get_attribute("data-rx") or 0) >= 3, "port a's counters")
        screenshot(browser, f"learning-{datapath}.png")
        assert console_errors(browser) == []
    finally:
        with RestSwitchApi(url=ui.url, token=ui.admin) as api:
            if name in [s.name for s in api.list_switches()]:
                api.delete_switch(name)
        for link in links:
            delete_link(link)

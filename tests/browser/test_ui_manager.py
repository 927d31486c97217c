"""The Virtual Switch Manager's forms in a real browser (issue 14, items 1 and 6): a switch and its
ports created, changed and removed through the page are what the API then reports; an External
switch's trial connection counts down and is confirmed; a reader is shown no control that changes
anything, and the API refuses it (403) when it tries anyway."""

# ruff: noqa: F811  (the fixtures `browser`, `ui`, `paths`, `daemons` are imported, then requested by name)
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from browserkit import Ui, browser, console_errors, daemons, paths, screenshot, ui, wait_for, wait_until  # noqa: F401 (fixtures)

from vswitch.control.model import NotFound, PortKind, PortSpec, StaticEntry, SwitchSpec, SwitchType
from vswitch.frontends.client import RestSwitchApi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from switchlab import delete_link, veth_pair  # noqa: E402

from netns import unique_name  # noqa: E402

MUTATION_CONTROLS = ("#new-switch, #add-port, #switch-settings, #delete-switch, .remove-port, #add-static, "
                     "form[id^=port-form], .confirm-button, .del-static")


def _fill(form: object, **values: object) -> None:
    """Type `values` into the form's fields by name (select: the option's value; checkbox: bool)."""
    from selenium.webdriver.support.ui import Select

    for name, value in values.items():
        el = form.find_element("css selector", f'[name="{name}"]')  # type: ignore[attr-defined]
        if el.tag_name == "select":
            Select(el).select_by_value(str(value))
        elif el.get_attribute("type") == "checkbox":
            if el.is_selected() != bool(value):
                el.click()
        else:
            el.clear()
            el.send_keys(str(value))


def _submit(form: object) -> None:
    form.find_element("css selector", 'button[type="submit"]').click()  # type: ignore[attr-defined]


def _open(driver: object, css: str) -> object:
    """The <details> at `css`, opened."""
    el = wait_for(driver, css)
    if el.get_attribute("open") is None:  # type: ignore[attr-defined]
        el.find_element("css selector", "summary").click()  # type: ignore[attr-defined]
    return el


def _renders(driver: object) -> int:
    return int(driver.find_element("id", "view").get_attribute("data-renders") or 0)  # type: ignore[attr-defined]


def _submit_and_render(driver: object, form: object) -> None:
    """Submit `form` and wait until the page has drawn again what the change made."""
    before = _renders(driver)
    _submit(form)
    wait_until(driver, lambda d: _renders(d) > before, "the page drawn again")


def _switch_page(driver: object, ui: Ui, name: str) -> None:
    def shown(d: object) -> bool:
        return bool(d.current_url.endswith(f"#/switch/{name}")  # type: ignore[attr-defined]
                    and d.find_elements("css selector", "table#ports"))  # type: ignore[attr-defined]
    try:
        wait_until(driver, shown, f"switch {name}'s page")
    except Exception:
        # say what the page said (a refusal in a form, a notice) rather than only that it timed out
        said = driver.execute_script(  # type: ignore[attr-defined]
            "return [...document.querySelectorAll('#notice, .form-error')].map(e => e.textContent).join(' | ')")
        where = driver.current_url  # type: ignore[attr-defined]
        raise AssertionError(f"switch {name}'s page not shown; the page says: {said!r}; at {where}") from None


def test_a_switch_and_its_ports_made_and_changed_through_the_page(ui: Ui, browser: object, tmp_path: Path) -> None:
    name = f"ui{uuid.uuid4().hex[:8]}"
    sock1, sock2 = tmp_path / "vm1.sock", tmp_path / "vm2.sock"
    browser.get(f"{ui.url}/ui/#token={ui.admin}")  # type: ignore[attr-defined]
    create = wait_for(browser, "form#create-switch")
    _fill(create, name=name, type="private")
    # waited until that render has finished, not only until its table shows: the next step counts renders
    _submit_and_render(browser, create)
    _switch_page(browser, ui, name)
    with RestSwitchApi(url=ui.url, token=ui.reader) as api:
        assert api.get_switch(name).type == "private"

        for port, sock in (("vm1", sock1), ("vm2", sock2)):
            form = _open(browser, "details#add-port-panel").find_element("css selector", "form")  # type: ignore[attr-defined]
            _fill(form, name=port, kind="qemu-stream", target=str(sock))
            _submit_and_render(browser, form)
            wait_for(browser, f'table#ports tr[data-port="{port}"]')
        assert {(p.name, p.kind, p.target) for p in api.list_ports(name)} == {
            ("vm1", "qemu-stream", str(sock1)), ("vm2", "qemu-stream", str(sock2))}

        # VLAN mode and port features, as Hyper-V's adapter settings
        settings = _open(browser, 'tr[data-port="vm1"] td.port-actions details:nth-of-type(2)')
        form = settings.find_element("css selector", "form")  # type: ignore[attr-defined]
        _fill(form, vlan=20, dhcp_guard=True, storm_limit=500)
        _submit_and_render(browser, form)
        wait_until(browser, lambda d: api.get_port(name, "vm1").vlan_mode == "access 20", "vm1 in VLAN 20")
        vm1 = api.get_port(name, "vm1")
        assert (vm1.dhcp_guard, vm1.storm_limit, vm1.router_guard) == (True, 500, False)
        settings = _open(browser, 'tr[data-port="vm2"] td.port-actions details:nth-of-type(2)')
        form = settings.find_element("css selector", "form")  # type: ignore[attr-defined]
        _fill(form, vlan_mode="trunk", trunk="10,20", native=10)
        _submit_and_render(browser, form)
        wait_until(browser, lambda d: api.get_port(name, "vm2").vlan_mode == "trunk 10,20 native 10", "vm2 a trunk")

        # a static MAC, shown in the MAC table
        form = _open(browser, "#fdb-panel details").find_element("css selector", "form")  # type: ignore[attr-defined]
        _fill(form, mac="02:00:00:00:aa:01", port="vm1")
        _submit(form)
        wait_for(browser, '#fdb-list .fdb-row[data-mac="02:00:00:00:aa:01"][data-port="vm1"]')
        assert [(e.mac, e.port, e.vlan, e.static) for e in api.fdb_show(name)] == [
            ("02:00:00:00:aa:01", "vm1", 20, True)]

        # a refusal is shown in the form and changes nothing (its 409 is the one console error expected)
        assert console_errors(browser) == []
        form = _open(browser, "details#add-port-panel").find_element("css selector", "form")  # type: ignore[attr-defined]
        _fill(form, name="vm1", kind="qemu-stream", target=str(tmp_path / "other.sock"))
        _submit(form)
        error = wait_for(browser, "#add-port .form-error:not([hidden])")
        assert "vm1" in error.text, error.text  # type: ignore[attr-defined]
        assert len(api.list_ports(name)) == 2
        browser.get_log("browser")  # type: ignore[attr-defined]

        # the connection type, then the name
        form = _open(browser, "details#switch-settings").find_element("css selector", "form#switch-connection")  # type: ignore[attr-defined]
        _fill(form, type="internal")
        _submit_and_render(browser, form)
        wait_until(browser, lambda d: api.get_switch(name).type == "internal", "the switch internal")
        assert api.get_switch(name).host_vnic
        renamed = name + "r"
        form = _open(browser, "details#switch-settings").find_element("css selector", "form#rename-switch")  # type: ignore[attr-defined]
        _fill(form, name=renamed)
        _submit_and_render(browser, form)
        _switch_page(browser, ui, renamed)
        assert [p.name for p in api.list_ports(renamed) if p.role == "vm"] == ["vm1", "vm2"]

        # remove a port: asked twice
        remove = wait_for(browser, 'tr[data-port="vm2"] button.remove-port')
        remove.click()  # type: ignore[attr-defined]
        assert "Remove vm2?" in remove.text  # type: ignore[attr-defined]
        before = _renders(browser)
        remove.click()  # type: ignore[attr-defined]
        wait_until(browser, lambda d: _renders(d) > before
                   and not d.find_elements("css selector", 'tr[data-port="vm2"]'), "vm2 gone")
        assert [p.name for p in api.list_ports(renamed) if p.role == "vm"] == ["vm1"]

        # the configuration, exported as a file
        browser.get(f"{ui.url}/ui/#/")  # type: ignore[attr-defined]
        wait_for(browser, "button#export").click()  # type: ignore[attr-defined]
        exported = tmp_path / "downloads" / "vswitch-config.json"
        wait_until(browser, lambda d: exported.exists() and exported.stat().st_size > 0, "the exported file")
        doc = json.loads(exported.read_text())
        assert [s["switch"]["name"] for s in doc["switches"]] == [renamed]

        # delete the switch: asked twice
        browser.get(f"{ui.url}/ui/#/switch/{renamed}")  # type: ignore[attr-defined]
        _open(browser, "details#switch-settings")
        delete = wait_for(browser, "button#delete-switch")
        delete.click()  # type: ignore[attr-defined]
        delete.click()  # type: ignore[attr-defined]
        wait_for(browser, "table#switches")
        with pytest.raises(NotFound):
            api.get_switch(renamed)
    assert console_errors(browser) == []


def test_a_trace_is_drawn_as_numbered_hops(ui: Ui, browser: object) -> None:
    name = f"ui{uuid.uuid4().hex[:8]}"
    with RestSwitchApi(url=ui.url, token=ui.admin) as api:
        api.create_switch(SwitchSpec(name, SwitchType.PRIVATE))
        api.add_port(name, PortSpec("vm1", PortKind.MEMORY, "vm1", vlan=20))
        api.add_port(name, PortSpec("vm2", PortKind.MEMORY, "vm2", trunk=(10, 20)))
        api.add_port(name, PortSpec("vm3", PortKind.MEMORY, "vm3"))
        expected = api.trace(name, "vm1", "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff")
    browser.get(f"{ui.url}/ui/#token={ui.reader}")  # type: ignore[attr-defined]
    # the list drawn first: the token taken from the URL changes the hash and draws it, and a switch
    # page asked for before that was drawn twice, the panel found in the first one gone (CI saw it)
    wait_for(browser, f'tr[data-switch="{name}"]')
    browser.execute_script(f"location.hash = '#/switch/{name}'")  # type: ignore[attr-defined]
    form = _open(browser, "details#trace-panel").find_element("css selector", "form")  # type: ignore[attr-defined]
    _fill(form, in_port="vm1", src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
    _submit(form)
    verdict = wait_for(browser, "#trace-verdict")
    assert verdict.get_attribute("data-reason") == "FLOOD_BROADCAST"  # type: ignore[attr-defined]
    assert "vm2" in verdict.text and "vm3" not in verdict.text, verdict.text  # type: ignore[attr-defined]
    hops = browser.find_elements("css selector", "#trace-hops li")  # type: ignore[attr-defined]
    assert [h.get_attribute("data-stage") for h in hops] == [s.stage for s in expected.steps]
    drawn = browser.find_elements("css selector", "svg#picture #trace-overlay g.hop")  # type: ignore[attr-defined]
    assert [g.get_attribute("data-hop") for g in drawn] == [str(i + 1) for i in range(len(expected.steps))]
    # the last hop (egress) is drawn at vm2's port, not at the switch
    egress = drawn[-1].find_element("css selector", "circle")
    assert drawn[-1].get_attribute("data-stage") == "egress"
    assert abs(float(egress.get_attribute("cx")) - float(_anchor_x(browser, "vm2"))) < 40
    screenshot(browser, "trace.png")


def _anchor_x(driver: object, port: str) -> str:
    return driver.execute_script(f"return VsPicture.anchor({port!r}).x")  # type: ignore[attr-defined]


def test_a_reader_sees_no_control_that_changes_anything(ui: Ui, browser: object) -> None:
    name = f"ui{uuid.uuid4().hex[:8]}"
    with RestSwitchApi(url=ui.url, token=ui.admin) as api:
        api.create_switch(SwitchSpec(name, SwitchType.PRIVATE))
        api.add_port(name, PortSpec("vm1", PortKind.MEMORY, "vm1"))
        api.fdb_add(name, StaticEntry(
            "02:00:00:00:bb:01", "vm1"))
    browser.get(f"{ui.url}/ui/#token={ui.reader}")  # type: ignore[attr-defined]
    wait_for(browser, f'tr[data-switch="{name}"]')
    assert browser.find_elements("css selector", MUTATION_CONTROLS) == []  # type: ignore[attr-defined]
    browser.execute_script(f"location.hash = '#/switch/{name}'")  # type: ignore[attr-defined]
    wait_for(browser, 'svg#picture g.port[data-port="vm1"]')
    wait_for(browser, '#fdb-list .fdb-row[data-mac="02:00:00:00:bb:01"]')
    assert browser.find_elements("css selector", MUTATION_CONTROLS) == []  # type: ignore[attr-defined]
    # what it may do: capture and trace (GETs) are there
    assert browser.find_elements("css selector", 'tr[data-port="vm1"] form[id^=capture-]')  # type: ignore[attr-defined]
    assert browser.find_elements("css selector", "form#trace-form")  # type: ignore[attr-defined]
    # and the API itself refuses a reader's change, whatever the page shows
    refused = browser.execute_async_script(  # type: ignore[attr-defined]
        "const done = arguments[0];"
        f"Vs.api('/switches/{name}', {{method: 'DELETE'}}).then(() => done('deleted'),"
        " (e) => done([e.status, e.message]));")
    assert refused[0] == 403, refused
    with RestSwitchApi(url=ui.url, token=ui.admin) as api:
        assert api.get_switch(name).name == name
    browser.get_log("browser")  # type: ignore[attr-defined]  # that 403 is the one error expected
    screenshot(browser, "reader-view.png")


def test_an_external_switch_is_made_on_trial_and_confirmed_through_the_page(
        ui: Ui, browser: object, netns) -> None:  # type: ignore[no-untyped-def]
    # the NIC: one end of a veth whose other end is in a namespace of the test's (nothing of the
    # machine's own is taken over)
    ns = netns("uix")
    nic, peer = unique_name("uin"), unique_name("uip")
    veth_pair(nic, peer, None, ns)
    name = f"ui{uuid.uuid4().hex[:8]}"
    try:
        browser.get(f"{ui.url}/ui/#token={ui.admin}")  # type: ignore[attr-defined]
        create = wait_for(browser, "form#create-switch")
        assert nic in [o.get_attribute("value") for o in create.find_elements(  # type: ignore[attr-defined]
            "css selector", "select[name=nic] option")]
        _fill(create, name=name, type="external", nic=nic, allow_management_os=True, confirm_timeout_s=120)
        _submit_and_render(browser, create)
        _switch_page(browser, ui, name)
        countdown = wait_for(browser, f'.confirm[data-confirm="{name}"] .countdown')
        with RestSwitchApi(url=ui.url, token=ui.reader) as api:
            sw = api.get_switch(name)
            assert (sw.type, sw.nic, sw.state) == ("external", nic, "awaiting-confirm")
            assert 0 < int(countdown.get_attribute("data-seconds")) <= 120  # type: ignore[attr-defined]
            # the picture: the host's vNIC above, the uplink out to the NIC
            wait_for(browser, 'svg#picture g.port[data-role="host-vnic"]')
            wait_for(browser, 'svg#picture g.port[data-role="uplink"]')
            screenshot(browser, "external-on-trial.png")
            before = _renders(browser)
            wait_for(browser, "button.confirm-button").click()  # type: ignore[attr-defined]
            wait_until(browser, lambda d: _renders(d) > before, "the page drawn again")
            assert api.get_switch(name).state == "up"
            assert browser.find_elements("css selector", ".confirm") == []  # type: ignore[attr-defined]

            _open(browser, "details#switch-settings")
            delete = wait_for(browser, "button#delete-switch")
            delete.click()  # type: ignore[attr-defined]
            delete.click()  # type: ignore[attr-defined]
            wait_for(browser, "table#switches")
            wait_until(browser, lambda d: nic in [n.name for n in api.list_nics()], "the NIC given back")
        assert console_errors(browser) == []
    finally:
        with RestSwitchApi(url=ui.url, token=ui.admin) as api:
            try:
                api.delete_switch(name)
            except NotFound:
                pass
        delete_link(nic)

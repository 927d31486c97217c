"""The web UI in a real browser (issue 14, item 6): signing in with each role, the switches and a
switch's ports as the API has them, a token given in the link, no console errors."""

# ruff: noqa: F811  (the fixtures `browser`, `ui`, `paths`, `daemons` are imported, then requested by name)
from __future__ import annotations

import uuid

from browserkit import PAGE_TIMEOUT_S, Ui, browser, console_errors, daemons, paths, screenshot, ui, wait_for  # noqa: F401 (fixtures)

from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.frontends.client import RestSwitchApi


def test_switches_and_ports_seen_in_the_browser_with_each_role(ui: Ui, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    name = f"ui{uuid.uuid4().hex[:8]}"
    with RestSwitchApi(url=ui.url, token=ui.admin) as api:
        api.create_switch(SwitchSpec(name, SwitchType.PRIVATE))
        api.add_port(name, PortSpec("vm1", PortKind.MEMORY, "vm1"))

    browser.get(f"{ui.url}/ui/")  # type: ignore[attr-defined]
    wait_for(browser, "form#login")  # no token yet: the page asks for one
    browser.find_element(By.ID, "token").send_keys("not-a-token")  # type: ignore[attr-defined]
    browser.find_element(By.CSS_SELECTOR, "form#login button").click()  # type: ignore[attr-defined]
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda d: "refused" in d.find_element(By.ID, "login").text)
    browser.get_log("browser")  # type: ignore[attr-defined]  # that 401 is the one error expected
    browser.find_element(By.ID, "token").send_keys(ui.reader)  # type: ignore[attr-defined]
    browser.find_element(By.CSS_SELECTOR, "form#login button").click()  # type: ignore[attr-defined]
    row = wait_for(browser, f'table#switches tr[data-switch="{name}"]')
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]  # type: ignore[attr-defined]
    assert cells[:4] == [name, "private", "", "1"], cells
    assert browser.find_element(By.ID, "whoami").get_attribute("data-role") == "reader"  # type: ignore[attr-defined]
    assert ui.reader not in browser.current_url  # type: ignore[attr-defined]

    row.find_element(By.TAG_NAME, "a").click()  # type: ignore[attr-defined]
    port_row = wait_for(browser, 'table#ports tr[data-port="vm1"]')
    cells = [td.text for td in port_row.find_elements(By.TAG_NAME, "td")]  # type: ignore[attr-defined]
    assert cells[:4] == ["vm1", "vm", "memory", "vm1"], cells
    wait_for(browser, 'svg#picture g.port[data-port="vm1"]')
    screenshot(browser, "switch-ports.png")
    assert console_errors(browser) == []

    # a token in the URL's fragment (as a printed link carries it) signs in and leaves the address bar
    browser.get(f"{ui.url}/ui/#token={ui.admin}")  # type: ignore[attr-defined]
    wait_for(browser, f'table#switches tr[data-switch="{name}"]')
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda d: d.find_element(By.ID, "whoami").get_attribute("data-role") == "admin")
    assert ui.admin not in browser.current_url  # type: ignore[attr-defined]
    assert console_errors(browser) == []

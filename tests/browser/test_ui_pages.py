"""The web UI in a real browser (issue 14, item 6, first part): Debian's headless Chromium, driven
by selenium through Debian's chromedriver, against a real vswitchd on loopback TCP with tokens.

Asserts on the DOM, never on pixels; saves a screenshot of each page under build/screenshots/.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_daemon_socket import Daemon, daemons, free_port, needs_manager, paths, start  # noqa: E402,F401

from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType  # noqa: E402
from vswitch.frontends.client import RestSwitchApi  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency (make test installs it)")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (make test installs them as root)")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
PAGE_TIMEOUT_S = 20.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for(driver: object, css: str) -> object:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PAGE_TIMEOUT_S).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def _console_errors(driver: object) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]


@needs_manager
def test_switches_and_ports_seen_in_the_browser_with_each_role(
        paths: tuple[Path, Path], daemons: list[Daemon], browser: object, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    state, sock = paths
    admin, reader = f"adm-{uuid.uuid4().hex}", f"rd-{uuid.uuid4().hex}"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin:{admin}\nreader:{reader}\n")
    tokens.chmod(0o600)
    port = free_port()
    start(daemons, state, sock, "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens))
    url = f"http://127.0.0.1:{port}"
    name = f"ui{uuid.uuid4().hex[:8]}"
    with RestSwitchApi(url=url, token=admin) as api:
        api.create_switch(SwitchSpec(name, SwitchType.PRIVATE))
        api.add_port(name, PortSpec("vm1", PortKind.MEMORY, "vm1"))

    browser.get(f"{url}/ui/")  # type: ignore[attr-defined]
    _wait_for(browser, "form#login")  # no token yet: the page asks for one
    browser.find_element(By.ID, "token").send_keys("not-a-token")  # type: ignore[attr-defined]
    browser.find_element(By.CSS_SELECTOR, "form#login button").click()  # type: ignore[attr-defined]
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda d: "refused" in d.find_element(By.ID, "login").text)
    browser.get_log("browser")  # type: ignore[attr-defined]  # that 401 is the one error expected
    browser.find_element(By.ID, "token").send_keys(reader)  # type: ignore[attr-defined]
    browser.find_element(By.CSS_SELECTOR, "form#login button").click()  # type: ignore[attr-defined]
    row = _wait_for(browser, f'table#switches tr[data-switch="{name}"]')
    assert row.text.split() == [name, "private", "1"], row.text  # type: ignore[attr-defined]
    assert browser.find_element(By.ID, "whoami").get_attribute("data-role") == "reader"  # type: ignore[attr-defined]
    assert reader not in browser.current_url  # type: ignore[attr-defined]

    row.find_element(By.TAG_NAME, "a").click()  # type: ignore[attr-defined]
    port_row = _wait_for(browser, 'table#ports tr[data-port="vm1"]')
    assert port_row.text.split()[:2] == ["vm1", "memory"], port_row.text  # type: ignore[attr-defined]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "switch-ports.png"))  # type: ignore[attr-defined]
    assert _console_errors(browser) == []

    # a token in the URL's fragment (as a printed link carries it) signs in and leaves the address bar
    browser.get(f"{url}/ui/#token={admin}")  # type: ignore[attr-defined]
    _wait_for(browser, f'table#switches tr[data-switch="{name}"]')
    WebDriverWait(browser, PAGE_TIMEOUT_S).until(
        lambda d: d.find_element(By.ID, "whoami").get_attribute("data-role") == "admin")
    assert admin not in browser.current_url  # type: ignore[attr-defined]
    assert _console_errors(browser) == []

"""Browser tests' fixtures and helpers (imported by each test module: a conftest.py here would take
the module name `conftest` from tests/conftest.py, whose helpers other tests import): Debian's
headless Chromium (selenium through Debian's chromedriver) and
a real vswitchd on loopback TCP with an admin and a reader token. Tests assert on the DOM, never on
pixels, and save screenshots under build/screenshots/."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_daemon_socket import Daemon, daemons, free_port, paths, start  # noqa: E402,F401

from vswitch.frontends.client import RestSwitchApi  # noqa: E402

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
#: generous: the suite runs the browser beside other tests on 2 cores
PAGE_TIMEOUT_S = 60.0


def _skip_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is a test dependency (make test installs it)"
    if not (CHROMIUM and CHROMEDRIVER):
        return "needs Debian's chromium and chromium-driver (make test installs them as root)"
    return None


@dataclass
class Ui:
    """A running vswitchd and the tokens of its two roles."""

    url: str
    admin: str
    reader: str
    daemon: Daemon


@pytest.fixture
def ui(paths: tuple[Path, Path], daemons: list[Daemon], tmp_path: Path) -> Iterator[Ui]:  # noqa: F811
    """A vswitchd with a TCP listener and an admin's and a reader's token. Every switch a test left
    is deleted before the daemon stops: a stopping daemon keeps its TAPs and host vNICs (the VMs'
    and the host's), which would stay in the root namespace after the test."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    state, sock = paths
    admin, reader = f"adm-{uuid.uuid4().hex}", f"rd-{uuid.uuid4().hex}"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin:{admin}\nreader:{reader}\n")
    tokens.chmod(0o600)
    port = free_port()
    d = start(daemons, state, sock, "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens))
    ui = Ui(f"http://127.0.0.1:{port}", admin, reader, d)
    try:
        yield ui
    finally:
        if d.proc.poll() is None:
            with RestSwitchApi(url=ui.url, token=admin) as api:
                for sw in api.list_switches():
                    api.delete_switch(sw.name)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # downloads (a capture, the configuration) land in the test's own directory, unasked
    opts.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: object, css: str, timeout: float = PAGE_TIMEOUT_S) -> object:
    """The first element matching `css` once it is in the page (AssertionError saying what the page
    says after `timeout`)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        raise AssertionError(f"waited {timeout:.0f} s for {css}; {page_says(driver)}") from None


def wait_until(driver: object, predicate, what: str, timeout: float = PAGE_TIMEOUT_S) -> object:  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(predicate)
    except TimeoutException:
        raise AssertionError(f"waited {timeout:.0f} s for {what}; {page_says(driver)}") from None


def page_says(driver: object) -> str:
    """What a page that did not get where a test waited says: where it is, its notices and form
    errors, its console's errors (a failed request names its route there)."""
    try:
        said = driver.execute_script(  # type: ignore[attr-defined]
            "return [...document.querySelectorAll('#notice, .form-error, .error')]"
            ".map(e => e.textContent.trim()).filter(Boolean).join(' | ')")
        return f"the page at {driver.current_url} says {said!r}; console errors: {console_errors(driver)}"  # type: ignore[attr-defined]
    except Exception as exc:  # the browser itself is gone: say that instead
        return f"the page could not be read ({exc!r})"


def console_errors(driver: object) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]


def screenshot(driver: object, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    return path

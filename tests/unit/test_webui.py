"""The web UI's files (frontends/webui.py): served from the package without a token, with a policy
that lets the page load nothing from elsewhere; GET /whoami tells the page its caller's role."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fake_api import FakeApi
from fastapi.testclient import TestClient

from vswitch.frontends.rest import make_app
from vswitch.frontends.tokens import Role
from vswitch.frontends.webui import UI_DIR

TOKENS = {"adm-ui": Role.ADMIN, "rd-ui": Role.READER}


def _client() -> TestClient:
    return TestClient(make_app(FakeApi(), tokens=TOKENS))


def test_the_page_and_its_assets_need_no_token_and_name_only_their_own_origin() -> None:
    client = _client()
    r = client.get("/ui", follow_redirects=False)
    assert r.status_code in (301, 302, 307) and r.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and "Virtual Switch Manager" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # every asset the page names is one of ours, and is served
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert assets, page.text
    for asset in assets:
        if asset.startswith("data:"):  # the empty icon: kept from asking for /favicon.ico
            continue
        assert not re.match(r"^[a-z]+:|^//", asset), f"{asset} is not served by vswitchd"
        assert client.get("/ui/" + asset).status_code == 200, asset
    r = client.get("/ui/..%2fwebui.py")
    assert r.status_code == 404 and "UI_PREFIX" not in r.text, "the files never reach past the UI's directory"


def test_the_api_still_needs_a_token_and_whoami_says_the_role() -> None:
    client = _client()
    assert client.get("/switches").status_code == 401
    assert client.get("/uiswitches").status_code == 401, "only the /ui path and below is public"
    assert client.get("/whoami").status_code == 401
    for token, role in TOKENS.items():
        r = client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == {"role": role.value, "lab": False}


def test_without_tokens_every_caller_is_admin() -> None:
    assert TestClient(make_app(FakeApi())).get("/whoami").json() == {"role": "admin", "lab": False}


def test_the_scripts_use_no_inline_code_the_policy_would_block() -> None:
    page = (UI_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script: CSP script-src 'self' blocks it"
    assert not re.search(r"<[^>]+\son[a-z]+=", page), "an inline handler: CSP blocks it"


def test_a_labs_daemon_serves_the_labs_view_to_a_reader_and_says_it_has_one(tmp_path: Path) -> None:
    view = tmp_path / "view.json"
    client = TestClient(make_app(FakeApi(), tokens=TOKENS, lab_view=view))
    reader = {"Authorization": "Bearer rd-ui"}
    assert client.get("/lab").status_code == 401, "the lab's view needs a token like the rest of the API"
    assert client.get("/whoami", headers=reader).json() == {"role": "reader", "lab": True}
    r = client.get("/lab", headers=reader)
    assert r.status_code == 404 and "not written its view" in r.json()["error"]
    view.write_text(json.dumps({"name": "l1", "traces": []}))
    r = client.get("/lab", headers=reader)
    assert r.status_code == 200 and r.json() == {"name": "l1", "traces": []}


def test_a_daemon_that_is_no_labs_has_no_lab_page() -> None:
    r = TestClient(make_app(FakeApi())).get("/lab")
    assert r.status_code == 404 and "vswitch lab up" in r.json()["error"]

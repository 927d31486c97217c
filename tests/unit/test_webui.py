"""The web UI's files (frontends/webui.py): served from the package without a token, with a policy
that lets the page load nothing from elsewhere; GET /whoami tells the page its caller's role."""

from __future__ import annotations

import re

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
        assert r.status_code == 200 and r.json() == {"role": role.value}


def test_without_tokens_every_caller_is_admin() -> None:
    assert TestClient(make_app(FakeApi())).get("/whoami").json() == {"role": "admin"}


def test_the_scripts_use_no_inline_code_the_policy_would_block() -> None:
    page = (UI_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script: CSP script-src 'self' blocks it"
    assert not re.search(r"<[^>]+\son[a-z]+=", page), "an inline handler: CSP blocks it"

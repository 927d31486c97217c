"""The management plane is bounded and role-checked (issue 10, items 6 and 7), over a fake SwitchApi.

Bodies over 1 MiB are refused without being read whole; trunk lists are capped, deduplicated and
reported as ranges; confirm timeouts are finite and at most an hour; refused input is echoed only
as a short prefix; watches are bounded in time, events and number and never hold the threadpool;
the bearer scheme is case-insensitive; a reader token may GET every route and is refused (403) on
every mutation, found by walking /openapi.json.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from typing import Any

import pytest
from fake_api import FakeApi, private
from fastapi.testclient import TestClient

from vswitch.control.model import (
    ECHO_MAX,
    FieldError,
    InvalidRequest,
    PortKind,
    PortSpec,
    SwitchSpec,
    SwitchType,
    clip,
    parse_vlan_list,
    trunk_vlans,
)
from vswitch.control.store import ConfigStore
from vswitch.frontends.rest import MAX_BODY_BYTES, WATCH_CONCURRENCY, BodyLimit, WatchPool, make_app
from vswitch.frontends.tokens import Role, TokenFileError, parse_tokens

ADMIN, READER = "adm1n-token", "r3ader-token"


@pytest.fixture
def api() -> FakeApi:
    api = FakeApi()
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("p", PortKind.MEMORY, "p"))
    return api


@pytest.fixture
def client(api: FakeApi) -> TestClient:
    return TestClient(make_app(api, tokens={ADMIN: Role.ADMIN, READER: Role.READER}))


def auth(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


# ---- bodies ---------------------------------------------------------------------------------------

def test_announced_oversize_body_is_413_before_it_is_read(client: TestClient, api: FakeApi) -> None:
    calls = len(api.calls)
    r = client.post("/switches", content=b"{" + b" " * MAX_BODY_BYTES + b"}", headers={
        **auth(ADMIN), "content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["error"] and str(MAX_BODY_BYTES) in r.json()["error"]
    assert len(api.calls) == calls, "a refused body never reaches the api"


def test_streamed_body_is_counted_and_cut_at_the_limit() -> None:
    """A chunked 100 MB body (no Content-Length): the middleware stops reading just past 1 MiB."""
    chunk = b"x" * 65536
    total = 100 * 1024 * 1024
    received = 0
    sent: list[dict[str, Any]] = []
    reached_app = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached_app
        reached_app = True

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": received < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/switches", "headers": [], "query_string": b""}
    asyncio.run(BodyLimit(app, MAX_BODY_BYTES)(scope, receive, send))
    assert not reached_app
    assert sent[0]["status"] == 413
    assert received <= MAX_BODY_BYTES + len(chunk), f"read {received} bytes of a body refused at {MAX_BODY_BYTES}"
    assert b"too large" in sent[1]["body"]


def test_body_under_the_limit_reaches_the_app_intact(client: TestClient) -> None:
    body = json.dumps({"name": "t", "type": "private"}).encode()
    r = client.post("/switches", content=body, headers={**auth(ADMIN), "content-type": "application/json"})
    assert r.status_code == 201, r.text


# ---- lists and numbers ------------------------------------------------------------------------------

def test_trunk_list_over_4094_entries_is_refused_before_expansion() -> None:
    t0 = time.process_time()
    with pytest.raises(InvalidRequest, match="at most 4094 VLANs; the list has 2000000 entries"):
        PortSpec.parse({"name": "t", "kind": "tap", "target": "tap0", "trunk": [10] * 2_000_000})
    with pytest.raises(FieldError, match="too long"):
        parse_vlan_list("1-4094," * 10_000)
    assert time.process_time() - t0 < 5.0  # not the bound under test, a guard against a hang


def test_trunk_is_deduplicated_stored_and_reported_as_ranges(client: TestClient, tmp_path: Any) -> None:
    spec = PortSpec.parse({"name": "t", "kind": "tap", "target": "tap0", "trunk": [30, 10, 11, 12, 10, 30]})
    assert spec.trunk == (10, 11, 12, 30)
    assert spec.to_dict()["trunk"] == "10-12,30"
    assert trunk_vlans(list(range(1, 4095))) == tuple(range(1, 4095))
    full = PortSpec("u", PortKind.TAP, "tap1", trunk=tuple(range(1, 4095)))
    assert full.to_dict()["trunk"] == "1-4094", "4094 VLANs are one range, not 20 KB of JSON"
    r = client.post("/switches/s/ports", headers=auth(ADMIN),
                    json={"name": "t", "kind": "tap", "target": "tap0", "trunk": list(range(1, 4095))})
    assert r.status_code == 201, r.text
    assert r.json()["vlan_mode"] == "trunk 1-4094"
    r = client.post("/switches/s/ports", headers=auth(ADMIN),
                    json={"name": "u", "kind": "tap", "target": "tap1", "trunk": list(range(1, 4096))})
    assert r.status_code == 400 and "4094" in r.json()["error"] and len(r.text) < 1000
    # the store keeps ranges, and rows written before (a JSON list of ints) still load
    with ConfigStore(tmp_path / "c.sqlite") as store:
        store.save_switch(private("s"))
        store.save_port("s", full)
        store._conn.execute("UPDATE ports SET spec = ? WHERE name = 'u'", (json.dumps(
            {"name": "u", "kind": "tap", "target": "tap1", "vlan": None, "trunk": [20, 10], "native": 10}),))
        stored = store._conn.execute("SELECT spec FROM ports WHERE name = 'u'").fetchone()[0]
        assert len(stored) < 200
        [(_, [loaded])] = store.load()
        assert loaded == PortSpec("u", PortKind.TAP, "tap1", trunk=(10, 20), native=10)
        store.save_port("s", full)
        [(_, [again])] = store.load()
        assert again == full


@pytest.mark.parametrize("value", [1e308, float("inf"), float("nan"), 3600.5, 0, -1])
def test_confirm_timeout_is_finite_and_at_most_an_hour(value: float) -> None:
    with pytest.raises(InvalidRequest, match=r"confirm_timeout_s: .* is not a number of seconds in \(0, 3600\]"):
        SwitchSpec("e", SwitchType.EXTERNAL, nic="eth0", confirm_timeout_s=value)


@pytest.mark.parametrize("text", ["1e308", "Infinity", "NaN", "3601"])
def test_confirm_timeout_over_rest_is_400(client: TestClient, api: FakeApi, text: str) -> None:
    body = '{"name": "e", "type": "external", "nic": "eth0", "confirm_timeout_s": ' + text + '}'
    r = client.post("/switches", content=body, headers={**auth(ADMIN), "content-type": "application/json"})
    assert r.status_code == 400 and "confirm_timeout_s" in r.json()["error"], r.text
    assert "e" not in api.switches
    ok = client.post("/switches", headers=auth(ADMIN),
                     json={"name": "e", "type": "external", "nic": "eth0", "confirm_timeout_s": 3600})
    assert ok.status_code == 201


def test_cli_refuses_huge_confirm_timeout_with_the_model_message(api: FakeApi) -> None:
    from click.testing import CliRunner

    from vswitch.frontends.cli import cli

    result = CliRunner().invoke(cli, ["switch", "create", "e", "--external", "eth0", "--confirm-timeout", "1e308"],
                                obj=api)
    assert result.exit_code == 1 and "3600" in result.stderr and "Traceback" not in result.stderr


def test_errors_echo_only_a_short_prefix(client: TestClient) -> None:
    assert clip("x" * 10_000) == repr("x" * 10_000)[:ECHO_MAX] + "…"
    assert clip("ok") == "'ok'"
    huge = "A" * 100_000
    for body in ({"name": huge, "type": "private"}, {"name": "a", "type": huge},
                 {"name": "a", "type": "private", huge: 1}, {"name": "a", "type": "private", "ageing_s": huge}):
        r = client.post("/switches", headers=auth(ADMIN), json=body)
        assert r.status_code == 400 and len(r.json()["error"]) < 400, r.text[:500]
    with pytest.raises(InvalidRequest) as e:
        SwitchSpec.parse({"name": huge, "type": "private"})
    assert len(e.value.message) < 200
    with pytest.raises(FieldError) as e2:
        parse_vlan_list("x" * 15_000)
    assert len(str(e2.value)) < 300


def test_names_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="may only use"):
        SwitchSpec("lab\n", SwitchType.PRIVATE)


# ---- watch ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "needle"), [
    ({"seconds": 61}, "seconds"), ({"seconds": 0}, "seconds"), ({"seconds": "inf"}, "seconds"),
    ({"limit": 10_001}, "limit"), ({"limit": 0}, "limit")])
def test_watch_bounds(client: TestClient, params: dict[str, Any], needle: str) -> None:
    r = client.get("/switches/s/watch", params=params, headers=auth(READER))
    assert r.status_code == 400 and needle in r.json()["error"], r.text


def test_watches_are_capped_and_never_hold_other_routes(api: FakeApi) -> None:
    """N watches run on their own pool; the N+1st is 429 at once; /health and /switches still answer."""
    api.watch_gate = threading.Event()
    pool = WatchPool()
    app = make_app(api, watches=pool)
    results: list[int] = []

    def one_watch() -> None:
        with TestClient(app) as c:
            results.append(c.get("/switches/s/watch", params={"seconds": 30}).status_code)

    threads = [threading.Thread(target=one_watch) for _ in range(WATCH_CONCURRENCY)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while sum(1 for name, _ in api.calls if name == "watch") < WATCH_CONCURRENCY:
            assert time.monotonic() < deadline, "the watches did not start"
            time.sleep(0.01)
        with TestClient(app) as c:
            r = c.get("/switches/s/watch", params={"seconds": 1})
            assert r.status_code == 429 and f"{WATCH_CONCURRENCY} watches are already running" in r.json()["error"]
            t0 = time.monotonic()
            assert c.get("/health").status_code == 200
            assert c.get("/switches").status_code == 200
            assert time.monotonic() - t0 < 5.0
    finally:
        api.watch_gate.set()
        for t in threads:
            t.join(10)
    assert results == [200] * WATCH_CONCURRENCY
    with TestClient(app) as c:  # the slots are free again
        r = c.get("/switches/s/watch", params={"seconds": 1})
        assert r.status_code == 200 and [(e["in_port"], e["reason"]) for e in r.json()] == [("p", "FLOOD_UNKNOWN")]
    pool.shutdown()


# ---- tokens and roles -----------------------------------------------------------------------------------

def test_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        assert client.get("/switches", headers=auth(ADMIN, scheme)).status_code == 200, scheme
    assert client.get("/switches", headers=auth(ADMIN, "Basic")).status_code == 401
    assert client.get("/switches", headers={"Authorization": ADMIN}).status_code == 401
    assert client.get("/switches", headers=auth(ADMIN + "x")).status_code == 401


def _routes(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = {p["name"]: "02:00:00:00:00:01" if p["name"] in ("src", "dst") else "p"
                      for p in op.get("parameters", []) if p["in"] == "query" and p.get("required")}
            url = re.sub(r"\{name\}", "s", path)
            url = re.sub(r"\{port\}", "p", url)
            out.append((method.upper(), url, params))
    return out


def test_every_route_needs_a_token_and_a_reader_only_reads(client: TestClient, api: FakeApi) -> None:
    spec = client.get("/openapi.json", headers=auth(READER)).json()
    routes = _routes(spec)
    assert len(routes) >= 14, routes
    # the documentation routes are not in the schema but need a token as well
    routes += [("GET", path, {}) for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                                              "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
                                              "/docs/assets/redoc.standalone.js", "/docs/assets/favicon.png")]
    matrix: list[str] = []
    for method, url, params in routes:
        if url == "/health":
            assert client.request(method, url).status_code == 200, "/health stays public"
            continue
        r = client.request(method, url, params=params)
        assert r.status_code == 401, (method, url, r.status_code)
        r = client.request(method, url, params=params, headers=auth(READER))
        if method in ("GET", "HEAD"):
            assert r.status_code not in (401, 403), (method, url, r.status_code, r.text)
        else:
            assert r.status_code == 403, (method, url, r.status_code)
            assert "reader" in r.json()["error"] and "admin" in r.json()["error"]
        matrix.append(f"{method} {url}: reader {r.status_code}")
    calls = len(api.calls)
    for method, url, _ in routes:
        if method not in ("GET", "HEAD"):
            client.request(method, url, headers=auth(READER), json={})
    assert len(api.calls) == calls, "a reader's mutation never reaches the api"
    r = client.post("/switches", headers=auth(ADMIN), json={"name": "n", "type": "private"})
    assert r.status_code == 201


def test_token_file_format() -> None:
    text = "# vswitchd tokens\n\nadmin:aaaa-1\nreader:rrrr-1\n  reader:rrrr-2  \n"
    assert parse_tokens(text, "f") == {"aaaa-1": Role.ADMIN, "rrrr-1": Role.READER, "rrrr-2": Role.READER}
    assert parse_tokens("bare-old-token\n", "f") == {"bare-old-token": Role.ADMIN}, "one bare line: admin"
    for bad, needle in [("a b c\nreader:x\n", "line 1"), ("root:x\nreader:y\n", "line 1"),
                        ("admin:x\nadmin:x\n", "already listed"), ("# nothing\n", "no token"),
                        ("admin:has space\n", "without spaces")]:
        with pytest.raises(TokenFileError, match=needle):
            parse_tokens(bad, "f")
    with pytest.raises(TokenFileError) as e:
        parse_tokens("admin:s3cr3t\nbogus s3cr3t\n", "f")
    assert "s3cr3t" not in str(e.value), "a token never appears in a message"


def test_long_path_and_query_values_are_refused_without_echo(client: TestClient) -> None:
    r = client.get("/switches/" + "n" * 10_000, headers=auth(READER))
    assert r.status_code == 400 and len(r.text) < 400, r.text[:500]
    r = client.get("/switches/s/trace", headers=auth(READER),
                   params={"in_port": "p", "src": "0" * 10_000, "dst": "02:00:00:00:00:01"})
    assert r.status_code == 400 and len(r.text) < 400, r.text[:500]

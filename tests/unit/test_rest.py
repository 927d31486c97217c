"""REST front end over a fake SwitchApi: routes, shapes, statuses, error bodies, token, OpenAPI."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fake_api import FakeApi, private
from fastapi.testclient import TestClient

from vswitch.control.model import (
    Conflict,
    FdbEntryInfo,
    FrameEvent,
    InvalidRequest,
    NotFound,
    PortInfo,
    PortKind,
    PortSpec,
    SwitchInfo,
    SwitchSpec,
    SwitchType,
    TraceInfo,
    TraceStepInfo,
)
from vswitch.frontends.client import DaemonUnreachable, RestSwitchApi
from vswitch.frontends.rest import make_app


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def client(api: FakeApi) -> TestClient:
    return TestClient(make_app(api))


def test_health(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_create_list_show_delete_switch(client: TestClient, api: FakeApi) -> None:
    r = client.post("/switches", json={"name": "lab", "type": "internal", "ageing_s": 60})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "lab" and body["type"] == "internal" and body["ageing_s"] == 60
    assert body["host_vnic"] == "vs-lab" and body["ports"][0]["role"] == "host-vnic"
    assert [s["name"] for s in client.get("/switches").json()] == ["lab"]
    assert client.get("/switches/lab").json() == body
    assert client.delete("/switches/lab").status_code == 204
    assert client.get("/switches").json() == []
    assert all(t != threading.main_thread().name for t in api.threads), "api runs in the threadpool"


def test_dry_run_returns_steps_and_changes_nothing(client: TestClient, api: FakeApi) -> None:
    r = client.post("/switches", json={"name": "ext", "type": "external", "nic": "eth0", "dry_run": True})
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True and "eth0" in r.json()["steps"][1]
    assert api.switches == {}


def test_not_found_and_conflict(client: TestClient) -> None:
    r = client.get("/switches/nope")
    assert r.status_code == 404 and r.json() == {"error": "no switch named 'nope'"}
    assert client.post("/switches", json={"name": "a", "type": "private"}).status_code == 201
    r = client.post("/switches", json={"name": "a", "type": "private"})
    assert r.status_code == 409 and "already exists" in r.json()["error"]
    assert client.delete("/switches/a/ports/zz").status_code == 404
    assert client.post("/switches/a/confirm").status_code == 409


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"name": "a", "type": "private", "ageing_s": "ten"}, "ageing_s"),
        ({"name": "a", "type": "bogus"}, "type"),
        ({"name": "a"}, "type"),
        ({"name": "a", "type": "private", "colour": "red"}, "colour"),
        ({"name": "a", "type": "private", "allow_management_os": "yes"}, "allow_management_os"),
        ({"name": "a/b", "type": "private"}, "'a/b'"),                    # model validation
        ({"name": "a", "type": "external"}, "physical NIC"),               # model validation
        ({"name": "a", "type": "private", "ageing_s": 5}, "ageing"),       # model validation
    ],
)
def test_bad_switch_bodies_are_400_naming_the_field(client: TestClient, body: dict, needle: str) -> None:
    r = client.post("/switches", json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_malformed_json_is_400_with_message(client: TestClient) -> None:
    r = client.post("/switches", content=b'{"name": "a", "type": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "malformed JSON" in r.json()["error"]
    r = client.post("/switches", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "body" in r.json()["error"]
    r = client.post("/switches")
    assert r.status_code == 400 and "body is required" in r.json()["error"]


def test_numbers_accept_ints_for_floats(client: TestClient) -> None:
    r = client.post("/switches", json={"name": "e", "type": "external", "nic": "eth0", "confirm_timeout_s": 30})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "awaiting-confirm"
    assert client.post("/switches/e/confirm").json()["state"] == "up"


def test_ports(client: TestClient) -> None:
    client.post("/switches", json={"name": "s", "type": "private"})
    r = client.post("/switches/s/ports", json={"name": "vm1", "kind": "qemu-stream", "target": "/tmp/vm1.sock"})
    assert r.status_code == 201, r.text
    assert r.json()["details"]["qemu_arg"].startswith("-netdev stream,id=vm1")
    r = client.post("/switches/s/ports", json={"name": "t", "kind": "tap", "target": "tap0", "trunk": [10, 20],
                                               "native": 10})
    assert r.status_code == 201 and r.json()["vlan_mode"] == "trunk 10,20 native 10"
    assert [p["name"] for p in client.get("/switches/s/ports").json()] == ["vm1", "t"]
    r = client.post("/switches/s/ports", json={"name": "t", "kind": "tap", "target": "tap1"})
    assert r.status_code == 409
    r = client.post("/switches/s/ports", json={"name": "u", "kind": "tap", "target": "tap1", "vlan": 5000})
    assert r.status_code == 400 and "4094" in r.json()["error"]
    r = client.post("/switches/s/ports", json={"name": "u", "kind": "tap", "target": "tap1", "trunk": "10-x"})
    assert r.status_code == 400 and r.json()["error"].startswith("trunk: bad VLAN list")
    r = client.post("/switches/s/ports", json={"name": "u", "kind": "nic", "target": "tap1"})
    assert r.status_code == 400 and "kind" in r.json()["error"]
    r = client.post("/switches/nope/ports", json={"name": "u", "kind": "tap", "target": "tap1"})
    assert r.status_code == 404
    assert client.delete("/switches/s/ports/t").status_code == 204
    assert [p["name"] for p in client.get("/switches/s/ports").json()] == ["vm1"]


def test_fdb_stats_trace(client: TestClient, api: FakeApi) -> None:
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("a", PortKind.MEMORY, "a"))
    api.fdb["s"] = [FdbEntryInfo("02:00:00:00:00:01", 1, "a", 1.5, False),
                    FdbEntryInfo("02:00:00:00:00:02", 1, "a", 0.0, True)]
    fdb = client.get("/switches/s/fdb").json()
    assert fdb[0] == {"mac": "02:00:00:00:00:01", "vlan": 1, "port": "a", "age_s": 1.5, "static": False,
                      "remote": None}
    assert client.post("/switches/s/fdb/flush").json() == {"removed": 1}
    stats = client.get("/switches/s/stats").json()
    assert stats[0]["port"] == "a" and stats[0]["drops"] == {"DROP_SAME_PORT": 2}
    r = client.get("/switches/s/trace", params={"in_port": "a", "src": "02:00:00:00:00:01",
                                                "dst": "ff:ff:ff:ff:ff:ff", "vlan": 7})
    assert r.status_code == 200 and r.json()["tag"] == 7 and r.json()["vlan"] == 7
    assert r.json()["steps"][3] == {"stage": "decide", "result": "ff:ff:ff:ff:ff:ff is not in the MAC table",
                                    "reason": "FLOOD_UNKNOWN", "detail": {"lookup": "miss", "out_ports": []}}
    assert api.calls[-1] == ("trace", ("s", "a", "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", 7))
    r = client.get("/switches/s/trace", params={"in_port": "a", "src": "x"})
    assert r.status_code == 400 and "dst" in r.json()["error"]
    r = client.get("/switches/s/trace", params={"in_port": "a", "src": "x", "dst": "y", "vlan": "ten"})
    assert r.status_code == 400 and "vlan" in r.json()["error"]


def test_unknown_route_and_method(client: TestClient) -> None:
    r = client.get("/nothing")
    assert r.status_code == 404 and "error" in r.json()
    r = client.put("/switches")
    assert r.status_code == 405 and "error" in r.json()


def test_token(api: FakeApi) -> None:
    client = TestClient(make_app(api, token="s3cret"))
    assert client.get("/health").status_code == 200, "/health needs no token"
    r = client.get("/switches")
    assert r.status_code == 401 and r.json() == {"error": "missing or wrong bearer token"}
    assert client.get("/switches", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/openapi.json").status_code == 401
    ok = client.get("/switches", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json() == []
    assert api.calls == [("list_switches", ())], "a refused request never reaches the api"


def test_openapi_lists_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/health": {"get"},
        "/switches": {"get", "post"},
        "/switches/{name}": {"get", "delete"},
        "/switches/{name}/confirm": {"post"},
        "/switches/{name}/ports": {"get", "post"},
        "/switches/{name}/ports/{port}": {"delete"},
        "/switches/{name}/fdb": {"get"},
        "/switches/{name}/fdb/flush": {"post"},
        "/switches/{name}/stats": {"get"},
        "/switches/{name}/trace": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path
    assert "SwitchCreate" in spec["components"]["schemas"]
    assert "SwitchInfo" in spec["components"]["schemas"]


_ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def _referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', html)


@pytest.mark.parametrize(("page", "script", "marker"), [
    ("/docs", "swagger-ui-bundle.js", "SwaggerUIBundle"),
    ("/redoc", "redoc.standalone.js", "Redoc"),
])
def test_docs_pages_work_offline(client: TestClient, page: str, script: str, marker: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text, f"{page} must not load anything from elsewhere"
    urls = _referenced(r.text)
    assert any(u.endswith("/" + script) for u in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} references {url}: not served here"
        asset = client.get(url)
        assert asset.status_code == 200, url
        kind = next(v for k, v in _ASSET_TYPES.items() if url.endswith(k))
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 1000, url
    js = client.get(next(u for u in urls if u.endswith(script))).text
    assert marker in js, f"{script} is the real bundle"
    assert "'/openapi.json'" in r.text or '"/openapi.json"' in r.text, "the page reads our own schema"


# ---- RestSwitchApi against the same app, served by uvicorn on a unix socket ----------------------

@pytest.fixture
def served(api: FakeApi, tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "api.sock")
    server = uvicorn.Server(uvicorn.Config(make_app(api), uds=path, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield path
    finally:
        server.should_exit = True
        thread.join(10)


def test_client_roundtrip(served: str, api: FakeApi) -> None:
    with RestSwitchApi(socket_path=served) as remote:
        assert remote.health() == {"status": "ok"}
        steps = remote.create_switch(SwitchSpec("e", SwitchType.EXTERNAL, nic="eth0"), dry_run=True)
        assert isinstance(steps, list) and steps[0].startswith("create switch e")
        info = remote.create_switch(SwitchSpec("s", SwitchType.INTERNAL))
        assert isinstance(info, SwitchInfo) and isinstance(info.ports[0], PortInfo)
        assert info == api.switches["s"]
        port = remote.add_port("s", PortSpec("vm", PortKind.QEMU_DGRAM, "/tmp/vm.sock", trunk=(1, 2)))
        assert port.details["qemu_arg"].startswith("-netdev dgram") and port.vlan_mode == "trunk 1-2"
        assert [p.name for p in remote.list_ports("s")] == ["vs-s", "vm"]
        assert [s.name for s in remote.list_switches()] == ["s"]
        api.fdb["s"] = [FdbEntryInfo("02:00:00:00:00:01", 1, "vm", 2.0, False)]
        assert remote.fdb_show("s") == api.fdb["s"]
        assert remote.fdb_flush("s") == 1
        assert remote.stats("s")[1].drops == {"DROP_SAME_PORT": 2}
        traced = remote.trace("s", "vm", "02:00:00:00:00:01", "02:00:00:00:00:02", vlan=3)
        assert traced == api.trace("s", "vm", "02:00:00:00:00:01", "02:00:00:00:00:02", vlan=3)
        assert isinstance(traced, TraceInfo) and traced.out_ports == ["vs-s"]
        assert isinstance(traced.steps[0], TraceStepInfo)
        watched = remote.watch("s", 0.1)
        assert watched == api.watch("s", 0.1) and isinstance(watched[0], FrameEvent)
        remote.remove_port("s", "vm")
        remote.delete_switch("s")
        assert remote.list_switches() == []


def test_client_maps_errors_to_the_same_classes(served: str) -> None:
    with RestSwitchApi(socket_path=served) as remote:
        with pytest.raises(NotFound, match="no switch named 'nope'"):
            remote.get_switch("nope")
        remote.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        with pytest.raises(Conflict, match="already exists"):
            remote.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
        with pytest.raises(InvalidRequest, match="ageing"):
            remote.create_switch(SwitchSpec("t", SwitchType.PRIVATE, ageing_s=1))
        with pytest.raises(NotFound):
            remote.get_switch("a/b")  # quoted into one segment, so a clean 404 rather than a wrong route


def test_client_without_daemon_says_so(tmp_path: Path) -> None:
    path = str(tmp_path / "none.sock")
    with pytest.raises(DaemonUnreachable, match=r"cannot reach vswitchd at .*none\.sock: .*\(is it running\?\)"):
        RestSwitchApi(socket_path=path).list_switches()
    with pytest.raises(DaemonUnreachable, match="is it running"):
        RestSwitchApi(url="http://127.0.0.1:9").list_switches()


def test_the_new_verbs_routes_statuses_and_shapes(client: TestClient, api: FakeApi) -> None:
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("vm", PortKind.MEMORY, "vm"))
    r = client.patch("/switches/s/ports/vm", json={"trunk": list(range(1, 4095)), "native": 3, "learning": False})
    assert r.status_code == 200 and r.json()["vlan_mode"] == "trunk 1-4094 native 3" and not r.json()["learning"]
    assert client.get("/switches/s/ports/vm").json() == r.json()
    for body, needle in [({}, "nothing to change"), ({"vlan": 2, "trunk": [3]}, "not both"), ({"native": 2}, "native"),
                         ({"vlan": None}, "vlan"), ({"admin_up": "no"}, "admin_up"), ({"bogus": 1}, "bogus")]:
        r = client.patch("/switches/s/ports/vm", json=body)
        assert r.status_code == 400 and needle in r.json()["error"], (body, r.text)
    r = client.post("/switches/s/fdb", json={"mac": "02:00:00:00:00:0A", "port": "vm", "vlan": 3})
    assert r.status_code == 201 and r.json() == {"mac": "02:00:00:00:00:0a", "vlan": 3, "port": "vm",
                                                 "age_s": 0.0, "static": True, "remote": None}
    assert client.delete("/switches/s/fdb/02:00:00:00:00:0a", params={"vlan": 3}).status_code == 204
    assert client.delete("/switches/s/fdb/02:00:00:00:00:0a").status_code == 404
    r = client.patch("/switches/s", json={"ageing_s": 60})
    assert r.status_code == 200 and r.json()["ageing_s"] == 60
    r = client.get("/nics")
    assert r.status_code == 200 and r.json()[0]["name"] == "eth0" and r.json()[0]["default_route"] is True
    paths = client.get("/openapi.json").json()["paths"]
    assert {"get", "patch", "delete"} <= set(paths["/switches/{name}/ports/{port}"])
    assert paths["/switches/{name}/fdb"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]

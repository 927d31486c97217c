"""REST front end: `make_app(api)` serves any `SwitchApi` over HTTP (FastAPI, OpenAPI at /openapi.json).

Owns the URL layout, the JSON shapes of requests and the mapping of errors to HTTP statuses:
- a `VswitchError` becomes its ``.status`` with ``{"error": message}``;
- malformed JSON, a wrong type or an unknown field becomes 400 (not FastAPI's 422) with a message
  naming the field; unknown routes 404, wrong methods 405, all as ``{"error": ...}``;
- responses are ``to_jsonable(...)`` of the `*Info` records, so every client sees the same shapes.

Routes come from the command table (`control.api.COMMANDS`, see control/commands.py): one loop
registers each command's route with its typed path/query parameters, its body model and its result
model, so a new command needs no code here. A body model is `SwitchCreate`/`PortCreate`/`ConfigApply`
where they state more than their fields (which go together; a configuration document's nesting),
else generated from the request dataclass,
each field refined by `_FIELDS` (what a field named ``vlan``, ``mac``, ... means in the schema).

Invariants: no business logic here — a request body arrives as a plain JSON object and is parsed by
the model (the request dataclass's ``parse``, whose messages the 400 answer carries as they are) and
carried out by the api; the body models only document the bodies (they validate nothing). Endpoints are plain
``def`` functions, so FastAPI runs the (blocking) api calls in its threadpool and the event loop
never waits on a switch. The OpenAPI schema states what the model enforces (name patterns and
lengths from `control.model`, MAC format, VLAN ranges, enums, which fields go together), so a
request valid per the schema is refused only for the state of the switches or the host (404, 409), never with
a 400 the schema did not announce.

Bounded: a request body over `MAX_BODY_BYTES` is refused with 413 (announced by Content-Length or
counted as it streams; never read whole); lists are capped by the model; ``watch`` records for at
most 60 s and 10,000 events, at most `WatchPool.size` at once per daemon (429 beyond), on the pool's
own threads, so it never occupies the threadpool the other endpoints run in, and ``/health``
(async, no thread at all) answers while any number of watches run. ``events`` (its long poll waits
at most 30 s for the next event: ``vswitch events --follow``) runs on the same pool, for the same reason; so does a
pcapng ``capture``, the one route beside the table (frontends/capture_route.py).

Roles: with tokens, every path except ``/health`` and the web UI's static files under ``/ui``
(frontends/webui.py: they hold no switch's state) needs ``Authorization: Bearer <token>`` (scheme
case-insensitive, RFC 7235; 401 otherwise), compared in constant time against every token. An
``admin`` token may do everything, a ``reader`` token only GET/HEAD (403 on any other method).
``/health`` stays public: it says only that the daemon answers, which a TCP connect says anyway,
and lets probes run without a secret. Without tokens (the unix socket, trusted by its file mode)
every request is admin.

Documentation: ``/docs`` (Swagger UI) and ``/redoc`` work offline: their scripts, styles and icon
are served by vswitchd itself under `DOCS_ASSETS`, from the fastapi-offline package; like every
path but ``/health`` they need a token (a reader's is enough).

Must not touch: the manager's internals, the store, the datapath, the kernel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import inspect
import json
import logging
import pathlib
import threading
import types
import typing
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import pydantic
from annotated_types import Interval
from fastapi import Body, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from vswitch.control.api import COMMANDS, SwitchApi
from vswitch.control.commands import Command
from vswitch.control.config_file import CONFIG_VERSION, ConfigDocument
from vswitch.control.model import (
    AGEING_DEFAULT_S,
    AGEING_MAX_S,
    AGEING_MIN_S,
    BURST_MAX,
    CAPACITY_DEFAULT,
    CAPACITY_MAX,
    CAPACITY_MIN,
    CONFIRM_TIMEOUT_MAX_S,
    EVENTS_LIMIT_MAX,
    EVENTS_WAIT_MAX_S,
    IFNAME_MAX,
    LOOPBACK,
    NAME_MAX,
    NAME_PATTERN,
    RATE_MAX,
    RESERVED_PORT_NAMES,
    STORM_LIMIT_MAX,
    TRACE_PAYLOAD_MAX,
    TRUNK_MAX_VLANS,
    VLAN_MAX,
    VLAN_MIN,
    VNI_MAX,
    VNI_MIN,
    VXLAN_FIELDS,
    VXLAN_REMOTES_MAX,
    WATCH_MAX_EVENTS,
    WATCH_MAX_S,
    FieldError,
    InvalidRequest,
    PortKind,
    PortSettings,
    PortSpec,
    Problem,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    VswitchError,
    check_flag,
    clip,
    to_jsonable,
)
from vswitch.core.policy import PvlanMode
from vswitch.frontends.decision_route import register_decisions
from vswitch.frontends.metrics import render as render_metrics
from vswitch.frontends.tokens import READ_METHODS, Role
from vswitch.frontends.webui import UI_PREFIX, register_ui

log = logging.getLogger(__name__)

#: Paths reachable without the bearer token.
PUBLIC_PATHS = frozenset({"/health"})
#: Path prefixes reachable without it: the web UI's static files (frontends/webui.py), which hold no
#: state of any switch — the page asks for a token and sends it with every API call it makes.
PUBLIC_PREFIXES = (UI_PREFIX,)
#: Where BearerAuth leaves the caller's role in the request's state.
ROLE_STATE = "role"
#: Largest request body accepted (the biggest real one, a 4094-VLAN trunk list, is about 20 KB).
MAX_BODY_BYTES = 1 << 20
#: Watches one daemon runs at once (each holds a thread for up to 60 s).
WATCH_CONCURRENCY = 8

# What the model enforces, stated in the schema (JSON Schema keywords; the model stays the judge).
_NAME = {"pattern": NAME_PATTERN, "maxLength": NAME_MAX}
_IFNAME = {"type": "string", "pattern": NAME_PATTERN, "maxLength": IFNAME_MAX}
_NIC = {**_IFNAME, "not": {"const": LOOPBACK}}
#: an absolute path of plain segments (none is "." or ".."), short enough for a unix socket address
#: a VXLAN port's remote VTEPs: IP addresses, comma-separated (model.vxlan_remotes checks each)
_VTEPS = {"type": "string", "minLength": 1, "maxLength": 40 * VXLAN_REMOTES_MAX}
_SOCKET_PATH = {"type": "string", "pattern": r"^(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+$", "maxLength": 100}
_MAC = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{12}$"
MAC_TEXT_MAX = 32


Vlan = Annotated[int, Interval(ge=VLAN_MIN, le=VLAN_MAX)]
#: a unicast MAC (the group bit, the low bit of the first octet, clear): a static entry's, a tap port's
_UNICAST_MAC = r"^[0-9A-Fa-f][02468aceACE]([:-][0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f][02468aceACE][0-9A-Fa-f]{10}$"
_UnicastMac = Annotated[str, Field(max_length=MAC_TEXT_MAX, pattern=_UNICAST_MAC,
                                   description="Unicast MAC, e.g. 52:54:00:12:34:56")]
#: Hyper-V's -PortMirroring modes, as vswitch spells them (model.PORT_MIRRORING_MODES)
_PortMirroring = Literal["none", "source", "destination"]
#: a request body as FastAPI hands it over (a JSON object); the model parses it
JsonObject = Annotated[dict[str, Any], Body()]
# the length is checked here too, so a 10 KB path segment is refused before any message repeats it
SwitchName = Annotated[str, Path(description="Switch name", max_length=NAME_MAX, json_schema_extra=_NAME)]
PortName = Annotated[str, Path(description="Port name", max_length=NAME_MAX, json_schema_extra=_NAME)]


def _switch_schema(schema: dict[str, Any]) -> None:
    """External switches need a NIC (not lo); the others have none and no confirm timeout."""
    schema["allOf"] = [{
        "if": {"properties": {"type": {"const": "external"}}},
        "then": {"required": ["nic"], "properties": {"nic": _NIC}},
        "else": {"properties": {"nic": {"type": "null"}, "confirm_timeout_s": {"type": "null"}}},
    }]


_PV_FIELDS = ("primary", "secondary", "secondary_list")
_PV_NULL = {k: {"type": "null"} for k in _PV_FIELDS}
#: as model._pvlan_rules: a private VLAN port has no vlan or trunk, its primary and its secondary
#: (promiscuous: its list); any other port none of them
_PVLAN_SPEC_SCHEMA = [
    {"if": {"properties": {"pvlan": {"enum": ["isolated", "community"]}}, "required": ["pvlan"]},
     "then": {"required": ["primary", "secondary"],
              "properties": {"primary": {"type": "integer"}, "secondary": {"type": "integer"},
                             "secondary_list": {"type": "null"}, "vlan": {"type": "null"}, "trunk": {"type": "null"}}}},
    {"if": {"properties": {"pvlan": {"const": "promiscuous"}}, "required": ["pvlan"]},
     "then": {"required": ["primary", "secondary_list"],
              "properties": {"primary": {"type": "integer"}, "secondary_list": {"type": "array"},
                             "secondary": {"type": "null"}, "vlan": {"type": "null"}, "trunk": {"type": "null"}}}},
    {"if": {"not": {"properties": {"pvlan": {"type": "string"}}, "required": ["pvlan"]}},
     "then": {"properties": _PV_NULL}},
]


def _port_schema(schema: dict[str, Any]) -> None:
    """The target is an interface name, a socket path or VTEP addresses by kind (a VXLAN port has a VNI, no
    other port its fields); access (vlan) or trunk (+native); a MAC
    for a tap port only; a delivery shaper (max_bandwidth_in) for a link port only."""
    by_kind = [(["tap", "link"], _NIC), (["qemu-stream", "qemu-dgram"], _SOCKET_PATH), (["vxlan"], _VTEPS)]
    schema["allOf"] = [
        {"anyOf": [*({"properties": {"kind": {"enum": kinds}, "target": target}} for kinds, target in by_kind),
                   {"properties": {"kind": {"const": "memory"}}}]},
        {"if": {"properties": {"kind": {"const": "vxlan"}}},
         "then": {"required": ["vni"], "properties": {"vni": {"type": "integer"}}},
         "else": {"properties": {k: {"type": "null"} for k in VXLAN_FIELDS}}},
        {"if": {"properties": {"trunk": {"type": "array"}}, "required": ["trunk"]},
         "then": {"properties": {"vlan": {"type": "null"}}},
         "else": {"properties": {"native": {"type": "null"}}}},
        {"if": {"properties": {"kind": {"not": {"const": "tap"}}}},
         "then": {"properties": {"mac": {"type": "null"}}}},
        {"if": {"properties": {"kind": {"not": {"const": "link"}}}},
         "then": {"properties": {"max_bandwidth_in": {"const": 0}}}},
        *_PVLAN_SPEC_SCHEMA,
    ]


class SwitchCreate(BaseModel):
    """Body of ``POST /switches``: the `SwitchSpec` fields, plus ``dry_run``. Schema only (see `_BODIES`)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_switch_schema)

    name: str = Field(json_schema_extra=_NAME)
    type: Annotated[SwitchType, Field(strict=False)]  # JSON gives a string; the enum checks it
    nic: str | None = Field(None, description="External only: the physical NIC taken over.")
    allow_management_os: bool = True
    confirm_timeout_s: float | None = Field(
        None, gt=0, le=CONFIRM_TIMEOUT_MAX_S, allow_inf_nan=False,
        description="External only: undo the takeover unless confirmed within this many seconds.")
    ageing_s: int = Field(AGEING_DEFAULT_S, ge=AGEING_MIN_S, le=AGEING_MAX_S)
    max_entries: int = Field(CAPACITY_DEFAULT, ge=CAPACITY_MIN, le=CAPACITY_MAX)
    uplink_bandwidth: int = Field(0, ge=0, le=RATE_MAX, description="External only: the uplink's capacity in "
                                  "bits per second that the ports' min_bandwidth_weight share; 0: no sharing.")
    dry_run: bool = Field(False, description="Return the steps the creation would take; change nothing.")


class PortCreate(BaseModel):
    """Body of ``POST /switches/{name}/ports``: the `PortSpec` fields. Schema only (see `_BODIES`)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_port_schema)

    name: str = Field(json_schema_extra={**_NAME, "not": {"enum": sorted(RESERVED_PORT_NAMES)}})
    kind: Annotated[PortKind, Field(strict=False)]
    target: str = Field(min_length=1,
                        description="Interface name (tap, link), absolute socket path (qemu-*) or the "
                                    "remote VTEPs' addresses, comma-separated (vxlan).")
    vlan: Vlan | None = Field(None, description="Access VLAN (default 1).")
    trunk: list[Vlan] | None = Field(None, min_length=1, max_length=TRUNK_MAX_VLANS,
                                     description="Allowed VLANs of a trunk port (each counted once).")
    native: Vlan | None = Field(None, description="Untagged VLAN of a trunk port.")
    admin_up: bool = Field(True, description="False: attached, but its frames are dropped.")
    learning: bool = Field(True, description="Learn the source MACs of the port's frames.")
    flooding: bool = Field(True, description="Receive floods (unknown unicast, broadcast, multicast).")
    mac: _UnicastMac | None = Field(None, description="A tap port: the MAC its TAP (the VM's NIC) is given.")
    dhcp_guard: bool = Field(False, description="Drop DHCP server messages from this port (Hyper-V -DhcpGuard).")
    router_guard: bool = Field(False, description="Drop router advertisements and redirects from this port "
                                                  "(Hyper-V -RouterGuard).")
    mac_spoofing: bool = Field(True, description="Any source MAC (Hyper-V -MacAddressSpoofing); false: only "
                                                 "the port's MAC (its mac, or the first source it sends).")
    mac_limit: int = Field(0, ge=0, le=CAPACITY_MAX, description="The most MACs the port may own in the MAC "
                                                                 "table; 0: no cap.")
    port_mac: _UnicastMac | None = Field(None, description="Spoofing off: the MAC the port adopted (stored; "
                                                           "vswitch sets it from the first source).")
    port_mirroring: _PortMirroring = Field("none", description="Hyper-V -PortMirroring: source (what the port "
                                                               "sends and receives is copied to every "
                                                               "destination port of the switch), destination "
                                                               "(it gets the copies) or none.")
    isolated: bool = Field(False, description="Never exchange frames with another isolated port (the Linux "
                                              "bridge's isolated flag).")
    pvlan: Annotated[PvlanMode, Field(strict=False)] | None = Field(
        None, description="A private VLAN port (Hyper-V Set-VMNetworkAdapterVlan -Isolated/-Community/"
                          "-Promiscuous); replaces vlan and trunk.")
    primary: Vlan | None = Field(None, description="A private VLAN port's primary VLAN.")
    secondary: Vlan | None = Field(None, description="An isolated or community port's secondary VLAN.")
    secondary_list: list[Vlan] | None = Field(None, min_length=1, max_length=TRUNK_MAX_VLANS,
                                              description="A promiscuous port's secondary VLANs.")
    storm_limit: int = Field(0, ge=0, le=STORM_LIMIT_MAX, description="Broadcast, multicast and unknown-unicast "
                             "frames the port may send per second (Hyper-V -StormLimit); 0: no limit.")
    max_bandwidth: int = Field(0, ge=0, le=RATE_MAX, description="Bits per second the port may send into the "
                               "switch (Hyper-V -MaximumBandwidth; rounded to a multiple of 8); 0: no limit.")
    bandwidth_burst: int = Field(0, ge=0, le=BURST_MAX, description="The max_bandwidth policer's bucket in bytes; "
                                 "0: a quarter of a second of the rate, at least 128 KiB.")
    max_bandwidth_in: int = Field(0, ge=0, le=RATE_MAX, description="Bits per second the switch delivers to the "
                                  "port (a link port: a shaper on its link); 0: no limit.")
    min_bandwidth_weight: int = Field(0, ge=0, le=100, description="The port's share of an External switch's "
                                      "congested uplink, relative to the other ports' (Hyper-V "
                                      "-MinimumBandwidthWeight); 0: none.")
    vni: int | None = Field(None, ge=VNI_MIN, le=VNI_MAX, description="A VXLAN port: its VXLAN network "
                            "identifier (the target: its remote VTEPs' addresses, comma-separated).")
    local_ip: str | None = Field(None, description="A VXLAN port: the local address it sends from and "
                                 "receives on; none: any.")
    dstport: int | None = Field(None, ge=1, le=65535, description="A VXLAN port: its UDP port (default 4789).")


def _document_bodies(schema: dict[str, Any], bodies: dict[tuple[str, str], type[BaseModel]]) -> None:
    """Point each route's request body at its model's schema (added to the components): FastAPI
    sees only a JSON object, since the body goes to the model's `parse` whose rules and messages are
    the only ones."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for (path, method), model in bodies.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
        schema["paths"][path][method]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }


class DryRun(BaseModel):
    dry_run: bool = True
    steps: list[str]


class ErrorBody(BaseModel):
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid request"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    403: {"model": ErrorBody, "description": "A reader token may only read (GET/HEAD)"},
    404: {"model": ErrorBody, "description": "No such switch or port"},
    409: {"model": ErrorBody, "description": "Conflicts with what exists on the host or in its switches "
                                             "(a name taken; a NIC or link missing, in use or unsuitable)"},
    413: {"model": ErrorBody, "description": f"Request body over {MAX_BODY_BYTES} bytes"},
}


def _doc(model: Any) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting a 200 body of `model` (not used to re-validate the answer)."""
    return {200: {"model": model}, **_ERRORS}


# ---- routes from the command table -------------------------------------------------------------

#: request dataclasses whose body model states more than their fields (which fields go together)
_BODIES: dict[type, type[BaseModel]] = {SwitchSpec: SwitchCreate, PortSpec: PortCreate}
#: what a field of a generated body model means in the schema, by field name (the type otherwise);
#: a field whose default is None may be left out, so it is stated without its None
_FIELDS: dict[str, Any] = {
    "vlan": Vlan,
    "native": Vlan,
    "trunk": Annotated[list[Vlan], Field(min_length=1, max_length=TRUNK_MAX_VLANS)],
    "mac": _UnicastMac,
    "port": Annotated[str, Field(max_length=NAME_MAX, json_schema_extra=_NAME)],
    "name": Annotated[str, Field(max_length=NAME_MAX, json_schema_extra=_NAME)],
    "ageing_s": Annotated[int, Interval(ge=AGEING_MIN_S, le=AGEING_MAX_S)],
    "max_entries": Annotated[int, Interval(ge=CAPACITY_MIN, le=CAPACITY_MAX)],
    "mac_limit": Annotated[int, Interval(ge=0, le=CAPACITY_MAX)],
    "port_mirroring": _PortMirroring,
    "primary": Vlan,
    "secondary": Vlan,
    "secondary_list": Annotated[list[Vlan], Field(min_length=1, max_length=TRUNK_MAX_VLANS)],
    "pvlan": Literal["isolated", "community", "promiscuous", "none"],
    "storm_limit": Annotated[int, Interval(ge=0, le=STORM_LIMIT_MAX)],
    "max_bandwidth": Annotated[int, Interval(ge=0, le=RATE_MAX)],
    "uplink_bandwidth": Annotated[int, Interval(ge=0, le=RATE_MAX)],
    "bandwidth_burst": Annotated[int, Interval(ge=0, le=BURST_MAX)],
    "max_bandwidth_in": Annotated[int, Interval(ge=0, le=RATE_MAX)],
    "min_bandwidth_weight": Annotated[int, Interval(ge=0, le=100)],
    "nic": Annotated[str, Field(json_schema_extra=_NIC)],
    "confirm_timeout_s": Annotated[float, Field(gt=0, le=CONFIRM_TIMEOUT_MAX_S, allow_inf_nan=False)],
    "direction": Literal["in", "out", "both"],
    "action": Literal["allow", "deny", "meter"],
    "weight": Annotated[int, Interval(ge=1, le=65535)],
    "idle_timeout": Annotated[int, Interval(ge=1, le=86400)],
}
#: a switch of a configuration document: `SwitchCreate`'s fields without ``dry_run``
_ConfigSwitchSpec = pydantic.create_model(  # type: ignore[call-overload]
    "ConfigSwitchSpec", __config__=SwitchCreate.model_config,
    **{k: (f.annotation, f) for k, f in SwitchCreate.model_fields.items() if k != "dry_run"})
_ConfigStatic = pydantic.create_model(  # type: ignore[call-overload]
    "ConfigStatic", __config__=ConfigDict(extra="forbid", strict=True),
    mac=(_FIELDS["mac"], ...), port=(_FIELDS["port"], ...), vlan=(Vlan | None, None))


class ConfigSwitch(BaseModel):
    """One switch of a configuration document; ``ports`` / ``static`` left out (or null): kept as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    switch: _ConfigSwitchSpec  # type: ignore[valid-type]
    ports: list[PortCreate] | None = None
    static: list[_ConfigStatic] | None = None  # type: ignore[valid-type]


class ConfigApply(BaseModel):
    """Body of ``POST /config/apply``: a configuration document (`vswitch config export --json`), plus
    ``dry_run`` and ``prune``. Beyond what each field states, the document is refused (400) when a
    switch name, a port name within a switch or a static entry (MAC, VLAN) is listed twice, when two
    ports, uplinks or host vNICs would hold one link or socket, and when a static entry names a port
    its switch does not list or a VLAN that port is not in (or none, on a trunk without a native VLAN).
    Schema only (see `_BODIES`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: Literal[CONFIG_VERSION] = Field(  # type: ignore[valid-type]
        description=f"The document's layout (this vswitch reads {CONFIG_VERSION}).")
    switches: list[ConfigSwitch]
    dry_run: bool = Field(False, description="Return the plan; change nothing.")
    prune: bool = Field(False, description="Also delete the switches the document does not list.")


_BODIES[ConfigDocument] = ConfigApply

#: path parameters by wire name (every one is a name or a MAC: a 10 KB segment is refused unread)
_PATHS: dict[str, Any] = {
    "name": SwitchName,
    "port": PortName,
    # only static entries are deleted by MAC, and a static entry is a unicast MAC (fdb add)
    "mac": Annotated[str, Path(description="Unicast MAC address", max_length=MAC_TEXT_MAX,
                               json_schema_extra={"pattern": _UNICAST_MAC})],
    "rule": Annotated[str, Path(description="ACL rule id (`acl list`)", max_length=7,
                                json_schema_extra={"pattern": "^[1-9][0-9]{0,5}$"})],
}
#: query parameters by wire name, and by (command, wire name) where one command means more
_QUERIES: dict[Any, dict[str, Any]] = {
    "in_port": {"description": "Port the frame would arrive on", "max_length": NAME_MAX, "json_schema_extra": _NAME},
    "src": {"description": "Source MAC, e.g. 52:54:00:12:34:56", "max_length": MAC_TEXT_MAX,
            "json_schema_extra": {"pattern": _MAC}},
    "dst": {"description": "Destination MAC", "max_length": MAC_TEXT_MAX, "json_schema_extra": {"pattern": _MAC}},
    "vlan": {"ge": VLAN_MIN, "le": VLAN_MAX, "description": "VLAN id"},
    ("trace", "vlan"): {"ge": 0, "le": VLAN_MAX, "description": "VLAN id of the frame (tagged; 0: priority tag)"},
    ("trace", "payload"): {"description": "The frame after its MAC addresses (and tag), hex: the ethertype and "
                                          "what follows (default IPv4, 46 zero bytes)",
                           "max_length": 2 * TRACE_PAYLOAD_MAX,
                           "json_schema_extra": {"pattern": "^([0-9a-fA-F]{2}){2,}$"}},
    ("acl_list", "port"): {"description": "Only this port's rules", "max_length": NAME_MAX, "json_schema_extra": _NAME},
    "seconds": {"gt": 0, "le": WATCH_MAX_S, "allow_inf_nan": False,
                "description": f"How long to record, at most {WATCH_MAX_S:.0f} s"},
    "limit": {"ge": 1, "le": WATCH_MAX_EVENTS, "description": "At most this many events"},
    ("events", "switch"): {"description": "Only this switch's events (all switches when left out)",
                           "max_length": NAME_MAX, "json_schema_extra": _NAME},
    ("events", "since"): {"ge": 0, "le": 2**63 - 1,
                          "description": "Events after this sequence number (0: all still kept)"},
    ("events", "limit"): {"ge": 1, "le": EVENTS_LIMIT_MAX, "description": "At most this many events"},
    ("events", "wait_s"): {"ge": 0, "le": EVENTS_WAIT_MAX_S, "allow_inf_nan": False,
                           "description": "With no event yet, wait this long for the next (long poll)"},
}


def _port_settings_schema(schema: dict[str, Any]) -> None:
    """Access (vlan) or trunk (+native), as `PortSettings` enforces."""
    schema["allOf"] = [{"if": {"required": ["trunk"]}, "then": {"not": {"required": ["vlan"]}},
                        "else": {"not": {"required": ["native"]}}},
                       # as PortSettings: --pvlan (not none) with its primary and secondary (promiscuous: list),
                       # without vlan or trunk; none, or no pvlan, with none of them
                       {"if": {"properties": {"pvlan": {"enum": ["isolated", "community"]}}, "required": ["pvlan"]},
                        "then": {"required": ["primary", "secondary"],
                                 "not": {"anyOf": [{"required": [k]} for k in ("vlan", "trunk", "secondary_list")]}}},
                       {"if": {"properties": {"pvlan": {"const": "promiscuous"}}, "required": ["pvlan"]},
                        "then": {"required": ["primary", "secondary_list"],
                                 "not": {"anyOf": [{"required": [k]} for k in ("vlan", "trunk", "secondary")]}}},
                       {"if": {"not": {"properties": {"pvlan": {"enum": ["isolated", "community", "promiscuous"]}},
                                       "required": ["pvlan"]}},
                        "then": {"not": {"anyOf": [{"required": [k]} for k in _PV_FIELDS]}}}]


def _switch_settings_schema(schema: dict[str, Any]) -> None:
    """As `SwitchSettings` enforces: a change to External names its NIC, Internal/Private have no NIC
    and no management OS setting, a confirm timeout comes with a change to External, a rename alone,
    a datapath change without a rename or a connection change."""
    connection = ["type", "nic", "allow_management_os", "confirm_timeout_s"]
    schema["allOf"] = [
        {"if": {"required": ["type"], "properties": {"type": {"const": "external"}}},
         "then": {"required": ["nic"]},
         "else": {"if": {"required": ["type"]}, "then": {"not": {"anyOf": [{"required": ["nic"]},
                                                                          {"required": ["allow_management_os"]}]}}}},
        {"if": {"required": ["confirm_timeout_s"]},
         "then": {"required": ["type"], "properties": {"type": {"const": "external"}}}},
        {"if": {"required": ["name"]}, "then": {"not": {"anyOf": [{"required": [k]} for k in connection]}}},
        {"if": {"required": ["datapath"]},
         "then": {"not": {"anyOf": [{"required": [k]} for k in ["name", *connection]]}}},
    ]


#: what a generated body model states beyond its fields, by request dataclass
_BODY_SCHEMAS: dict[type, Callable[[dict[str, Any]], None]] = {PortSettings: _port_settings_schema,
                                                                SwitchSettings: _switch_settings_schema}


def _present(tp: Any) -> Any:
    """`tp` without its None: a field left None is left out of the body, never sent as null."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
    return tp


def _body_model(cmd: Command) -> type[BaseModel]:
    """The pydantic model of a command's JSON body: the request dataclass's fields plus its `field` params.

    A field whose default is None may be left out (and is not nullable); a request of only such fields
    must name at least one of them (a settings change that changes nothing is refused, ``dry_run`` or not)."""
    body = cmd.body
    assert body is not None
    model = _BODIES.get(body.annotation)
    if model is not None:
        return model
    hints = typing.get_type_hints(body.annotation, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(body.annotation):
        default = f.default if f.default is not dataclasses.MISSING else ...
        tp = _FIELDS.get(f.name) or _present(hints[f.name])
        fields[f.name] = (tp, default)
    own = list(fields)
    for p in cmd.where("field"):
        fields[p.wire] = (p.annotation, ... if p.required else p.default)
    extra = _BODY_SCHEMAS.get(body.annotation)
    if all(fields[k][1] is None for k in own):
        also = extra

        def at_least_one(schema: dict[str, Any]) -> None:
            schema["minProperties"] = 1
            if len(own) < len(fields):
                schema["anyOf"] = [{"required": [k]} for k in own]
            if also is not None:
                also(schema)
        extra = at_least_one
    return pydantic.create_model(  # type: ignore[call-overload,no-any-return]
        body.annotation.__name__ + "Body",
        __config__=ConfigDict(extra="forbid", strict=True, json_schema_extra=extra),
        __doc__=f"Body of ``{cmd.http} {cmd.route}``: the `{body.annotation.__name__}` fields.", **fields)


def _result_docs(cmd: Command) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a command: its result's model under its status, and the errors."""
    docs: dict[int | str, dict[str, Any]] = dict(_ERRORS)
    if cmd.pooled:
        docs[429] = {"model": ErrorBody, "description": "Too many watches running"}
    result = cmd.result
    if cmd.dry_run:  # `X | list[str]`: X, or the steps of a dry run
        result = next(a for a in typing.get_args(result) if typing.get_origin(a) is not list)
        docs[200] = {"model": DryRun, "description": "dry run"}
    if result is None:
        return docs
    if cmd.result_key is not None:
        result = pydantic.create_model(f"{cmd.name.title().replace('_', '')}Result", **{cmd.result_key: (result, ...)})
    if cmd.dry_run and cmd.status == 200:  # both answers share the status: either body
        docs[200] = {"model": result | DryRun, "description": "the result, or the steps of a dry run"}
    else:
        docs[cmd.status] = {"model": result}
    return docs


def _signature(cmd: Command, has_body: bool) -> inspect.Signature:
    """The endpoint's parameters as FastAPI reads them: path, query, then the body."""
    params = []
    for p in cmd.params:
        if p.where == "path":
            params.append(inspect.Parameter(p.wire, inspect.Parameter.KEYWORD_ONLY, annotation=_PATHS.get(p.wire, str)))
        elif p.where == "query":
            query = Query(**_QUERIES.get((cmd.name, p.wire), _QUERIES.get(p.wire, {})))
            default = inspect.Parameter.empty if p.required else p.default
            params.append(inspect.Parameter(p.wire, inspect.Parameter.KEYWORD_ONLY,
                                            annotation=Annotated[p.annotation, query], default=default))
    if has_body:
        params.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=JsonObject))
    return inspect.Signature(params)


def _arguments(cmd: Command, given: dict[str, Any]) -> dict[str, Any]:
    """The api call's keyword arguments from what FastAPI parsed; the body goes through the model's
    ``parse`` (InvalidRequest naming every bad field, as for every other caller)."""
    args = {p.name: given[p.wire] for p in cmd.params if p.where in ("path", "query")}
    body = given.get("body")
    if body is not None:
        data = dict(body)
        problems: list[Problem] = []
        for p in cmd.where("field"):  # e.g. dry_run: a flag beside the request's own fields
            value = data.pop(p.wire) if p.wire in data else p.default
            try:
                args[p.name] = check_flag(value) if p.annotation is bool else value
            except FieldError as exc:
                problems.append(Problem(p.wire, str(exc)))
        request = cmd.body
        assert request is not None
        try:
            args[request.name] = request.annotation.parse(data)
        except InvalidRequest as exc:
            problems += exc.problems
        if problems:
            raise InvalidRequest(problems)
    return args


def _answer(cmd: Command, result: Any) -> Response:
    if cmd.dry_run and isinstance(result, list):
        return JSONResponse({"dry_run": True, "steps": list(result)}, status_code=200)
    if result is None:
        return Response(status_code=cmd.status)
    body = to_jsonable(result)
    return JSONResponse({cmd.result_key: body} if cmd.result_key else body, status_code=cmd.status)


def _register(app: FastAPI, api: SwitchApi, cmd: Command, watch_pool: WatchPool) -> type[BaseModel] | None:
    """One route serving `cmd` (see control/commands.py for where each parameter travels); returns
    the model documenting its body (None without one)."""
    method = getattr(api, cmd.name)
    body_model = _body_model(cmd) if cmd.body is not None else None

    if cmd.pooled:
        async def endpoint(**given: Any) -> Response:
            args = _arguments(cmd, given)
            # the start of a long call is logged (tests wait for it before they stop the daemon)
            log.debug("%s of switch %s: %s", cmd.name, clip(args.get("switch")),
                      {k: v for k, v in args.items() if k != "switch"})
            # encoded on the pool thread too: 10,000 events must not hold the event loop either
            data = await watch_pool.run(lambda: json.dumps(to_jsonable(method(**args))).encode())
            return Response(content=data, media_type="application/json")
    else:
        def endpoint(**given: Any) -> Response:  # type: ignore[misc]
            # a plain def: FastAPI runs the blocking api call in its threadpool
            return _answer(cmd, method(**_arguments(cmd, given)))

    endpoint.__signature__ = _signature(cmd, body_model is not None)  # type: ignore[attr-defined]
    endpoint.__name__ = cmd.name
    app.add_api_route(cmd.route, endpoint, methods=[cmd.http], status_code=cmd.status, tags=[cmd.tag],
                      name=cmd.name, summary=cmd.doc.splitlines()[0], description=cmd.doc,
                      responses=_result_docs(cmd))
    return body_model


def _describe_validation_error(exc: RequestValidationError) -> str:
    """One line naming each offending field, e.g. ``body.ageing_s: Input should be a valid integer``."""
    parts: list[str] = []
    for err in exc.errors():
        # a location names the offending field, which may be an unknown key the client chose
        loc = [str(x) if len(str(x)) <= 32 else clip(str(x), 32) for x in err.get("loc", ())]
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            parts.append(f"malformed JSON body: {ctx.get('error', err.get('msg', 'cannot parse'))}")
            continue
        where = ".".join(loc) if loc else "request"
        if loc == ["body"]:
            if err.get("type") == "missing":
                parts.append("request body is required (a JSON object)")
            else:
                parts.append("request body must be a JSON object (Content-Type: application/json)")
            continue
        got = f" (got {clip(err['input'])})" if "input" in err and err.get("type") != "missing" else ""
        parts.append(f"{where}: {err.get('msg', 'invalid')}{got}")
        if len(parts) >= 8:  # a list of 4000 bad items is not 4000 lines of answer
            parts.append(f"and {len(exc.errors()) - 8} more")
            break
    return "; ".join(parts) or "invalid request"


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str,
                  headers: dict[str, str] | None = None) -> None:
    await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 413, never read whole.

    A Content-Length over the limit is refused before any byte is read; otherwise the body is
    counted as it arrives and, within the limit, handed on to the app as it came.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> str:
        return f"request body too large ({size}; at most {self.max_bytes} bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                await _refuse(scope, receive, send, 400, "Content-Length is not a number")
                return
            if announced > self.max_bytes:
                await _refuse(scope, receive, send, 413, self._too_large(f"Content-Length {announced}"))
                return
        messages: list[Any] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away; the app sees that as it would have
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _refuse(scope, receive, send, 413, self._too_large(f"more than {self.max_bytes} bytes sent"))
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class BearerAuth:
    """ASGI middleware: every HTTP request except `PUBLIC_PATHS` needs ``Authorization: Bearer <token>``.

    `tokens` maps each accepted token to its `Role`; a reader may only use `READ_METHODS`; `public`
    the paths that need none (`PUBLIC_PATHS`, and /metrics when the operator asked).
    """

    def __init__(self, app: ASGIApp, tokens: Mapping[str, Role], public: frozenset[str] = PUBLIC_PATHS) -> None:
        self.app = app
        self._public = public
        # fixed-length digests, so comparing takes the same time whatever the token's length
        self._tokens = [(hashlib.sha256(t.encode()).digest(), Role(r)) for t, r in tokens.items()]

    def role_of(self, header: bytes) -> Role | None:
        """The role of the token in an Authorization header value, or None when none matches."""
        scheme, _, credentials = header.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        given = hashlib.sha256(credentials.strip()).digest()
        role = None
        for digest, r in self._tokens:  # no early exit: every request compares against every token
            if hmac.compare_digest(given, digest):
                role = r
        return role

    def _is_public(self, path: str) -> bool:
        return path in self._public or any(path == p or path.startswith(p + "/") for p in PUBLIC_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._is_public(scope.get("path", "")):
            role = self.role_of(dict(scope.get("headers") or []).get(b"authorization", b""))
            if role is None:
                await _refuse(scope, receive, send, 401, "missing or wrong bearer token",
                              {"WWW-Authenticate": "Bearer"})
                return
            method = scope.get("method", "")
            if role is Role.READER and method not in READ_METHODS:
                await _refuse(scope, receive, send, 403,
                              f"this token's role is reader: it may only read (GET); "
                              f"{method} {clip(scope.get('path', ''), 80)} needs an admin token")
                return
            scope.setdefault("state", {})[ROLE_STATE] = role.value  # for GET /whoami
        await self.app(scope, receive, send)


class TooManyWatches(VswitchError):
    status = 429


class Stopping(VswitchError):
    status = 503


class WatchPool:
    """At most `size` watches at once, each on one of the pool's own threads.

    Watches block a thread for their whole duration; keeping them off the threadpool of the other
    endpoints is what keeps those answering. Shared by every listener of one daemon.
    """

    def __init__(self, size: int = WATCH_CONCURRENCY) -> None:
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="watch")
        self._lock = threading.Lock()
        self._running = 0
        self._waiting: set[asyncio.Future[Any]] = set()
        self._stopping = False

    def _release(self, _: object) -> None:
        with self._lock:
            self._running -= 1

    async def run(self, fn: Callable[[], Any]) -> Any:
        """`fn()`'s result, run on a pool thread; TooManyWatches (429) when `size` already run."""
        with self._lock:
            if self._stopping:
                raise Stopping("vswitchd is stopping")
            if self._running >= self.size:
                raise TooManyWatches(f"{self.size} watches are already running on this daemon (the most it "
                                     "runs at once); try again when one ends")
            self._running += 1
        future = self._executor.submit(fn)
        # the slot frees when the thread is done, not when a client gives up waiting
        future.add_done_callback(self._release)
        waiting = asyncio.wrap_future(future)
        self._waiting.add(waiting)
        try:
            return await waiting
        except asyncio.CancelledError:
            if self._stopping:
                raise Stopping("vswitchd is stopping: the watch ended early") from None
            raise
        finally:
            self._waiting.discard(waiting)

    @property
    def stopping(self) -> bool:
        """True once vswitchd is stopping (long-lived streams end then)."""
        return self._stopping

    def stop(self) -> None:
        """Answer every open watch with 503 now (call on the event loop), so a stop does not wait for them.

        Their threads end when the manager stops the switches (see `SwitchManager.watch`).
        """
        self._stopping = True
        for waiting in list(self._waiting):
            waiting.cancel()

    def shutdown(self) -> None:
        """Stop taking watches and let the pool's threads go."""
        self._stopping = True
        self._executor.shutdown(wait=False, cancel_futures=True)


#: where vswitchd serves the documentation pages' assets (shipped in the fastapi-offline package)
DOCS_ASSETS = "/docs/assets"


def make_app(api: SwitchApi, token: str | None = None, *, tokens: Mapping[str, Role] | None = None,
             watches: WatchPool | None = None, max_body_bytes: int = MAX_BODY_BYTES,
             public_metrics: bool = False, lab_view: pathlib.Path | None = None) -> FastAPI:
    """A FastAPI app serving `api`.

    With `token` (an admin token) and/or `tokens` (token → role), all but /health require one of
    them (/metrics a reader's at least; none with `public_metrics`, when the operator asks: a
    Prometheus server without a bearer token). `watches` is the daemon's shared `WatchPool` (a new
    one when None). `lab_view`: a lab's view file, served at GET /lab (`webui.register_ui`).
    """
    accepted: dict[str, Role] = dict(tokens or {})
    if token:
        accepted[token] = Role.ADMIN
    watch_pool = watches if watches is not None else WatchPool()
    # /docs (Swagger UI) and /redoc load their scripts and styles from DOCS_ASSETS, not from a CDN
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # else Swagger UI asks validator.swagger.io for a badge
        title="vswitchd",
        version="1",
        description="Hyper-V-style virtual switches for Linux: External, Internal and Private switches.",
    )

    @app.exception_handler(VswitchError)
    async def _vswitch_error(request: Request, exc: VswitchError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _describe_validation_error(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error serving %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness: answers without a token, without a thread and without touching any switch."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["metrics"], response_class=Response, responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format (frontends/metrics.py)"}})
    def metrics() -> Response:
        """Per port rx/tx frames and bytes, drops by reason, floods, learned and moved; per switch MAC
        table entries and capacity, datapath and takeover state (Prometheus text format)."""
        body, content_type = render_metrics(api)
        return Response(body, media_type=content_type)

    @app.get("/whoami", tags=["health"])
    def whoami(request: Request) -> dict[str, Any]:
        """The role of the caller's token (``admin`` or ``reader``; every caller of an app without
        tokens, the unix socket, is admin) and whether this daemon serves a lab (``GET /lab``). The
        web UI asks, to show a reader no mutation controls and a lab's daemon a link to the lab."""
        return {"role": getattr(request.state, ROLE_STATE, Role.ADMIN.value), "lab": lab_view is not None}

    register_ui(app, lab_view)
    register_decisions(app, api, lambda: watch_pool.stopping)
    from vswitch.frontends.capture_route import register_capture  # it builds on this module's names

    register_capture(app, api, watch_pool)  # a stream, beside the command table

    bodies: dict[tuple[str, str], type[BaseModel]] = {}
    for cmd in COMMANDS.values():
        model = _register(app, api, cmd, watch_pool)
        if model is not None:
            bodies[(cmd.route, cmd.http.lower())] = model

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_bodies(FastAPI.openapi(app), bodies)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if accepted:  # outermost: refused before the body is read
        app.add_middleware(BearerAuth, tokens=accepted,
                           public=PUBLIC_PATHS | {"/metrics"} if public_metrics else PUBLIC_PATHS)
    return app


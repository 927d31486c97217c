"""REST front end: `make_app(api)` serves any `SwitchApi` over HTTP (FastAPI, OpenAPI at /openapi.json).

Owns the URL layout, the JSON shapes of requests and the mapping of errors to HTTP statuses:
- a `VswitchError` becomes its ``.status`` with ``{"error": message}``;
- malformed JSON, a wrong type or an unknown field becomes 400 (not FastAPI's 422) with a message
  naming the field; unknown routes 404, wrong methods 405, all as ``{"error": ...}``;
- responses are ``to_jsonable(...)`` of the `*Info` records, so every client sees the same shapes.

Invariants: no business logic here — a request body is parsed by the model
(`SwitchSpec.parse`/`PortSpec.parse`, whose messages the 400 answer carries as they are) and carried
out by the api. Endpoints are plain ``def`` functions, so FastAPI runs the (blocking) api calls in
its threadpool and the event loop never waits on a switch. The OpenAPI schema states what the model
enforces (name patterns and lengths from `control.model`, MAC format, VLAN ranges, enums, which
fields go together) through the pydantic models `SwitchCreate`/`PortCreate`, which only describe
the bodies (they validate nothing), so a request valid per the schema is refused only for the state
of the switches (404, 409), never with a 400 the schema did not announce.

Bounded: a request body over `MAX_BODY_BYTES` is refused with 413 (announced by Content-Length or
counted as it streams; never read whole); lists are capped by the model; ``watch`` records for at
most 60 s and 10,000 events, at most `WatchPool.size` at once per daemon (429 beyond), on the pool's
own threads, so it never occupies the threadpool the other endpoints run in, and ``/health``
(async, no thread at all) answers while any number of watches run.

Roles: with tokens, every path except ``/health`` needs ``Authorization: Bearer <token>`` (scheme
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
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from annotated_types import Interval
from fastapi import Body, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from vswitch.control.api import SwitchApi
from vswitch.control.model import (
    AGEING_DEFAULT_S,
    AGEING_MAX_S,
    AGEING_MIN_S,
    CAPACITY_DEFAULT,
    CAPACITY_MAX,
    CAPACITY_MIN,
    CONFIRM_TIMEOUT_MAX_S,
    IFNAME_MAX,
    LOOPBACK,
    NAME_MAX,
    NAME_PATTERN,
    RESERVED_PORT_NAMES,
    TRUNK_MAX_VLANS,
    VLAN_MAX,
    VLAN_MIN,
    WATCH_MAX_EVENTS,
    WATCH_MAX_S,
    FdbEntryInfo,
    FieldError,
    FrameEvent,
    InvalidRequest,
    PortInfo,
    PortKind,
    PortSpec,
    PortStatsInfo,
    Problem,
    SwitchInfo,
    SwitchSpec,
    SwitchType,
    TraceInfo,
    VswitchError,
    check_flag,
    clip,
    to_jsonable,
)
from vswitch.frontends.tokens import READ_METHODS, Role

log = logging.getLogger(__name__)

#: Paths reachable without the bearer token.
PUBLIC_PATHS = frozenset({"/health"})
#: Largest request body accepted (the biggest real one, a 4094-VLAN trunk list, is about 20 KB).
MAX_BODY_BYTES = 1 << 20
#: Watches one daemon runs at once (each holds a thread for up to 60 s).
WATCH_CONCURRENCY = 8

# What the model enforces, stated in the schema (JSON Schema keywords; the model stays the judge).
_NAME = {"pattern": NAME_PATTERN, "maxLength": NAME_MAX}
_IFNAME = {"type": "string", "pattern": NAME_PATTERN, "maxLength": IFNAME_MAX}
_NIC = {**_IFNAME, "not": {"const": LOOPBACK}}
#: an absolute path of plain segments (none is "." or ".."), short enough for a unix socket address
_SOCKET_PATH = {"type": "string", "pattern": r"^(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+$", "maxLength": 100}
_MAC = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{12}$"
MAC_TEXT_MAX = 32


Vlan = Annotated[int, Interval(ge=VLAN_MIN, le=VLAN_MAX)]
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


def _port_schema(schema: dict[str, Any]) -> None:
    """The target is an interface name or a socket path by kind; access (vlan) or trunk (+native)."""
    by_kind = [("tap", _NIC), ("link", _NIC), ("qemu-stream", _SOCKET_PATH), ("qemu-dgram", _SOCKET_PATH)]
    schema["allOf"] = [
        *({"if": {"properties": {"kind": {"const": kind}}}, "then": {"properties": {"target": target}}}
          for kind, target in by_kind),
        {"if": {"properties": {"trunk": {"type": "array"}}, "required": ["trunk"]},
         "then": {"properties": {"vlan": {"type": "null"}}},
         "else": {"properties": {"native": {"type": "null"}}}},
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
    dry_run: bool = Field(False, description="Return the steps the creation would take; change nothing.")


class PortCreate(BaseModel):
    """Body of ``POST /switches/{name}/ports``: the `PortSpec` fields. Schema only (see `_BODIES`)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_port_schema)

    name: str = Field(json_schema_extra={**_NAME, "not": {"enum": sorted(RESERVED_PORT_NAMES)}})
    kind: Annotated[PortKind, Field(strict=False)]
    target: str = Field(min_length=1,
                        description="Interface name (tap, link) or absolute socket path (qemu-*).")
    vlan: Vlan | None = Field(None, description="Access VLAN (default 1).")
    trunk: list[Vlan] | None = Field(None, min_length=1, max_length=TRUNK_MAX_VLANS,
                                     description="Allowed VLANs of a trunk port (each counted once).")
    native: Vlan | None = Field(None, description="Untagged VLAN of a trunk port.")


#: (path, method) → the model its request body is documented by; the body itself goes to the spec's
#: `parse`, so the rules and the messages are the model's alone
_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("/switches", "post"): SwitchCreate,
    ("/switches/{name}/ports", "post"): PortCreate,
}


def _document_bodies(schema: dict[str, Any]) -> None:
    """Point the request bodies of `_BODIES` at their models' schemas (added to the components)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for (path, method), model in _BODIES.items():
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


class Flushed(BaseModel):
    removed: int


class ErrorBody(BaseModel):
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid request"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    403: {"model": ErrorBody, "description": "A reader token may only read (GET/HEAD)"},
    404: {"model": ErrorBody, "description": "No such switch or port"},
    409: {"model": ErrorBody, "description": "Conflicts with what exists"},
    413: {"model": ErrorBody, "description": f"Request body over {MAX_BODY_BYTES} bytes"},
}


def _doc(model: Any) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting a 200 body of `model` (not used to re-validate the answer)."""
    return {200: {"model": model}, **_ERRORS}


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

    `tokens` maps each accepted token to its `Role`; a reader may only use `READ_METHODS`.
    """

    def __init__(self, app: ASGIApp, tokens: Mapping[str, Role]) -> None:
        self.app = app
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in PUBLIC_PATHS:
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
             watches: WatchPool | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """A FastAPI app serving `api`.

    With `token` (an admin token) and/or `tokens` (token → role), all but /health require one of
    them. `watches` is the daemon's shared `WatchPool` (a new one when None).
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

    @app.get("/switches", tags=["switches"], responses=_doc(list[SwitchInfo]))
    def list_switches() -> Any:
        return to_jsonable(api.list_switches())

    @app.post("/switches", tags=["switches"], status_code=201,
              responses={201: {"model": SwitchInfo}, 200: {"model": DryRun, "description": "dry run"}, **_ERRORS})
    def create_switch(body: JsonObject, response: Response) -> Any:
        """Create a switch (or, with ``dry_run``, list the steps it would take)."""
        fields = dict(body)
        problems: list[Problem] = []
        try:
            dry_run = check_flag(fields.pop("dry_run", False))
        except FieldError as exc:
            problems.append(Problem("dry_run", str(exc)))
        try:
            spec = SwitchSpec.parse(fields)
        except InvalidRequest as exc:
            problems += exc.problems
        if problems:
            raise InvalidRequest(problems)
        result = api.create_switch(spec, dry_run=dry_run)
        if dry_run:
            response.status_code = 200
            return {"dry_run": True, "steps": list(result)}  # type: ignore[arg-type]
        return to_jsonable(result)

    @app.get("/switches/{name}", tags=["switches"], responses=_doc(SwitchInfo))
    def get_switch(name: SwitchName) -> Any:
        return to_jsonable(api.get_switch(name))

    @app.delete("/switches/{name}", tags=["switches"], status_code=204, responses=_ERRORS)
    def delete_switch(name: SwitchName) -> Response:
        api.delete_switch(name)
        return Response(status_code=204)

    @app.post("/switches/{name}/confirm", tags=["switches"], responses=_doc(SwitchInfo))
    def confirm_switch(name: SwitchName) -> Any:
        """Keep an external switch created with a confirm timeout (cancels the automatic revert)."""
        return to_jsonable(api.confirm_switch(name))

    @app.get("/switches/{name}/ports", tags=["ports"], responses=_doc(list[PortInfo]))
    def list_ports(name: SwitchName) -> Any:
        return to_jsonable(api.list_ports(name))

    @app.post("/switches/{name}/ports", tags=["ports"], status_code=201,
              responses={201: {"model": PortInfo}, **_ERRORS})
    def add_port(name: SwitchName, body: JsonObject) -> Any:
        spec = PortSpec.parse(body)
        return to_jsonable(api.add_port(name, spec))

    @app.delete("/switches/{name}/ports/{port}", tags=["ports"], status_code=204, responses=_ERRORS)
    def remove_port(name: SwitchName, port: PortName) -> Response:
        api.remove_port(name, port)
        return Response(status_code=204)

    @app.get("/switches/{name}/fdb", tags=["fdb"], responses=_doc(list[FdbEntryInfo]))
    def fdb_show(name: SwitchName) -> Any:
        return to_jsonable(api.fdb_show(name))

    @app.post("/switches/{name}/fdb/flush", tags=["fdb"], responses=_doc(Flushed))
    def fdb_flush(name: SwitchName) -> Any:
        """Remove the dynamic entries of the switch's MAC table."""
        return {"removed": api.fdb_flush(name)}

    @app.get("/switches/{name}/stats", tags=["stats"], responses=_doc(list[PortStatsInfo]))
    def stats(name: SwitchName) -> Any:
        return to_jsonable(api.stats(name))

    @app.get("/switches/{name}/trace", tags=["trace"], responses=_doc(TraceInfo))
    def trace(
        name: SwitchName,
        in_port: Annotated[str, Query(description="Port the frame would arrive on", max_length=NAME_MAX,
                                      json_schema_extra=_NAME)],
        src: Annotated[str, Query(description="Source MAC, e.g. 52:54:00:12:34:56", max_length=MAC_TEXT_MAX,
                                  json_schema_extra={"pattern": _MAC})],
        dst: Annotated[str, Query(description="Destination MAC", max_length=MAC_TEXT_MAX,
                                  json_schema_extra={"pattern": _MAC})],
        vlan: Annotated[int | None, Query(ge=0, le=VLAN_MAX, description="VLAN id of the frame (tagged)")] = None,
    ) -> Any:
        """What the switch would do with such a frame now: its steps, the classified VLAN, the reason, the
        output ports. Sends, learns and counts nothing."""
        return to_jsonable(api.trace(name, in_port, src, dst, vlan))

    @app.get("/switches/{name}/watch", tags=["trace"],
             responses={**_doc(list[FrameEvent]),
                        429: {"model": ErrorBody, "description": "Too many watches running"}})
    async def watch(
        name: SwitchName,
        seconds: Annotated[float, Query(gt=0, le=WATCH_MAX_S, allow_inf_nan=False,
                                        description=f"How long to record, at most {WATCH_MAX_S:.0f} s")] = 1.0,
        limit: Annotated[int, Query(ge=1, le=WATCH_MAX_EVENTS, description="At most this many events")] = 1000,
    ) -> Any:
        """Record the switch's per-frame decisions for a while and return them."""
        log.debug("watch of switch %s: up to %g s, %d events", clip(name), seconds, limit)
        # encoded on the pool thread too: 10,000 events must not hold the event loop either
        body = await watch_pool.run(lambda: json.dumps(to_jsonable(api.watch(name, seconds, limit))).encode())
        return Response(content=body, media_type="application/json")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_bodies(FastAPI.openapi(app))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if accepted:
        app.add_middleware(BearerAuth, tokens=accepted)  # outermost: refused before the body is read
    return app


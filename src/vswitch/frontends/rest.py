"""REST front end: `make_app(api)` serves any `SwitchApi` over HTTP (FastAPI, OpenAPI at /openapi.json).

Owns the URL layout, the JSON shapes of requests and the mapping of errors to HTTP statuses:
- a `VswitchError` becomes its ``.status`` with ``{"error": message}``;
- malformed JSON, a wrong type or an unknown field becomes 400 (not FastAPI's 422) with a message
  naming the field; unknown routes 404, wrong methods 405, all as ``{"error": ...}``;
- responses are ``to_jsonable(...)`` of the `*Info` records, so every client sees the same shapes.

Invariants: no business logic here — every request is validated by the model
(`SwitchSpec.from_dict`/`PortSpec.from_dict`) and carried out by the api. Endpoints are plain
``def`` functions, so FastAPI runs the (blocking) api calls in its threadpool and the event loop
never waits on a switch. With a token, every path except ``/health`` needs
``Authorization: Bearer <token>`` (401 otherwise), compared in constant time.

Must not touch: the manager's internals, the store, the datapath, the kernel.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from vswitch.control.api import SwitchApi
from vswitch.control.model import (
    AGEING_DEFAULT_S,
    CAPACITY_DEFAULT,
    FdbEntryInfo,
    PortInfo,
    PortKind,
    PortSpec,
    PortStatsInfo,
    SwitchInfo,
    SwitchSpec,
    SwitchType,
    VswitchError,
    to_jsonable,
)

log = logging.getLogger(__name__)

#: Paths reachable without the bearer token.
PUBLIC_PATHS = frozenset({"/health"})


class SwitchCreate(BaseModel):
    """Body of ``POST /switches``: the `SwitchSpec` fields, plus ``dry_run``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    type: Annotated[SwitchType, Field(strict=False)]  # JSON gives a string; the enum checks it
    nic: str | None = None
    allow_management_os: bool = True
    confirm_timeout_s: float | None = None
    ageing_s: int = AGEING_DEFAULT_S
    max_entries: int = CAPACITY_DEFAULT
    dry_run: bool = Field(False, description="Return the steps the creation would take; change nothing.")


class PortCreate(BaseModel):
    """Body of ``POST /switches/{name}/ports``: the `PortSpec` fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    kind: Annotated[PortKind, Field(strict=False)]
    target: str = Field(description="Interface name (tap, link) or absolute socket path (qemu-*).")
    vlan: int | None = Field(None, description="Access VLAN (default 1).")
    trunk: list[int] | None = Field(None, description="Allowed VLANs of a trunk port.")
    native: int | None = Field(None, description="Untagged VLAN of a trunk port.")


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
    404: {"model": ErrorBody, "description": "No such switch or port"},
    409: {"model": ErrorBody, "description": "Conflicts with what exists"},
}


def _doc(model: Any) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting a 200 body of `model` (not used to re-validate the answer)."""
    return {200: {"model": model}, **_ERRORS}


def _describe_validation_error(exc: RequestValidationError) -> str:
    """One line naming each offending field, e.g. ``body.ageing_s: Input should be a valid integer``."""
    parts: list[str] = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
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
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class BearerAuth:
    """ASGI middleware: every HTTP request except `PUBLIC_PATHS` needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in PUBLIC_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def make_app(api: SwitchApi, token: str | None = None) -> FastAPI:
    """A FastAPI app serving `api`; with `token`, all but /health require that bearer token."""
    app = FastAPI(
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
    def health() -> dict[str, str]:
        """Liveness: answers without a token and without touching any switch."""
        return {"status": "ok"}

    @app.get("/switches", tags=["switches"], responses=_doc(list[SwitchInfo]))
    def list_switches() -> Any:
        return to_jsonable(api.list_switches())

    @app.post("/switches", tags=["switches"], status_code=201,
              responses={201: {"model": SwitchInfo}, 200: {"model": DryRun, "description": "dry run"}, **_ERRORS})
    def create_switch(body: SwitchCreate, response: Response) -> Any:
        """Create a switch (or, with ``dry_run``, list the steps it would take)."""
        fields = body.model_dump()
        dry_run = fields.pop("dry_run")
        spec = SwitchSpec.from_dict(fields)
        result = api.create_switch(spec, dry_run=dry_run)
        if dry_run:
            response.status_code = 200
            return {"dry_run": True, "steps": list(result)}  # type: ignore[arg-type]
        return to_jsonable(result)

    @app.get("/switches/{name}", tags=["switches"], responses=_doc(SwitchInfo))
    def get_switch(name: str) -> Any:
        return to_jsonable(api.get_switch(name))

    @app.delete("/switches/{name}", tags=["switches"], status_code=204, responses=_ERRORS)
    def delete_switch(name: str) -> Response:
        api.delete_switch(name)
        return Response(status_code=204)

    @app.post("/switches/{name}/confirm", tags=["switches"], responses=_doc(SwitchInfo))
    def confirm_switch(name: str) -> Any:
        """Keep an external switch created with a confirm timeout (cancels the automatic revert)."""
        return to_jsonable(api.confirm_switch(name))

    @app.get("/switches/{name}/ports", tags=["ports"], responses=_doc(list[PortInfo]))
    def list_ports(name: str) -> Any:
        return to_jsonable(api.list_ports(name))

    @app.post("/switches/{name}/ports", tags=["ports"], status_code=201,
              responses={201: {"model": PortInfo}, **_ERRORS})
    def add_port(name: str, body: PortCreate) -> Any:
        spec = PortSpec.from_dict(body.model_dump())
        return to_jsonable(api.add_port(name, spec))

    @app.delete("/switches/{name}/ports/{port}", tags=["ports"], status_code=204, responses=_ERRORS)
    def remove_port(name: str, port: str) -> Response:
        api.remove_port(name, port)
        return Response(status_code=204)

    @app.get("/switches/{name}/fdb", tags=["fdb"], responses=_doc(list[FdbEntryInfo]))
    def fdb_show(name: str) -> Any:
        return to_jsonable(api.fdb_show(name))

    @app.post("/switches/{name}/fdb/flush", tags=["fdb"], responses=_doc(Flushed))
    def fdb_flush(name: str) -> Any:
        """Remove the dynamic entries of the switch's MAC table."""
        return {"removed": api.fdb_flush(name)}

    @app.get("/switches/{name}/stats", tags=["stats"], responses=_doc(list[PortStatsInfo]))
    def stats(name: str) -> Any:
        return to_jsonable(api.stats(name))

    @app.get("/switches/{name}/trace", tags=["trace"], responses=_doc(dict[str, Any]))
    def trace(
        name: str,
        in_port: Annotated[str, Query(description="Port the frame would arrive on")],
        src: Annotated[str, Query(description="Source MAC")],
        dst: Annotated[str, Query(description="Destination MAC")],
        vlan: Annotated[int | None, Query(description="VLAN id of the frame (tagged)")] = None,
    ) -> Any:
        """What the switch would do with such a frame now: stages, reasons, output ports. Sends nothing."""
        return to_jsonable(api.trace(name, in_port, src, dst, vlan))

    @app.get("/switches/{name}/watch", tags=["trace"], responses=_doc(list[dict[str, Any]]))
    def watch(
        name: str,
        seconds: Annotated[float, Query(description="How long to record, 0-60 s")] = 1.0,
        limit: Annotated[int, Query(description="At most this many events")] = 1000,
    ) -> Any:
        """Record the switch's per-frame decisions for a while and return them."""
        return api.watch(name, seconds, limit)

    if token:
        app.add_middleware(BearerAuth, token=token)
    return app


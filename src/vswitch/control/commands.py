"""The command table: every `SwitchApi` call, declared once, with everything a transport needs.

A command is a method of the `SwitchApi` protocol marked with `@command(HTTP, ROUTE)`: its name is
the API method, its signature the typed request (path, query and body parameters), its return
annotation the typed result, its docstring the description. `collect(SwitchApi)` reads those
declarations into `Command` records; the REST server (frontends/rest.py) registers one route per
record and the REST client (frontends/client.py) dispatches every method through them, so neither
lists the commands again. docs/adding-a-command.md walks through adding one.

Where each parameter travels (`Param.where`):
- ``path``: named by a ``{placeholder}`` of the route; ``{name}`` in a route of the switches is the
  switch, whether the method calls it ``name`` or ``switch`` (the routes keep their historic shape);
- ``body``: the one parameter typed as a request dataclass (it has ``parse``); the server builds
  it with ``parse`` from the JSON object, so the model stays the one judge of the request;
- ``field``: any other parameter of a POST/PATCH, carried as an extra key of the body (``dry_run``);
- ``query``: any other parameter of a GET/DELETE.

A command changes state (needs the admin role) exactly when its HTTP method is not a read
(GET/HEAD): that is the rule `frontends.tokens` and the bearer middleware enforce, so the table
derives the role from the method rather than stating it twice.

Must not touch: FastAPI, pydantic, httpx (the table is data; both transports read it).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

READ_HTTP = frozenset({"GET", "HEAD"})
_HTTP = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
_MARK = "__vswitch_command__"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Param:
    """One argument of a command: its Python name, the name it has on the wire, where it travels."""

    name: str
    wire: str
    where: Literal["path", "query", "body", "field"]
    annotation: Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class Command:
    """One `SwitchApi` call as every transport serves it."""

    name: str
    http: str
    route: str
    status: int
    doc: str
    params: tuple[Param, ...]
    result: Any
    #: the answer is ``{result_key: result}`` (fdb flush answers ``{"removed": n}``)
    result_key: str | None = None
    #: long-running (watch): served on the daemon's bounded pool, never on the request threadpool
    pooled: bool = False

    @property
    def mutates(self) -> bool:
        """Whether the command changes state: only an admin token may call it."""
        return self.http not in READ_HTTP

    @property
    def role(self) -> str:
        """The least role allowed to call it (the values of `frontends.tokens.Role`)."""
        return "admin" if self.mutates else "reader"

    @property
    def dry_run(self) -> bool:
        """With ``dry_run=True`` the command answers the steps it would take (200, ``{"dry_run", "steps"}``)
        instead of its result: it has a ``dry_run`` parameter and its result is ``X | list[str]``
        (`config_apply` has one too, but answers its own typed plan either way)."""
        return (any(p.name == "dry_run" for p in self.params)
                and any(typing.get_origin(a) is list for a in typing.get_args(self.result)))

    @property
    def tag(self) -> str:
        """The OpenAPI group: the segment after the switch (``ports``, ``fdb``), else the first one."""
        parts = [p for p in self.route.split("/") if p]
        return parts[2] if len(parts) > 2 and parts[1].startswith("{") else parts[0]

    def where(self, kind: str) -> list[Param]:
        return [p for p in self.params if p.where == kind]

    @property
    def body(self) -> Param | None:
        found = self.where("body")
        return found[0] if found else None


def command(http: str, route: str, *, status: int | None = None, result_key: str | None = None,
            pooled: bool = False) -> Callable[[F], F]:
    """Mark a `SwitchApi` method as a command served at ``HTTP ROUTE``.

    `status` defaults to 204 for a command returning None, else 200. Raises ValueError for an
    unknown HTTP method (at import time: a wrong declaration never starts).
    """
    if http not in _HTTP:
        raise ValueError(f"unknown HTTP method {http!r}")

    def mark(fn: F) -> F:
        setattr(fn, _MARK, {"http": http, "route": route, "status": status, "result_key": result_key,
                            "pooled": pooled})
        return fn
    return mark


def _is_request(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation) and hasattr(annotation, "parse")


def collect(protocol: type) -> dict[str, Command]:
    """The commands declared on `protocol`, in declaration order, by method name.

    Raises ValueError when a declaration is inconsistent: a route placeholder no parameter fills,
    two request bodies, a body on a GET/DELETE.
    """
    table: dict[str, Command] = {}
    for name, fn in vars(protocol).items():
        mark = getattr(fn, _MARK, None)
        if mark is None:
            continue
        hints = typing.get_type_hints(fn)
        placeholders = _PLACEHOLDER.findall(mark["route"])
        params: list[Param] = []
        for p in list(inspect.signature(fn).parameters.values())[1:]:  # skip self
            annotation = hints.get(p.name, Any)
            wire = p.name
            if p.name in placeholders:
                where = "path"
            elif p.name == "switch" and "name" in placeholders:
                where, wire = "path", "name"
            elif _is_request(annotation):
                where = "body"
            elif mark["http"] in ("POST", "PATCH", "PUT"):
                where = "field"
            else:
                where = "query"
            params.append(Param(p.name, wire, where, annotation, p.default))  # type: ignore[arg-type]
        filled = {p.wire for p in params if p.where == "path"}
        if set(placeholders) != filled:
            raise ValueError(f"{name}: route {mark['route']} has placeholders {placeholders}, parameters fill {filled}")
        if sum(p.where == "body" for p in params) > 1:
            raise ValueError(f"{name}: at most one request body")
        if any(p.where == "body" for p in params) and mark["http"] not in ("POST", "PATCH", "PUT"):
            raise ValueError(f"{name}: a {mark['http']} has no body")
        result = hints.get("return")
        status = mark["status"] or (204 if result is type(None) or result is None else 200)
        table[name] = Command(name, mark["http"], mark["route"], status, inspect.getdoc(fn) or name,
                              tuple(params), None if result is type(None) else result,
                              mark["result_key"], mark["pooled"])
    return table

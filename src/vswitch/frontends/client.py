"""`RestSwitchApi`: the `SwitchApi` protocol spoken over HTTP to `vswitchd` (unix socket or TCP).

Owns the client side of the REST layout in `frontends.rest`: every `SwitchApi` method is dispatched
from the command table (`control.api.COMMANDS`): its arguments bound to the protocol's signature and
sent as path, query or body, its answer turned back into the typed result of the declaration (the
model's records `SwitchInfo`, `PortInfo`, ..., nested ones too), and errors back into the matching
`VswitchError` subclass with the server's own message (400 InvalidRequest, 404 NotFound,
409 Conflict, anything else a VswitchError carrying that status).

`capture` is the one method written by hand: its answer is a pcapng stream (`CaptureDownload`), not
JSON (frontends/capture_route.py serves it).

Invariants: a caller cannot tell this from an in-process `SwitchManager` except by the
`DaemonUnreachable` error ("cannot reach vswitchd at PATH: ... (is it running?)") when nothing
answers. Unknown keys in answers are ignored, so a newer daemon does not break an older client.

Must not touch: FastAPI (kept out of the CLI's import path), the manager, the store, the kernel.
"""

from __future__ import annotations

import dataclasses
import inspect
import ssl
import types
import typing
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from vswitch.control import capture as captures
from vswitch.control.api import COMMANDS, DEFAULT_SOCKET, SwitchApi
from vswitch.control.commands import Command
from vswitch.control.model import Conflict, InvalidRequest, NotFound, VswitchError, to_jsonable

#: Creating an external switch moves addresses and routes; give it time.
DEFAULT_TIMEOUT_S = 60.0
#: a capture's stream may be silent for its whole `seconds`; beyond them by this much, the daemon is stuck
CAPTURE_SLACK_S = 30.0


class DaemonUnreachable(VswitchError):
    """Nothing answers at the socket or URL (not running, wrong path, no permission)."""

    status = 503


class AuthenticationFailed(VswitchError):
    """The daemon refused the bearer token (or none was given)."""

    status = 401


class Forbidden(VswitchError):
    """The token is valid but its role may not do this (a reader asked for a change)."""

    status = 403


_BY_STATUS: dict[int, type[VswitchError]] = {400: InvalidRequest, 403: Forbidden, 404: NotFound, 409: Conflict}


def _decode(tp: Any, data: Any) -> Any:
    """`data` (JSON) as the typed value `tp` says: dataclasses (nested ones too) from objects, ignoring
    keys they do not know; lists element by element; anything else as it came."""
    if tp is None or tp is type(None):
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        # `X | list[Y]`: the JSON's shape says which
        chosen = next((a for a in options if (typing.get_origin(a) is list) == isinstance(data, list)), options[0])
        return _decode(chosen, data)
    if origin is list:
        if not isinstance(data, list):
            raise _unexpected("a list", data)
        (item,) = typing.get_args(tp)
        return [_decode(item, d) for d in data]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise _unexpected("an object", data)
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.name in data})
    if tp in (int, float, str):
        return tp(data)
    return data


def _unexpected(expected: str, data: Any) -> VswitchError:
    return VswitchError(f"vswitchd sent an unexpected answer (expected {expected}, got {type(data).__name__})")


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("error"), str):
            return data["error"]
        if "detail" in data:
            return str(data["detail"])
    text = response.text.strip()
    return text or f"HTTP {response.status_code} {response.reason_phrase}"


class RestSwitchApi:
    """`SwitchApi` over HTTP: `socket_path` (unix socket, the default) or `url` (``http://host:port``,
    ``https://host:port`` verified against the system's CAs or `ca_cert`)."""

    def __init__(self, socket_path: str | None = None, url: str | None = None, token: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, ca_cert: str | None = None) -> None:
        """Connect lazily: nothing is contacted until the first call.

        Raises VswitchError when `ca_cert` cannot be loaded.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if url is not None:
            self.where = url
            verify: ssl.SSLContext | bool = True
            if ca_cert is not None:
                try:
                    verify = ssl.create_default_context(cafile=ca_cert)
                except (OSError, ssl.SSLError) as e:
                    raise VswitchError(f"cannot load CA certificate {ca_cert}: {e}") from None
            self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout_s, verify=verify)
        else:
            self.where = socket_path or DEFAULT_SOCKET
            self._client = httpx.Client(base_url="http://vswitchd", headers=headers, timeout=timeout_s,
                                        transport=httpx.HTTPTransport(uds=self.where))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> RestSwitchApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """`request` sent; DaemonUnreachable (saying why) when nothing or no one trusted answers."""
        try:
            return self._client.send(request, stream=stream)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError, PermissionError) as e:
            if "CERTIFICATE_VERIFY_FAILED" in str(e):
                raise DaemonUnreachable(f"vswitchd at {self.where} has a TLS certificate this client does not "
                                        f"trust: {e} (give its CA with --ca-cert)") from None
            raise DaemonUnreachable(f"cannot reach vswitchd at {self.where}: {e} (is it running?)") from None
        except httpx.TimeoutException as e:
            raise DaemonUnreachable(f"vswitchd at {self.where} did not answer in time: {e}") from None
        except httpx.HTTPError as e:
            raise DaemonUnreachable(f"talking to vswitchd at {self.where} failed: {e}") from None

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self._send(self._client.build_request(method, path, json=json, params=params))
        if response.is_success:
            if response.status_code == 204 or not response.content:
                return None
            return response.json()
        raise self._refusal(response)

    def _refusal(self, response: httpx.Response) -> VswitchError:
        """The `VswitchError` subclass of a refused request's status, with the server's message."""
        message = _error_message(response)
        if response.status_code == 401:
            return AuthenticationFailed(f"vswitchd at {self.where} refused the request: {message}")
        cls = _BY_STATUS.get(response.status_code)
        if cls is not None:
            return cls(message)
        err = VswitchError(message)
        err.status = response.status_code
        return err

    # ---- beside the command table: a stream ---------------------------------------------------

    def capture(self, switch: str, port: str, direction: str = "both", count: int = captures.COUNT_DEFAULT,
                seconds: float = captures.SECONDS_DEFAULT, max_bytes: int = captures.BYTES_DEFAULT,
                filter: str | None = None) -> CaptureDownload:
        """`SwitchApi.capture` over HTTP: ``GET /switches/{name}/ports/{port}/capture`` (not in the command
        table: its answer is pcapng, streamed), the chunks as they arrive. Raises what the daemon refused
        with (InvalidRequest, NotFound, 429/503 as VswitchError with that status) or DaemonUnreachable
        before the first chunk."""
        params = {"direction": direction, "count": count, "seconds": seconds, "max_bytes": max_bytes}
        if filter is not None:
            params["filter"] = filter
        # the stream is quiet while no frame crosses the port: wait as long as the capture may last
        timeout = httpx.Timeout(self._client.timeout.connect, read=float(seconds) + CAPTURE_SLACK_S)
        request = self._client.build_request("GET", f"/switches/{_seg(switch)}/ports/{_seg(port)}/capture",
                                             params=params, timeout=timeout)
        response = self._send(request, stream=True)
        if not response.is_success:
            try:
                response.read()
            finally:
                response.close()
            raise self._refusal(response)
        return CaptureDownload(response, self.where)

    # ---- SwitchApi: every method of the command table is dispatched by `_run` (set below) -----

    def health(self) -> dict[str, Any]:
        """The daemon's /health answer (no token needed)."""
        return self._call("GET", "/health")

    def _run(self, cmd: Command, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call command `cmd` with the arguments of its `SwitchApi` method; its typed result."""
        bound = _SIGNATURES[cmd.name].bind(None, *args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        path = cmd.route.format(**{p.wire: _seg(given[p.name]) for p in cmd.where("path")})
        params = {p.wire: given[p.name] for p in cmd.where("query") if given[p.name] is not None} or None
        body = None
        if cmd.body is not None:
            # tuples (trunks) become lists, enums their values; a field left None is left out
            fields = {**to_jsonable(given[cmd.body.name]), **{p.wire: given[p.name] for p in cmd.where("field")}}
            body = {k: v for k, v in fields.items() if v is not None}
        data = self._call(cmd.http, path, json=body, params=params)
        if cmd.dry_run and given.get("dry_run"):
            return [str(s) for s in data["steps"]]
        if cmd.result_key is not None:
            data = data[cmd.result_key] if isinstance(data, dict) else data
        return _decode(cmd.result, data)


class CaptureDownload:
    """A capture's pcapng as it streams from vswitchd: iterate it (once) for the chunks as they arrive;
    `close` ends the capture (the daemon sees the client go). Raises DaemonUnreachable when the stream
    breaks (the daemon killed, the connection lost) — what came before is whole."""

    def __init__(self, response: httpx.Response, where: str) -> None:
        self._response, self._where = response, where
        self.filename = _attachment_name(response.headers.get("content-disposition", ""))

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes()
        except httpx.HTTPError as e:
            raise DaemonUnreachable(f"the capture stream from vswitchd at {self._where} broke: {e}") from None
        finally:
            self.close()

    def stop(self, why: str = "reader gone") -> None:
        """As `close` (the daemon sees the client go; `why` is its own to say)."""
        self.close()

    def close(self) -> None:
        """End the stream; idempotent."""
        self._response.close()


def _attachment_name(disposition: str) -> str | None:
    _, sep, rest = disposition.partition('filename="')
    return rest.split('"', 1)[0] if sep else None


def _dispatch(cmd: Command) -> Any:
    def method(self: RestSwitchApi, *args: Any, **kwargs: Any) -> Any:
        return self._run(cmd, args, kwargs)
    method.__name__ = cmd.name
    method.__doc__ = cmd.doc
    return method


#: every command's Python signature, to bind a call's arguments as the in-process api would
_SIGNATURES = {name: inspect.signature(getattr(SwitchApi, name)) for name in COMMANDS}
for _cmd in COMMANDS.values():
    setattr(RestSwitchApi, _cmd.name, _dispatch(_cmd))


def _seg(name: str) -> str:
    """One URL path segment (names are validated server-side; this only keeps the URL well-formed)."""
    return quote(name, safe="")

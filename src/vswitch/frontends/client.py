"""`RestSwitchApi`: the `SwitchApi` protocol spoken over HTTP to `vswitchd` (unix socket or TCP).

Owns the client side of the REST layout in `frontends.rest`: paths, JSON bodies, and turning answers
back into the model's records (`SwitchInfo`, `PortInfo`, ...) and errors back into the matching
`VswitchError` subclass with the server's own message (400 InvalidRequest, 404 NotFound,
409 Conflict, anything else a VswitchError carrying that status).

Invariants: a caller cannot tell this from an in-process `SwitchManager` except by the
`DaemonUnreachable` error ("cannot reach vswitchd at PATH: ... (is it running?)") when nothing
answers. Unknown keys in answers are ignored, so a newer daemon does not break an older client.

Must not touch: FastAPI (kept out of the CLI's import path), the manager, the store, the kernel.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from vswitch.control.api import DEFAULT_SOCKET
from vswitch.control.model import (
    Conflict,
    FdbEntryInfo,
    FrameEvent,
    IcmpEcho,
    InvalidRequest,
    NotFound,
    PortInfo,
    PortSpec,
    PortStatsInfo,
    SwitchInfo,
    SwitchSpec,
    TraceInfo,
    TraceStepInfo,
    VswitchError,
)

#: Creating an external switch moves addresses and routes; give it time.
DEFAULT_TIMEOUT_S = 60.0

T = TypeVar("T")


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


def _record(cls: type[T], data: Any) -> T:
    """Build dataclass `cls` from a JSON object, ignoring keys it does not know."""
    if not isinstance(data, dict):
        raise VswitchError(f"vswitchd sent an unexpected answer (expected an object, got {type(data).__name__})")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


def _switch(data: Any) -> SwitchInfo:
    info = _record(SwitchInfo, data)
    info.ports = [_record(PortInfo, p) for p in info.ports]
    return info


def _trace(data: Any) -> TraceInfo:
    info = _record(TraceInfo, data)
    info.steps = [_record(TraceStepInfo, s) for s in info.steps]
    return info


def _frame_event(data: Any) -> FrameEvent:
    event = _record(FrameEvent, data)
    if event.icmp is not None:
        event.icmp = _record(IcmpEcho, event.icmp)
    return event


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

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=json, params=params)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError, PermissionError) as e:
            if "CERTIFICATE_VERIFY_FAILED" in str(e):
                raise DaemonUnreachable(f"vswitchd at {self.where} has a TLS certificate this client does not "
                                        f"trust: {e} (give its CA with --ca-cert)") from None
            raise DaemonUnreachable(f"cannot reach vswitchd at {self.where}: {e} (is it running?)") from None
        except httpx.TimeoutException as e:
            raise DaemonUnreachable(f"vswitchd at {self.where} did not answer in time: {e}") from None
        except httpx.HTTPError as e:
            raise DaemonUnreachable(f"talking to vswitchd at {self.where} failed: {e}") from None
        if response.is_success:
            if response.status_code == 204 or not response.content:
                return None
            return response.json()
        message = _error_message(response)
        if response.status_code == 401:
            raise AuthenticationFailed(f"vswitchd at {self.where} refused the request: {message}")
        cls = _BY_STATUS.get(response.status_code)
        if cls is not None:
            raise cls(message)
        err = VswitchError(message)
        err.status = response.status_code
        raise err

    # ---- SwitchApi ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The daemon's /health answer (no token needed)."""
        return self._call("GET", "/health")

    def create_switch(self, spec: SwitchSpec, *, dry_run: bool = False) -> SwitchInfo | list[str]:
        """Create a switch; with dry_run return the list of steps it would take instead."""
        body = {**spec.to_dict(), "dry_run": dry_run}
        data = self._call("POST", "/switches", json=body)
        if dry_run:
            return [str(s) for s in data["steps"]]
        return _switch(data)

    def delete_switch(self, name: str) -> None:
        self._call("DELETE", f"/switches/{_seg(name)}")

    def confirm_switch(self, name: str) -> SwitchInfo:
        """Keep an external switch created with a confirm timeout (cancels the automatic revert)."""
        return _switch(self._call("POST", f"/switches/{_seg(name)}/confirm"))

    def list_switches(self) -> list[SwitchInfo]:
        return [_switch(d) for d in self._call("GET", "/switches")]

    def get_switch(self, name: str) -> SwitchInfo:
        return _switch(self._call("GET", f"/switches/{_seg(name)}"))

    def add_port(self, switch: str, spec: PortSpec) -> PortInfo:
        body = spec.to_dict()
        if spec.trunk is not None:
            body["trunk"] = list(spec.trunk)  # the API takes a list of ids (the store keeps ranges)
        return _record(PortInfo, self._call("POST", f"/switches/{_seg(switch)}/ports", json=body))

    def remove_port(self, switch: str, port: str) -> None:
        self._call("DELETE", f"/switches/{_seg(switch)}/ports/{_seg(port)}")

    def list_ports(self, switch: str) -> list[PortInfo]:
        return [_record(PortInfo, d) for d in self._call("GET", f"/switches/{_seg(switch)}/ports")]

    def fdb_show(self, switch: str) -> list[FdbEntryInfo]:
        return [_record(FdbEntryInfo, d) for d in self._call("GET", f"/switches/{_seg(switch)}/fdb")]

    def fdb_flush(self, switch: str) -> int:
        """Remove the dynamic entries; return how many were removed."""
        return int(self._call("POST", f"/switches/{_seg(switch)}/fdb/flush")["removed"])

    def stats(self, switch: str) -> list[PortStatsInfo]:
        return [_record(PortStatsInfo, d) for d in self._call("GET", f"/switches/{_seg(switch)}/stats")]

    def trace(self, switch: str, in_port: str, src: str, dst: str, vlan: int | None = None) -> TraceInfo:
        """What the switch would do with such a frame now (steps, classified VLAN, reason, output ports)."""
        params: dict[str, Any] = {"in_port": in_port, "src": src, "dst": dst}
        if vlan is not None:
            params["vlan"] = vlan
        return _trace(self._call("GET", f"/switches/{_seg(switch)}/trace", params=params))

    def watch(self, switch: str, seconds: float, limit: int = 1000) -> list[FrameEvent]:
        """The switch's per-frame decisions recorded over `seconds`."""
        data = self._call("GET", f"/switches/{_seg(switch)}/watch", params={"seconds": seconds, "limit": limit})
        return [_frame_event(d) for d in data]


def _seg(name: str) -> str:
    """One URL path segment (names are validated server-side; this only keeps the URL well-formed)."""
    return quote(name, safe="")

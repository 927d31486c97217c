"""The web UI: vswitchd serves the Virtual Switch Manager's page and assets at `/ui` (issue 14).

Everything the page needs is a file of this package (frontends/ui/): plain HTML, CSS and scripts, no
CDN and no build step, so the page works on a machine without the internet. The files hold no state
of any switch and are served without a token (`rest.PUBLIC_PREFIXES`); the page asks for a token
(or takes one from the URL's fragment, ``/ui/#token=…``, which never reaches a server log) and
sends it as a bearer token with every API call, so the UI has exactly the REST API's authentication
and roles: a reader's page shows no mutation controls (``GET /whoami``) and the API refuses a
mutation from it with 403 whatever the page does.

A lab's daemon (``vswitchd --lab-view FILE``, given by `vswitch lab up`) also serves ``GET /lab``: the
lab's view file as the lab wrote it (its topology and its last `lab trace`), which the UI's lab page
draws; it needs a token like every API path (a reader's is enough).

The Content-Security-Policy allows scripts, styles and connections to this origin only: an asset
from elsewhere would not load, which is what keeps the UI offline-clean.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UI_PREFIX = "/ui"
UI_DIR = Path(__file__).with_name("ui")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class _UiHeaders:
    """Adds the UI's security headers to every response of the static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"cache-control", b"no-cache")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


NOT_A_LAB = "this vswitchd serves no lab: only a daemon started by `vswitch lab up` has a lab page"


def register_ui(app: FastAPI, lab_view: Path | None = None) -> None:
    """Serve frontends/ui/ at `UI_PREFIX` (``/ui`` redirects to ``/ui/``, which is index.html), and
    `lab_view` at ``GET /lab`` (404 when None or not written yet)."""

    @app.get("/lab", tags=["lab"], response_class=Response, responses={
        200: {"content": {"application/json": {}}, "description": "the lab's view (vswitch.lab.state.Lab.view)"},
        404: {"description": "not a lab's daemon, or the lab has not written its view yet"}})
    def lab() -> Response:
        """The lab this daemon serves, as its web UI page draws it: topology, links, switches and the last
        `lab trace` result (404 from a daemon that is not a lab's)."""
        if lab_view is None:
            raise HTTPException(404, NOT_A_LAB)
        try:
            body = lab_view.read_bytes()  # written atomically by the lab: never a half
        except FileNotFoundError:
            raise HTTPException(404, f"the lab has not written its view ({lab_view}) yet") from None
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})

    @app.get(UI_PREFIX, include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse(UI_PREFIX + "/")

    app.mount(UI_PREFIX, _UiHeaders(StaticFiles(directory=UI_DIR, html=True)), name="ui")  # type: ignore[arg-type]

"""``GET /switches/{name}/ports/{port}/capture``: `SwitchApi.capture` streamed as pcapng over HTTP.

Owns the one REST route that is not in the command table (control/api.py): its answer is a stream of
pcapng bytes (``application/x-pcapng``, ``Content-Disposition: attachment; filename="SW-PORT.pcapng"``,
the name the web UI's Download button saves), not a JSON document.

How a capture runs: the whole capture — `api.capture` (which validates every parameter through
`CaptureRequest.parse`, compiles the filter, installs the observer on the datapath thread) and its
iteration — runs on one thread of the daemon's `WatchPool` (bounded: 429 beyond its size, shared with
``watch`` and ``events``), never on FastAPI's threadpool and never on the event loop. The endpoint
waits (asynchronously) for the first chunk before it answers, so a refusal (400 InvalidRequest with
the model's message, 404 NotFound, 429, 503 while stopping) is a JSON answer before any pcapng byte.
Chunks cross from the pool thread to the event loop through a `_Handoff` holding at most
`CHUNKS_AHEAD`: a slow client makes the capture's own queue overflow (dropped and counted, in the
ISB), never the daemon's memory grow, never the switch slow down.

Ends: at the capture's bounds (count, seconds, max_bytes; the ISB is the last block); when the client
disconnects (Starlette cancels the stream: the capture is stopped at once, its thread removes the
observer within `capture.POLL_S`); when the daemon stops (`WatchPool.stop` ends the pool's waits: the
capture is stopped the same way) or the port or switch goes.

Must not touch: the manager's internals, the datapath (all through `api.capture`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from vswitch.control import capture as captures
from vswitch.control.api import SwitchApi
from vswitch.control.model import VswitchError
from vswitch.frontends.rest import _ERRORS, PortName, SwitchName, TooManyWatches, WatchPool

log = logging.getLogger(__name__)

#: chunks (each at most capture.CHUNK_FRAMES blocks) on their way from the pool thread to the client;
#: beyond, the capture's thread waits (and the capture's own bounded queue drops frames, counted)
CHUNKS_AHEAD = 4
MEDIA_TYPE = "application/x-pcapng"
ROUTE = "/switches/{name}/ports/{port}/capture"
#: marks the end of the chunks in the handoff
_END = b""


class _Handoff:
    """Chunks from one pool thread to the event loop, at most `CHUNKS_AHEAD` not yet taken."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._credits = threading.Semaphore(CHUNKS_AHEAD)
        self._gone = threading.Event()

    def put(self, chunk: bytes) -> bool:
        """(pool thread) Hand `chunk` over, waiting for room; False when the reader is gone."""
        while not self._credits.acquire(timeout=captures.POLL_S):
            if self._gone.is_set():
                return False
        return not self._gone.is_set() and self._send(chunk)

    def end(self) -> None:
        """(pool thread) No more chunks."""
        self._send(_END)

    def _send(self, chunk: bytes) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
        except RuntimeError:  # the loop is closed: the daemon is gone, and the reader with it
            self._gone.set()
            return False
        return True

    async def get(self) -> bytes:
        """(event loop) The next chunk; `_END` at the end."""
        chunk = await self._queue.get()
        if chunk is not _END:
            self._credits.release()
        return chunk

    def gone(self) -> None:
        """(any thread) The reader left: `put` refuses from now on."""
        self._gone.set()

    @property
    def is_gone(self) -> bool:
        return self._gone.is_set()


class _PcapngResponse(StreamingResponse):
    """A StreamingResponse that calls `on_end` however it ends — done, the client gone (Starlette
    cancels it, perhaps before the body began), an error — so the capture never outlives its reader."""

    def __init__(self, content: AsyncIterator[bytes], on_end: Any, headers: dict[str, str]) -> None:
        super().__init__(content, media_type=MEDIA_TYPE, headers=headers)
        self._on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_end()


def _disposition(switch: str, port: str) -> str:
    # names match control.model.NAME_PATTERN (letters, digits, . _ -) once the api accepted them
    return f'attachment; filename="{switch}-{port}.pcapng"'


_PCAPNG_DOC = ("pcapng (draft-ietf-opsawg-pcapng): a section header, one interface description (the port), "
               "an enhanced packet block per frame whose comment is the switch's decision (e.g. "
               "`in vm1 vlan 1: FORWARD_LEARNED → vm2`) and whose flags its direction, then an interface "
               "statistics block (frames dropped because the reader was slow). Streamed as frames pass: "
               "`vswitch capture SW PORT -w - | wireshark -k -i -`.")


def register_capture(app: FastAPI, api: SwitchApi, watch_pool: WatchPool) -> None:
    """Add the capture route to `app`, serving `api.capture` on `watch_pool` (the daemon's one pool)."""
    @app.get(ROUTE, tags=["capture"], name="capture", response_class=StreamingResponse,
             summary="Capture a port's frames as pcapng, each with the switch's decision",
             responses={200: {"content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                              "description": _PCAPNG_DOC},
                        **{k: v for k, v in _ERRORS.items() if k != 413},
                        429: {"model": _ERRORS[400]["model"],
                              "description": f"{watch_pool.size} watches, event waits or captures already run"},
                        503: {"model": _ERRORS[400]["model"], "description": "vswitchd is stopping"}})
    async def capture(
        name: SwitchName, port: PortName,
        # typed loosely, bounds stated in the schema: CaptureRequest.parse judges, with its own messages
        direction: Annotated[str, Query(description="Frames the port received (in), was sent (out) or both",
                                        json_schema_extra={"enum": list(captures.DIRECTIONS)})] = "both",
        count: Annotated[int, Query(description=f"Stop after this many frames, 1-{captures.COUNT_MAX}",
                                    json_schema_extra={"minimum": 1, "maximum": captures.COUNT_MAX})
                         ] = captures.COUNT_DEFAULT,
        seconds: Annotated[float, Query(description=f"Stop after this many seconds, at most "
                                                    f"{captures.SECONDS_MAX:.0f}",
                                        json_schema_extra={"exclusiveMinimum": 0, "maximum": captures.SECONDS_MAX})
                           ] = captures.SECONDS_DEFAULT,
        max_bytes: Annotated[int, Query(description=f"Stop before the packet blocks exceed this many bytes, "
                                                    f"1-{captures.BYTES_MAX}",
                                        json_schema_extra={"minimum": 1, "maximum": captures.BYTES_MAX})
                             ] = captures.BYTES_DEFAULT,
        filter: Annotated[str | None, Query(description="A libpcap filter (as tcpdump's), e.g. `icmp or arp`; "
                                                        "one that does not compile is refused with 400",
                                            json_schema_extra={"maxLength": captures.FILTER_MAX_CHARS})] = None,
    ) -> StreamingResponse:
        """Port PORT's frames as they cross it, as a pcapng stream: each packet's comment says the
        switch's decision and reason (where it came from or went), its flags the direction. Works for
        every port kind, QEMU sockets included. Bounded by count, seconds and max_bytes (the defaults
        apply when left out); ends when the client disconnects. A reader token may capture."""
        handoff = _Handoff(asyncio.get_running_loop())
        running: list[captures.CaptureStream] = []

        def pump() -> None:  # on a pool thread, for the whole capture
            cap = api.capture(name, port, direction, count, seconds, max_bytes, filter)
            running.append(cap)
            if handoff.is_gone:  # left while the capture was set up
                cap.close()
                return
            # the start and the end are logged (tests wait for them: the reader gone ends the capture)
            log.debug("capture of switch %s port %s started", name, port)
            chunks = iter(cap)
            sent = 0
            try:
                for chunk in chunks:
                    if not handoff.put(chunk):
                        break
                    sent += len(chunk)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # a generator's own end: observer removed, filter freed
                cap.close()
                handoff.end()
                log.debug("capture of switch %s port %s ended (%d bytes sent%s)", name, port, sent,
                          ", the reader gone" if handoff.is_gone else "")

        def stop() -> None:  # on the event loop: never waits
            handoff.gone()
            for cap in running:
                cap.stop()

        def stopping() -> None:  # the daemon stops: the capture ends, its last blocks still sent
            for cap in running:
                cap.stop("vswitchd stopping")

        job = asyncio.ensure_future(watch_pool.run(pump))
        first = asyncio.ensure_future(handoff.get())
        try:
            await asyncio.wait({job, first}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            stop()
            first.cancel()
            raise
        if not first.done():
            error = job.exception()
            if error is not None:
                first.cancel()
                if isinstance(error, TooManyWatches):  # the pool's words are a watch's
                    raise TooManyWatches(f"{watch_pool.size} watches, event waits or captures are already "
                                         "running on this daemon (the most it runs at once); try again when "
                                         "one ends") from None
                raise error  # InvalidRequest, NotFound, 503 Stopping: answered as JSON
            await first  # the thread ended normally: its chunks (and the end) are on their way

        def ended(done: asyncio.Future[Any]) -> None:
            # the daemon stopping ends the pool's wait (Stopping): the thread then ends the capture, whose
            # ISB and end arrive within a poll (a pump that failed has sent its end already)
            if done.cancelled() or done.exception() is not None:
                stopping()

        job.add_done_callback(ended)

        async def stream() -> AsyncIterator[bytes]:
            chunk = first.result()
            while chunk is not _END:
                yield chunk
                chunk = await handoff.get()

        if first.result() is _END:
            raise VswitchError("the capture ended before it began")
        return _PcapngResponse(stream(), stop, {"Content-Disposition": _disposition(name, port),
                                                "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

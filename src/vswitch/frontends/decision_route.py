"""`GET /switches/{name}/decisions`: a switch's sampled decisions as server-sent events (the web UI's
live picture; control/decision_stream.py samples them).

Events, each ``event: NAME`` and one ``data:`` line of JSON:
- ``decision``: ``{"t", "in_port", "src", "dst", "vlan", "reason", "kind": "flood"|"unicast"|"drop",
  "out_ports", "path": "python"|"kernel"}`` — at most `SAMPLE_RATE` a second per switch;
- ``summary``: once a second, every frame decided (not only the sampled ones: from the switch's
  counters) ``{"t", "interval_s", "frames", "sampled", "dropped_for_you", "by_kind": {"flood",
  "unicast", "drop"}}`` — also the stream's heartbeat;
- ``end``: ``{"reason"}`` before the stream closes (the switch deleted or renamed, vswitchd stopping).

Bounded: at most `MAX_STREAMS` streams per daemon (429 beyond). A stream holds no thread: it is an
async generator that reads its reader every `POLL_S`; the client leaving ends it, and the last
reader of a switch takes the sampler off its datapath. A reader's token is enough (it is a GET);
browsers read it with ``fetch`` (an ``EventSource`` cannot send the bearer token).
Must not touch: the datapath (only the manager's open/read/close of a reader).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Path
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from vswitch.control.decision_stream import SAMPLE_RATE
from vswitch.control.model import VswitchError

#: streams open at once per daemon (each is a page of the web UI, typically)
MAX_STREAMS = 16
#: how often a stream looks for new samples: the picture's flashes need no finer grain, and each
#: look wakes the REST loop, which then takes the GIL from a Python datapath's thread
POLL_S = 0.2


class TooManyStreams(VswitchError):
    status = 429


def _sse(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def register_decisions(app: FastAPI, api: Any, stopping: Any) -> None:
    """Add the route when `api` can sample decisions (the manager; not a remote client).
    `stopping()` says whether vswitchd is stopping (the stream then ends with an ``end`` event)."""
    if not hasattr(api, "open_decisions"):
        return
    open_streams = [0]

    @app.get("/switches/{name}/decisions", tags=["switches"], response_class=StreamingResponse,
             summary="The switch's decisions, sampled, as server-sent events",
             description=__doc__.split("\n\n", 1)[1].split("Must not touch")[0],
             responses={200: {"content": {"text/event-stream": {}},
                              "description": f"decision (at most {SAMPLE_RATE}/s), summary (1/s) and end events"},
                        404: {"description": "Unknown switch"}, 429: {"description": "Too many streams"}})
    async def decisions(name: str = Path(description="the switch")) -> StreamingResponse:
        if open_streams[0] >= MAX_STREAMS:
            raise TooManyStreams(f"{MAX_STREAMS} decision streams are already open on this daemon (the most it "
                                 "serves at once); close a page or try again later")
        open_streams[0] += 1
        try:
            reader = await run_in_threadpool(api.open_decisions, name)
        except BaseException:
            open_streams[0] -= 1
            raise

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b": decisions of switch " + name.encode() + b"\n\n"
                while True:
                    batch, ended = api.read_decisions(reader)
                    # a poll's events in one write: a write per event was most of what a page cost
                    chunk = [_sse("decision", event) for event in batch]
                    if reader.summary_due():  # the counters are read on the datapath thread: not on the loop
                        summary = await run_in_threadpool(api.decision_summary, reader)
                        if summary is not None:
                            chunk.append(_sse("summary", summary))
                    if ended is None and stopping():
                        ended = "vswitchd is stopping"
                    if ended is not None:
                        yield b"".join(chunk) + _sse("end", {"reason": ended})
                        return
                    if chunk:
                        yield b"".join(chunk)
                    await asyncio.sleep(POLL_S)
            finally:
                open_streams[0] -= 1
                # on a thread: closing waits for the datapath (and the manager's lock); the loop must not
                try:
                    asyncio.get_running_loop().run_in_executor(None, api.close_decisions, reader)
                except RuntimeError:  # no loop any more (finalised at shutdown): nothing else waits
                    api.close_decisions(reader)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

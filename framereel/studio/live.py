"""``framereel live``'s HTTP side: the page, its JSON API and the event stream of frames (Starlette).

The studio's rules hold (:mod:`framereel.studio`): loopback only unless a token is set, JSON from
the page's own origin for anything that changes state, the page puts text in with
``textContent`` only. Frames go out as server-sent events carrying a JPEG data URL; a page that
reads slower than frames come loses the older ones (each stream holds at most
``QUEUE_FRAMES``), never the newest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .app import LOOPBACK, STATIC, EventStreams, Guard, json_endpoint, run_server

if TYPE_CHECKING:

    from ..interactive import Session
    from ..live import Live

QUEUE_FRAMES = 3


class _LiveApi(EventStreams):
    """The HTTP side of ``framereel live``: a slow page sees the newest frames (older ones are dropped),
    and the renderer knows whether any page is watching."""

    page_file = "live.html"
    queue_size = QUEUE_FRAMES
    keep_alive_s = 0.5

    def __init__(self, live: Live, stopping: Callable[[], bool]):
        super().__init__(live, stopping)
        self.live = live

    @staticmethod
    def put(q: asyncio.Queue, message: str) -> None:
        if q.full():
            q.get_nowait()  # the oldest frame goes: a slow page sees the newest
        q.put_nowait(message)

    def watching(self, change: int) -> None:
        self.live.watch(change)


def create_live_app(live: Live, token: str | None = None, stopping: Callable[[], bool] = lambda: False):
    """The Starlette app of ``framereel live`` (``token``: required on every request)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    api = _LiveApi(live, stopping)
    routes = [
        Route("/", api.page),
        Route("/api/state", api.state),
        Route("/api/events", api.events),
        Route("/api/request", json_endpoint(lambda b, p: live.set(b)), methods=["POST"]),
        Route("/api/keep", json_endpoint(lambda b, p: live.keep(b)), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, token=token)])


def serve_live(session: Session, host: str = "127.0.0.1", port: int = 8189, token: str | None = None,
               say: Callable[[str], None] = print, open_browser: bool = False) -> None:
    """Run ``framereel live`` until Ctrl-C. Any ``host`` beyond loopback gets a random token if none is given."""
    import secrets

    from ..live import Live

    if host not in LOOPBACK and token is None:
        token = secrets.token_urlsafe(24)
    live = Live(session)
    try:
        run_server(lambda stopping: create_live_app(live, token, stopping), "live", host, port, token, say,
                   open_browser)
    finally:
        live.close()
    say("live stopped; everything kept is in " + str(session.out_dir))

"""The studio's state, job queue and HTTP API (Starlette), and ``serve()`` (uvicorn)."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .. import events
from ..errors import FramereelError
from ..interactive import SETTING_KEYS, STORYBOARD, Session
from ..loader import load_storyboard
from ..manifest import FRAMES_DIR, atomic_write_json, read_png_metadata
from ..storyboard import FRAME_KEYS, MAX_SIDE, MIN_SIDE, SIDE_MULTIPLE, Frame, check_value
from ..validate import MAX_CROSSFADE, MAX_FPS, check_number
from ..video import DEFAULT_FPS, TRANSITIONS, plan_timeline

if TYPE_CHECKING:
    from starlette.requests import Request

STATIC = Path(__file__).parent / "static"
FILM = "studio.json"  # the film settings (fps, transition, crossfade) next to storyboard.json
IMAGE_NAME = re.compile(r"^\d{4}-[a-z0-9-]+\.png$")
EDITABLE = ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "duration", "morph")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_PORT = 65535
MAX_JOBS_SHOWN = 40
# the page's inputs take the limits every interface takes (the storyboard's sizes, stitch's fps and crossfade)
LIMITS = {"side": {"min": MIN_SIDE, "max": MAX_SIDE, "step": SIDE_MULTIPLE}, "fps": MAX_FPS, "crossfade": MAX_CROSSFADE}


@dataclass
class Job:
    id: int
    kind: str  # "image" or "film"
    request: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)  # an image's session settings, checked when queued
    state: str = "queued"  # queued → running → done | failed; queued → cancelled
    message: str = ""
    image: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "message": self.message, "image": self.image,
                "prompt": self.request.get("prompt"), "progress": self.progress, "seconds": self.seconds}


class Studio:
    """What every tab sees: the session's images, the kept storyboard, the film and the jobs.

    Rendering happens on one worker thread, one job at a time; ``listen`` gets every change.
    """

    def __init__(self, session: Session):
        self.session = session
        session.tell = session.say = lambda message: None  # the page shows state; notes like "seed 7" are not needed
        self.out = session.out_dir
        self.lock = threading.RLock()
        self.jobs: list[Job] = []
        self.ids = itertools.count(1)
        self.queue: list[Job] = []
        self.wake = threading.Condition(self.lock)
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._meta: dict[Path, tuple[int, dict[str, Any]]] = {}
        self._was: dict[tuple, str] = {}  # an edited entry's parameters → the image it was kept from
        self.closed = False
        self.worker = threading.Thread(target=self._work, name="framereel-studio-renderer", daemon=True)
        self.worker.start()

    # ------------------------------------------------------------ state

    def defaults(self) -> dict[str, Any]:
        f = self.session.frame_for("-", self.session.seed if self.session.seed is not None else 0)
        return {"seed": self.session.seed, "steps": f.steps, "guidance": f.guidance, "width": f.width,
                "height": f.height, "negative_prompt": f.negative_prompt or "", "scheduler": self.session.settings.scheduler}

    def images(self, folder: Path | None = None, pattern: str = "[0-9][0-9][0-9][0-9]-*.png") -> list[dict[str, Any]]:
        """The session's images (or ``folder``'s), each with the parameters its PNG metadata records."""
        folder = folder or self.session.folder
        out = []
        for p in sorted(folder.glob(pattern)):
            mtime = p.stat().st_mtime_ns
            cached = self._meta.get(p)
            if cached is None or cached[0] != mtime:
                meta = read_png_metadata(p)
                if meta is None:
                    continue  # being written
                cached = (mtime, meta)
                self._meta[p] = cached
            meta = cached[1]
            w, _, h = meta.get("size", "x").partition("x")
            url = f"/files/{p.relative_to(self.out).as_posix()}?v={mtime}"
            out.append({"name": p.name, "url": url, "prompt": meta.get("prompt", ""),
                        "negative_prompt": meta.get("negative_prompt", ""), "seed": _int(meta.get("seed")),
                        "steps": _int(meta.get("steps")), "guidance": _float(meta.get("guidance")),
                        "width": _int(w), "height": _int(h), "scheduler": meta.get("scheduler")})
        return out

    def _board(self, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The kept entries, each with a thumbnail: an image made with its parameters (the session's,
        else the film's frame), else the one an edit changed it from (``edited``: the film renders it anew)."""
        film_frames = self.images(self.out / FRAMES_DIR, "frame_*.png")
        # the session's image wins; among the film's frames, a key frame over its in-betweens (same metadata)
        by_params = {_entry_key(i): i["url"] for i in film_frames[::-1] + images}
        board = []
        for e in self.session.kept():
            key = _entry_key(e)
            thumb = by_params.get(key)
            board.append({**e, "thumb": thumb or self._was.get(key), "edited": thumb is None and key in self._was})
        return board

    def film_seconds(self, film: dict[str, Any]) -> float | None:
        """How long the kept storyboard's film lasts, timed as stitching times it (each entry's time on
        screen, morph in-betweens, crossfades); None while there is none."""
        path = self.out / STORYBOARD
        try:
            frames = load_storyboard(path).frames if path.exists() else ()
            if not frames:
                return None
            durations = [f.duration or 1 / film["fps"] for f in frames]
            return round(plan_timeline(durations, film["fps"], film["transition"], film["crossfade"]).seconds, 3)
        except FramereelError:
            return None

    def film(self) -> dict[str, Any]:
        path = self.out / FILM
        film = {"fps": DEFAULT_FPS, "transition": "cut", "crossfade": 0.5}
        if path.exists():
            try:
                film.update({k: v for k, v in json.loads(path.read_text()).items() if k in film})
            except (json.JSONDecodeError, AttributeError):
                pass
        return film

    def state(self) -> dict[str, Any]:
        with self.lock:
            images = self.images()
            video = self.out / "video.mp4"
            film = self.film()
            return {
                "model": self.session.identity.model.id, "device": self.session.backend.device, "dtype": self.session.backend.dtype,
                "out": str(self.out), "defaults": self.defaults(), "schedulers": list(self.session.schedulers()),
                "limits": LIMITS, "transitions": list(TRANSITIONS), "images": images, "storyboard": self._board(images),
                "film": film, "film_seconds": self.film_seconds(film),
                "video": f"/files/video.mp4?v={video.stat().st_mtime_ns}" if video.exists() else None,
                "gallery": "/files/index.html" if (self.out / "index.html").exists() else None,
                "jobs": [j.public() for j in self.jobs[-MAX_JOBS_SHOWN:]],
            }

    def _changed(self, what: str = "state", data: dict[str, Any] | None = None) -> None:
        payload = self.state() if data is None else data
        for listen in list(self.listeners):
            listen(what, payload)

    # ------------------------------------------------------------ jobs

    def submit(self, kind: str, request: dict[str, Any], settings: dict[str, Any] | None = None) -> Job:
        with self.lock:
            job = Job(next(self.ids), kind, request, settings or {})
            self.jobs.append(job)
            self.queue.append(job)
            self.wake.notify()
        self._changed()
        return job

    def cancel(self, job_id: Any) -> None:
        """Drop a queued job, or clear a failed one from the page (a running one finishes)."""
        with self.lock:
            job = next((j for j in self.jobs if j.id == job_id), None)
            if job is None:
                raise FramereelError(f"no job {job_id!r}")
            if job.state == "queued":
                self.queue.remove(job)
                job.state = "cancelled"
            elif job.state == "failed":
                self.jobs.remove(job)
            else:
                raise FramereelError(f"job {job_id} is {job.state}; only queued or failed jobs can be removed")
        self._changed()

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.queue and not self.closed:
                    self.wake.wait()
                if self.closed:
                    return
                job = self.queue.pop(0)
                job.state = "running"
            self._changed()
            t0 = time.perf_counter()
            try:
                if job.kind == "image":
                    self._render_image(job)
                else:
                    self._render_film(job)
                job.state = "done"
            except (FramereelError, ValueError) as err:
                job.state, job.message = "failed", str(err)
            except Exception as err:  # a failed job says why; the studio goes on
                job.state, job.message = "failed", f"{type(err).__name__}: {err}".splitlines()[0]
            job.seconds = round(time.perf_counter() - t0, 2)
            self._changed()

    def _progress(self, job: Job, **progress: Any) -> None:
        if self.closed:  # heard at every step: the studio is stopping, the render stops here
            raise FramereelError("the studio stopped")
        job.progress = progress
        self._changed("progress", {"id": job.id, **progress})

    def request_settings(self, request: dict[str, Any]) -> dict[str, Any]:
        """The session settings an image request asks for, checked as the REPL's are (one set of limits):
        a setting left out (or null, or an empty field) stays as it is; seed "random": a random one."""
        values = {k: request[k] for k in SETTING_KEYS
                  if request.get(k) is not None and (request[k] != "" or k == "negative_prompt")}
        if values.get("seed") == "random":
            values["seed"] = None
        return self.session.checked(values)

    def _render_image(self, job: Job) -> None:
        """Render with the request's settings; they stay for the next image only if this one is made."""
        s = self.session
        before = s.current()
        try:
            s.apply(job.settings)
            path = s.render(str(job.request["prompt"]), on_step=lambda i, n: self._progress(job, step=i, steps=n))
            if path is None:
                raise FramereelError("cancelled")
        except BaseException:
            s.restore(before)
            raise
        job.image = path.name

    def _render_film(self, job: Job) -> None:
        film = self.film()
        options = {"fps": film["fps"], "transition": film["transition"], "crossfade": film["crossfade"]}
        counts = {"done": 0}

        def on_event(e: events.Event) -> None:
            if isinstance(e, events.RunStarted):
                counts.update(total=e.total, todo=e.todo)
                self._progress(job, phase="frames", done=0, total=e.todo)
            elif isinstance(e, events.Step):
                self._progress(job, phase="frames", done=counts["done"], total=counts.get("todo", 0),
                               step=e.step, steps=e.steps)
            elif isinstance(e, (events.FrameDone, events.FrameFailed)):
                counts["done"] += 1
                self._progress(job, phase="frames", done=counts["done"], total=counts.get("todo", 0))
            elif isinstance(e, events.Encoding):
                self._progress(job, phase="encoding", done=e.done, total=e.total)

        video, result, reused = self.session.make(on_event=on_event, **options)
        job.message = (f"{result.total} frames: {len(result.rendered)} rendered, {reused} reused"
                       + (f", {len(result.failed)} failed" if result.failed else ""))

    # ------------------------------------------------------------ storyboard edits (each saved atomically)

    def keep(self, name: str) -> None:
        if not isinstance(name, str) or not IMAGE_NAME.match(name):
            raise FramereelError("not an image of this studio")
        image = next((i for i in self.images() if i["name"] == name), None)
        if image is None:
            raise FramereelError(f"no image {name} in {self.session.folder}")
        frame = Frame(index=0, prompt=image["prompt"], negative_prompt=image["negative_prompt"], seed=image["seed"],
                      steps=image["steps"], guidance=image["guidance"], width=image["width"], height=image["height"])
        with self.lock:
            self.session.keep(frame)
        self._changed()

    def edit(self, op: str, body: dict[str, Any]) -> None:
        with self.lock:
            board = self.session.kept()
            n = len(board)

            def index(key: str, limit: int = n) -> int:
                i = body.get(key)
                if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < limit:
                    raise FramereelError(f"no storyboard entry {i!r}")
                return i

            if op == "move":
                entry = board.pop(index("from"))
                board.insert(index("to", n), entry)
            elif op == "delete":
                board.pop(index("index"))
            elif op == "update":
                i = index("index")
                fields = body.get("fields")
                if not isinstance(fields, dict):
                    raise FramereelError("update needs fields")
                was = _entry_key(board[i])
                for key, value in fields.items():
                    if key not in EDITABLE or key not in FRAME_KEYS:
                        raise FramereelError(f"{key!r} cannot be edited here")
                    if value is None or value == "" and key != "prompt":
                        board[i].pop(key, None)
                        continue
                    board[i][key] = check_value(Path(STORYBOARD), f"frame {i}", key, value)
                    if key == "morph" and not board[i][key]:
                        board[i].pop(key)
                self._remember_thumb(was, _entry_key(board[i]))
            else:
                raise FramereelError(f"unknown storyboard edit {op!r}")
            self.session.save_kept(board)
        self._changed()

    def _remember_thumb(self, was: tuple, now: tuple) -> None:
        """An edit changed an entry's image: keep showing the image it came from until the film renders it."""
        if was != now:
            thumb = {_entry_key(i): i["url"] for i in self.images()}.get(was) or self._was.get(was)
            if thumb:
                self._was[now] = thumb

    def set_film(self, body: dict[str, Any]) -> None:
        """fps, transition and crossfade, checked with the limits of `framereel stitch`."""
        film = self.film()
        if "fps" in body:
            film["fps"] = float(check_number("fps", body["fps"], 0, MAX_FPS, above=True))
        if "transition" in body:
            if body["transition"] not in TRANSITIONS:
                raise FramereelError(f"transition must be one of {', '.join(TRANSITIONS)}")
            film["transition"] = body["transition"]
        if "crossfade" in body:
            film["crossfade"] = float(check_number("crossfade", body["crossfade"], 0, MAX_CROSSFADE, above=True,
                                                   unit=" seconds"))
        with self.lock:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / FILM, film)
        self._changed()

    def close(self, wait: float = 120.0) -> None:
        """Stop: no queued job starts, a running render stops at its next step, and the worker
        thread ends before this returns (an interpreter that exits while torch runs in a thread
        aborts the process: "terminate called without an active exception", exit 134)."""
        with self.lock:
            self.closed = True
            self.wake.notify_all()
        if self.worker.is_alive() and self.worker is not threading.current_thread():
            self.worker.join(wait)


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _entry_key(e: dict[str, Any]) -> tuple:
    return (e.get("prompt"), e.get("negative_prompt") or "", e.get("seed"), e.get("steps"),
            float(e["guidance"]) if e.get("guidance") is not None else None, e.get("width"), e.get("height"))


# ---------------------------------------------------------------- HTTP


class Guard:
    """ASGI middleware: the access token (when one is set), a loopback Host (when there is none),
    and JSON-only, same-origin state changes."""

    COOKIE = "framereel_token"

    def __init__(self, app, token: str | None):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if self.token is None:
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:host.find("]")]
            if name not in LOOPBACK:
                return await _deny(send, 403, "forbidden: this studio answers only at 127.0.0.1 or localhost")
        else:
            given = (query.get("token") or [""])[0] or _cookie(headers.get("cookie", ""), self.COOKIE) \
                or headers.get("x-framereel-token", "")
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                return await _deny(send, 403, "forbidden: open the URL with the access token that "
                                              "framereel printed")
            if query.get("token") and scope["method"] == "GET" and scope["path"] == "/":
                cookie = f"{self.COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                return await _redirect(send, "/", cookie)
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != host:
                return await _deny(send, 403, "forbidden: a request from another site")
            if not headers.get("content-type", "").startswith("application/json"):
                return await _deny(send, 415, "send JSON (Content-Type: application/json)")
        return await self.app(scope, receive, send)


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return ""


async def _deny(send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send, location: str, cookie: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def _sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event (JSON data is one line)."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class EventStreams:
    """A page server's server-sent event streams: :meth:`broadcast` (from any thread) reaches every
    open one. ``source`` gives ``state()`` and takes listeners; subclasses name their page, how many
    events a slow page may have waiting (0: all), and how often a quiet stream says it is alive."""

    page_file = "studio.html"
    queue_size = 0
    keep_alive_s = 15.0

    def __init__(self, source: Any, stopping: Callable[[], bool]):
        self.source = source
        self.stopping = stopping
        self.subscribers: set[asyncio.Queue] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        source.listeners.append(self.broadcast)

    def broadcast(self, what: str, data: dict[str, Any]) -> None:
        """Pass a change on to every open event stream (called from any thread)."""
        loop = self.loop
        if loop is None:
            return
        message = _sse(what, data)
        for q in list(self.subscribers):
            loop.call_soon_threadsafe(self.put, q, message)

    @staticmethod
    def put(q: asyncio.Queue, message: str) -> None:
        q.put_nowait(message)

    def watching(self, change: int) -> None:
        """A page opened (+1) or closed (-1) its event stream."""

    async def page(self, request: Request):
        from starlette.responses import FileResponse

        return FileResponse(STATIC / self.page_file, headers={"Cache-Control": "no-store"})

    async def state(self, request: Request):
        from starlette.responses import JSONResponse

        return JSONResponse(self.source.state())

    async def events(self, request: Request):
        from starlette.responses import StreamingResponse

        self.loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(maxsize=self.queue_size)
        self.subscribers.add(q)
        self.watching(+1)
        return StreamingResponse(self._stream(q), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _stream(self, q: asyncio.Queue):
        """One tab's events; ends when the server stops, so a shutdown never waits on an open tab."""
        try:
            yield _sse("state", self.source.state())
            quiet = 0.0
            while not self.stopping():
                try:
                    yield await asyncio.wait_for(q.get(), timeout=0.5)
                    quiet = 0.0
                except asyncio.TimeoutError:
                    quiet += 0.5
                    if quiet >= self.keep_alive_s:
                        yield ": keep-alive\n\n"
                        quiet = 0.0
        finally:
            self.subscribers.discard(q)
            self.watching(-1)


class _Api(EventStreams):
    """The HTTP side of one studio: the event streams open on it and the endpoints' handlers."""

    def __init__(self, studio: Studio, stopping: Callable[[], bool]):
        super().__init__(studio, stopping)
        self.studio = studio

    def action(self, fn: Callable[[dict[str, Any], dict[str, Any]], Any]):
        """A JSON POST endpoint: ``fn(body, path_params)`` runs off the event loop; a mistake is a 400."""
        return json_endpoint(fn, self._note_loop)

    def _note_loop(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()

    def generate(self, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise FramereelError("type a prompt first")
        settings = self.studio.request_settings(body)  # a refused setting is a 400 now, not a failed job later
        return {"job": self.studio.submit("image", {"prompt": prompt.strip()}, settings).public()}

    def render_film(self, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if not self.studio.session.kept():
            raise FramereelError("keep some images first")
        return {"job": self.studio.submit("film", {"prompt": "film"}).public()}


def json_endpoint(fn: Callable[[dict[str, Any], dict[str, Any]], Any], on_request: Callable[[], None] = lambda: None):
    """A JSON POST endpoint: ``fn(body, path_params)`` runs off the event loop; a mistake is a 400
    with its one line; ``on_request()`` runs first, on the loop."""
    from starlette.responses import JSONResponse

    async def endpoint(request: Request):
        on_request()
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "send a JSON object"}, status_code=400)
        try:
            result = await asyncio.to_thread(fn, body, request.path_params)
        except (FramereelError, ValueError) as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        return JSONResponse(result or {"ok": True})
    return endpoint


def create_app(studio: Studio, token: str | None = None, stopping: Callable[[], bool] = lambda: False):
    """The Starlette app: the page, its static files, the output folder's files, the JSON API
    and the event stream. ``token``: required on every request (binding beyond loopback).
    ``stopping()`` says the server is shutting down: event streams then end."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    api = _Api(studio, stopping)
    action = api.action
    routes = [
        Route("/", api.page),
        Route("/api/state", api.state),
        Route("/api/events", api.events),
        Route("/api/generate", action(api.generate), methods=["POST"]),
        Route("/api/keep", action(lambda b, p: studio.keep(b.get("image"))), methods=["POST"]),
        Route("/api/storyboard/{op}", action(lambda b, p: studio.edit(p["op"], b)), methods=["POST"]),
        Route("/api/film", action(lambda b, p: studio.set_film(b)), methods=["POST"]),
        Route("/api/render", action(api.render_film), methods=["POST"]),
        Route("/api/cancel", action(lambda b, p: studio.cancel(b.get("id"))), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
        Mount("/files", StaticFiles(directory=studio.out, check_dir=False)),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, token=token)])


def check_address(host: str, port: int) -> None:
    """Fail in one line, before the model loads, when ``host:port`` cannot be listened on."""
    import socket

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
        raise FramereelError(f"--port {port}: give a port from 1 to {MAX_PORT} (0 picks a free one)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise FramereelError(f"--host {host}: not an address of this machine ({err.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise FramereelError(f"port {port} is in use on {host}; pass --port N (--port 0 picks a free one)") from None
            raise FramereelError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def serve(session: Session, host: str = "127.0.0.1", port: int = 8188, token: str | None = None,
          say: Callable[[str], None] = print, open_browser: bool = False) -> None:
    """Run the studio until Ctrl-C. Any ``host`` beyond loopback gets a random token if none is given."""
    if host not in LOOPBACK and token is None:
        token = secrets.token_urlsafe(24)
    studio = Studio(session)
    try:
        run_server(lambda stopping: create_app(studio, token, stopping), "studio", host, port, token, say, open_browser)
    finally:
        studio.close()
    say("studio stopped; everything kept is in " + str(session.out_dir))


def run_server(make_app: Callable[[Callable[[], bool]], Any], name: str, host: str, port: int, token: str | None,
               say: Callable[[str], None], open_browser: bool) -> None:
    """Serve ``make_app(stopping)`` with uvicorn until Ctrl-C, printing ``framereel NAME: URL`` (with
    the token) once it listens; ``stopping()`` tells the app's event streams to end."""
    import uvicorn

    server: uvicorn.Server | None = None
    app = make_app(lambda: server is not None and server.should_exit)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown

    async def main():
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
            url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
            say(f"framereel {name}: {url}")
            if host in ("0.0.0.0", "::"):
                say("  (listening on every address: use this machine's address in place of 127.0.0.1)")
            if open_browser:
                import webbrowser

                webbrowser.open(url)
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then passes the signal on
        pass

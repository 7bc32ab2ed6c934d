"""``framereel live``: frames of the prompt being typed, as fast as the device renders them.

One :class:`~framereel.interactive.Session` holds the model (loaded once) and the kept storyboard.
:class:`Live` holds what the page asks for (prompt A, an optional prompt B and the morph slider
between them, the seed, a new seed per frame or not) and renders on one worker thread while a
page watches:

1. the frame for the request: a key frame of prompt A (or B at the slider's end), else a morph
   in-between (prompt embeddings lerped, the same seed's noise at both ends);
2. the frame's inputs pushed into a :class:`~framereel.backends.stream.StreamBatch` (stream
   batching: frames at staggered steps share one UNet call) where the model streams, else
   rendered frame by frame;
3. each finished frame sent to every listener as a JPEG, with the frames/s achieved.

"keep" appends the last frame's prompt and exact parameters to ``OUT/storyboard.json`` as the studio
and interactive mode do; "keep stretch" appends A with ``"morph": N`` and then B: the slider's path
as N in-betweens of the film.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .errors import FramereelError
from .interactive import Session
from .storyboard import Frame

FPS_WINDOW = 20  # frames/s over the last this many frames
MAX_STRETCH = 240  # in-betweens a kept stretch may ask for
JPEG_QUALITY = 88


class Live:
    """The live request, the render loop (a worker thread) and what listeners hear."""

    def __init__(self, session: Session):
        self.session = session
        self.backend = session.backend
        seed = session.seed if session.seed is not None else 0
        self.request: dict[str, Any] = {"prompt": "", "prompt_b": "", "t": 0.0, "seed": seed, "vary": False}
        self.watchers = 0  # open pages: frames render only while someone watches
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.wake = threading.Condition()
        self.times: deque[float] = deque(maxlen=FPS_WINDOW)
        self.last: Frame | None = None  # the last frame shown
        self.count = 0
        self.streamed: bool | None = None  # None until the first frame: whether stream batching is on
        self.closed = False
        self.worker = threading.Thread(target=self._work, name="framereel-live-renderer", daemon=True)
        self.worker.start()

    # ------------------------------------------------------------ what the page asks

    def set(self, body: dict[str, Any]) -> dict[str, Any]:
        """Change the request (any of prompt, prompt_b, t, seed, vary); a bad value is one line."""
        changes: dict[str, Any] = {}
        for key in ("prompt", "prompt_b"):
            if key in body:
                if not isinstance(body[key], str) or len(body[key]) > 2000:
                    raise FramereelError(f"{key}: give text (at most 2000 characters)")
                changes[key] = body[key].strip()
        if "t" in body:
            t = body["t"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
                raise FramereelError("t: the morph slider goes from 0 (prompt A) to 1 (prompt B)")
            changes["t"] = float(t)
        if "seed" in body:
            seed = body["seed"]
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
                raise FramereelError("seed: give a whole number from 0 to 4294967295")
            changes["seed"] = seed
        if "vary" in body:
            changes["vary"] = bool(body["vary"])
        with self.wake:
            self.request.update(changes)
            self.wake.notify_all()
        return self.state()

    def state(self) -> dict[str, Any]:
        f = self.session.frame_for("", 0)
        return {**self.request, "fps": self.fps(), "frames": self.count, "streamed": self.streamed,
                "steps": f.steps, "guidance": f.guidance, "width": f.width, "height": f.height,
                "model": self.session.identity.model.id, "device": self.backend.device,
                "kept": len(self.session.kept())}

    def fps(self) -> float | None:
        if len(self.times) < 2 or self.times[-1] == self.times[0]:
            return None
        return round((len(self.times) - 1) / (self.times[-1] - self.times[0]), 2)

    def watch(self, delta: int) -> None:
        """A page opened (+1) or closed (-1) its event stream."""
        with self.wake:
            self.watchers = max(0, self.watchers + delta)
            self.wake.notify_all()

    # ------------------------------------------------------------ keeping

    def keep(self, body: dict[str, Any]) -> dict[str, Any]:
        """``{"what": "frame"}``: the last frame shown (at either end of the slider); ``{"what":
        "stretch", "morph": N}``: prompt A with N in-betweens to prompt B."""
        last = self.last
        if last is None:
            raise FramereelError("nothing to keep yet: type a prompt and wait for a frame")
        if body.get("what") == "stretch":
            n = body.get("morph", 24)
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_STRETCH:
                raise FramereelError(f"morph: give a whole number of in-betweens from 1 to {MAX_STRETCH}")
            if not self.request["prompt_b"]:
                raise FramereelError("a stretch goes from prompt A to prompt B: type prompt B first")
            a, b = self._ends(last)
            kept = self.session.keep(a)
            kept[-1]["morph"] = n
            self.session.save_kept(kept)
            kept = self.session.keep(b)
        else:
            if last.kind == "morph":
                raise FramereelError("this frame lies between prompts A and B: move the slider to an end, "
                                     "or keep the stretch")
            kept = self.session.keep(last)
        return {"kept": len(kept)}

    def _ends(self, frame: Frame) -> tuple[Frame, Frame]:
        """The key frames at both ends of the slider, with ``frame``'s seed."""
        return (self.session.frame_for(self.request["prompt"], frame.seed),
                self.session.frame_for(self.request["prompt_b"], frame.seed))

    # ------------------------------------------------------------ rendering

    def frame_for(self, request: dict[str, Any], n: int) -> Frame:
        """Stage 1: the frame ``request`` asks for (the ``n``-th since the start, for a varying seed)."""
        seed = (request["seed"] + n) % 2**32 if request["vary"] else request["seed"]
        a, b, t = request["prompt"], request["prompt_b"], request["t"]
        if not b or t == 0:
            return self.session.frame_for(a, seed)
        if t == 1:
            return self.session.frame_for(b, seed)
        return replace(self.session.frame_for(a, seed), kind="morph", morph=(0, 1, t), morph_prompt=b, morph_seed=seed)

    def _work(self) -> None:
        stream, n = None, 0
        while True:
            with self.wake:
                while not self.closed and not (self.watchers and self.request["prompt"]):
                    self.wake.wait()
                if self.closed:
                    return
                request = dict(self.request)
            frame = self.frame_for(request, n)
            n += 1
            try:
                if stream is None and self.streamed is None:
                    stream = getattr(self.backend, "open_stream", lambda f: None)(frame)
                    self.streamed = stream is not None
                done = (stream.push(*self.backend.stream_inputs(frame), tag=frame) if stream is not None
                        else [(frame, self.backend.render(frame)[0])])
            except Exception as err:  # noqa: BLE001 - the page shows why no frame comes; the loop waits, then tries again
                message = str(err) if isinstance(err, FramereelError) else f"{type(err).__name__}: {err}"
                if not isinstance(err, FramereelError):
                    traceback.print_exc()
                self._tell("problem", {"error": message})
                with self.wake:
                    self.wake.wait(1.0)
                continue
            for shown, image in done:
                self._show(shown, image)

    def _show(self, frame: Frame, image) -> None:
        """Stage 3: one finished frame to every listener."""
        buf = io.BytesIO()
        image.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
        self.times.append(time.perf_counter())
        self.count += 1
        self.last = frame
        t = frame.morph[2] if frame.morph else (1.0 if frame.prompt == self.request["prompt_b"] else 0.0)
        self._tell("frame", {"n": self.count, "fps": self.fps(), "seed": frame.seed, "t": t,
                             "prompt": frame.prompt, "prompt_b": frame.morph_prompt or "",
                             "image": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()})

    def _tell(self, what: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(what, data)

    def close(self) -> None:
        with self.wake:
            self.closed = True
            self.wake.notify_all()
        self.worker.join(timeout=30)

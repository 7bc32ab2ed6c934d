"""``tt-demo``: tt-metal's unmodified SD 1.4 demo, run with pytest ``num_prompts`` prompts at a time
(see :mod:`.tt` for both Tenstorrent backends)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from .base import ModelInfo
from .tt_base import SD_MODEL, TtBase
from .tt_chips import THROTTLE, reset_device
from .tt_tree import WORMHOLE, pytest_timeout_present

PROMPT_LOG = re.compile(r"input prompt : (\[.*\])\s*$")  # run_demo_inference: logger.info(f"input prompt : {input_prompt}")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def logged_prompts(log: str) -> list[str]:
    """The prompts the demo says it rendered, in order, from its log."""
    out = []
    for line in ANSI.sub("", log).splitlines():
        m = PROMPT_LOG.search(line)
        if m:
            try:
                value = ast.literal_eval(m.group(1))
            except (ValueError, SyntaxError):
                continue
            out.extend(str(v) for v in value)
    return out


class TtDemoBackend(TtBase):
    """Runs tt-metal's own ``test_demo`` with pytest, ``num_prompts`` prompts a run, and maps its files to frames."""

    name = "tt-demo"
    kinds = ("key",)

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        self.device = f"tt:{self.chip}"
        self.input_path = self.demo.input_path  # refuses a demo whose prompts framereel can't hand over
        self.batch = self.demo.num_prompts  # the runner groups frames by this: one pytest run each
        self.work_dir: Path | None = None  # out/.tt-demo once prepared; a temporary folder in a worker process
        h, w = self.demo.image_size  # the demo unpacks it as height, width
        self.fixed = {"seed_used": self.demo.body.get("seed"), "steps_used": self.demo.steps,
                      "guidance_used": self.demo.body.get("guidance")}
        self.decisions.update(
            input_path=f"{self.input_path} (relative to pytest's working folder, from test_demo's parametrize)",
            prompts_per_run=str(self.batch),
            pytest_timeout="--timeout=0" if pytest_timeout_present() else "pytest-timeout not installed",
            fixed=f"the unmodified demo ignores per-frame seeds, steps and guidance: every frame uses seed "
                  f"{self.fixed['seed_used']}, PNDM {self.fixed['steps_used']} steps, guidance "
                  f"{self.fixed['guidance_used']}, {w}x{h}",
        )

    @property
    def pixel_options(self) -> dict[str, Any]:
        return {"tt_demo": self.fixed}

    def describe(self) -> ModelInfo:
        h, w = self.demo.image_size  # the demo unpacks it as height, width
        return ModelInfo(SD_MODEL, f"tt-metal:{self.demo.commit}", w, h,
                         {"steps": self.demo.steps or 50, "guidance": self.demo.body.get("guidance", 7.5)})

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        """Validate before any demo runs; returns warnings for the user."""
        super().prepare(frames, out_dir)
        h, w = self.demo.image_size  # the demo unpacks it as height, width
        for f in frames:
            if f.kind != "key":
                raise FramereelError(f"frame {f.index}: --backend tt-demo renders plain text-to-image frames only")
            if (f.width, f.height) != (w, h):
                raise FramereelError(f"frame {f.index}: --backend tt-demo renders {w}x{h} only; got {f.width}x{f.height}")
        self._check_chip()
        self.work_dir = out_dir / ".tt-demo"
        return ([self.decisions["fixed"]] + self._chip_warning()) if frames else []

    def count_tokens(self, text: str) -> int:
        return 0

    def load(self) -> None:
        self._check_chip()
        if self.reset_first:
            reset_device()
            self.reset_first = False

    def render(self, frame: Frame, on_step=None, init_image=None):
        return self.render_batch([frame], on_step=on_step)[0]

    def render_batch(self, frames: list[Frame], on_step=None) -> list[tuple[Image.Image, dict[str, Any]]]:
        """One run of the demo for up to ``num_prompts`` frames (the rest of its prompts repeat the last)."""
        if len(frames) > self.batch:
            return [r for i in range(0, len(frames), self.batch) for r in self.render_batch(frames[i:i + self.batch], on_step)]
        images = self._run_demo([f.prompt for f in frames], f"frames_{frames[0].index:05d}", on_step)
        return [(images[i], dict(self.fixed)) for i in range(len(frames))]

    def _run_demo(self, prompts: list[str], name: str, on_step) -> list[Image.Image]:
        folder = (self.work_dir / name if self.work_dir
                  else Path(tempfile.gettempdir()) / "framereel-tt-demo" / f"{name}-{os.getpid()}")  # a worker process
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        padded = prompts + [prompts[-1]] * (self.batch - len(prompts))  # the demo indexes exactly num_prompts
        target = folder / self.input_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps([{"prompt": p} for p in padded], indent=1, ensure_ascii=False))
        env = {**os.environ, "TT_METAL_HOME": str(self.home)}
        env.update(self._visible_env())
        cmd = [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", f"--rootdir={self.home}",
               *(["--timeout=0"] if pytest_timeout_present() else []),
               *([f"--device-id={self.open_id}"] if self.open_id else []), self.demo.test_node]
        self._throttle_for_env(env)
        log_path = folder / "demo.log"
        h, w = self.demo.image_size  # the demo unpacks it as height, width
        names = [folder / f"input_data_{i}_{h}x{w}_ttnn.png" for i in range(1, self.batch + 1)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
            seen = 0
            try:
                while proc.poll() is None:
                    now = sum(1 for p in names[:len(prompts)] if p.exists())
                    if now != seen and on_step is not None:
                        on_step(now, len(prompts))
                    seen = now
                    time.sleep(0.2)
            except BaseException:
                proc.terminate()
                proc.wait(timeout=30)
                raise
        text = log_path.read_text(errors="replace")
        if proc.returncode != 0:
            tail = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no output"]
            raise FramereelError(f"the tt-metal demo failed (exit {proc.returncode}): {tail[0]}; full log: {log_path}")
        said = logged_prompts(text)
        if said[:len(padded)] != padded:
            why = next((f"its prompt {i + 1} was {s!r}, not {p!r}" for i, (s, p) in enumerate(zip(said, padded)) if s != p),
                       f"its log names {len(said)} of the {len(padded)} prompts")
            raise FramereelError(
                f"the tt-metal demo did not render framereel's prompts ({why}); no frame of this run was kept; "
                f"full log: {log_path}")
        images = []
        for path in names[:len(prompts)]:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        shutil.rmtree(folder, ignore_errors=True)  # the frames hold the images now; a failed run's folder stays
        return images

    def _throttle_for_env(self, env: dict[str, str]) -> None:
        arch, _ = self._arch()
        self.decisions["arch"] = arch
        if "ARCH_NAME" not in env:  # some trees' device helpers do `"blackhole" in os.getenv("ARCH_NAME")`
            env["ARCH_NAME"] = arch
            self.decisions["ARCH_NAME"] = f"{arch} (set for the demo's pytest run; tt-metal's setup used to export it)"
        if arch == WORMHOLE and "TT_MM_THROTTLE_PERF" not in env:
            env["TT_MM_THROTTLE_PERF"] = THROTTLE  # the demo sets it too; this covers demos from before it did

    def close(self) -> None:
        pass

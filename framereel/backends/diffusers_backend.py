"""The diffusers backend: SD 1.x/2.x, SDXL, Turbo, LCM, SD 3/3.5 and FLUX.1 on CUDA, MPS or the CPU.

Resolve, then render: the backend is built on a :class:`~framereel.backends.resolve.ResolvedModel`
(the model's source and family, the scheduler, the LoRAs, the refiner, the device; see
:func:`~framereel.backends.resolve.resolve_model`), loads that family's pipeline once, encodes
each distinct prompt once, and renders a frame by calling the pipeline itself with that frame's
conditioning and seeded starting latents, so a framereel frame is exactly what the family's
diffusers pipeline gives for the same seed. LoRAs: :class:`~framereel.backends.lora.LoraSet`;
the SDXL refiner: :mod:`framereel.backends.refiner`; device, batch and placement:
:mod:`framereel.backends.device`; clips: :mod:`framereel.backends.animatediff` (AnimateDiff) or
:mod:`framereel.backends.video_models` (``--video-model``: Wan, LTX-Video).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from . import families as fam
from .animatediff import ClipRenderer, check_video
from .base import Backend, ModelInfo
from .common import EmbeddingCache, make_scheduler, measured, quiet_libraries, seeded_noise, slerp, step_callback
from .controlnet import ControlNets, seeded_global_rng
from .device import compile_pipeline, measure_batch, place_pipeline
from .fast import apply_fast_path, plan_fast_path
from .lora import Lora, LoraSet
from .refiner import Refiner
from .resolve import ResolvedModel, resolve_model
from .video_models import VideoRenderer


class DiffusersBackend(Backend):
    """A diffusers model of any family in ``families`` (SD 1.x/2.x, SDXL, Turbo, LCM, SD 3, FLUX.1),
    on CUDA, MPS or the CPU."""

    name = "diffusers"
    takes_speed_options = True
    default_scheduler = "auto"  # the model family's, settled by resolve_model
    kinds = ("key", "morph", "chain", "clip")  # clips: with --motion-adapter (framereel.backends.animatediff)
    takes_control = True  # a frame's "control": framereel.backends.controlnet

    def __init__(self, settings: RenderSettings, model: ResolvedModel | None = None):
        super().__init__(settings)
        self.model = model or resolve_model(settings)  # nothing after this reaches the network for the model
        self.settings = replace(settings, scheduler=self.model.scheduler)
        self.device, self.device_reason, self.dtype = self.model.device, self.model.device_reason, self.model.dtype
        self.batch = settings.batch or 1  # --batch auto: measured per frame size (see resolve_batch)
        self.batches = {(w, h): b for w, h, b in settings.batch_sizes}  # as the driver measured them
        self.loras = LoraSet(self.model.loras, self.model.family.label, self.model.lora_files)
        self.refiner = Refiner(self.model.refiner, self.family, self._execution_device) if self.model.refiner else None
        self.clips = ClipRenderer(self, self.model.motion) if self.model.motion else None
        self.controlnets = ControlNets(self.family, _denoiser_config(self.model.folder), self.device,
                                       getattr(settings, "depth_model", None))  # --depth-model, where it exists
        self.video = VideoRenderer(self.model.video, settings, self.device, self.dtype) if self.model.video else None
        self.fast_plan = plan_fast_path(settings.fast_path, self.device, unet=self.family.kind in ("sd", "sdxl"),
                                        loras=bool(self.model.loras) or settings.fast, step_cache=settings.step_cache > 1,
                                        compile_asked=settings.compile)
        self.compiling = settings.compile or self.fast_plan.takes("compile")
        self.pipe = None
        self._img2img_pipe = None
        self._compiled = False
        self._warmed_up: set[tuple] = set()
        self._step_cache = None
        self._standalone_tokenizer = None
        self._embed = EmbeddingCache(self._encode)
        self._negative = EmbeddingCache(self._encode_negative)

    @property
    def family(self) -> fam.Family:
        return self.model.family

    @property
    def scheduler(self) -> str:
        return self.model.scheduler

    @property
    def pixel_options(self) -> dict[str, Any]:
        return dict(self.model.pixel_options)

    @property
    def clip_options(self) -> dict[str, Any]:
        return dict(self.model.clip_options)

    def describe(self) -> ModelInfo:
        return self.model.info

    def run_facts(self) -> dict[str, Any]:
        """run.json's ``"fast_path"``: what ``--fast-path`` turned on (and skipped, and why)."""
        return {"fast_path": self.fast_plan.record()} if self.fast_plan.mode != "off" else {}

    # -------------------------------------------------------------- loading

    def load(self) -> None:
        self._load_weights()
        if self.compiling and not self._compiled:
            compile_pipeline(self.pipe, self.device, self.fast_plan.compile_mode)
            self._compiled = True

    def _load_weights(self) -> None:
        if self.pipe is not None:
            return
        quiet_libraries()
        import torch

        dtype = getattr(torch, self.dtype)
        pipe = load_pipeline(self.model, dtype, self.settings.safety_checker)
        if self.model.tiny_vae is not None:
            pipe.vae = load_tiny_vae(self.model.tiny_vae, dtype, pipe)
        self.loras.load_all(pipe)
        if self.settings.step_cache > 1:
            from .step_cache import StepCache

            self._step_cache = StepCache(pipe.unet, self.settings.step_cache)
        self.pipe = place_pipeline(pipe, self.device, self.settings)
        apply_fast_path(self.pipe, self.fast_plan)
        if self.refiner is not None:
            refiner = self.refiner.load(self.pipe, dtype, self.scheduler)
            self.refiner.attach(place_pipeline(refiner, self.device, self.settings))

    def resolve_batch(self, frames: list[Frame]) -> dict[tuple[int, int], int]:
        """``--batch auto``: the batch size for each size the key and morph frames among ``frames``
        render at, measured at that size for this model, device, dtype and thread count once per
        machine (see :func:`~framereel.backends.device.measure_batch`; the model loads to be
        measured the first time)."""
        if self.settings.batch or self.family.kind != "sd":
            return {}  # measured for SD-shaped UNets; other families render one at a time
        sizes = {(f.width, f.height) for f in frames if f.kind in ("key", "morph")} - self.batches.keys()
        for size in sorted(sizes):
            self.batches[size] = self._measured_batch(size)
        return dict(self.batches)

    def _measured_batch(self, size: tuple[int, int]) -> int:
        import torch

        threads = torch.get_num_threads()
        key = f"{self.model.info.fingerprint}/{size[0]}x{size[1]}/{self.device}/{self.dtype}/{threads}"

        def probe() -> dict[str, Any]:
            self._load_weights()  # measured uncompiled: compiling for every batch size would take minutes
            return {**measure_batch(self.pipe, size), "threads": threads}

        return int(measured("batch", key, probe)["batch"])

    def count_tokens(self, text: str) -> int:
        """CLIP tokens in ``text``; before the model loads, from the model folder's tokenizer alone."""
        tok = self.pipe.tokenizer if self.pipe is not None else self._tokenizer()
        if tok is None:
            return 0
        return len(tok(text, truncation=False).input_ids)

    def _tokenizer(self):
        folder = self.model.folder / "tokenizer" if self.model.folder is not None else None
        if self._standalone_tokenizer is None and folder is not None and folder.is_dir():
            quiet_libraries()
            from transformers import CLIPTokenizer

            self._standalone_tokenizer = CLIPTokenizer.from_pretrained(str(folder))
        return self._standalone_tokenizer

    # -------------------------------------------------------------- checks before a run

    def check(self, frames: list[Frame]) -> list[str]:
        """Everything the run would refuse of ``frames`` before it renders one, without loading
        weights: a clip without a motion model or with an ``init_video`` that is no video, a LoRA
        that is missing or not a LoRA (a Hub LoRA is fetched), and what this model family can't do
        with these frames, in one line naming the frame; what it can but should not (a Turbo model
        at 50 steps): warnings."""
        warnings = super().check(frames)
        clip = next((f for f in frames if f.kind == "clip"), None)
        if clip is not None and self.clips is None and self.video is None:
            raise FramereelError(f'frame {clip.index}: "clip" needs --motion-adapter PATH_OR_ID (AnimateDiff; '
                                 "--motion-adapter demo with --model demo) or --video-model PATH_OR_ID (Wan, LTX-Video)")
        keyed = next((f for f in frames if f.kind == "clip" and f.clip.keys), None)
        if keyed is not None and self.video is None:
            raise FramereelError(f'frame {keyed.index}: "first_frame"/"last_frame" need --video-model PATH_OR_ID (an '
                                 "image-to-video model: Wan I2V, FLF2V, TI2V-5B or LTX-Video); AnimateDiff clips "
                                 "start from noise")
        if self.video is not None:
            self.video.check(frames)
            frames = [f for f in frames if f.kind != "clip"]  # the still model's rules are not the clips'
        for f in frames:
            if f.kind == "clip" and f.clip_pos == 0 and f.clip.init_video:
                check_video(f.clip.init_video, f"frame {f.index}: init_video")
        self.loras.check(frames)  # the frames' own LoRAs load with the model, or in prepare() if it is loaded
        self._check_control(frames)
        if self.fast_plan.takes("fused_qkv") and any(f.lora or f.morph_lora for f in frames):
            self._unfuse_qkv()
        errors, more = fam.frame_problems(self.family, frames, self.scheduler)
        if errors:
            raise FramereelError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        return warnings + more

    def _check_control(self, frames: list[Frame]) -> None:
        """ControlNets found and fitting the model; the options they don't combine with refused."""
        controlled = next((f for f in frames if f.control), None)
        if controlled is None:
            return
        for flag, on in (("--refiner", self.refiner is not None), ("--step-cache", self.settings.step_cache > 1)):
            if on:
                raise FramereelError(f'frame {controlled.index}: "control" and {flag} don\'t combine (the ControlNet '
                                     f"pipelines take neither); drop {flag} or the frame's \"control\"")
        self.controlnets.check(frames)
    def _unfuse_qkv(self) -> None:
        """Frames with their own LoRAs: their adapters sit on the separate Q, K, V projections, which
        fused projections would bypass; the fast path goes on without fusing."""
        self.fast_plan = self.fast_plan.without("fused_qkv", "frames with their own LoRAs adapt the separate "
                                                "Q, K, V projections")
        if self.pipe is not None:
            from diffusers import AutoencoderKL

            self.pipe.unfuse_qkv_projections(unet=True, vae=isinstance(self.pipe.vae, AutoencoderKL))

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        warnings = super().prepare(frames, out_dir)
        if self.pipe is not None:  # a loaded model (interactive) takes the frames' own LoRAs now
            self.loras.load_frames(self.pipe)
        return warnings

    def frame_options(self, frame: Frame) -> dict[str, Any]:
        return {**self.loras.frame_options(frame), **self.controlnets.options(frame)}

    def set_scheduler(self, name: str) -> None:
        """Swap the scheduler of a loaded model (interactive ``:scheduler``; ``auto``: the family's)."""
        if name == "auto":
            name = self.model.info.scheduler
        fam.check_scheduler(self.family, name)
        self.model = replace(self.model, scheduler=name)
        self.settings = replace(self.settings, scheduler=name)
        self.pipe.scheduler = make_scheduler(name, self.pipe.scheduler.config)
        if self.refiner is not None:
            self.refiner.set_scheduler(name)
        self._img2img_pipe = None

    # -------------------------------------------------------------- rendering

    def _activate(self, loras: list[Lora]) -> None:
        """Set the LoRAs the next call renders with; prompt embeddings made with other LoRAs active
        are dropped when a LoRA touches a text encoder."""
        if self.loras.activate(self.pipe, loras):
            self._embed.clear()
            self._negative.clear()

    def _encode(self, text: str) -> dict[str, Any]:
        """The conditioning tensors of ``text``: every one the family's pipeline takes (cached per
        distinct text by ``self._embed``)."""
        import torch

        with torch.inference_mode():
            return fam.encode(self.pipe, self.family, text, self._execution_device())

    def _encode_negative(self, text: str) -> dict[str, Any]:
        """The negative conditioning (``negative_*`` arguments) for classifier-free guidance."""
        import torch

        with torch.inference_mode():
            return fam.encode_negative(self.pipe, self.family, text, self._execution_device())

    def _execution_device(self):
        return getattr(self.pipe, "_execution_device", None) or self.device

    def initial_noise(self, seed: int, width: int, height: int):
        """The float32 starting latents a seed gives (drawn on the CPU, as the pipeline draws them),
        in the layout the pipeline's ``latents`` argument takes."""
        noise = seeded_noise(seed, fam.noise_shape(self.pipe, self.family, width, height))
        return fam.pack(self.pipe, self.family, noise)

    def render(self, frame: Frame, on_step: Callable[[int, int], None] | None = None, init_image=None,
               image_of: Callable[[int], Any] | None = None):
        """Render one frame: text-to-image for key frames, a latent in-between for morphs
        (slerped noise, lerped prompt embedding), img2img from ``init_image`` for chained frames;
        ``image_of(index)``: finished frames' images, for a control image ``"previous"``."""
        if frame.kind == "chain":
            return self._render_chain(frame, init_image, on_step, image_of)
        return self.render_batch([frame], on_step, image_of)[0]

    def render_batch(self, frames: list[Frame], on_step: Callable[[int, int], None] | None = None,
                     image_of: Callable[[int], Any] | None = None):
        """Render key and morph frames that share size, steps and guidance in one pipeline call.

        The call always has ``self.batch_for(frames[0])`` rows (the last group is padded with copies of its first
        frame): a frame's pixels then do not depend on which frames share its call, so a run, a
        resumed run and ``--frames N`` give the same bytes. Returns ``[(image, facts), ...]``.
        """
        import torch

        self.load()
        # 1. check: frames with other LoRAs never share a call; SD 3 ControlNet frames render one by one
        split = self._split_by_loras(frames, on_step)
        if split is None and len(frames) > 1 and frames[0].control and self.family.kind == "sd3":
            split = [self.render_batch([f], on_step, image_of)[0] for f in frames]
        if split is not None:
            return split
        first = frames[0]
        self._activate(self.loras.for_frame(first))
        # 2. pad the call to the batch size
        rows = list(frames) + [first] * (self.batch_for(first) - len(frames))
        # 3. encode the prompts (once per distinct text), and the negatives for guidance
        cond = self._conditioning(rows, first.guidance)
        # 4. prepare the seeded starting latents
        latents, generators = self._starting_latents(rows, cond["prompt_embeds"].dtype)
        if first.control and self.family.kind == "flux" and all(f.kind == "key" for f in rows):
            # FLUX's ControlNet pipeline samples the maps' latents from each row's generator before its
            # noise: it draws both, from fresh generators, as it does when called directly
            latents, generators = None, [torch.Generator("cpu").manual_seed(f.seed) for f in rows]
        # 5. compiled graphs warmed up, the step cache reset
        compile_seconds = self._warm_up(len(rows), first) if self.compiling else None
        if self._step_cache is not None:
            self._step_cache.reset()
        # 6. denoise and decode: the family's pipeline itself (with a refiner, up to its switch point)
        step_end = step_callback(on_step, first.steps)
        handover = self.refiner.handover() if self.refiner is not None else {}
        pipe, control, rng_seed = self.pipe, {}, None
        if first.control:  # the family's ControlNet pipeline, with each row's maps
            pipe = self.controlnets.pipeline(self.pipe, first, False, self._execution_device())
            control = self.controlnets.call_kwargs(rows, image_of)
            rng_seed = first.seed if self.family.kind == "sd3" else None  # it samples the maps' latents unseeded
        with torch.inference_mode(), seeded_global_rng(rng_seed):
            out = pipe(
                **cond, latents=latents, **fam.call_kwargs(self.family), **control,
                generator=generators, num_inference_steps=first.steps, guidance_scale=first.guidance,
                width=first.width, height=first.height, callback_on_step_end=step_end, **handover,
            )
            # 7. the refiner denoises the rest and decodes
            if handover:
                out = self.refiner(rows, out.images, generators, step_end)
        # 8. the frames' images, without the padding
        results = [(out.images[i], {**_facts(out, i), **self._control_facts(f, image_of)}) for i, f in enumerate(frames)]
        if compile_seconds is not None:
            results[0][1]["compile_seconds"] = round(compile_seconds, 1)
        return results

    def _split_by_loras(self, frames: list[Frame], on_step) -> list | None:
        """Frames with other LoRAs render in separate calls (results in ``frames``' order); None when
        they all share one set."""
        sets: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            sets.setdefault(tuple((x.source, x.weight) for x in self.loras.for_frame(f)), []).append(i)
        if len(sets) <= 1:
            return None
        done: dict[int, Any] = {}
        for positions in sets.values():
            done.update(zip(positions, self.render_batch([frames[i] for i in positions], on_step), strict=True))
        return [done[i] for i in range(len(frames))]

    def _conditioning(self, rows: list[Frame], guidance: float) -> dict[str, Any]:
        """Every row's conditioning (lerped for morphs), and the negative for classifier-free guidance."""
        cond = fam.cat_conditioning([fam.frame_conditioning(f, self._embed) for f in rows])
        if fam.uses_cfg(self.pipe, self.family, guidance):
            cond.update(fam.cat_conditioning([self._negative(f.negative_prompt or "") for f in rows]))
        return cond

    def _starting_latents(self, rows: list[Frame], dtype):
        """Each row's seeded starting latents (slerped noise for morphs), and its CPU generator."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        device = self._execution_device()
        latents, generators = [], []
        for f in rows:
            generator = torch.Generator("cpu").manual_seed(f.seed)
            if f.kind == "morph":  # slerped noise; the generator stays fresh for stochastic schedulers
                noise = slerp(self.initial_noise(f.seed, f.width, f.height),
                              self.initial_noise(f.morph_seed, f.width, f.height), f.morph[2])
            else:  # drawn exactly as the family's pipeline draws it
                noise = fam.pack(self.pipe, self.family, randn_tensor(
                    fam.noise_shape(self.pipe, self.family, f.width, f.height), generator=generator,
                    device=torch.device(device), dtype=dtype))
            latents.append(noise.to(device=device, dtype=dtype))
            generators.append(generator)
        return torch.cat(latents), generators

    def _warm_up(self, rows: int, frame: Frame) -> float | None:
        """Compile the UNet and VAE decoder for this batch and size before the first frame needs
        them, through the pipeline itself (2 steps), so the compiled graphs see exactly the calls
        a render makes; returns the seconds it took (None if already done for this shape)."""
        import time

        import torch

        key = (rows, frame.width, frame.height, frame.guidance > 1)
        if key in self._warmed_up:
            return None
        self._warmed_up.add(key)
        cond = fam.cat_conditioning([self._embed("")] * rows)
        if fam.uses_cfg(self.pipe, self.family, frame.guidance):
            cond.update(fam.cat_conditioning([self._negative("")] * rows))
        t0 = time.perf_counter()
        with torch.inference_mode():
            self.pipe(**cond, **fam.call_kwargs(self.family),
                      num_inference_steps=2, guidance_scale=frame.guidance, width=frame.width, height=frame.height,
                      generator=torch.Generator("cpu").manual_seed(0))
        return time.perf_counter() - t0

    def open_stream(self, frame: Frame):
        """A :class:`~framereel.backends.stream.StreamBatch` for frames of ``frame``'s size, steps and
        guidance (``framereel live``), or None where this model renders frame by frame."""
        from .stream import StreamBatch, streams

        if not streams(self.family, self.scheduler) or self.refiner is not None:
            return None
        self.load()
        self._activate(self.loras.for_frame(frame))
        return StreamBatch(self.pipe, frame.steps, frame.guidance if self._guided(frame) else 0.0)

    def stream_inputs(self, frame: Frame) -> tuple[Any, Any, Any]:
        """What :meth:`StreamBatch.push` takes for ``frame``: its seeded starting latents (slerped for
        a morph), its prompt embeddings (lerped for a morph) and the negative's (None unguided)."""
        embeds = fam.frame_conditioning(frame, self._embed)["prompt_embeds"]
        latents, _ = self._starting_latents([frame], embeds.dtype)
        negative = self._negative(frame.negative_prompt or "")["negative_prompt_embeds"] if self._guided(frame) else None
        return latents, embeds, negative

    def _guided(self, frame: Frame) -> bool:
        return fam.uses_cfg(self.pipe, self.family, frame.guidance)

    def _render_chain(self, frame: Frame, init_image, on_step, image_of=None):
        """img2img from ``init_image`` (the parent's warped image); strength 0 keeps it exactly."""
        import torch

        self.load()
        if frame.strength == 0:
            return init_image.convert("RGB").copy(), {}
        self._activate(self.loras.for_frame(frame))
        if self._step_cache is not None:
            self._step_cache.reset()
        cond = dict(self._embed(frame.prompt))
        if fam.uses_cfg(self.pipe, self.family, frame.guidance):
            cond.update(self._negative(frame.negative_prompt or ""))
        if self.family.kind == "flux":  # FluxImg2ImgPipeline sizes its output from these, not from the image
            cond.update(width=frame.width, height=frame.height)
        generator = torch.Generator("cpu").manual_seed(frame.seed)
        step_end = step_callback(on_step, frame.steps)
        image = init_image.convert("RGB")
        handover = {}
        if self.refiner is not None:
            if not self.refiner.base_steps(self.scheduler, self.pipe.scheduler.config, frame.steps, frame.strength):
                with torch.inference_mode():  # all of this img2img lies past the switch point: the refiner's alone
                    out = self.refiner([frame], image, [generator], step_end, strength=frame.strength)
                return out.images[0], _facts(out, 0)
            handover = self.refiner.handover()
        img2img, control = self._img2img(), {}
        if frame.control:  # the family's ControlNet img2img pipeline, with the frame's maps
            img2img = self.controlnets.pipeline(self.pipe, frame, True, self._execution_device())
            control = self.controlnets.call_kwargs([frame], image_of, img2img=True)
        with torch.inference_mode():
            out = img2img(
                **cond, **fam.call_kwargs(self.family), **control,
                image=image, strength=frame.strength, num_inference_steps=frame.steps,
                guidance_scale=frame.guidance, generator=generator, callback_on_step_end=step_end, **handover,
            )
            if handover:
                out = self.refiner([frame], out.images, [generator], step_end)
        return out.images[0], {**_facts(out, 0), **self._control_facts(frame, image_of)}

    def _control_facts(self, frame: Frame, image_of) -> dict[str, Any]:
        """A controlled frame's maps (images: the runner writes them beside the frame for the gallery)."""
        return {"control_maps": self.controlnets.maps(frame, image_of)} if frame.control else {}

    def render_clip(self, frames: list[Frame], on_step: Callable[[int, int], None] | None = None,
                    first=None, last=None):
        """Render one whole clip with the video model (from its key frames' images ``first`` and
        ``last``, see :mod:`framereel.backends.video_models`) or with AnimateDiff (see
        :mod:`framereel.backends.animatediff`)."""
        if self.video is not None:
            return self.video.render(frames, on_step, first, last)
        if self.clips is None:
            return super().render_clip(frames, on_step)
        self.load()
        self._activate(list(self.model.loras))  # a clip renders with the run's LoRAs
        return self.clips.render(frames, on_step)

    def _img2img(self):
        if self._img2img_pipe is None:  # the family's img2img pipeline, sharing the loaded weights
            # (from_pipe casts to float32 unless told the dtype, which would change the shared weights)
            self._img2img_pipe = fam.pipeline_class(self.family, img2img=True).from_pipe(
                self.pipe, torch_dtype=self.pipe.dtype)
            self._img2img_pipe.set_progress_bar_config(disable=True)
        return self._img2img_pipe

    def close(self) -> None:
        self.pipe = self._img2img_pipe = None
        self.loras.unload()
        if self.refiner is not None:
            self.refiner.close()
        self._compiled = False
        self._embed.clear()
        if self.clips is not None:
            self.clips.close()
        self.controlnets.close()
        if self.video is not None:
            self.video.close()
        self._negative.clear()


def _denoiser_config(folder: Path | None) -> dict[str, Any]:
    """The model folder's UNet (or SD 3 / FLUX transformer) config ({} for a single file)."""
    if folder is None:
        return {}
    part = "unet" if (folder / "unet" / "config.json").is_file() else "transformer"
    return fam.json_config(folder / part / "config.json")


def load_pipeline(model: ResolvedModel, dtype, safety_checker: bool):
    """The family's text-to-image pipeline from the resolved weights, with the run's scheduler."""
    cls = fam.pipeline_class(model.family)
    extra: dict[str, Any] = {}
    if not safety_checker and model.family.kind == "sd":
        extra = {"safety_checker": None, "requires_safety_checker": False}
    source = model.source.path
    try:
        if model.source.single_file:
            pipe = cls.from_single_file(str(source), torch_dtype=dtype, **extra)
        else:
            pipe = cls.from_pretrained(str(source), torch_dtype=dtype, **extra)
    except (OSError, ValueError, TypeError) as err:
        raise FramereelError(
            f"could not load the model from {source}: {str(err).splitlines()[0]}; "
            f"check it is a complete {model.family.label} model in diffusers format"
        ) from err
    pipe.scheduler = make_scheduler(model.scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_tiny_vae(folder: Path, dtype, pipe):
    """An AutoencoderTiny that fits ``pipe``'s latents (same channels and scale), else a one-line error."""
    from diffusers import AutoencoderTiny

    try:
        vae = AutoencoderTiny.from_pretrained(str(folder), torch_dtype=dtype)
    except (OSError, ValueError) as err:
        raise FramereelError(f"--tiny-vae {folder}: not an AutoencoderTiny ({str(err).splitlines()[0]})") from err
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    channels = pipe.vae.config.latent_channels
    if vae.config.latent_channels != channels or scale != pipe.vae_scale_factor:
        raise FramereelError(
            f"--tiny-vae {folder}: it decodes {vae.config.latent_channels}-channel latents at 1/{scale} scale, "
            f"the model makes {channels}-channel latents at 1/{pipe.vae_scale_factor}; use the tiny VAE made for "
            "this model family (madebyollin/taesd for SD 1.x/2.x, taesdxl for SDXL, taesd3 for SD 3, taef1 for FLUX)")
    if "shift_factor" not in vae.config:  # SD 3 and FLUX pipelines read it; TAESD3/TAEF1 latents are unshifted
        vae.register_to_config(shift_factor=0.0)
    return vae


def _facts(out, i: int) -> dict[str, Any]:
    flagged = getattr(out, "nsfw_content_detected", None)
    return {"nsfw_blacked_out": True} if flagged and flagged[i] else {}

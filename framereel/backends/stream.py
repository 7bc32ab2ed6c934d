"""Stream batching for few-step models, as StreamDiffusion does: frames at staggered denoising
steps share one UNet call.

With ``steps`` denoising steps, the stream holds ``steps`` frames in flight: each
:meth:`StreamBatch.push` adds a new frame at step 0, runs ONE UNet call over every frame in flight
(each row at its own timestep; classifier-free guidance doubles the rows), moves each frame one
step on, and returns the frame that took its last step, decoded. After the first ``steps - 1``
pushes (the pipe filling) every push returns a frame, so a 4-step model makes a frame per UNet
call and keeps a GPU busy with a batch of 4 instead of 4 calls of 1. The call always has all its
rows (the pipe starts filled with throw-away rows), so a compiled UNet sees one shape.

The step is DDIM's deterministic update (η = 0; Euler on the probability-flow ODE, which is what
SD-Turbo's Euler scheduler computes) on the model's own timesteps and noise schedule (its
scheduler config: spacing, zero-terminal-SNR rescaling, ε or v prediction), so a frame does not
depend on which others share its call: :func:`denoise_alone` renders one frame the same way with
nothing beside it (tests/test_live.py compares the two by PSNR). Models whose sampler is not
deterministic (LCM) or whose UNet needs more conditioning (SDXL) render frame by frame instead
(:func:`streams`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STREAM_KINDS = ("sd",)  # SD 1.x/2.x-shaped UNets (Turbo included): prompt embeddings are all they take


def streams(family, scheduler: str) -> bool:
    """Whether this model family and scheduler can be stream-batched (else: frame by frame)."""
    return family.kind in STREAM_KINDS and scheduler != "lcm"


@dataclass
class Slot:
    latents: Any  # (1, C, h, w)
    cond: Any  # (1, 77, D) prompt embeddings
    uncond: Any  # the negative's, or None without guidance
    step: int = 0
    tag: Any = None  # what push() was given; None: a throw-away row that fills the pipe


class StreamBatch:
    """Frames of one size, step count and guidance, denoised ``steps`` at a time in one UNet call."""

    def __init__(self, pipe, steps: int, guidance: float):
        from diffusers import DDIMScheduler

        ddim = DDIMScheduler.from_config(pipe.scheduler.config)
        ddim.set_timesteps(steps)
        self.pipe, self.steps, self.guidance = pipe, steps, guidance
        self.unet = pipe.unet
        self.timesteps = [int(t) for t in ddim.timesteps]
        alphas = ddim.alphas_cumprod
        self.alpha = [float(alphas[t]) for t in self.timesteps]
        self.alpha_next = self.alpha[1:] + [1.0]  # the last step lands on the clean image
        self.prediction = ddim.config.prediction_type
        self.slots: list[Slot] = []

    def push(self, latents, cond, uncond=None, tag: Any = None) -> list[tuple[Any, Any]]:
        """Add a frame (its starting noise, prompt embeddings, negative embeddings with guidance, and
        ``tag`` to know it by), run one UNet call; returns ``[(tag, image)]`` of the frame that finished
        (empty while the pipe fills)."""
        if not self.slots:  # fill the pipe with throw-away rows: every call has `steps` rows
            self.slots = [Slot(latents, cond, uncond, step) for step in range(self.steps - 1, 0, -1)]
        self.slots.append(Slot(latents, cond, uncond, 0, tag))
        self._denoise(self.slots)
        done = [s for s in self.slots if s.step == self.steps]
        self.slots = [s for s in self.slots if s.step < self.steps]
        return [(s.tag, self.decode(s.latents)) for s in done if s.tag is not None]

    def flush(self) -> list[tuple[Any, Any]]:
        """Finish the frames in flight (no new ones): their images, oldest first."""
        out: list[tuple[Any, Any]] = []
        while any(s.tag is not None for s in self.slots):
            self._denoise(self.slots)
            out += [(s.tag, self.decode(s.latents)) for s in self.slots if s.step == self.steps and s.tag is not None]
            self.slots = [s for s in self.slots if s.step < self.steps]
        self.slots = []
        return out

    def _denoise(self, slots: list[Slot]) -> None:
        """One UNet call over ``slots``, each at its own step; every slot moves one step on."""
        import torch

        x = torch.cat([s.latents for s in slots])
        t = torch.tensor([self.timesteps[s.step] for s in slots], device=x.device)
        cond = torch.cat([s.cond for s in slots])
        with torch.inference_mode():
            if self.guidance > 1:
                uncond = torch.cat([s.uncond for s in slots])
                out = self.unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond]),
                                return_dict=False)[0]
                out_uncond, out_cond = out.chunk(2)
                out = out_uncond + self.guidance * (out_cond - out_uncond)
            else:
                out = self.unet(x, t, encoder_hidden_states=cond, return_dict=False)[0]
        for i, s in enumerate(slots):
            s.latents = ddim_step(x[i:i + 1], out[i:i + 1], self.alpha[s.step], self.alpha_next[s.step],
                                  self.prediction)
            s.step += 1

    def decode(self, latents):
        """The PIL image of clean latents (the pipeline's VAE, tiny or full, and its post-processing)."""
        import torch

        vae = self.pipe.vae
        with torch.inference_mode():
            image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="pil")[0]


def ddim_step(x, out, alpha: float, alpha_next: float, prediction: str):
    """DDIM's deterministic step from noise level ``alpha`` (ᾱ_t) to ``alpha_next`` for the model
    output ``out`` (ε or v)."""
    a, b = alpha**0.5, (1 - alpha) ** 0.5
    if prediction == "v_prediction":
        clean, noise = a * x - b * out, b * x + a * out
    else:
        clean, noise = (x - b * out) / a, out
    return alpha_next**0.5 * clean + (1 - alpha_next) ** 0.5 * noise


def denoise_alone(stream: StreamBatch, latents, cond, uncond=None):
    """One frame through all the stream's steps with nothing beside it: the reference a streamed
    frame must equal."""
    slot = Slot(latents, cond, uncond, 0, "alone")
    while slot.step < stream.steps:
        stream._denoise([slot])
    return stream.decode(slot.latents)

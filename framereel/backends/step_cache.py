"""DeepCache-style step caching for a diffusers ``UNet2DConditionModel``.

Between adjacent denoising steps the UNet's deep, low-resolution features change little. Every
``interval``-th UNet call runs in full and keeps the outputs of its deep blocks (all down blocks
but the first, the mid block, all up blocks but the last); the calls in between run only the
shallow branch — ``conv_in``, the first down block, the last up block, ``conv_out`` — and reuse
the kept deep outputs. The model's own ``forward`` is untouched: the deep blocks' ``forward``
is wrapped per instance, so diffusers' skip-connection bookkeeping works as it always does.
(Ma, Fang and Wang, "DeepCache: Accelerating Diffusion Models for Free", CVPR 2024.)
"""

from __future__ import annotations

from typing import Any


class StepCache:
    def __init__(self, unet, interval: int):
        if interval < 2:
            raise ValueError("a step cache needs an interval of at least 2")
        if len(unet.down_blocks) < 2 or len(unet.up_blocks) < 2:
            raise ValueError("step caching needs a UNet with at least two down and two up blocks")
        self.interval = interval
        self.calls = 0
        self.full = True
        self._kept: dict[int, Any] = {}
        self.deep = [*unet.down_blocks[1:], unet.mid_block, *unet.up_blocks[:-1]]
        for block in self.deep:
            block.forward = self._cached(block, block.forward)
        self._hook = unet.register_forward_pre_hook(self._count)

    def reset(self) -> None:
        """Start a new image: its first UNet call runs in full."""
        self.calls = 0
        self._kept.clear()

    def _count(self, module, args) -> None:
        self.full = self.calls % self.interval == 0
        self.calls += 1

    def _cached(self, block, forward):
        key = id(block)

        def run(*args, **kwargs):
            if self.full or key not in self._kept:
                self._kept[key] = forward(*args, **kwargs)
            return self._kept[key]

        return run

    def remove(self) -> None:
        """Put the UNet back as it was."""
        for block in self.deep:
            del block.forward
        self._hook.remove()
        self._kept.clear()

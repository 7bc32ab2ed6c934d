"""Tiny random-weight models for the finishing stages, saved in the layouts users' files have.

* :func:`build_esrgan` — Real-ESRGAN's ``RRDBNet`` parameter names (``conv_first``,
  ``body.N.rdbM.convK``, ``conv_body``, ``conv_up1``/``conv_up2``, ``conv_hr``, ``conv_last``),
  as in ``RealESRGAN_x4plus.pth`` (under its ``params_ema`` key), which spandrel detects as ESRGAN.
* :func:`build_rife` — Practical-RIFE's ``flownet.pkl``: an IFNet state dict saved from a
  DataParallel module (``module.`` prefixes), block widths as given.
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_esrgan(path: Path, *, scale: int = 4, nf: int = 8, gc: int = 32, blocks: int = 1, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)

    def conv(cout: int, cin: int, std: float = 0.05) -> dict[str, torch.Tensor]:
        return {"weight": torch.randn(cout, cin, 3, 3, generator=g) * std, "bias": torch.zeros(cout)}

    sd: dict[str, torch.Tensor] = {}

    def put(name: str, cout: int, cin: int, std: float = 0.05) -> None:
        for k, v in conv(cout, cin, std).items():
            sd[f"{name}.{k}"] = v

    in_ch = 3 * (4 // scale) ** 2 if scale in (1, 2) else 3  # x2/x1 models read pixel-unshuffled input
    put("conv_first", nf, in_ch, 0.2)
    for b in range(blocks):
        for r in (1, 2, 3):
            for k in range(1, 6):
                put(f"body.{b}.rdb{r}.conv{k}", nf if k == 5 else gc, nf + (k - 1) * gc)
    put("conv_body", nf, nf)
    put("conv_up1", nf, nf, 0.2)
    put("conv_up2", nf, nf, 0.2)
    put("conv_hr", nf, nf, 0.2)
    put("conv_last", 3, nf, 0.2)
    sd["conv_last.bias"] = torch.full((3,), 0.5)
    torch.save({"params_ema": sd}, path)
    return path


def build_rife(path: Path, *, widths=(32, 24, 16, 8), head: tuple[int, int] | None = (8, 4),
               feature_channels: int = 8, resblocks: int = 2, seed: int = 0) -> Path:
    """An IFNet with ``len(widths)`` blocks; ``head`` (hidden, out) adds the ≥ 4.15 encoder;
    ``feature_channels`` > 1 makes blocks pass features on (≥ 4.22), 1 is the 4.6/4.15 layout."""
    from framereel.finishing.rife import IFNet

    torch.manual_seed(seed)
    fc = head[1] if head else 0
    out = 5 + feature_channels
    blocks = []
    for i, c in enumerate(widths):
        cin = 7 + 2 * fc if i == 0 else 6 + 2 * fc + 1 + 1 + (feature_channels if feature_channels > 1 else 0) + 4
        blocks.append((cin, c, out))
    net = IFNet(blocks, head, resblocks)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    return path

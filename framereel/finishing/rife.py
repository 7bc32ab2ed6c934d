"""RIFE 4.x IFNet (Practical-RIFE), built from a user's weights file.

The architecture, as published in hzwer/Practical-RIFE (``train_log/IFNet_HDv3.py``, versions
4.x): a coarse-to-fine stack of ``IFBlock``s, each estimating bidirectional flow (4 channels) and
a blend mask at one scale (16/8/4/2/1 or 8/4/2/1 of the frame), refining the previous block's
flow on frames warped by it. Versions ≥ 4.15 add a small feature encoder (``encode``: ``Head``)
whose features are warped along with the frames; ≥ 4.22 also pass 8 feature channels from block
to block. Sizes are read from the state dict, so every 4.x layout with these parameter names
loads: ``block{i}.conv0.{0,1}.0``, ``block{i}.convblock.{j}.conv`` / ``.beta``,
``block{i}.lastconv.0``, ``encode.cnn{0..3}``. Checkpoints saved from a DataParallel module
(``module.`` prefixes, as ``flownet.pkl`` ships) load too. Loading is strict: a file with other
names or shapes is refused rather than run with missing weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FramereelError


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.LeakyReLU(0.2, True))


class ResConv(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, c, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """Flow (4), mask (1) and, for ≥ 4.22, feature channels out, at 1/``scale`` of the frame."""

    def __init__(self, in_planes: int, c: int, out_channels: int, resblocks: int = 8) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, c // 2, 2), _conv(c // 2, c, 2))
        self.convblock = nn.Sequential(*[ResConv(c) for _ in range(resblocks)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * out_channels, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x, flow, scale: float):
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        tmp = self.lastconv(self.convblock(self.conv0(x)))
        tmp = F.interpolate(tmp, scale_factor=scale, mode="bilinear", align_corners=False)
        return tmp[:, :4] * scale, tmp[:, 4:5], tmp[:, 5:]


class Head(nn.Module):
    """The ≥ 4.15 feature encoder: three convolutions and a transposed one, back to full size."""

    def __init__(self, hidden: int, out: int) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, hidden, 3, 2, 1)
        self.cnn1 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn2 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(hidden, out, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        x = self.relu(self.cnn2(x))
        return self.cnn3(x)


def warp(image, flow):
    """Backward-warp ``image`` by ``flow`` (pixels), border padding, as RIFE's warplayer."""
    n, _, h, w = flow.shape
    gx = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
    gy = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
    grid = torch.cat([gx + flow[:, 0:1] / ((w - 1.0) / 2.0), gy + flow[:, 1:2] / ((h - 1.0) / 2.0)], 1)
    return F.grid_sample(image, grid.permute(0, 2, 3, 1).to(image.dtype), mode="bilinear",
                         padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    """``blocks``: (in_planes, c, out_channels) per block; ``head``: (hidden, out) or None."""

    def __init__(self, blocks: list[tuple[int, int, int]], head: tuple[int, int] | None, resblocks: int = 8) -> None:
        super().__init__()
        for i, (cin, c, cout) in enumerate(blocks):
            self.add_module(f"block{i}", IFBlock(cin, c, cout, resblocks))
        self.encode = Head(*head) if head else None
        self.scales = [2.0 ** (len(blocks) - 1 - i) for i in range(len(blocks))]  # …, 4, 2, 1
        self.multiple = int(self.scales[0]) * 4  # each block downsamples by 4 at its scale
        self.pass_features = blocks[0][2] > 6  # ≥ 4.22: 13 channels out, 8 of them features for the next block

    def forward(self, img0, img1, timestep: float):
        """``img0``, ``img1``: N×3×H×W in 0..1, H and W multiples of ``self.multiple``."""
        n, _, h, w = img0.shape
        t = torch.full((n, 1, h, w), float(timestep), dtype=img0.dtype, device=img0.device)
        f0 = self.encode(img0) if self.encode is not None else None
        f1 = self.encode(img1) if self.encode is not None else None
        warped0, warped1 = img0, img1
        flow = mask = feat = None
        for i, scale in enumerate(self.scales):
            block = getattr(self, f"block{i}")
            if flow is None:
                parts = [img0, img1] + ([f0, f1] if f0 is not None else []) + [t]
                flow, mask, feat = block(torch.cat(parts, 1), None, scale)
            else:
                parts = [warped0, warped1]
                if f0 is not None:
                    parts += [warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4])]
                parts += [t, mask] + ([feat] if self.pass_features else [])
                d_flow, d_mask, feat = block(torch.cat(parts, 1), flow, scale)
                flow = flow + d_flow
                mask = d_mask if f0 is not None else mask + d_mask  # 4.6 accumulates the mask; ≥ 4.15 replace it
            warped0 = warp(img0, flow[:, :2])
            warped1 = warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        return warped0 * m + warped1 * (1 - m)

    @torch.inference_mode()
    def interpolate(self, img0, img1, timestep: float):
        """Pad to the network's multiple, run, crop back."""
        h, w = img0.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            img0 = F.pad(img0, (0, pw, 0, ph))
            img1 = F.pad(img1, (0, pw, 0, ph))
        return self(img0, img1, timestep)[:, :, :h, :w]


# ------------------------------------------------------------------ loading


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A weights file (``.pkl``/``.pth``/``.pt``/``.ckpt`` as torch saves them, or ``.safetensors``)."""
    from .common import why

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load and safetensors raise many kinds on a foreign file
        raise ValueError(f"not a weights file torch or safetensors can read ({why(err)})") from None
    for key in ("state_dict", "params", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError("not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def build_ifnet(sd: dict[str, torch.Tensor]) -> IFNet:
    """An :class:`IFNet` shaped by ``sd`` (block count, widths, encoder), with its weights loaded strictly."""
    ids = sorted({int(m.group(1)) for k in sd for m in [re.match(r"block(\d+)\.", k)] if m})
    if not ids or ids != list(range(len(ids))):
        raise ValueError("no block0.… parameters of a RIFE IFNet")
    blocks = []
    for i in ids:
        w0 = sd[f"block{i}.conv0.0.0.weight"]  # (c/2, in_planes, 3, 3)
        last = sd[f"block{i}.lastconv.0.weight"]  # ConvTranspose2d: (c, 4*out, 4, 4)
        blocks.append((w0.shape[1], w0.shape[0] * 2, last.shape[1] // 4))
    resblocks = len({k.split(".")[2] for k in sd if k.startswith("block0.convblock.")})
    head = None
    if "encode.cnn0.weight" in sd:
        head = (sd["encode.cnn0.weight"].shape[0], sd["encode.cnn3.weight"].shape[1])
    net = IFNet(blocks, head, resblocks)
    net.load_state_dict(sd, strict=True)
    return net.eval()


def load_rife(path: Path) -> IFNet:
    """Load a RIFE 4.x weights file; anything else is one line naming the file."""
    from .common import why

    try:
        return build_ifnet(read_state_dict(path))
    except Exception as err:  # a foreign file, missing or misshapen parameters
        raise FramereelError(
            f"{path}: cannot load it as a RIFE 4.x interpolation model (e.g. Practical-RIFE's flownet.pkl): {why(err)}"
        ) from None

"""Deforum's 3D camera: a frame's picture moved through its own depth map.

This is sd-webui-deforum's ``anim_frame_warp_3d`` / ``transform_image_3d_new`` (a Disco Diffusion
descendant), step for step, so a 3D settings file moves the picture as Deforum moves it:

1. the depth: the model's relative inverse depth (:func:`framereel.depth.estimate_depth`) scaled to
   0..1, histogram-equalised (1024 bins) and turned into ``z = 2 - d`` (near 1, far 2), as Deforum
   treats MiDaS; a flat map (or depth warping off) is ``z = 1``;
2. every pixel is a point ``(x, y, z)`` with ``x, y`` from -1 to 1 across the frame;
3. the camera: rotation ``rotation_3d_x/y/z`` (degrees, Euler "XYZ": ``Rx·Ry·Rz``, applied to row
   vectors as pytorch3d does) and translation ``(-translation_x, translation_y, -translation_z) / 200``;
4. both the still and the moved camera project with a field of view ``fov`` (degrees) and
   ``aspect_ratio``; each pixel samples the old picture at its place minus the projected offset
   (``grid_sample`` with ``padding_mode`` and ``sampling_mode``, the grid's own half-pixel convention).

Deforum's ``near``/``far`` planes only scale the projected z, which the warp discards, so they move no
pixel and are not taken. The projection is Deforum's own (points at screen x, y with depth z, not a
physical unprojection), which is why it is written here rather than taken from a geometry library.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

TRANSLATION_SCALE = 1.0 / 200.0  # Deforum's (from Disco Diffusion): pixels-ish units to camera units
PADDING_MODES = ("border", "reflection", "zeros")
SAMPLING_MODES = ("bicubic", "bilinear", "nearest")


def depth_to_z(inverse_depth: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Deforum's z from a model's relative inverse depth (MiDaS-style: larger is nearer): 1 (near)
    to 2 (far) after scaling to 0..1 and equalising; 1 everywhere for no depth or a flat or broken map."""
    if inverse_depth is None:
        return np.ones(shape, np.float32)
    d = np.asarray(inverse_depth, np.float64)
    if not np.isfinite(d).all() or d.min() == d.max():
        return np.ones(shape, np.float32)
    d = (d - d.min()) / (d.max() - d.min())
    hist, edges = np.histogram(d, bins=1024, range=(0, 1))
    cdf = hist.cumsum() / float(hist.sum())
    return (2.0 - np.interp(d, edges[:-1], cdf)).astype(np.float32)


def rotation_xyz(rx: float, ry: float, rz: float) -> Any:
    """pytorch3d's ``euler_angles_to_matrix(angles, "XYZ")``: ``Rx @ Ry @ Rz`` (radians)."""
    import torch

    def axis(which: str, a: float) -> torch.Tensor:
        c, s = math.cos(a), math.sin(a)
        rows = {"X": [[1, 0, 0], [0, c, -s], [0, s, c]], "Y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
                "Z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[which]
        return torch.tensor(rows, dtype=torch.float32)

    return axis("X", rx) @ axis("Y", ry) @ axis("Z", rz)


def _project(points: Any, fov: float, aspect_ratio: float) -> Any:
    """pytorch3d's FoVPerspectiveCameras projection of (N, 3) view points, x and y only."""
    import torch

    tan_half = math.tan(math.radians(fov) / 2)
    z = points[:, 2]
    return torch.stack((points[:, 0] / (tan_half * aspect_ratio * z), points[:, 1] / (tan_half * z)), dim=1)


def warp_3d(image: Image.Image, inverse_depth: np.ndarray | None, translation_x: float = 0.0,
            translation_y: float = 0.0, translation_z: float = 0.0, rotation_3d_x: float = 0.0,
            rotation_3d_y: float = 0.0, rotation_3d_z: float = 0.0, fov: float = 70.0, aspect_ratio: float = 1.0,
            padding_mode: str = "border", sampling_mode: str = "bicubic") -> Image.Image:
    """``image`` seen from Deforum's moved 3D camera (see the module's steps); ``inverse_depth``: the
    model's depth of ``image`` at its size, or None for a flat scene (depth warping off)."""
    if not any((translation_x, translation_y, translation_z, rotation_3d_x, rotation_3d_y, rotation_3d_z)):
        return image.copy()  # a still camera: Deforum's float grid would only round some values down by 1
    import torch
    import torch.nn.functional as F

    w, h = image.size
    z = torch.from_numpy(depth_to_z(inverse_depth, (h, w)))
    y, x = torch.meshgrid(torch.linspace(-1.0, 1.0, h), torch.linspace(-1.0, 1.0, w), indexing="ij")
    old = torch.stack((x.flatten(), y.flatten(), z.flatten()), dim=1)
    rotation = rotation_xyz(*(math.radians(a) for a in (rotation_3d_x, rotation_3d_y, rotation_3d_z)))
    shift = torch.tensor([-translation_x, translation_y, -translation_z], dtype=torch.float32) * TRANSLATION_SCALE
    offset = _project(old @ rotation + shift, fov, aspect_ratio) - _project(old, fov, aspect_ratio)
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    grid = F.affine_grid(identity, [1, 1, h, w], align_corners=False) - offset.reshape(1, h, w, 2)
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32)).permute(2, 0, 1)[None]
    out = F.grid_sample(pixels, grid, mode=sampling_mode, padding_mode=padding_mode, align_corners=False)
    # Deforum clamps to 0..255 and casts to uint8 (truncating), as here
    return Image.fromarray(out[0].clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8))

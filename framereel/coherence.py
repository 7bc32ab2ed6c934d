"""Image operations for chained frames, backend-independent: a 2D camera warp and colour matching."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

BORDERS = {"mirror": "symmetric", "wrap": "wrap", "replicate": "edge"}


def warp(image: Image.Image, zoom: float = 1.0, angle: float = 0.0, tx: float = 0.0, ty: float = 0.0,
         dx: float = 0.0, dy: float = 0.0, cx: float = 0.5, cy: float = 0.5, border: str = "mirror") -> Image.Image:
    """Zoom (factor, >1 pushes in) and rotate (degrees, counter-clockwise) about the centre, then shift
    by (tx, ty) pixels; borders are filled by mirroring the image, so a chain drifts like a camera.

    Deforum's 2D transform in full: ``(dx, dy)`` is a shift applied *before* the zoom and rotation
    (Deforum's ``translation_x/y``, so it is scaled and turned with the image), ``(cx, cy)`` the
    centre of zoom and rotation as fractions of the width and height (``transform_center_x/y``),
    ``border`` how uncovered edges are filled: ``mirror``, ``wrap`` or ``replicate``. A point moves
    from ``p`` to ``zoom·R(angle)·(p + d − c) + c + t``, as in Deforum's ``anim_frame_warp_2d``.
    """
    if (zoom, angle, tx, ty, dx, dy) == (1.0, 0.0, 0.0, 0.0, 0.0, 0.0):
        return image.copy()
    w, h = image.size
    padded = Image.fromarray(np.pad(np.asarray(image.convert("RGB")), ((h, h), (w, w), (0, 0)), mode=BORDERS[border]))
    # PIL's affine maps output pixels to input pixels: invert zoom, rotation and shift about the centre
    a = math.radians(angle)
    cos, sin = math.cos(a) / zoom, math.sin(a) / zoom
    cx, cy = w * cx, h * cy
    # output (x, y) in the w×h frame → input in the padded image (offset by w, h)
    m = (cos, -sin, cx - cos * (cx + tx) + sin * (cy + ty) - dx + w,
         sin, cos, cy - sin * (cx + tx) - cos * (cy + ty) - dy + h)
    return padded.transform((w, h), Image.Transform.AFFINE, m, resample=Image.Resampling.BICUBIC)


def match_colours(image: Image.Image, reference: Image.Image, space: str = "rgb") -> Image.Image:
    """Each channel of ``image`` remapped so its histogram matches ``reference``'s, in ``space``:
    ``rgb``, ``lab`` or ``hsv`` (Deforum's colour coherence modes; 8-bit channels, as in Deforum)."""
    to_space, from_space = _colour_space(space)
    src = np.asarray(to_space(image.convert("RGB")))
    ref = np.asarray(to_space(reference.convert("RGB")))
    out = np.empty_like(src)
    for c in range(3):
        s_values, s_idx, s_counts = np.unique(src[..., c].ravel(), return_inverse=True, return_counts=True)
        r_values, r_counts = np.unique(ref[..., c].ravel(), return_counts=True)
        s_cdf = np.cumsum(s_counts) / src[..., c].size
        r_cdf = np.cumsum(r_counts) / ref[..., c].size
        out[..., c] = np.interp(s_cdf, r_cdf, r_values)[s_idx].reshape(src.shape[:2]).round().astype(np.uint8)
    return from_space(Image.fromarray(out, mode={"rgb": "RGB", "lab": "LAB", "hsv": "HSV"}[space]))


def _colour_space(space: str):
    if space == "rgb":
        return (lambda im: im), (lambda im: im)
    if space == "hsv":
        return (lambda im: im.convert("HSV")), (lambda im: im.convert("RGB"))
    if space == "lab":
        from PIL import ImageCms

        srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
        forward = ImageCms.buildTransformFromOpenProfiles(srgb, lab, "RGB", "LAB")
        back = ImageCms.buildTransformFromOpenProfiles(lab, srgb, "LAB", "RGB")
        return (lambda im: ImageCms.applyTransform(im, forward)), (lambda im: ImageCms.applyTransform(im, back))
    raise ValueError(f"unknown colour space {space!r}; use rgb, lab or hsv")

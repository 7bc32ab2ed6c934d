"""Image operations for chained frames, backend-independent: a 2D camera warp and colour matching."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

BORDERS = {"mirror": "symmetric", "wrap": "wrap", "replicate": "edge"}


def warp(image: Image.Image, zoom: float = 1.0, angle: float = 0.0, tx: float = 0.0, ty: float = 0.0,
         dx: float = 0.0, dy: float = 0.0, cx: float = 0.5, cy: float = 0.5, border: str = "mirror",
         style: str = "framereel") -> Image.Image:
    """Zoom (factor, >1 pushes in) and rotate (degrees, counter-clockwise) about the centre, then shift
    by (tx, ty) pixels; borders are filled by mirroring the image, so a chain drifts like a camera.

    Deforum's 2D transform in full: ``(dx, dy)`` is a shift applied *before* the zoom and rotation
    (Deforum's ``translation_x/y``, so it is scaled and turned with the image), ``(cx, cy)`` the
    centre of zoom and rotation as fractions of the width and height (``transform_center_x/y``),
    ``border`` how uncovered edges are filled: ``mirror``, ``wrap`` or ``replicate``. A point moves
    from ``p`` to ``zoom·R(angle)·(p + d − c) + c + t``, as in Deforum's ``anim_frame_warp_2d``.

    ``style`` ``framereel`` resamples bicubically about the frame's true centre (pixel centres at
    +½, so a zoom stays centred and long chains stay sharp); ``deforum`` is Deforum's own OpenCV
    ``warpPerspective``: bilinear, on OpenCV's grid (pixel centres at whole numbers). Either way the
    border is filled however far the picture moves.
    """
    if (zoom, angle, tx, ty, dx, dy) == (1.0, 0.0, 0.0, 0.0, 0.0, 0.0):
        return image.copy()
    if style == "deforum":
        return _warp_deforum(image, zoom, angle, tx, ty, dx, dy, cx, cy, border)
    w, h = image.size
    # PIL's affine maps output pixels to input pixels: invert zoom, rotation and shift about the centre
    a = math.radians(angle)
    cos, sin = math.cos(a) / zoom, math.sin(a) / zoom
    cx, cy = w * cx, h * cy
    # output (x, y) in the w×h frame → input (x', y') = (m0·x + m1·y + m2, m3·x + m4·y + m5)
    m = [cos, -sin, cx - cos * (cx + tx) + sin * (cy + ty) - dx,
         sin, cos, cy - sin * (cx + tx) - cos * (cy + ty) - dy]
    if _reaches_past_one_frame(m, w, h):  # a far zoom out or shift: OpenCV fills borders at any distance
        return _warp_far(image, m, border)
    padded = np.pad(np.asarray(image.convert("RGB")), ((h, h), (w, w), (0, 0)), mode=BORDERS[border])
    m[2] += w
    m[5] += h
    return Image.fromarray(padded).transform((w, h), Image.Transform.AFFINE, tuple(m), resample=Image.Resampling.BICUBIC)


def _reaches_past_one_frame(m: list[float], w: int, h: int) -> bool:
    """Whether the output's corners sample the input farther out than one frame (less 2 pixels for
    the bicubic kernel) past its sides: beyond the padding of the usual path."""
    xs = [m[0] * x + m[1] * y + m[2] for x in (0, w) for y in (0, h)]
    ys = [m[3] * x + m[4] * y + m[5] for x in (0, w) for y in (0, h)]
    return min(xs) < -(w - 2) or max(xs) > 2 * w - 2 or min(ys) < -(h - 2) or max(ys) > 2 * h - 2


def _warp_far(image: Image.Image, m: list[float], border: str) -> Image.Image:
    """The same bicubic warp through OpenCV, whose borders reach any distance (PIL's affine ``m``
    maps pixel corners; OpenCV's grid has pixel centres on whole numbers, hence the half pixels)."""
    import cv2

    w, h = image.size
    a = np.array([[m[0], m[1]], [m[3], m[4]]])
    shift = a @ [0.5, 0.5] + [m[2], m[5]] - 0.5
    inverse = np.array([[m[0], m[1], shift[0]], [m[3], m[4], shift[1]]])
    modes = {"wrap": cv2.BORDER_WRAP, "replicate": cv2.BORDER_REPLICATE, "mirror": cv2.BORDER_REFLECT}
    out = cv2.warpAffine(np.asarray(image.convert("RGB")), inverse, (w, h),
                         flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=modes[border])
    return Image.fromarray(out)


def _warp_deforum(image: Image.Image, zoom: float, angle: float, tx: float, ty: float, dx: float, dy: float,
                  cx: float, cy: float, border: str) -> Image.Image:
    """Deforum's ``anim_frame_warp_2d``: ``getRotationMatrix2D`` about the centre times the shift,
    through ``cv2.warpPerspective`` (bilinear, OpenCV's borders); ``(tx, ty)`` shifts after."""
    import cv2

    w, h = image.size
    rotate = np.vstack([cv2.getRotationMatrix2D((w * cx, h * cy), angle, zoom), [0, 0, 1]])
    shift_before = np.float32([[1, 0, dx], [0, 1, dy], [0, 0, 1]])
    shift_after = np.float32([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    matrix = shift_after @ rotate @ shift_before
    modes = {"wrap": cv2.BORDER_WRAP, "replicate": cv2.BORDER_REPLICATE, "mirror": cv2.BORDER_REFLECT}
    out = cv2.warpPerspective(np.asarray(image.convert("RGB")), matrix, (w, h), borderMode=modes[border])
    return Image.fromarray(out)


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

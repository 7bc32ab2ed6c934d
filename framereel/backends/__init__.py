"""Backends, by name: ``create_backend(settings)`` looks the name up and builds one.

Built in: ``diffusers`` (CUDA, MPS or the CPU), ``tt`` (a Tenstorrent chip, in-process) and
``tt-demo`` (tt-metal's own demo, run by pytest). Another package adds a backend by declaring an
entry point in the ``framereel.backends`` group that names a :class:`~framereel.backends.base.Backend`
subclass::

    [project.entry-points."framereel.backends"]
    mychip = "mypackage.backend:MyChipBackend"

after which ``framereel make … --backend mychip`` uses it, in this process and in worker
processes and Ray actors alike. ``register_backend`` does the same for this process only.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..errors import FramereelError
from ..settings import DEFAULT_MODEL, SCHEDULERS, RenderSettings
from .base import Backend, ModelInfo

ENTRY_POINT_GROUP = "framereel.backends"
BUILTIN_BACKENDS = {
    "diffusers": "framereel.backends.diffusers_backend:DiffusersBackend",
    "tt": "framereel.backends.tt:TtBackend",
    "tt-demo": "framereel.backends.tt:TtDemoBackend",
}
_registered: dict[str, Any] = {}

__all__ = ["DEFAULT_MODEL", "SCHEDULERS", "Backend", "ModelInfo", "RenderSettings", "backend_class",
           "backend_names", "create_backend", "expand_devices", "register_backend"]


def register_backend(name: str, backend: type[Backend] | str) -> None:
    """Make ``--backend NAME`` build ``backend`` (a class, or ``"module:Class"``) in this process."""
    _registered[name] = backend


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    """Every backend name this installation knows, ``auto`` first."""
    return ["auto", *dict.fromkeys([*BUILTIN_BACKENDS, *_entry_points(), *_registered])]


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``."""
    target = _registered.get(name) or _entry_points().get(name) or BUILTIN_BACKENDS.get(name)
    if target is None:
        raise FramereelError(f'unknown backend "{name}"; choose {", ".join(backend_names())}')
    if isinstance(target, str):
        target = EntryPoint(name, target, ENTRY_POINT_GROUP)
    if isinstance(target, EntryPoint):
        try:
            target = target.load()
        except (ImportError, AttributeError) as err:
            raise FramereelError(f'backend "{name}" could not be loaded ({err}); reinstall the package that '
                                 "provides it") from err
    return target


def create_backend(settings: RenderSettings) -> Backend:
    """The backend named by ``settings.backend`` (``auto``: a Tenstorrent chip when tt-smi sees one, else diffusers)."""
    settings.check()
    name = settings.backend
    if name == "auto":
        from .tt_chips import tenstorrent_present

        name = "tt" if tenstorrent_present() else "diffusers"
    cls = backend_class(name)
    flags = settings.speed_flags()
    if flags and not cls.takes_speed_options:
        raise FramereelError(f"{', '.join(flags)}: {cls.speed_refusal}; drop them or use --backend diffusers")
    clip_flag = "--motion-adapter" if settings.motion_adapter else "--video-model" if settings.video_model else None
    if clip_flag and "clip" not in cls.kinds:
        raise FramereelError(f"{clip_flag}: the {name} backend renders still frames only; "
                             "render clips with --backend diffusers")
    return cls(settings)


def expand_devices(spec: str | None) -> tuple[str, ...] | None:
    """``--devices``: ``cuda:0,cuda:1`` as a tuple; ``all`` → every Tenstorrent chip that can be opened alone, else every CUDA GPU, else the CPU."""
    if not spec:
        return None
    if spec.strip() == "all":
        import torch

        from .tt_chips import usable_devices

        chips, _why = usable_devices()  # only chips tt-metal can open alone (not an N300's remote chip)
        if chips:
            return tuple(chips)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return tuple(f"cuda:{i}" for i in range(count)) or ("cpu",)
    devices = tuple(d.strip() for d in spec.split(",") if d.strip())
    for d in devices:
        if not (d in ("cpu", "mps", "cuda") or (d.startswith(("cuda:", "tt:")) and d.split(":")[1].isdigit())):
            raise FramereelError(
                f"--devices: unknown device {d!r}; use cpu, mps, cuda, cuda:N or tt:N, comma-separated, or all")
    if any(d.startswith("tt:") for d in devices):
        from .tt_chips import check_devices

        check_devices(list(devices))  # a chip tt-metal can't open alone is refused here, in one line
    return devices

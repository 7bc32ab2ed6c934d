"""LoRA adapters through diffusers' PEFT integration (``load_lora_weights`` + ``set_adapters``).

``--lora PATH_OR_ID[:WEIGHT]`` (repeatable) or a ``"lora"`` entry in a storyboard's defaults: a
``.safetensors`` file, a folder holding one (``pytorch_lora_weights.safetensors`` as
``save_lora_weights`` writes it), or a Hub id. Weight 1.0 unless given. An LCM-LoRA (its name
says "lcm") also switches the model to the LCM scheduler and few-step defaults.

A storyboard frame's own ``"lora"`` (a string, a list, or ``[]`` for none) replaces the run's
LoRAs for that frame (the run's LCM-LoRA stays). Each distinct LoRA loads once as its own
adapter; before each pipeline call the backend sets the call's adapters and weights
(``set_adapters``), or ``disable_lora`` for none, so a frame without LoRAs is exactly the plain
model's. Morph in-betweens blend the weights of the key frames on either side (:func:`blend`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import FramereelError
from ..storyboard import parse_lora_spec


@dataclass(frozen=True)
class Lora:
    source: str  # a local path or a Hub id, as given
    weight: float = 1.0

    @property
    def name(self) -> str:
        return Path(self.source.rstrip("/")).name

    @property
    def is_lcm(self) -> bool:
        return "lcm" in self.source.lower()


def parse_lora(spec: str) -> Lora:
    """``PATH_OR_ID[:WEIGHT]`` → a :class:`Lora`; a bad weight is a one-line error."""
    try:
        return Lora(*parse_lora_spec(spec))
    except ValueError as err:
        raise FramereelError(f"--lora {spec}: {err}") from None


def local_path(lora: Lora, label: str = "--lora") -> Path | None:
    """A LoRA's local file or folder; None for a Hub id; a missing path is a one-line error
    (``label`` says where the LoRA was asked for: ``--lora``, or a storyboard frame)."""
    path = Path(lora.source).expanduser()
    if path.exists():
        return path
    if lora.source.startswith((".", "/", "~")) or lora.source.endswith((".safetensors", ".bin")) \
            or lora.source.count("/") != 1:
        raise FramereelError(f"{label} {lora.source}: no such file or folder; pass a LoRA .safetensors file, "
                             "a folder holding one, or a Hub id like latent-consistency/lcm-lora-sdv1-5")
    return None


def fingerprint(lora: Lora, label: str = "--lora") -> str:
    """What identifies a LoRA's weights in a frame's hash: a local file's content hash, else its Hub id."""
    path = local_path(lora, label)
    if path is None:
        return lora.source
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not files:
        raise FramereelError(f"{label} {lora.source}: no .safetensors weights in that folder")
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def load_lora(pipe, lora: Lora, name: str, family_label: str, label: str = "--lora") -> None:
    """Load one LoRA as the PEFT adapter ``name``; a LoRA made for another base model (its layers
    don't exist or have other shapes here) is a one-line error."""
    path = local_path(lora, label)
    kwargs = {}
    if path is not None and path.is_file():
        kwargs = {"weight_name": path.name}
        source = str(path.parent)
    else:
        source = str(path) if path is not None else lora.source
    before = _adapter_names(pipe)
    try:
        pipe.load_lora_weights(source, adapter_name=name, **kwargs)
    except ImportError as err:
        raise FramereelError(f"LoRAs need the peft package: pip install peft ({err})") from err
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FramereelError(f"{label} {lora.source}: does not fit this {family_label} model "
                             f"(made for another base model?): {why[:200]}") from err
    if name not in _adapter_names(pipe) - before:
        raise FramereelError(f"{label} {lora.source}: none of its layers exist in this {family_label} model; "
                             "it was made for another base model")


def blend(a: list[Lora], b: list[Lora], t: float) -> list[Lora]:
    """A morph in-between's LoRAs at ``t`` from ``a``'s to ``b``'s: every LoRA of either, its weight
    interpolated linearly (a LoRA one end lacks has weight 0 there)."""
    wa, wb = {x.source: x.weight for x in a}, {x.source: x.weight for x in b}
    return [Lora(s, wa.get(s, 0.0) + (wb.get(s, 0.0) - wa.get(s, 0.0)) * t) for s in dict.fromkeys([*wa, *wb])]


def text_encoder_adapters(pipe) -> bool:
    """Whether any loaded LoRA changes a text encoder (then prompt embeddings depend on the LoRAs)."""
    try:
        return any(names for part, names in pipe.get_list_adapters().items() if part.startswith("text_encoder"))
    except (AttributeError, ValueError):
        return False


def _adapter_names(pipe) -> set[str]:
    try:
        return {n for names in pipe.get_list_adapters().values() for n in names}
    except (AttributeError, ValueError):
        return set()


def with_storyboard_loras(settings, storyboard, backend=None):
    """The run's LoRAs: the ``--lora`` ones, then those of the storyboard defaults' ``"lora"``.
    A backend already loaded without them can't take them: a one-line error."""
    from dataclasses import replace

    extra = tuple(spec for spec in storyboard.loras if spec not in settings.loras)
    if not extra:
        return settings
    label = f'{storyboard.path.name}: defaults: "lora"'
    for spec in extra:  # a bad weight or a missing file names the storyboard, not --lora
        try:
            local_path(Lora(*parse_lora_spec(spec)), label)
        except ValueError as err:
            raise FramereelError(f"{label} {spec}: {err}") from None
    if backend is not None and tuple(backend.settings.loras) != settings.loras + extra:
        raise FramereelError(f'{storyboard.path.name}: its "lora" needs the model loaded with that LoRA; '
                             "run it in a new session (or with --lora)")
    return replace(settings, loras=settings.loras + extra)

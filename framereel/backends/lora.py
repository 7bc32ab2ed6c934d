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
:class:`LoraSet` keeps all of this for one run.
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


LORA_FILE = "pytorch_lora_weights"  # + .safetensors or .bin: the name save_lora_weights gives
LORA_KEY_MARKS = ("lora", "hada_", "lokr_")  # a LoRA's (or LyCORIS') layer names have one of these


def weights_file(lora: Lora, label: str = "--lora") -> Path:
    """The file a LoRA loads from: the file given, the one a folder holds (picked as diffusers picks
    it), or a Hub id's (from the Hugging Face cache, downloaded if need be); checked to hold LoRA
    layers. A LoRA that can't be found or read, or a file that is not a LoRA, is a one-line error."""
    path = local_path(lora, label)
    if path is None:
        path = _hub_file(lora, label)
    elif path.is_dir():
        path = _pick_file(path, lora, label)
    check_lora_file(path, lora, label)
    return path


def _pick_name(names: list[str]) -> str | None:
    """The weights file diffusers loads among a folder's or repository's top-level ``names``."""
    for ext in (".safetensors", ".bin"):
        found = sorted(n for n in names if n.endswith(ext) and "/" not in n
                       and not any(w in n for w in ("scheduler", "optimizer", "checkpoint")))
        if found:
            return next((n for n in found if n == LORA_FILE + ext), found[0])
    return None


def _pick_file(folder: Path, lora: Lora, label: str) -> Path:
    name = _pick_name([p.name for p in folder.iterdir() if p.is_file()])
    if name is None:
        raise FramereelError(f"{label} {lora.source}: no .safetensors or .bin LoRA weights in that folder")
    return folder / name


def _hub_file(lora: Lora, label: str) -> Path:
    """A Hub LoRA's weights file: ``pytorch_lora_weights.safetensors``, else the one file diffusers
    would pick; from the cache when offline."""
    from huggingface_hub import hf_hub_download, list_repo_files, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from .common import hub_error, quiet_libraries

    quiet_libraries()
    repo, folder, names = lora.source, None, []
    try:
        try:
            return Path(hf_hub_download(repo, LORA_FILE + ".safetensors"))
        except LocalEntryNotFoundError:  # the Hub can't be reached: another file of it may be cached
            folder = Path(snapshot_download(repo, local_files_only=True))
            names = [p.name for p in folder.iterdir() if p.is_file()]
        except EntryNotFoundError:  # the repository names its weights otherwise
            names = list_repo_files(repo)
        name = _pick_name(names)
        if name is not None:
            return folder / name if folder is not None else Path(hf_hub_download(repo, name))
    except Exception as err:  # the Hub raises many kinds (offline, connection, not found): one line
        raise hub_error(repo, err, label) from err
    raise FramereelError(f"{label} {repo}: that Hub repository holds no .safetensors or .bin LoRA weights")


def check_lora_file(path: Path, lora: Lora, label: str = "--lora") -> None:
    """``path`` must be a safetensors (or PyTorch) file of LoRA layers; else one line saying what it is."""
    fix = "pass a LoRA .safetensors file (as diffusers' save_lora_weights or kohya's scripts write it)"
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                keys = list(f.keys())
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
            keys = [str(k) for k in state] if isinstance(state, dict) else []
    except Exception as err:  # a text file, a damaged or foreign file: what it is not, not a traceback
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch weights"
        raise FramereelError(f"{label} {lora.source}: not a LoRA file ({path.name} can't be read as "
                             f"{kind}: {why}); {fix}") from err
    if not any(mark in k.lower() for k in keys for mark in LORA_KEY_MARKS):
        raise FramereelError(f"{label} {lora.source}: not a LoRA: none of its {len(keys)} tensors is a LoRA layer "
                             f"(lora_A/lora_B, lora_down/lora_up); a whole model goes in --model; {fix}")


def load_lora(pipe, lora: Lora, name: str, family_label: str, label: str = "--lora",
              path: Path | None = None) -> None:
    """Load one LoRA as the PEFT adapter ``name`` from its weights file ``path`` (found with
    :func:`weights_file` when not given); a LoRA made for another base model (its layers don't
    exist or have other shapes here) is a one-line error."""
    path = path or weights_file(lora, label)
    before = _adapter_names(pipe)
    try:
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
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


class LoraSet:
    """The LoRAs of one run on one pipeline: the run's (``--lora``, the storyboard defaults', an
    ``--fast`` LCM-LoRA), the frames' own, the adapters loaded (each LoRA once), the ones active
    now, and each LoRA's checked weights file and fingerprint (found once)."""

    def __init__(self, loras: tuple[Lora, ...], family_label: str, files: dict[str, Path] | None = None):
        self.run = loras
        self.family_label = family_label
        self.adapters: dict[str, str] = {}  # a loaded LoRA's source → its adapter name
        self.frame_loras: dict[str, tuple[Lora, str]] = {}  # frames' own LoRAs to load: source → (LoRA, label)
        self.active: tuple | None = None  # the adapters and weights set now
        self._files: dict[str, Path] = dict(files or {})  # a LoRA's source → its checked weights file
        self._fingerprints: dict[str, str] = {}

    # ---------------------------------------------------------- which LoRAs a frame renders with

    def for_frame(self, frame) -> list[Lora]:
        """The LoRAs and weights ``frame`` renders with: its own ``"lora"`` list in place of the run's
        (an LCM-LoRA of the run stays: it set the run's scheduler and steps), else the run's. A
        morph's in-betweens blend the weights of the key frames on either side (:func:`blend`)."""
        own = self._list(frame.lora)
        if frame.kind != "morph" or frame.lora == frame.morph_lora:
            return own
        return blend(own, self._list(frame.morph_lora), frame.morph[2])

    def _list(self, specs: tuple[tuple[str, float], ...] | None) -> list[Lora]:
        if specs is None:
            return list(self.run)
        return [lora for lora in self.run if lora.is_lcm] + [Lora(source, weight) for source, weight in specs]

    def frame_options(self, frame) -> dict:
        """A frame with its own LoRAs: them, by file contents and weights, in its hash (in place of
        the run's ``"lora"``; ``None`` for none, which hashes like a run without LoRAs)."""
        if frame.lora is None and (frame.kind != "morph" or frame.morph_lora is None):
            return {}
        label = f'frame {frame.index}: "lora"'
        return {"lora": [[self.fingerprint(lora, label), lora.weight] for lora in self.for_frame(frame)] or None}

    def fingerprint(self, lora: Lora, label: str) -> str:
        if lora.source not in self._fingerprints:
            self._fingerprints[lora.source] = fingerprint(lora, label)
        return self._fingerprints[lora.source]

    # ---------------------------------------------------------- checked before anything renders

    def check(self, frames) -> None:
        """The frames' own LoRAs (the run's were checked when the model was resolved): a missing
        file, a file that is not a LoRA or an LCM-LoRA (it sets the whole run's scheduler) is
        refused in one line naming the frame; the others are kept to load with the model (each once)."""
        for lora in self.run:
            self.file(lora, "--lora")  # found when the model was resolved
        for f in frames:
            for specs in (f.lora, f.morph_lora if f.kind == "morph" else None):
                for source, weight in specs or ():
                    lora, label = Lora(source, weight), f'frame {f.index}: "lora"'
                    if lora.is_lcm:
                        raise FramereelError(f"{label} {source}: an LCM-LoRA sets the scheduler and steps of the "
                                             'whole run; put it in the storyboard\'s "defaults" (or use --lora)')
                    self.file(lora, label)
                    self.frame_loras.setdefault(source, (lora, label))

    def file(self, lora: Lora, label: str) -> Path:
        """A LoRA's weights file, found (a Hub LoRA fetched) and checked once per run."""
        if lora.source not in self._files:
            self._files[lora.source] = weights_file(lora, label)
        return self._files[lora.source]

    # ---------------------------------------------------------- on the pipeline

    def load_all(self, pipe) -> None:
        """Load the run's and the frames' LoRAs into a freshly loaded ``pipe`` and activate the run's."""
        for lora in self.run:
            self.load(pipe, lora, "--lora")
        self.load_frames(pipe)
        self.active = None
        self.activate(pipe, list(self.run))

    def load_frames(self, pipe) -> None:
        for lora, label in self.frame_loras.values():
            self.load(pipe, lora, label)

    def load(self, pipe, lora: Lora, label: str) -> str:
        """Load a LoRA once, as its own PEFT adapter; returns the adapter's name."""
        if lora.source not in self.adapters:
            name = f"lora{len(self.adapters)}"
            load_lora(pipe, lora, name, self.family_label, label, self.file(lora, label))
            self.adapters[lora.source] = name
        return self.adapters[lora.source]

    def activate(self, pipe, loras: list[Lora]) -> bool:
        """Set the LoRAs (and weights) the next pipeline call renders with: ``set_adapters``, or
        ``disable_lora`` for none (the model exactly as it is without LoRAs). A frame's LoRA not
        loaded yet (a worker process) is loaded now. Returns True when prompt embeddings made with
        the LoRAs active before must be dropped (a LoRA touches a text encoder)."""
        names = [self.load(pipe, lora, '"lora"') for lora in loras]
        key = tuple(zip(names, (lora.weight for lora in loras), strict=True))
        if key == self.active:
            return False
        stale = False
        if self.adapters:
            if names:
                pipe.enable_lora()
                pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
            else:
                pipe.disable_lora()
            stale = self.active is not None and text_encoder_adapters(pipe)
        self.active = key
        return stale

    def unload(self) -> None:
        """The pipeline is gone: nothing is loaded or active."""
        self.adapters.clear()
        self.active = None


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

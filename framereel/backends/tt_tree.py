"""What a tt-metal checkout and this host offer the Tenstorrent backends, read without opening a chip.

* :func:`find_sd_demo`: where the SD 1.4 demo lives (tt-metal moved it from
  ``models/demos/wormhole/stable_diffusion`` to ``models/demos/vision/generative/stable_diffusion/wormhole``),
  the module prefix to import it by, the git commit, and what its ``test_demo`` is parametrized with
  (``input_path``, ``num_prompts``, ``num_inference_steps``, ``image_size``, ``device_params``).
* :func:`device_numbers`: ``l1_small_size`` / ``trace_region_size`` as the tree computes them for an
  architecture (its ``common.py`` constants, or the literal numbers of older demos), else stated fallbacks.
* :func:`chips`, :func:`chip_plan`: the chips ``tt-smi -s`` lists and which of them a single-chip
  worker can open: all of them, a remote chip (``n300 R``) through its board's PCIe chip, unless the
  tree's root conftest still refuses remote chips (older trees).
* :func:`open_params`: the tree's own ``get_updated_device_params`` (root ``conftest.py`` or
  ``tests/scripts/common.py``) for the dispatch-core config its demo was validated with.

Nothing here imports ``ttnn`` unless a caller passes it in.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FramereelError

# (folder inside TT_METAL_HOME, name for people); newest layout first
LAYOUTS = (
    ("models/demos/vision/generative/stable_diffusion/wormhole", "the current layout"),
    ("models/demos/wormhole/stable_diffusion", "the older layout"),
)
WORMHOLE, BLACKHOLE = "wormhole_b0", "blackhole"
# used only when the tree's own numbers can't be read; the newest common.py values we checked
FALLBACK_PARAMS = {
    WORMHOLE: {"l1_small_size": 20928, "trace_region_size": 789835776},
    BLACKHOLE: {"l1_small_size": 21760, "trace_region_size": 920000000},
}
BLACKHOLE_BOARDS = ("p100", "p150", "p300", "tt-galaxy-bh", "bh-")


# ------------------------------------------------------------------ the SD demo in a tree


@dataclass(frozen=True)
class SdDemo:
    """tt-metal's SD 1.4 demo as found in one checkout."""

    home: Path
    folder: str  # relative to home, e.g. models/demos/wormhole/stable_diffusion
    layout: str
    commit: str
    params: dict[str, ast.expr] = field(default_factory=dict, compare=False, repr=False)  # test_demo's parametrize
    body: dict[str, Any] = field(default_factory=dict, compare=False)  # seed and guidance read from the demo

    @property
    def prefix(self) -> str:
        """The module prefix the tree's own imports use."""
        return self.folder.replace("/", ".")

    @property
    def demo_py(self) -> Path:
        return self.home / self.folder / "demo" / "demo.py"

    @property
    def test_node(self) -> str:
        return f"{self.home / self.folder / 'demo' / 'demo.py'}::test_demo"

    @property
    def traced(self) -> bool:
        """Trace-era trees have ``compile_trace_sd`` in ``sd_helper_funcs.py`` (older ones loop on the host)."""
        helper = self.home / self.folder / "sd_helper_funcs.py"
        return helper.is_file() and "def compile_trace_sd(" in helper.read_text(errors="replace")

    def value(self, name: str, names: dict[str, Any] | None = None) -> Any:
        """The first value ``test_demo`` is parametrized with for ``name``; None when absent or unreadable."""
        node = self.params.get(name)
        if node is None:
            return None
        try:
            return evaluate(node, names or {})
        except (ValueError, TypeError):
            return None

    @property
    def input_path(self) -> str:
        path = self.value("input_path")
        if not isinstance(path, str) or not path:
            raise FramereelError(
                f"{self.demo_py}: test_demo has no input_path parametrize that framereel can read, so it can't "
                "hand the demo its prompts; use --backend tt")
        if Path(path).is_absolute():
            raise FramereelError(f"{self.demo_py}: input_path {path!r} is absolute; framereel needs the demo's relative path")
        return path

    @property
    def num_prompts(self) -> int:
        n = self.value("num_prompts")
        return n if isinstance(n, int) and n > 0 else 10

    @property
    def steps(self) -> int | None:
        n = self.value("num_inference_steps")
        return n if isinstance(n, int) else None

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width), as ``run_demo_inference`` unpacks it (``height, width = image_size``)."""
        size = self.value("image_size")
        return (int(size[0]), int(size[1])) if isinstance(size, (tuple, list)) and len(size) == 2 else (512, 512)

    def describe(self) -> str:
        return f"{self.folder} ({self.layout}), tt-metal {self.commit}"


def find_sd_demo(home: Path) -> SdDemo:
    """The SD 1.4 demo in either layout, checked to be there; FramereelError naming both places if not."""
    for folder, layout in LAYOUTS:
        demo = home / folder / "demo" / "demo.py"
        if demo.is_file():
            params, body = _parse_demo(demo)
            return SdDemo(home, folder, layout, git_commit(home), params, body)
    raise FramereelError(
        f"TT_METAL_HOME={home} is not a tt-metal tree with the Stable Diffusion 1.4 demo (looked for "
        + " and ".join(f"{f}/demo/demo.py" for f, _ in LAYOUTS) + "); point it at your tt-metal checkout")


def _parse_demo(demo: Path) -> tuple[dict[str, ast.expr], dict[str, Any]]:
    """``test_demo``'s ``@pytest.mark.parametrize(name, values)`` first values (as AST), and the fixed
    seed and guidance that ``run_demo_inference`` sets."""
    try:
        tree = ast.parse(demo.read_text(errors="replace"))
    except SyntaxError as err:
        raise FramereelError(f"{demo} does not parse as Python ({err.msg}, line {err.lineno})") from None
    params: dict[str, ast.expr] = {}
    body: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "test_demo":
            for deco in node.decorator_list:
                if (isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("parametrize") and len(deco.args) >= 2
                        and isinstance(deco.args[0], ast.Constant) and isinstance(deco.args[0].value, str)
                        and isinstance(deco.args[1], (ast.List, ast.Tuple)) and deco.args[1].elts):
                    params[deco.args[0].value.strip()] = deco.args[1].elts[0]
        if isinstance(node, ast.FunctionDef) and node.name == "run_demo_inference":
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Assign) and len(sub.targets) == 1 and isinstance(sub.targets[0], ast.Name)
                        and sub.targets[0].id == "guidance_scale" and isinstance(sub.value, ast.Constant)):
                    body["guidance"] = sub.value.value
                if (isinstance(sub, ast.Call) and ast.unparse(sub.func).endswith("manual_seed") and sub.args
                        and isinstance(sub.args[0], ast.Constant)):
                    body["seed"] = sub.args[0].value
    return params, body


# ------------------------------------------------------------------ numbers the tree computes


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.FloorDiv: lambda a, b: a // b, ast.Pow: lambda a, b: a ** b}
_ARCH_TESTS = {"is_blackhole": BLACKHOLE, "is_wormhole_b0": WORMHOLE}


def evaluate(node: ast.expr, names: dict[str, Any]) -> Any:
    """The value of a constant expression from tt-metal's source: numbers, strings, tuples, lists,
    dicts, arithmetic, names in ``names``, and ``A if is_blackhole() else B`` (``names["__arch__"]``).
    Raises ValueError on anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(evaluate(e, names) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {evaluate(k, names): evaluate(v, names) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](evaluate(node.left, names), evaluate(node.right, names))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -evaluate(node.operand, names)
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.IfExp) and isinstance(node.test, ast.Call):
        test = ast.unparse(node.test.func).rsplit(".", 1)[-1]
        if test in _ARCH_TESTS and names.get("__arch__"):
            return evaluate(node.body if names["__arch__"] == _ARCH_TESTS[test] else node.orelse, names)
    raise ValueError(ast.unparse(node))


def common_constants(demo: SdDemo, arch: str) -> dict[str, Any]:
    """The constants of the SD folder's ``common.py`` as it computes them on ``arch`` ({} when absent)."""
    path = demo.home / demo.folder / "common.py"
    if not path.is_file():
        return {}
    names: dict[str, Any] = {"__arch__": arch}
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except SyntaxError:
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                names[node.targets[0].id] = evaluate(node.value, names)
            except (ValueError, TypeError):
                continue
    names.pop("__arch__")
    return names


@dataclass(frozen=True)
class DeviceNumbers:
    params: dict[str, int]
    source: str  # where the numbers came from, for run.json and doctor
    fallback: bool = False


def device_numbers(demo: SdDemo, arch: str) -> DeviceNumbers:
    """``l1_small_size`` and ``trace_region_size`` for ``arch``: what the demo's ``device_params``
    parametrize evaluates to (with ``common.py``'s constants), else ``common.py``'s
    ``SD_L1_SMALL_SIZE`` / ``SD_TRACE_REGION_SIZE``, else the stated fallback for the architecture."""
    consts = common_constants(demo, arch)
    where = f"{demo.folder}/demo/demo.py test_demo device_params"
    value = demo.value("device_params", {"__arch__": arch, **consts})
    if isinstance(value, dict) and {"l1_small_size", "trace_region_size"} <= value.keys():
        used = [n for n in ("SD_L1_SMALL_SIZE", "SD_TRACE_REGION_SIZE") if n in ast.unparse(demo.params["device_params"])]
        source = where + (f" ({', '.join(used)} from common.py, {arch})" if used else "")
        return DeviceNumbers({k: int(value[k]) for k in ("l1_small_size", "trace_region_size")}, source)
    if {"SD_L1_SMALL_SIZE", "SD_TRACE_REGION_SIZE"} <= consts.keys():
        return DeviceNumbers({"l1_small_size": int(consts["SD_L1_SMALL_SIZE"]),
                              "trace_region_size": int(consts["SD_TRACE_REGION_SIZE"])},
                             f"{demo.folder}/common.py ({arch})")
    return DeviceNumbers(dict(FALLBACK_PARAMS[arch]),
                         f"framereel's fallback for {arch}: the tree's demo.py/common.py give no readable "
                         "l1_small_size and trace_region_size", fallback=True)


def git_commit(home: Path) -> str:
    """The checkout's commit (12 hex digits) from its .git files, or "unknown"."""
    git = home / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: …"
            git = (home / git.read_text().split(":", 1)[1].strip()).resolve()
        common = git / "commondir"
        common_dir = (git / common.read_text().strip()).resolve() if common.is_file() else git
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        for base in (git, common_dir):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()[:12]
        packed = common_dir / "packed-refs"
        for line in packed.read_text().splitlines() if packed.is_file() else []:
            sha, _, name = line.partition(" ")
            if name.strip() == ref:
                return sha[:12]
    except OSError:
        pass
    return "unknown"


# ------------------------------------------------------------------ chips on this host


@dataclass(frozen=True)
class Chip:
    index: int  # position in `tt-smi -s`
    board_type: str  # e.g. "n300 L", "n300 R", "p150a"
    bus_id: str | None  # PCI BDF; "N/A" for a remote chip

    @property
    def local(self) -> bool:
        """An MMIO chip: tt-metal can open it alone."""
        return not self.board_type.endswith(" R") and self.bus_id != "N/A"

    @property
    def arch(self) -> str:
        return BLACKHOLE if self.board_type.lower().startswith(BLACKHOLE_BOARDS) else WORMHOLE


def chips() -> list[Chip]:
    """The chips `tt-smi -s` lists (JSON on stdout when it is not a terminal); [] when tt-smi is missing or fails."""
    smi = shutil.which("tt-smi")
    if not smi:
        return []
    try:
        proc = subprocess.run([smi, "-s"], capture_output=True, text=True, timeout=60)
        data = json.loads(proc.stdout[proc.stdout.find("{"):])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    out = []
    for i, dev in enumerate(data.get("device_info") or []):
        info = dev.get("board_info") or {}
        out.append(Chip(i, str(info.get("board_type", "unknown")), info.get("bus_id")))
    return out


NON_MMIO_ASSERT = "CreateDevice not supported for non-mmio device"  # older root conftests' device fixture


def remote_chips_open(home: Path | None) -> bool:
    """Whether a remote chip (an N300's R chip, a T3K's four remote ones) can be opened on its own: older
    tt-metal trees refuse it in their root conftest's ``device`` fixture (``assert device_id <
    num_devices, "CreateDevice not supported for non-mmio device"``); newer ones dropped the assert."""
    conftest = home / "conftest.py" if home else None
    return not (conftest and conftest.is_file() and NON_MMIO_ASSERT in conftest.read_text(errors="replace"))


@dataclass(frozen=True)
class ChipPlan:
    chips: list[Chip]
    usable: list[str]  # tt:N for each chip a worker can open, N its ttnn device id (PCIe chips first)
    remote_ok: bool = True

    @property
    def arch(self) -> str | None:
        return self.chips[0].arch if self.chips else None

    @property
    def pcie(self) -> int:
        return sum(1 for c in self.chips if c.local)

    @property
    def boards(self) -> str:
        counts: dict[str, int] = {}
        for c in self.chips:
            counts[c.board_type] = counts.get(c.board_type, 0) + 1
        return ", ".join(f"{n}× {t}" for t, n in counts.items())

    def placement(self, n: int) -> tuple[int, int]:
        """Where worker chip ``tt:N`` is: (the PCIe chip of its board, to make visible; the device id to
        open among the chips that makes visible: 0 the PCIe chip itself, 1 its remote chip)."""
        return (n, 0) if n < self.pcie else (n - self.pcie, 1)

    def reason(self) -> str:
        if not self.chips:
            return "tt-smi lists no chip"
        text = f"{len(self.usable)} of {len(self.chips)} chip(s) usable by single-chip workers ({self.boards})"
        if len(self.usable) < len(self.chips):
            text += (f"; this tt-metal tree's root conftest refuses a remote chip ({NON_MMIO_ASSERT}), so only "
                     "PCIe chips are used; a newer tt-metal opens them all")
        return text


def chip_plan(found: list[Chip] | None = None, remote_ok: bool | None = None) -> ChipPlan:
    """The chips and which of them single-chip workers use (all, unless the tree at ``TT_METAL_HOME`` refuses remote ones)."""
    found = chips() if found is None else found
    if remote_ok is None:
        home = os.environ.get("TT_METAL_HOME")
        remote_ok = remote_chips_open(Path(home).expanduser() if home else None)
    count = len(found) if remote_ok else sum(1 for c in found if c.local)
    return ChipPlan(found, [f"tt:{n}" for n in range(count)], remote_ok)


def check_chips(devices: list[str], plan: ChipPlan | None = None) -> None:
    """Refuse a ``tt:N`` no worker can open (checked only when tt-smi lists chips)."""
    plan = plan or chip_plan()
    if not plan.chips:
        return
    for d in devices:
        if d.startswith("tt:") and d not in plan.usable:
            raise FramereelError(
                f"{d} can't be opened: {plan.reason()}; use {', '.join(plan.usable) or 'no tt chip'}"
                + (" (or --devices all)" if len(plan.usable) > 1 else ""))


# ------------------------------------------------------------------ device-open parameters


def open_params(home: Path, numbers: dict[str, int], arch: str) -> tuple[dict[str, Any], str]:
    """``numbers`` plus the dispatch-core config through the tree's own ``get_updated_device_params``
    (its root ``conftest.py``'s, else ``tests/scripts/common.py``'s), as its device fixture does.
    Some versions of that helper read ``ARCH_NAME`` (which tt-metal's older setup exported); it is
    set to ``arch`` for the call when unset. Returns the keyword arguments for ``ttnn.open_device``
    and what was used."""
    tried = []
    unset = "ARCH_NAME" not in os.environ
    if unset:
        os.environ["ARCH_NAME"] = arch
    try:
        return _open_params(home, numbers, tried)
    finally:
        if unset:
            os.environ.pop("ARCH_NAME", None)


def _open_params(home: Path, numbers: dict[str, int], tried: list[str]) -> tuple[dict[str, Any], str]:
    for label, load in (("conftest.py", lambda: _load_file(f"_framereel_tt_metal_conftest_{abs(hash(str(home)))}", home / "conftest.py")),
                        ("tests/scripts/common.py", lambda: importlib.import_module("tests.scripts.common"))):
        try:
            helper = load().get_updated_device_params
        except Exception as err:  # a tree's module may fail to import for reasons of its own
            tried.append(f"{label}: {type(err).__name__}")
            continue
        try:
            params = helper(dict(numbers))
        except Exception as err:  # noqa: BLE001 - e.g. an older helper reading ARCH_NAME
            tried.append(f"{label}'s get_updated_device_params failed: {type(err).__name__}: {err}".splitlines()[0])
            continue
        return dict(params), f"tt-metal's get_updated_device_params ({label})"
    return dict(numbers), "ttnn's default dispatch cores (" + "; ".join(tried or ["no helper found"]) + ")"


def _load_file(name: str, path: Path):
    if not path.is_file():
        raise FileNotFoundError(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def describe_params(params: dict[str, Any]) -> dict[str, str]:
    """Device-open parameters as strings (a DispatchCoreConfig as its repr), for run.json and reports."""
    return {k: (str(v) if isinstance(v, (int, float, str)) else repr(v)) for k, v in params.items()}


def pytest_timeout_present() -> bool:
    return importlib.util.find_spec("pytest_timeout") is not None



WORKER_NOTE = ("--devices all runs one process per chip, each restricted to its board with TT_VISIBLE_DEVICES and "
               "TT_METAL_VISIBLE_DEVICES and given its own TT_METAL_CACHE, as tt-inference-server does")

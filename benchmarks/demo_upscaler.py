"""Train a tiny x4 upscaler for the demo model's scenes and make the README's before/after still.

    make demo && python benchmarks/demo_upscaler.py --frames out/demo/frames [--frame 16] [--steps 400]

No super-resolution weights can be downloaded here, so this trains Real-ESRGAN's compact
architecture (SRVGGNetCompact, 24 features, 6 convolutions: 42 k parameters) for 400 steps
on the CPU, on the procedurally drawn 64×64 scenes the demo model was trained on (targets)
and their 16×16 bicubic reductions (inputs). The model is saved as an ordinary ``.pth`` that
``--upscale`` loads through spandrel like any Real-ESRGAN file, and runs through the same
``framereel.finishing.upscale`` code on one rendered frame: the still shows the 64×64 frame as
rendered, ffmpeg-style lanczos ×4 (what ``stitch`` does without ``--upscale``) and the model ×4.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def training_pairs(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    from framereel.demo_model.scenes import draw_scene, random_scene

    rng = random.Random(seed)
    hr = [np.asarray(draw_scene(random_scene(rng)), dtype=np.float32) / 255.0 for _ in range(count)]
    lr = [np.asarray(Image.fromarray((h * 255).astype(np.uint8)).resize((16, 16), Image.Resampling.BICUBIC),
                     dtype=np.float32) / 255.0 for h in hr]
    to = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to(lr), to(hr)


def train(path: Path, steps: int, log=print) -> Path:
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact

    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=24, num_conv=6, upscale=4, act_type="prelu")
    lr, hr = training_pairs(3000)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(lr), (16,))
        loss = (net(lr[idx]) - hr[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step}: L1 {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    torch.save(net.state_dict(), path)
    return path


def still(frame: Path, model: Path, target: Path) -> Path:
    from framereel.finishing.upscale import UpscaleSpec, load_upscaler, upscale_image

    upscaler, device, dtype = load_upscaler(model, "cpu")
    with Image.open(frame) as im:
        src = im.convert("RGB")
    w, h = src.width * 4, src.height * 4
    panels = [("frame (64x64, nearest x4)", src.resize((w, h), Image.Resampling.NEAREST)),
              ("lanczos x4", src.resize((w, h), Image.Resampling.LANCZOS)),
              ("--upscale x4 (tiny trained model)", upscale_image(upscaler, src, UpscaleSpec(model, None, 32, 8), device, dtype))]
    sheet = Image.new("RGB", (3 * w + 16, h + 22), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (caption, img) in enumerate(panels):
        sheet.paste(img, (k * (w + 8), 22))
        draw.text((k * (w + 8) + 4, 5), caption, fill="black")
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, optimize=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=Path, required=True, help="a frames/ folder rendered with --model demo")
    parser.add_argument("--frame", type=int, default=16, help="16: the red triangle of examples/demo.json")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--model-out", type=Path, default=None, help="keep the trained .pth here")
    parser.add_argument("--still", type=Path, default=Path(__file__).parent / "results" / "upscale-before-after.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = train(args.model_out or Path(tmp) / "demo-x4.pth", args.steps)
        print(still(args.frames / f"frame_{args.frame:03d}.png", model, args.still))


if __name__ == "__main__":
    main()

"""Stream batching (frames at staggered steps in one UNet call) and ``framereel live``."""

import pytest

from framereel.bench import psnr
from framereel.storyboard import Frame

STREAM_PSNR_DB = 40.0  # a streamed frame vs the same frame denoised alone (README "Speed")


@pytest.fixture(scope="module")
def tiny_backend(tiny_model):
    from framereel import RenderSettings
    from framereel.backends import create_backend

    backend = create_backend(RenderSettings(model=str(tiny_model), backend="diffusers", device="cpu",
                                            dtype="float32", batch=1))
    backend.load()
    return backend


def key(i, prompt="a lighthouse", steps=3, guidance=7.5):
    return Frame(i, f"{prompt}, shot {i}", None, 100 + i, steps, guidance, 64, 64)


@pytest.mark.parametrize("guidance", [7.5, 0.0])
def test_streamed_frames_equal_the_frames_denoised_alone(tiny_backend, guidance):
    """Four frames pushed through a 3-step stream (each UNet call holds frames at steps 0, 1 and 2)
    come out in order and look like each frame denoised with nothing beside it."""
    import numpy as np

    from framereel.backends.stream import denoise_alone

    frames = [key(i, guidance=guidance) for i in range(4)]
    stream = tiny_backend.open_stream(frames[0])
    out = []
    for f in frames:
        out += stream.push(*tiny_backend.stream_inputs(f), tag=f.index)
        assert len(stream.slots) == stream.steps - 1  # every call had all `steps` rows: one finished
    assert [tag for tag, _ in out] == [0, 1]  # the pipe filled over the first 2 pushes
    out += stream.flush()
    assert [tag for tag, _ in out] == [0, 1, 2, 3]
    for f, (_, image) in zip(frames, out):
        alone = denoise_alone(stream, *tiny_backend.stream_inputs(f))
        assert psnr(np.asarray(image), np.asarray(alone)) > STREAM_PSNR_DB
    assert psnr(np.asarray(out[0][1]), np.asarray(out[1][1])) < 30  # other seeds: other pictures


def test_a_morph_streams_between_its_two_prompts(tiny_backend):
    import numpy as np

    a, b = key(0, "a red circle"), key(1, "a blue square")
    between = Frame(0, a.prompt, None, a.seed, 3, 7.5, 64, 64, kind="morph", morph=(0, 1, 0.5),
                    morph_prompt=b.prompt, morph_seed=b.seed)
    stream = tiny_backend.open_stream(a)
    images = [image for f in (a, between, b) for _, image in stream.push(*tiny_backend.stream_inputs(f), tag=f)]
    images += [image for _, image in stream.flush()]
    ends = (np.asarray(images[0]), np.asarray(images[2]))
    middle = np.asarray(images[1])
    assert psnr(middle, ends[0]) < 60 and psnr(middle, ends[1]) < 60 and len(images) == 3

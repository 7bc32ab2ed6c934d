"""Stream batching (frames at staggered steps in one UNet call) and ``framereel live``."""

import pytest
from browser import browser  # noqa: F401  (a fixture)

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


# ---------------------------------------------------------------- `framereel live`: HTTP and the page

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from test_studio import Studio

    out = tmp_path_factory.mktemp("live") / "out"
    server = Studio(out, "--steps", "2", command="live")
    server.out = out
    yield server
    server.stop()


def frames_from(http, count):
    """The first ``count`` frame events of a fresh event stream (a generous limit: the machine may be busy)."""
    import json

    got, kind = [], ""
    with http.stream("GET", "/api/events", timeout=120) as events:
        for line in events.iter_lines():
            kind = line[7:] if line.startswith("event: ") else kind
            if line.startswith("data: ") and kind == "frame":
                got.append(json.loads(line[6:]))
                if len(got) == count:
                    return got
    raise AssertionError("the event stream ended")


def test_live_over_http_streams_frames_refuses_mistakes_and_keeps_a_stretch(live):
    import json

    import httpx

    with httpx.Client(base_url=live.base, timeout=60) as http:
        assert http.post("/api/keep", json={"what": "frame"}).json()["error"].startswith("nothing to keep yet")
        for body, message in (({"t": 2}, "the morph slider goes from 0"), ({"seed": -1}, "seed: give a whole number"),
                              ({"prompt": 5}, "prompt: give text")):
            r = http.post("/api/request", json=body)
            assert r.status_code == 400 and message in r.json()["error"]
        assert http.post("/api/request", json={"prompt": "x"}, headers={"origin": "http://evil.example"}).status_code == 403
        assert http.get("/api/state", headers={"host": "evil.example"}).status_code == 403
        assert http.post("/api/request", json={"prompt": "a red circle on a day sky", "seed": 7}).status_code == 200
        frames = frames_from(http, 3)
        assert [f["n"] for f in frames] == sorted(f["n"] for f in frames) and frames[-1]["fps"] > 0
        assert frames[0]["image"].startswith("data:image/jpeg;base64,") and frames[0]["seed"] == 7
        assert http.get("/api/state").json()["streamed"] is True  # the demo model stream-batches
        http.post("/api/request", json={"prompt_b": "a yellow star at night", "t": 0.5})
        assert any(f["t"] == 0.5 for f in frames_from(http, 6))
        r = http.post("/api/keep", json={"what": "frame"})
        assert r.status_code == 400 and "keep the stretch" in r.json()["error"]
        assert http.post("/api/keep", json={"what": "stretch", "morph": 6}).json() == {"kept": 2}
    kept = json.loads((live.out / "storyboard.json").read_text())["frames"]
    assert [(k["prompt"], k["seed"], k.get("morph")) for k in kept] == [
        ("a red circle on a day sky", 7, 6), ("a yellow star at night", 7, None)]


def test_live_page_shows_frames_and_frames_per_second_as_you_type(live, browser, tmp_path):  # noqa: F811
    from browser import Page, wait_until

    view = Page(browser)
    page = view.page
    page.goto(live.url)
    page.locator("body[data-ready]").wait_for()
    page.fill("#prompt", "a white triangle at sunset")
    wait_until(page, "() => document.querySelector('#frame').dataset.n > 3 && "
                     "document.querySelector('#shown').textContent.startsWith('a white triangle')", timeout=120)
    assert page.locator("#fps").inner_text().endswith("frames/s") and page.locator("#fps").inner_text()[0].isdigit()
    page.fill("#promptb", "a blue square")
    page.locator("#t").fill("0.25")
    wait_until(page, "() => document.querySelector('#shown').textContent.includes('→ a blue square at 0.25')",
               timeout=120)
    page.click("#keep")
    wait_until(page, "() => document.querySelector('#error').textContent.includes('keep the stretch')")
    view.screenshot(tmp_path / "live.png", "live.png")
    assert view.errors == [] and view.dialogs == []
    view.close()


def test_live_refuses_a_bad_port_in_one_line(tmp_path):
    from conftest import cli

    proc = cli("live", "-o", tmp_path / "out", "--model", "demo", "--port", "70000")
    assert proc.returncode == 2 and "--port 70000: give a port from 1 to 65535" in proc.stderr

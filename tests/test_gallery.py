"""out/index.html: written by make/frames/stitch and `framereel gallery`, opened from file:// in a real browser."""

import json
import os

import pytest
from browser import Page, browser, wait_until  # noqa: F401  (browser is a fixture)
from conftest import probe_video, run_cli, write_storyboard

XSS = "<img src=x onerror=alert(1)>"
FIRST = [{"prompt": "a red circle on a day sky"}, {"prompt": "a blue square on grass"}, {"prompt": XSS}]
# the same file grown to 6 frames: entry 1 morphs into the next (frames 2, 3), the XSS entry moves to frame 4
SECOND = [{"prompt": "a red circle on a day sky"}, {"prompt": "a blue square on grass", "morph": 2},
          {"prompt": XSS, "duration": 1.5}, {"prompt": "a yellow star at night"}]
FPS = 2
SECONDS = 5 * (1 / FPS) + 1.5  # five frames at 1/fps, one held 1.5 s


def make(board, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return run_cli("make", board, "-o", out, "--model", "demo", "--fps", FPS, "-q", *extra, check=True, env=env)


def run_js(out):
    text = (out / "run.js").read_text()
    assert text.startswith("framereelRun(") and text.rstrip().endswith(");")
    return json.loads(text.strip()[len("framereelRun("):-2])


def test_gallery_follows_a_run_from_file_url(tmp_path, browser):  # noqa: F811
    board, out = write_storyboard(tmp_path / "board.json", FIRST), tmp_path / "out"
    make(board, out)
    assert (out / "index.html").exists() and len(run_js(out)["frames"]) == 3
    view = Page(browser)
    page = view.page
    page.goto((out / "index.html").as_uri())
    page.locator(".card").nth(2).wait_for()
    assert page.locator(".card").count() == 3
    page.evaluate("window.__sameDocument = true")

    # the run grows while the page stays open: it follows run.js without being reloaded
    write_storyboard(board, SECOND)
    make(board, out)
    wait_until(page, "() => document.querySelectorAll('.card').length === 6", timeout=20)
    assert page.evaluate("window.__sameDocument") is True

    cards = page.locator(".card")
    prompts = [cards.nth(i).locator(".prompt").inner_text() for i in range(6)]
    assert prompts == ["a red circle on a day sky", "a blue square on grass", "a blue square on grass",
                       "a blue square on grass", XSS, "a yellow star at night"]
    # every frame is drawn, with its index, kind, seed and steps
    wait_until(page, "() => [...document.querySelectorAll('.card .thumb img')].every(i => i.complete && i.naturalWidth === 64)")
    assert [cards.nth(i).locator(".badge").inner_text().lower() for i in range(6)] == \
        ["key", "key", "morph", "morph", "key", "key"]
    assert "seed 174" in cards.nth(0).inner_text() and "15 steps" in cards.nth(0).inner_text()
    assert cards.nth(2).locator(".from a").all_inner_texts() == ["#1", "#4"]

    # the untrusted prompt is text: no element came from it and no script ran
    assert page.evaluate("document.querySelectorAll('img[src=x], img[src=\"x\"]').length") == 0
    assert view.dialogs == [] and view.errors == []

    # the video at the top is the run's, and lasts as long as the storyboard says
    # (the page may still show the first run's video for a moment: it swaps it when run.js says so)
    duration = wait_until(page, "(s) => { const v = document.querySelector('video'); "
                                "return v && v.readyState >= 1 && Math.abs(v.duration - s) < 0.1 && v.duration; }", SECONDS)
    assert duration == pytest.approx(SECONDS, abs=0.1)
    assert probe_video(out / "video.mp4")["seconds"] == pytest.approx(SECONDS, abs=0.1)
    # the timeline bar: one segment per frame, widths in proportion to time on screen
    widths = page.evaluate("[...document.querySelectorAll('.seg[data-index]')].map(s => s.getBoundingClientRect().width)")
    assert len(widths) == 6 and widths[4] == pytest.approx(3 * widths[0], rel=0.05)
    view.screenshot(tmp_path / "gallery.png", "gallery.png", full_page=False)

    # a frame opens full size with every parameter
    cards.nth(4).locator(".thumb").click()
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    assert XSS in dialog.locator(".fullprompt").inner_text()
    assert "seed" in dialog.inner_text() and "1.5 s" in dialog.inner_text()
    page.locator("dialog[open] .close").click()
    cards.nth(2).locator(".thumb").click()
    versions = page.locator("dialog[open] .versions figure")
    assert versions.count() == 2  # frame 2 was the XSS frame before the morph moved it: superseded, then current
    assert XSS in versions.nth(0).inner_text()
    assert page.evaluate("getComputedStyle(document.querySelector('dialog[open] .view img')).imageRendering") == "pixelated"
    view.screenshot(tmp_path / "gallery-frame.png")
    # "copy as storyboard entry" gives an entry that renders this frame again
    view.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("dialog[open] #copy").click()
    copied = json.loads(page.evaluate("navigator.clipboard.readText()"))
    assert copied["prompt"] == "a blue square on grass" and copied["seed"] == 175 and copied["steps"] == 15
    assert view.dialogs == [] and view.errors == []
    view.close()


def test_gallery_command_and_page_safety(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    proc = run_cli("gallery", out)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no run here" in proc.stderr
    # the page allows its own script and run.js only: no inline handler can run even if markup got in
    from framereel.gallery import page_html, script_json

    html = page_html()
    assert "script-src 'self' 'sha256-" in html and "unsafe-inline' " not in html.split("script-src")[1].split(";")[0]
    # the legend names every kind of frame the cards show
    legend = html.split('class="legend"')[1].split("</div>")[0]
    assert [k for k in ("key", "morph", "chain", "clip") if f'>{k}</span>' in legend] == ["key", "morph", "chain", "clip"]
    assert "</script>" not in script_json({"prompt": "</script><script>alert(1)</script>"})


# a key frame morphing into the next, a chain with motion and colour match, a clip with travel and its
# own context settings, then a clip group (two entries, one clip) and a key frame after it
EVERY_KIND = {"defaults": {"steps": 3, "width": 64, "height": 64}, "frames": [
    {"prompt": "a red circle on a day sky", "morph": 2, "guidance": 3.5},
    {"prompt": "a blue square on grass", "negative_prompt": "blurry", "duration": 0.5},
    {"prompt": "the square, closer", "init": "previous", "strength": "0:(0.4), 5:(0.6)",
     "motion": {"zoom": 1.05, "angle": "0:(2*t)", "tx": 1, "ty": 0}, "color_match": "first-lab"},
    {"prompt": "a day sky", "clip": 6, "travel": [{"at": 3, "prompt": "a night sky"}], "context_length": 4,
     "context_stride": 2, "seed": 9},
    {"prompt": "a boat leaving port", "clip": 3, "clip_group": "boat"},
    {"prompt": "a boat on the open sea", "clip": 2, "clip_group": "boat"},
    {"prompt": "a yellow star at night"},
]}


def test_copied_entries_render_the_same_frames(tmp_path):
    """Every frame's "copy as storyboard entry" (the entry the page embeds in run.js) gives, pasted
    back in place of the entries, a storyboard whose frames have the same identity, hash included:
    clips keep clip/travel/context, chains init/strength/motion/colour match, morphs their morph."""
    from framereel.backends.base import ModelInfo
    from framereel.gallery import gallery_data
    from framereel.identity import RunIdentity
    from framereel.loader import load_storyboard
    from framereel.settings import RenderSettings

    identity = RunIdentity(RenderSettings(model="demo"), ModelInfo("demo", "f00d", 64, 64), "diffusers", "float32")
    frames = load_storyboard(write_storyboard(tmp_path / "board.json", EVERY_KIND)).resolved().frames
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"frames": [identity.record(f, str(f.index)) for f in frames]}))

    data = gallery_data(out)["frames"]
    assert [f["kind"] for f in data] == ["key", "morph", "morph", "key", "chain", *["clip"] * 11, "key"]
    assert data[1]["entry"] == data[0]["entry"] and data[0]["entry"]["morph"] == 2  # an in-between: its key's entry
    assert data[4]["entry"]["init"] == "previous" and data[4]["entry"]["motion"]["zoom"] == 1.05
    assert data[5]["entry"]["travel"] == [{"at": 3, "prompt": "a night sky"}] and data[5]["entry"]["clip"] == 6
    starts = [f["entry"] for f in data if f["kind"] not in ("morph", "clip") or
              (f["kind"] == "clip" and f["params"]["clip_pos"] == 0)]
    pasted = load_storyboard(write_storyboard(tmp_path / "pasted.json", starts)).resolved().frames
    assert len(pasted) == len(frames)
    for a, b in zip(frames, pasted):
        assert identity.params(b) == identity.params(a), f"frame {a.index} ({a.kind})"
        assert b.duration == a.duration

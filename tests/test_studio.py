"""`framereel studio`: the real command in a subprocess, driven by a real browser and by plain HTTP."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from browser import Page, browser, wait_until  # noqa: F401  (browser is a fixture)

XSS = "<img src=x onerror=alert(1)>"
PROMPTS = ["a red circle on a day sky", "a yellow star at night", "a white triangle at sunset"]


class Studio:
    """``framereel studio`` (or ``command``: ``live``) running in a subprocess; ``url`` is what it printed."""

    def __init__(self, out, *args, command="studio"):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        banner = f"framereel {command}: http"
        self.proc = subprocess.Popen([sys.executable, "-m", "framereel", command, "-o", str(out), "--model", "demo",
                                      "--port", "0", *args], stderr=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                if banner in line:
                    found.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not found.wait(180):
            self.stop()
            raise AssertionError("the studio did not start:\n" + "".join(self.lines))
        self.url = re.search(r"(http://\S+)", next(ln for ln in self.lines if banner in ln))[1]
        self.base = self.url.split("?")[0].rstrip("/")

    def stop(self, sig=signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(5)  # every line it printed is in self.lines
        return rc


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    out = tmp_path_factory.mktemp("studio") / "out"
    s = Studio(out)
    s.out = out
    yield s
    s.stop()


SAME_BOARD = ("o => JSON.stringify([...document.querySelectorAll('#board .entry textarea')].map(t => t.value))"
              " === JSON.stringify(o)")


def board_prompts(page):
    return page.evaluate("[...document.querySelectorAll('#board .entry textarea')].map(t => t.value)")


def test_studio_prompt_keep_reorder_render_and_reload(studio, browser, tmp_path):  # noqa: F811
    view = Page(browser, viewport={"width": 1360, "height": 940})
    page = view.page
    page.goto(studio.url)
    page.locator("body[data-ready]").wait_for()

    # typing a prompt shows its image; three prompts typed quickly queue behind one another
    for prompt in PROMPTS:
        page.fill("#prompt", prompt)
        page.press("#prompt", "Enter")
    wait_until(page, "() => document.querySelectorAll('.icard[data-name]').length === 3", timeout=90)
    cards = page.locator(".icard[data-name]")
    assert cards.locator(".ibody p").all_inner_texts() == PROMPTS[::-1]  # newest first
    assert ["seed 176", "seed 175", "seed 174"] == [m.split(" · ")[0] for m in cards.locator(".meta").all_inner_texts()]
    wait_until(page, "() => [...document.querySelectorAll('.icard img')].every(i => i.complete && i.naturalWidth === 64)")

    # a second tab on the same studio sees the same state, live
    other = Page(browser)
    other.page.goto(studio.url)
    other.page.locator("body[data-ready]").wait_for()

    # keep ×3 (oldest first), then drag the last entry to the top
    for i in (2, 1, 0):
        cards.nth(i).locator("button.keep").click()
        wait_until(page, "n => document.querySelectorAll('#board .entry').length === n", 3 - i)
    assert board_prompts(page) == PROMPTS
    page.locator("#board .entry").nth(2).locator(".handle").drag_to(page.locator("#board .entry").nth(0))
    order = [PROMPTS[2], PROMPTS[0], PROMPTS[1]]
    for tab in (page, other.page):
        wait_until(tab, SAME_BOARD, order)
    # the first entry stays on screen 1 s
    duration = page.locator("#board .entry").nth(0).locator("input.duration")
    duration.fill("1")
    duration.press("Tab")
    for _ in range(100):  # saved to out/storyboard.json after each edit
        saved = json.loads((studio.out / "storyboard.json").read_text())["frames"]
        if saved[0].get("duration") == 1:
            break
        page.wait_for_timeout(100)
    assert [f["prompt"] for f in saved] == board_prompts(page) == order
    assert saved[0]["duration"] == 1 and "duration" not in saved[1]

    # render film: the normal make runs on the kept storyboard, reusing the kept images, and the video plays
    page.click("#render")
    wait_until(page, "() => { const v = document.getElementById('video'); return v && v.readyState >= 2; }", timeout=120)
    assert "3 reused" in page.locator("#filmprog").inner_text()
    assert page.evaluate("document.getElementById('video').duration") == pytest.approx(1 + 0.5 + 0.5, abs=0.1)
    assert page.locator("#boardinfo").inner_text() == "3 entries · 2 s"  # the film's length, as stitched
    assert "flow-euler" not in page.locator("#scheduler option").all_inner_texts()  # an SD 1.x model
    page.evaluate("document.getElementById('video').play()")
    wait_until(page, "() => document.getElementById('video').currentTime > 0.2", timeout=20)
    for i, name in enumerate(sorted(p.name for p in (studio.out / "interactive").glob("*.png"))):
        kept_at = order.index(PROMPTS[i])
        assert (studio.out / "frames" / f"frame_{kept_at:03d}.png").read_bytes() == \
            (studio.out / "interactive" / name).read_bytes()
    assert (studio.out / "index.html").exists()  # the film's gallery page
    page.evaluate("document.getElementById('toast').hidden = true")
    view.screenshot(tmp_path / "studio.png", "studio.png")

    # reloading restores everything from the output folder
    page.reload()
    page.locator("body[data-ready]").wait_for()
    assert board_prompts(page) == order
    assert page.locator(".icard[data-name]").count() == 3
    wait_until(page, "() => { const v = document.getElementById('video'); return v && v.readyState >= 1; }")

    # an edited entry keeps showing the image it was kept from, marked as edited
    prompt_box = page.locator("#board .entry").nth(1).locator("textarea")
    prompt_box.fill("an edited prompt")
    prompt_box.press("Tab")
    page.locator("#prompt").focus()
    wait_until(page, "() => { const e = document.querySelectorAll('#board .entry')[1];"
                     " const t = e && e.querySelector('img.thumb.edited'); return t && t.complete && t.naturalWidth > 0; }")

    # an untrusted prompt shows as text and runs nothing
    page.fill("#prompt", XSS)
    page.press("#prompt", "Enter")
    wait_until(page, "() => document.querySelectorAll('.icard[data-name]').length === 4", timeout=60)
    assert page.locator(".icard[data-name] .ibody p").first.inner_text() == XSS
    assert page.evaluate("document.querySelectorAll('img[src=x], img[src=\"x\"]').length") == 0
    assert view.dialogs == [] and view.errors == [] and other.errors == []
    other.close()
    view.close()


def test_studio_refuses_paths_outside_its_folder_and_other_sites(studio):
    secret = studio.out.parent / "secret.txt"
    secret.write_text("not yours")
    with httpx.Client(base_url=studio.base) as http:
        assert http.get("/api/state").status_code == 200
        for path in ("/files/../secret.txt", "/files/%2e%2e/secret.txt", "/files/..%2fsecret.txt",
                     "/files/%2e%2e%2fsecret.txt", "/static/../../secret.txt"):
            r = http.get(path)
            assert r.status_code == 404 and "not yours" not in r.text, path
        r = http.post("/api/keep", json={"image": "../secret.txt"})
        assert r.status_code == 400 and "not an image" in r.json()["error"]
        # a page on another site cannot make the studio act: forms can't send JSON, and Origin is checked
        assert http.post("/api/render", content="x=1", headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415
        assert http.post("/api/render", json={}, headers={"origin": "http://evil.example"}).status_code == 403
        # storyboard edits are checked like a storyboard file's keys, one line each
        r = http.post("/api/storyboard/update", json={"index": 99, "fields": {"duration": 2}})
        assert r.status_code == 400 and "no storyboard entry" in r.json()["error"]
        r = http.post("/api/cancel", json={"id": 12345})
        assert r.status_code == 400 and "no job" in r.json()["error"]
        r = http.post("/api/film", json={"transition": "wipe"})
        assert r.status_code == 400 and "cut" in r.json()["error"]
        # DNS rebinding: a loopback studio answers only to a loopback Host
        assert http.get("/api/state", headers={"host": "evil.example"}).status_code == 403


def test_studio_port_in_use_is_one_line(studio, tmp_path):
    from conftest import run_cli

    port = studio.base.rsplit(":", 1)[1]
    proc = run_cli("studio", "-o", tmp_path / "out", "--model", "demo", "--port", port)
    assert proc.returncode == 2 and proc.stderr == f"error: port {port} is in use on 127.0.0.1; pass --port N (--port 0 picks a free one)\n"


def test_studio_on_another_host_needs_the_token(tmp_path):
    s = Studio(tmp_path / "out", "--host", "0.0.0.0")
    try:
        token = re.search(r"token=([\w-]+)", s.url)[1]
        assert len(token) >= 24
        with httpx.Client(base_url=s.base) as http:
            for path in ("/", "/api/state", "/api/events", "/files/storyboard.json", "/static/studio.js"):
                r = http.get(path)
                assert r.status_code == 403 and "access token" in r.text, path
            assert http.get("/api/state", params={"token": token[:-1] + "x"}).status_code == 403
            assert http.post("/api/render", json={}).status_code == 403
            # the printed URL works: it sets a cookie that every later request carries
            r = http.get("/", params={"token": token})
            assert r.status_code == 303 and "framereel_token" in r.headers["set-cookie"]
            assert http.get("/api/state").status_code == 200
            assert http.get("/").status_code == 200
            # Ctrl-C stops it at once, even with a tab's event stream open
            with http.stream("GET", "/api/events") as events:
                assert next(events.iter_lines()).startswith("event: state")
                assert s.stop(signal.SIGINT) == 0
        assert "studio stopped" in s.lines[-1] and "Traceback" not in "".join(s.lines)
    finally:
        if s.proc.poll() is None:
            s.stop()


# ---------------------------------------------------------------- the JSON API in this process (no browser)


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_model):
    """A studio over a real session on the tiny SD 1.x model, driven through its HTTP API in this process."""
    from starlette.testclient import TestClient

    from framereel.interactive import Session
    from framereel.settings import RenderSettings
    from framereel.studio.app import Studio, create_app

    session = Session(tmp_path_factory.mktemp("api") / "out", RenderSettings(model=str(tiny_model), batch=1),
                      params={"steps": 2})
    studio = Studio(session)
    with TestClient(create_app(studio), base_url="http://127.0.0.1") as http:
        http.studio = studio
        yield http
    studio.close()


def finished(http, response) -> dict:
    """The job a POST queued, once it has finished (a generous limit: the machine may be busy)."""
    import time

    assert response.status_code == 200, response.text
    job_id = response.json()["job"]["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = next(j for j in http.get("/api/state").json()["jobs"] if j["id"] == job_id)
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_api_refuses_a_size_beyond_the_storyboard_limit_before_queueing(api):
    from framereel.storyboard import MAX_SIDE

    jobs = len(api.get("/api/state").json()["jobs"])
    for size in ({"width": 100000, "height": 100000}, {"width": MAX_SIDE + 8, "height": 64}, {"width": 64, "height": 60}):
        r = api.post("/api/generate", json={"prompt": "huge", **size})
        assert r.status_code == 400 and "must be a multiple of 8 from 64 to 4096" in r.json()["error"], size
    for bad in ({"steps": "many"}, {"steps": 0}, {"guidance": "0:(1)"}, {"seed": -1}, {"scheduler": "flow-euler"}):
        assert api.post("/api/generate", json={"prompt": "x", **bad}).status_code == 400, bad
    assert len(api.get("/api/state").json()["jobs"]) == jobs  # nothing was queued


def test_api_prompt_alone_renders_with_the_current_settings(api):
    from framereel.manifest import read_png_metadata

    session = api.studio.session
    job = finished(api, api.post("/api/generate", json={"prompt": "a prompt alone"}))
    assert job["state"] == "done", job["message"]
    meta = read_png_metadata(session.folder / job["image"])
    assert (meta["steps"], meta["seed"], meta["size"]) == ("2", str(session.seed), "64x64")
    # a request's settings stay for the next image, as typing them in interactive mode would
    job = finished(api, api.post("/api/generate", json={"prompt": "three steps", "steps": 3, "seed": 9}))
    assert read_png_metadata(session.folder / job["image"])["steps"] == "3"
    job = finished(api, api.post("/api/generate", json={"prompt": "still three"}))
    assert (read_png_metadata(session.folder / job["image"])["steps"], session.seed) == ("3", 9)


def test_api_settings_of_a_failed_job_do_not_stay(api, monkeypatch):
    session = api.studio.session
    before = (dict(session.params), session.seed, session.settings.scheduler)

    def broken(*args, **kwargs):
        raise RuntimeError("the device went away")

    monkeypatch.setattr(session.backend, "render", broken)
    job = finished(api, api.post("/api/generate", json={"prompt": "fails", "steps": 7, "guidance": 3, "seed": 5,
                                                        "width": 72, "height": 80, "scheduler": "euler"}))
    assert job["state"] == "failed" and "the device went away" in job["message"]
    assert (dict(session.params), session.seed, session.settings.scheduler) == before


def test_api_offers_only_the_schedulers_the_model_takes(api):
    state = api.get("/api/state").json()
    assert "flow-euler" not in state["schedulers"] and "lcm" not in state["schedulers"]  # an SD 1.x model
    assert {"dpm++", "euler", "pndm"} <= set(state["schedulers"]) and state["defaults"]["scheduler"] in state["schedulers"]
    r = api.post("/api/generate", json={"prompt": "x", "scheduler": "lcm"})
    assert r.status_code == 400 and "this model takes" in r.json()["error"]


def test_api_film_limits_are_stitchs_and_its_length_is_the_videos(api, tmp_path):
    from conftest import probe_video

    from framereel.validate import MAX_CROSSFADE, MAX_FPS

    assert api.post("/api/film", json={"fps": MAX_FPS, "crossfade": MAX_CROSSFADE}).status_code == 200
    for bad in ({"fps": MAX_FPS + 1}, {"fps": 0}, {"crossfade": MAX_CROSSFADE + 1}, {"crossfade": True}):
        r = api.post("/api/film", json=bad)
        assert r.status_code == 400 and "give a number" in r.json()["error"], bad
    assert api.get("/api/state").json()["limits"]["fps"] == MAX_FPS
    before = len(api.get("/api/state").json()["storyboard"])
    for prompt in ("a red circle", "a blue square"):  # its own images: the test runs alone too
        job = finished(api, api.post("/api/generate", json={"prompt": prompt}))
        assert api.post("/api/keep", json={"image": job["image"]}).status_code == 200
    for _ in range(before):  # only this test's two entries in the film
        assert api.post("/api/storyboard/delete", json={"index": 0}).status_code == 200
    assert api.post("/api/storyboard/update", json={"index": 0, "fields": {"morph": 1}}).status_code == 200
    assert api.post("/api/film", json={"fps": 2, "transition": "crossfade", "crossfade": 0.5}).status_code == 200
    seconds = api.get("/api/state").json()["film_seconds"]
    assert seconds == pytest.approx(3 * 0.5 + 2 * 0.5)  # 3 frames (one in-between) of 1/fps, 2 dissolves
    job = finished(api, api.post("/api/render", json={}))
    assert job["state"] == "done", job["message"]
    assert probe_video(api.studio.out / "video.mp4")["seconds"] == pytest.approx(seconds, abs=0.05)


def test_api_an_edited_entry_keeps_its_thumbnail(api):
    state = api.get("/api/state").json()
    if not state["storyboard"]:
        assert api.post("/api/keep", json={"image": state["images"][0]["name"]}).status_code == 200
        state = api.get("/api/state").json()
    n = len(state["storyboard"]) - 1
    thumb = state["storyboard"][n]["thumb"]
    assert thumb
    r = api.post("/api/storyboard/update", json={"index": n, "fields": {"prompt": "an edited prompt", "seed": 77}})
    assert r.status_code == 200
    entry = api.get("/api/state").json()["storyboard"][n]
    assert (entry["prompt"], entry["thumb"], entry["edited"]) == ("an edited prompt", thumb, True)
    # moved, it keeps it too
    api.post("/api/storyboard/move", json={"from": n, "to": 0})
    assert api.get("/api/state").json()["storyboard"][0]["thumb"] == thumb


def test_studio_refuses_a_bad_port_in_one_line_before_anything(tmp_path):
    from conftest import cli

    for port in ("99999", "-1", "65536"):
        proc = cli("studio", "-o", tmp_path / "out", "--model", "demo", "--port", port)
        assert proc.returncode == 2 and proc.stderr == f"error: --port {port}: give a port from 1 to 65535 " \
                                                       "(0 picks a free one)\n", proc.stderr
    assert not (tmp_path / "out").exists()


def test_studio_that_cannot_load_its_model_leaves_nothing(tmp_path, tiny_model):
    import shutil

    from conftest import cli

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")  # there, so the folder looks whole, but it does not load
    for command in ("studio", "interactive"):
        port = ("--port", "0") if command == "studio" else ()
        proc = cli(command, "-o", tmp_path / "out", "--model", broken, *port)
        assert proc.returncode == 2 and "could not load the model" in proc.stderr, proc.stderr
        assert not (tmp_path / "out").exists(), command


def test_ctrl_c_during_a_render_stops_the_studio_cleanly(tmp_path):
    """Ctrl-C while an image renders: the render stops at its next step and the studio exits 0
    (it used to exit while torch ran in the render thread: SIGABRT, "terminate called …")."""
    s = Studio(tmp_path / "out")
    try:
        with httpx.Client(base_url=s.base, timeout=60) as http:
            job = http.post("/api/generate", json={"prompt": "a slow red circle", "steps": 1000}).json()["job"]
            deadline = time.monotonic() + 300  # a generous limit: the render is 1000 steps long
            while time.monotonic() < deadline:
                state = next(j for j in http.get("/api/state").json()["jobs"] if j["id"] == job["id"])
                if state["progress"].get("step", 0) >= 1:
                    break
                time.sleep(0.05)
            assert state["state"] == "running", state
        assert s.stop(signal.SIGINT) == 0
        said = "".join(s.lines)
        assert "studio stopped" in s.lines[-1] and "terminate called" not in said and "Traceback" not in said
    finally:
        if s.proc.poll() is None:
            s.stop()

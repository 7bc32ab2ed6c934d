"""`framereel studio`: the real command in a subprocess, driven by a real browser and by plain HTTP."""

import json
import os
import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from browser import Page, browser, wait_until  # noqa: F401  (browser is a fixture)

XSS = "<img src=x onerror=alert(1)>"
PROMPTS = ["a red circle on a day sky", "a yellow star at night", "a white triangle at sunset"]


class Studio:
    """``framereel studio`` running in a subprocess; ``url`` is what it printed."""

    def __init__(self, out, *args):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "framereel", "studio", "-o", str(out), "--model", "demo",
                                      "--port", "0", *args], stderr=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                if "framereel studio: http" in line:
                    found.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not found.wait(180):
            self.stop()
            raise AssertionError("the studio did not start:\n" + "".join(self.lines))
        self.url = re.search(r"(http://\S+)", next(ln for ln in self.lines if "framereel studio: http" in ln))[1]
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

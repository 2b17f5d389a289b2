"""`vid2vid serve`'s Live mode in headless Chromium with a fake camera fed from a video file (a built-in dancer,
written as y4m): results arrive, in order, at a rate; a camera with nobody in view says so; a refused or missing
camera is told in one line. Needs what test_serve_browser needs (Chromium, Playwright); VID2VID_LIVE_SCREENSHOT=PATH
saves the live page there (README's picture)."""

import os
from contextlib import contextmanager

import numpy as np
import pytest

from tests.test_keypoints import needs_mediapipe
from tests.test_serve_browser import CHROMIUM, CHROMIUM_ARGS, need, start_serve
from vid2vid.data.layout import scan
from vid2vid.data.video import read_image
from vid2vid.data.writer import write_synthetic

pytestmark = needs_mediapipe


def write_y4m(path, frames: list[np.ndarray], fps: int = 25) -> None:
    """RGB frames as a YUV 4:2:0 y4m file, what Chromium's fake camera plays (looped)."""
    import cv2

    h, w = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    root = tmp_path_factory.mktemp("cameras")
    write_synthetic("dancers", root / "dancer", sequences=1, frames=50, size=(240, 320), first_index=1001,
                    progress=False)
    dancer = [read_image(p) for p in scan(root / "dancer", "pose")[0].files["images"]]
    write_y4m(root / "dancer.y4m", dancer)
    write_y4m(root / "empty.y4m", [np.full((240, 320, 3), 120, np.uint8)] * 10)
    return {"dancer": root / "dancer.y4m", "empty": root / "empty.y4m"}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """`vid2vid serve` with the shipped dancer model, in its own process: its URL."""
    process, url, info, log = start_serve(tmp_path_factory.mktemp("live_server"))
    assert info["live"] is True
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


@contextmanager
def chromium(playwright, camera=None):
    """Headless Chromium, with a fake camera playing the y4m file `camera` if given; closed at the end."""
    need(os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    args = list(CHROMIUM_ARGS)
    if camera is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera}"]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (pip install 'vid2vid[test]')")
    with sync_playwright() as playwright:
        yield playwright


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1100, "height": 1300})
    page.goto(url)
    page.wait_for_selector("#live-start:not([disabled])", timeout=30_000)
    return page


def test_the_camera_drives_the_model_live(playwright, live_server, cameras):
    with chromium(playwright, cameras["dancer"]) as browser:
        page = open_page(browser, live_server)
        page.click("#live-start")
        page.wait_for_function("window.liveStats.results.length >= 40", timeout=90_000)
        stats = page.evaluate("window.liveStats")
        results = stats["results"]
        assert results == sorted(set(results))  # in order, none twice
        # A rate: the last 20 results came within a few seconds (the figures themselves: benchmarks/bench_live.py).
        shown = stats["shownAt"]
        rate = 19 / ((shown[-1] - shown[-20]) / 1000)
        assert rate > 4, rate
        assert stats["server"]["person"] and np.percentile(stats["latencies"], 95) < 1500
        assert page.is_hidden("#live-notice")
        assert "frames/s shown" in page.text_content("#live-stats")
        if os.environ.get("VID2VID_LIVE_SCREENSHOT"):
            page.locator("#live-box").screenshot(path=os.environ["VID2VID_LIVE_SCREENSHOT"])
        page.click("#live-stop")
        assert page.text_content("#live-status") == "Stopped."


def test_nobody_in_view_is_said(playwright, live_server, cameras):
    with chromium(playwright, cameras["empty"]) as browser:
        page = open_page(browser, live_server)
        page.click("#live-start")
        page.wait_for_function("window.liveStats.noPerson >= 5", timeout=60_000)
        assert page.is_visible("#live-notice")
        assert "No one in view" in page.text_content("#live-notice")


@pytest.mark.parametrize("error, expected", [
    ("NotAllowedError", "The camera was refused"),
    ("NotFoundError", "No camera was found"),
])
def test_a_refused_or_missing_camera_is_told(playwright, live_server, error, expected):
    with chromium(playwright) as browser:
        page = browser.new_page()
        # What the browser answers when the user says no, or there is no camera.
        page.add_init_script(f"navigator.mediaDevices.getUserMedia = () => "
                             f"Promise.reject(new DOMException('no', '{error}'));")
        page.goto(live_server)
        page.wait_for_selector("#live-start:not([disabled])", timeout=30_000)
        page.click("#live-start")
        page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert expected in page.text_content("#error")
        assert page.is_visible("#live-start") and page.is_hidden("#live-stop")

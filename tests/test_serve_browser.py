"""`vid2vid serve` driven in headless Chromium: the page, not the API, from upload to a playable video.

Needs Debian's chromium (/usr/bin/chromium, or VID2VID_CHROMIUM) and Playwright, which drives it by its
executable path (Playwright's own browser downloads fail on machines without internet). `.ci/run` installs
chromium and sets VID2VID_REQUIRE_BROWSER=1, so there a missing browser fails the test instead of skipping it.
VID2VID_SCREENSHOT=PATH also saves the page with its result there, and VID2VID_SERVE_CHECKPOINT=CKPT serves
that checkpoint instead of a tiny one trained here (README's picture: the `make demo` model).
"""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import av
import pytest

from tests.conftest import train_on_tiny_dancers
from vid2vid.cli import main

CHROMIUM = os.environ.get("VID2VID_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("VID2VID_REQUIRE_BROWSER") == "1"
# Chromium without the calls home that a closed network refuses, and without a sandbox (CI runs as root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def need(condition: bool, why: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    need(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (pip install 'vid2vid[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(root: Path, *args: str):
    """`vid2vid serve ARGS` in its own process, logging to root/server.log: (process, base URL, /api/info, log)
    once it answers."""
    port = free_port()
    log = (root / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "vid2vid.cli", "serve", *args, "--port", str(port),
                                "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/info", timeout=1) as response:
                return process, url, json.load(response), log
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise AssertionError(f"the server did not start: {(root / 'server.log').read_text()}") from None
            time.sleep(0.2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`vid2vid serve` in its own process; yields (base URL, model info, data root with refs/ and driving/ made
    by `vid2vid synth` at the model's size: an identity and a motion no recipe trains on, process)."""
    root = tmp_path_factory.mktemp("browser")
    checkpoint = os.environ.get("VID2VID_SERVE_CHECKPOINT") or train_on_tiny_dancers(
        root / "tiny", heldout_sequences=1, heldout_frames=1)
    process, url, info, log = start_serve(root, "--checkpoint", str(checkpoint), "--max-frames", "30")
    size = "x".join(map(str, info["size"]))
    for folder, extra in (("refs", []), ("driving", ["--motion-offset", "1"])):
        assert main(["synth", "dancers", str(root / folder), "--sequences", "1", "--frames", "9", "--size", size,
                     "--first-index", "2000", "--quiet", *extra]) == 0
    yield url, info, root, process
    process.terminate()
    # A clean exit, not death by the signal: the server removed its working folder on the way out.
    assert process.wait(timeout=30) == 0, (root / "server.log").read_text()
    log.close()


def write_zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, str(Path(folder.name) / path.relative_to(folder)))
    return out


def count_frames(data: bytes) -> tuple[int, tuple[int, int]]:
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return len(frames), frames[0].shape[:2]


def test_upload_references_and_driving_then_watch_the_result(browser, server, tmp_path):
    url, info, root, process = server
    size = tuple(info["size"])
    images = sorted((root / "refs" / "images").glob("*/*.png"))[::4][:2]
    labels = [root / "refs" / "poses-openpose" / p.parent.name / f"{p.stem}.json" for p in images]
    driving = write_zip(root / "driving", tmp_path / "dance.zip")

    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.goto(url)
    page.wait_for_function("!document.getElementById('generate').disabled")
    assert "few-shot vid2vid" in page.text_content("#model")
    page.set_input_files("#references", [str(p) for p in images + labels])
    page.set_input_files("#driving", str(driving))
    page.fill("#frames", "9")
    page.click("#generate")
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert page.is_hidden("#error")
    assert page.text_content("#status-text").startswith("Done: 9 frames")
    # The result plays: the browser decoded its metadata and frames, with no media error.
    page.wait_for_function("document.getElementById('result-video').readyState >= 2", timeout=20_000)
    playable = page.evaluate("""() => { const v = document.getElementById('result-video');
        return {error: v.error && v.error.message, width: v.videoWidth, height: v.videoHeight,
                duration: v.duration}; }""")
    assert playable["error"] is None and (playable["height"], playable["width"]) == size
    assert playable["duration"] > 0
    page.wait_for_function("document.getElementById('labels-video').readyState >= 2", timeout=20_000)
    assert page.locator("#result-references img").count() == 2
    # The download link gives the mp4 with one frame per driving frame.
    with page.expect_download() as download:
        page.click("#download")
    assert count_frames(Path(download.value.path()).read_bytes()) == (9, size)
    state = page.evaluate("fetch(document.getElementById('download').href.replace('/result.mp4', ''))"
                          ".then(r => r.json())")
    assert state["state"] == "done"
    # The picture shows a middle frame, the mouse away from the player.
    page.mouse.move(0, 0)
    page.evaluate("""() => new Promise((done) => {
        const result = document.getElementById('result-video'), labels = document.getElementById('labels-video');
        result.pause();
        result.addEventListener('seeked', () => setTimeout(done, 300), {once: true});
        result.currentTime = result.duration / 2;
        labels.currentTime = result.duration / 2; })""")
    page.wait_for_timeout(3000)  # the player's controls fade out
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("VID2VID_SCREENSHOT"):
        shutil.copy(shot, os.environ["VID2VID_SCREENSHOT"])
    page.close()


def test_a_corrupt_upload_shows_a_message_and_the_server_goes_on(browser, server, tmp_path):
    url, info, root, process = server
    broken = tmp_path / "holiday.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("!document.getElementById('generate').disabled")
    page.set_input_files("#driving", str(broken))  # with the built-in identity picked by default
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    message = page.text_content("#error")
    assert message.startswith("holiday.mp4: not a readable video"), message
    assert "Traceback" not in message and "/tmp" not in message and "\n" not in message
    assert page.is_hidden("#result")
    # The server still answers, and renders the next job: a built-in motion, from the same page.
    assert process.poll() is None
    page.check("input[name='drive-source'][value='builtin']")
    page.fill("#frames", "4")
    page.click("#generate")
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert page.is_hidden("#error")
    assert page.text_content("#status-text").startswith("Done: 4 frames")
    page.close()


def test_fine_tune_on_the_references_with_its_progress_in_the_page(browser, server):
    """The page's fine-tuning choice: a built-in identity, 100 steps of fine-tuning (long enough for the page's
    0.3 s polls to see them) shown as their own progress ("Fine-tuning on the references: n / 100 steps"),
    then the frames."""
    url, info, root, process = server
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("!document.getElementById('generate').disabled")
    assert page.is_visible("#finetune-box")
    page.evaluate("""() => { window.seen = [];
        new MutationObserver(() => window.seen.push(document.getElementById('status-text').textContent))
            .observe(document.getElementById('status-text'), {childList: true, characterData: true, subtree: true});
    }""")
    page.check("#finetune")
    page.fill("#finetune-steps", "100")
    page.fill("#frames", "4")
    page.click("#generate")
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert page.is_hidden("#error")
    seen = page.evaluate("window.seen")
    tuning = [text for text in seen if text.startswith("Fine-tuning on the references")]
    assert tuning, seen
    assert all(text.endswith("/ 100 steps.") for text in tuning), tuning
    assert page.text_content("#status-text").startswith("Done: 4 frames")
    job = page.evaluate("fetch(document.getElementById('download').href.replace('/result.mp4', ''))"
                        ".then(r => r.json())")
    assert job["finetune"] == 100 and job["state"] == "done"
    page.close()


def test_the_face_model_beside_the_dancers_renders_a_face_photo_driven_by_a_face_video(browser, tmp_path):
    """Two models in one server (a tiny dancer model and the shipped face model): the page's picker rebuilds the
    form for the face model; a built-in face, then (with the detector) a real photo and a real video uploaded."""
    from vid2vid.pretrained import shipped_model

    dancers = train_on_tiny_dancers(tmp_path / "tiny", heldout_sequences=1, heldout_frames=1)
    process, url, info, log = start_serve(tmp_path, "--checkpoint", str(dancers), "--checkpoint",
                                          str(shipped_model("faces_cpu")), "--max-frames", "30")
    try:
        assert [m["task"] for m in info["models"]] == ["pose", "face"] and info["task"] == "pose"
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url)
        page.wait_for_function("!document.getElementById('generate').disabled")
        assert page.is_visible("#model-box")
        page.select_option("#model-choice", "faces_cpu")
        page.wait_for_function("document.getElementById('model').textContent.includes('face labels')")
        assert "talking face" in page.text_content("#motion option")
        page.fill("#frames", "6")
        page.click("#generate")
        page.wait_for_selector("#result:not([hidden])", timeout=120_000)
        assert page.text_content("#status-text").startswith("Done: 6 frames")
        page.wait_for_function("document.getElementById('result-video').readyState >= 2", timeout=20_000)
        assert page.evaluate("document.getElementById('result-video').videoHeight") == 64
        try:
            from vid2vid.data import detector, samples

            detector.face_mesh(False).close()
            photo, video = samples.photo_path("astronaut"), samples.video_path("carphone_pristine")
        except Exception:  # no detector or no sample files here: the built-in face was the test
            return
        page.evaluate("document.getElementById('result').hidden = true")
        page.set_input_files("#references", str(photo))
        page.set_input_files("#driving", str(video))
        page.click("#generate")
        page.wait_for_selector("#result:not([hidden])", timeout=180_000)
        assert page.is_hidden("#error") and page.text_content("#status-text").startswith("Done: 6 frames")
        page.close()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, (tmp_path / "server.log").read_text()
        log.close()

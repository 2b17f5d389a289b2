"""`vid2vid serve`'s live WebSocket (/api/live) through Starlette's test client: set-up with a built-in identity or
an uploaded photo, frames in and results out in order with the server's timings, nobody in view, frames dropped
rather than queued, the limit on sessions at once, other sites' pages refused, bad frames named in one line."""

import io
import json
import struct
import time

import numpy as np
import pytest
from PIL import Image

from tests.test_keypoints import needs_mediapipe
from vid2vid.data.layout import scan
from vid2vid.data.video import read_image
from vid2vid.data.writer import write_synthetic
from vid2vid.pretrained import shipped_model

pytest.importorskip("starlette")
pytest.importorskip("httpx2")
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from vid2vid.serve import Limits, Worker, make_app  # noqa: E402

pytestmark = needs_mediapipe


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    work = tmp_path_factory.mktemp("serve_live")
    worker = Worker(shipped_model(), work, Limits(max_live=1, max_live_frame_kb=256), device="cpu")
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """A built-in dancer's frames (identity 1001, 64x64) as a camera would send them: JPEGs."""
    root = tmp_path_factory.mktemp("camera")
    write_synthetic("dancers", root, sequences=1, frames=6, size=(64, 64), first_index=1001, progress=False)
    return [jpeg(read_image(path)) for path in scan(root, "pose")[0].files["images"]]


@pytest.fixture
def client(worker):
    with TestClient(make_app(worker)) as client:
        yield client


def jpeg(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=95)
    return out.getvalue()


def frame_message(seq: int, data: bytes, had: int | None = None) -> bytes:
    """A live frame: its number, the results the page has had (default: one per frame before it), the image."""
    return struct.pack("<II", seq, seq if had is None else had) + data


def start(ws, request: dict) -> list[dict]:
    """Send the set-up message; the messages up to "ready"."""
    ws.send_text(json.dumps(request))
    seen = []
    while True:
        message = ws.receive_json()
        seen.append(message)
        assert message["type"] != "error", message
        if message["type"] == "ready":
            return seen


def result(ws) -> tuple[dict, np.ndarray | None]:
    meta = ws.receive_json()
    assert meta["type"] == "frame", meta
    image = np.asarray(Image.open(io.BytesIO(ws.receive_bytes()))) if meta["result"] else None
    return meta, image


def test_info_says_live_is_offered(client):
    info = client.get("/api/info").json()
    assert info["live"] is True and info["limits"]["max_live"] == 1


def test_camera_frames_come_back_rendered_in_order(client, camera):
    with client.websocket_connect("/api/live") as ws:
        assert start(ws, {"identity": 1000, "k": 1})[-1] == {"type": "ready", "size": [64, 64], "model": "dancers_cpu"}
        seqs = []
        for seq, data in enumerate(camera):  # one at a time, as the page sends them
            ws.send_bytes(frame_message(seq, data))
            meta, image = result(ws)
            seqs.append(meta["seq"])
            assert meta["person"] and image.shape == (64, 64, 3)
            assert meta["server_ms"] >= meta["label_ms"] + meta["generate_ms"] > 0
        assert seqs == list(range(len(camera))) and meta["dropped"] == 0 and meta["fps"] > 0


def test_frames_sent_faster_than_rendered_are_dropped_not_queued(client, camera):
    with client.websocket_connect("/api/live") as ws:
        start(ws, {"identity": 1000})
        for seq in range(30):  # all at once: far faster than frames render (each saying it had all results)
            ws.send_bytes(frame_message(seq, camera[seq % len(camera)], had=10**6))
        seqs, meta = [], None
        while not seqs or seqs[-1] != 29:
            meta, _ = result(ws)
            seqs.append(meta["seq"])
        assert seqs == sorted(seqs) and len(seqs) < 30  # the newest always, in order; some never rendered
        assert meta["dropped"] == 30 - len(seqs)


def test_results_do_not_queue_for_a_page_that_does_not_take_them(client, camera):
    """A page that sends frames but has had no result: after MAX_UNSEEN results its frames are dropped, until it
    says it has had them."""
    with client.websocket_connect("/api/live") as ws:
        start(ws, {"identity": 1000})
        for seq in range(2):
            ws.send_bytes(frame_message(seq, camera[seq], had=0))
            assert result(ws)[0]["seq"] == seq
        ws.send_bytes(frame_message(2, camera[2], had=0))  # two results it has not had: dropped
        ws.send_bytes(frame_message(3, camera[3], had=2))  # caught up: rendered
        meta, _ = result(ws)
        assert meta["seq"] == 3 and meta["dropped"] == 1


def test_nobody_in_view_holds_the_last_result_and_says_so(client, camera):
    empty = jpeg(np.full((64, 64, 3), 128, np.uint8))
    with client.websocket_connect("/api/live") as ws:
        start(ws, {"identity": 1000})
        ws.send_bytes(frame_message(0, empty))
        meta, image = result(ws)
        assert not meta["person"] and not meta["result"] and image is None  # nothing to hold yet
        ws.send_bytes(frame_message(1, camera[0]))
        _, shown = result(ws)
        ws.send_bytes(frame_message(2, empty))
        meta, held = result(ws)
        assert not meta["person"] and np.array_equal(held, shown)


def test_an_uploaded_photo_is_the_reference(client, camera):
    from vid2vid.data import samples

    pytest.importorskip("skimage")
    with client.websocket_connect("/api/live") as ws:
        ws.send_text(json.dumps({"upload": True}))
        ws.send_bytes(samples.photo_path("astronaut").read_bytes())
        while ws.receive_json()["type"] != "ready":
            pass
        ws.send_bytes(frame_message(0, camera[0]))
        meta, image = result(ws)
        assert meta["person"] and image.shape == (64, 64, 3)


def test_a_photo_with_nobody_is_named_in_one_line(client):
    with client.websocket_connect("/api/live") as ws:
        ws.send_text(json.dumps({"upload": True}))
        ws.send_bytes(jpeg(np.full((96, 96, 3), 200, np.uint8)))
        message = ws.receive_json()
        while message["type"] == "progress":
            message = ws.receive_json()
        assert message["type"] == "error" and "the reference photo" in message["message"]
        assert "\n" not in message["message"] and "/tmp" not in message["message"]


def test_fine_tuning_first_reports_its_steps(client, camera):
    with client.websocket_connect("/api/live") as ws:
        seen = start(ws, {"identity": 1000, "finetune": 2})
        steps = [m["done"] for m in seen if m["type"] == "progress" and m["phase"] == "finetune"]
        assert steps[-1] == 2
        ws.send_bytes(frame_message(0, camera[0]))
        assert result(ws)[0]["person"]


def test_a_second_session_past_the_limit_is_told_the_server_is_busy(client):
    with client.websocket_connect("/api/live") as first:
        start(first, {"identity": 1000})
        with client.websocket_connect("/api/live") as second:
            message = second.receive_json()
            assert message["type"] == "error" and "busy" in message["message"]
    # Closing the first frees its place.
    deadline = time.time() + 10
    while time.time() < deadline:
        with client.websocket_connect("/api/live") as again:
            again.send_text(json.dumps({"identity": 1000}))
            if again.receive_json()["type"] == "progress":
                return
        time.sleep(0.1)
    pytest.fail("the closed session's place was never freed")


def test_another_sites_page_is_refused(client):
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/api/live", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()


@pytest.mark.parametrize("data, expected", [
    (bytes(8) + b"not an image", "not a readable JPEG or PNG"),
    (bytes(8) + bytes(300 * 1024), "larger than this server takes (256 kB)"),
    (bytes(6), "holds no image"),
])
def test_bad_frames_are_named_in_one_line(client, data, expected):
    with client.websocket_connect("/api/live") as ws:
        start(ws, {"identity": 1000})
        ws.send_bytes(data)
        message = ws.receive_json()
        assert message["type"] == "error" and expected in message["message"] and "\n" not in message["message"]


@pytest.mark.parametrize("request_, expected", [
    ("not json", "must be JSON"),
    ({"identity": 5}, "identity must be one of 1000..1005"),
    ({"identity": 1000, "finetune": 10**6}, "finetune must be a whole number of steps from 0 to 300"),
])
def test_a_bad_start_is_named(client, request_, expected):
    with client.websocket_connect("/api/live") as ws:
        ws.send_text(request_ if isinstance(request_, str) else json.dumps(request_))
        message = ws.receive_json()
        assert message["type"] == "error" and expected in message["message"]


def test_two_tabs_have_their_own_state(tmp_path, camera):
    """Two sessions at once, each with its own identity: each gets its own results, in its own order."""
    worker = Worker(shipped_model(), tmp_path, Limits(max_live=2), device="cpu")
    try:
        with TestClient(make_app(worker)) as client:
            with client.websocket_connect("/api/live") as a, client.websocket_connect("/api/live") as b:
                start(a, {"identity": 1000})
                start(b, {"identity": 1003})
                got = {"a": [], "b": []}
                for seq in range(3):
                    for name, ws in (("a", a), ("b", b)):
                        ws.send_bytes(frame_message(seq, camera[seq]))
                        meta, image = result(ws)
                        assert meta["seq"] == seq
                        got[name].append(image.astype(int))
                # Same camera frames, other references: other pictures (the wall's colour, mostly).
                assert all(np.abs(x - y).mean() > 10 for x, y in zip(got["a"], got["b"], strict=True))
    finally:
        worker.stop()


def test_a_request_for_another_host_is_refused(worker):
    with TestClient(make_app(worker, allowed_hosts=["127.0.0.1"])) as client:
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/api/live") as ws:  # the test client says Host: testserver
                ws.receive_json()

"""`vid2vid serve`'s API, in process: jobs from built-in and uploaded inputs, bad uploads, the queue, limits."""

import io
import sys
import threading
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.conftest import train_on_tiny_dancers
from vid2vid.data.video import VideoWriter

pytest.importorskip("starlette")
pytest.importorskip("httpx2")
from starlette.testclient import TestClient  # noqa: E402

from vid2vid.serve import BUILTIN_FRAMES, Builtin, Limits, Worker, make_app  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return train_on_tiny_dancers(root, heldout_sequences=1, heldout_frames=6, references=True), root


@pytest.fixture
def server(checkpoint, tmp_path):
    """A worker and a client; yields (client, worker)."""
    work = tmp_path / "work"
    work.mkdir()
    worker = Worker(checkpoint[0], work, Limits(max_upload_mb=2, max_frames=20, max_queue=2), device="cpu")
    with TestClient(make_app(worker)) as client:
        yield client, worker
    worker.stop()


def wait(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end in {timeout} s: {status}")


def frames_in(data: bytes) -> tuple[int, tuple[int, int]]:
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return len(frames), frames[0].shape[:2]


def zipped(folder: Path, inside: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, str(Path(inside) / path.relative_to(folder)))
    return buffer.getvalue()


def reference_files(root: Path, count: int = 2) -> list:
    """Synthesized reference frames with their OpenPose files, as the page uploads them."""
    images = sorted((root / "refs" / "images").glob("*/*.png"))[:count]
    files = []
    for image in images:
        files.append(("references", (image.name, image.read_bytes(), "image/png")))
        label = root / "refs" / "poses-openpose" / image.parent.name / f"{image.stem}.json"
        files.append(("references", (label.name, label.read_bytes(), "application/json")))
    return files


def hold(worker: Worker) -> threading.Event:
    """Make the worker wait before each job until the returned event is set."""
    gate = threading.Event()
    render = worker._render

    def held(job):
        gate.wait(30)
        render(job)

    worker._render = held
    return gate


def uploads_left(worker: Worker) -> list[Path]:
    return list((worker.work_dir / "jobs").glob("*/uploads"))


def test_info_describes_the_model(server):
    client, worker = server
    info = client.get("/api/info").json()
    assert info["few_shot"] is True and info["task"] == "pose"
    assert info["size"] == [32, 32] and [32, 32] in info["sizes"]
    assert info["builtin"]["identities"] and info["builtin"]["motions"]
    assert info["limits"]["max_frames"] == 20
    page = client.get("/")
    assert page.status_code == 200 and "Generate" in page.text
    assert client.get("/static/app.js").status_code == 200
    picture = client.get(f"/api/builtin/{info['builtin']['identities'][0]}.png")
    assert picture.status_code == 200 and picture.content[:4] == b"\x89PNG"


def test_a_longer_builtin_sequence_leaves_the_shorter_one_in_place(tmp_path):
    """A job asking for more frames must not delete the folder a thumbnail or another job is reading."""
    builtin = Builtin(tmp_path, "pose")
    short = builtin.sequence(1000, 4, (32, 32))
    picture = builtin.picture(1000, (32, 32))
    assert picture.is_relative_to(short)
    long = builtin.sequence(1000, BUILTIN_FRAMES + 3, (32, 32))
    assert long != short and picture.is_file()
    assert len(list((long / "images").glob("*/*"))) == BUILTIN_FRAMES + 3
    assert builtin.sequence(1000, 5, (32, 32)) == short  # the first long enough
    assert builtin.sequence(1000, BUILTIN_FRAMES + 1, (32, 32)) == long
    assert not list(tmp_path.glob(".new.*"))


def test_compiled_worker_renders_what_the_eager_one_does(checkpoint, tmp_path):
    """serve --compile: the worker's model runs through torch.compile and its frames match eager ones."""
    frames = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        work = tmp_path / name
        work.mkdir()
        worker = Worker(checkpoint[0], work, Limits(max_frames=20), device="cpu", compile_model=compiled)
        try:
            with TestClient(make_app(worker)) as client:
                assert client.get("/api/info").json()["compiled"] is compiled
                job = client.post("/api/jobs", data={"identity": "1000", "k": "1", "motion": "1001", "frames": "3",
                                                     "size": "32x32"}).json()["id"]
                status = wait(client, job, timeout=300)
                assert status["state"] == "done", status
                with av.open(io.BytesIO(client.get(status["result"]).content)) as container:
                    frames[name] = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
        finally:
            worker.stop()
    assert len(frames["compiled"]) == 3
    for a, b in zip(frames["compiled"], frames["eager"], strict=True):
        assert np.abs(a - b).max() <= 1


def test_builtin_identity_and_motion_make_a_video(server):
    client, worker = server
    response = client.post("/api/jobs", data={"identity": "1000", "k": "2", "motion": "1001", "frames": "7",
                                              "size": "32x32"})
    assert response.status_code == 202, response.text
    status = wait(client, response.json()["id"])
    assert status["state"] == "done", status
    assert status["done"] == status["total"] == 7 and status["fps"] > 0
    assert frames_in(client.get(status["result"]).content) == (7, (32, 32))
    assert frames_in(client.get(status["labels"]).content) == (7, (32, 32))
    assert len(status["references"]) == 2
    assert client.get(status["references"][0]).content[:4] == b"\x89PNG"
    assert uploads_left(worker) == []


def test_fine_tuning_job_reports_its_steps_then_renders(server, monkeypatch):
    """finetune=N: the job first fine-tunes a copy of the model (phase "finetune", N steps), then renders; the
    worker's own model is left as it was."""
    client, worker = server
    before = {k: v.clone() for k, v in worker.served().model.state_dict().items()}
    phases = []
    import vid2vid.finetune as finetune_module
    real = finetune_module.finetune

    def watched(*args, on_step=None, **kwargs):
        def step(i, terms):
            phases.append(worker.jobs[job_id].status(None))
            on_step(i, terms)
        return real(*args, on_step=step, **kwargs)

    monkeypatch.setattr(finetune_module, "finetune", watched)
    response = client.post("/api/jobs", data={"identity": "1000", "k": "2", "motion": "1001", "frames": "3",
                                              "size": "32x32", "finetune": "2"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    status = wait(client, job_id)
    assert status["state"] == "done", status
    assert status["finetune"] == 2 and status["phase"] == "render" and status["done"] == status["total"] == 3
    assert [p["phase"] for p in phases] == ["finetune", "finetune"]
    assert [p["done"] for p in phases] == [0, 1] and all(p["total"] in (0, 2) for p in phases)
    assert all(torch.equal(v, before[k]) for k, v in worker.served().model.state_dict().items())
    refused = client.post("/api/jobs", data={"identity": "1000", "motion": "1001", "finetune": "1000"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "fine-tuning steps must be between 0 and 300, got 1000"


def test_uploaded_references_and_prepared_zip(server, checkpoint):
    client, worker = server
    root = checkpoint[1]
    files = reference_files(root) + [("driving", ("motion.zip", zipped(root / "heldout", "heldout"),
                                                  "application/zip"))]
    response = client.post("/api/jobs", data={"frames": "5"}, files=files)
    assert response.status_code == 202, response.text
    status = wait(client, response.json()["id"])
    assert status["state"] == "done", status
    assert frames_in(client.get(status["result"]).content)[0] == 5
    assert len(status["references"]) == 2
    assert uploads_left(worker) == []


def test_prepared_folder_picked_in_the_browser(server, checkpoint):
    client, worker = server
    root = checkpoint[1] / "heldout"
    files = [("driving_folder", (f"heldout/{p.relative_to(root)}", p.read_bytes(), "application/octet-stream"))
             for p in sorted(root.rglob("*")) if p.is_file()]
    response = client.post("/api/jobs", data={"identity": "1002", "frames": "4"}, files=files)
    assert response.status_code == 202, response.text
    status = wait(client, response.json()["id"])
    assert status["state"] == "done", status
    assert frames_in(client.get(status["result"]).content)[0] == 4


def test_corrupt_video_fails_the_job_and_the_next_job_runs(server):
    client, worker = server
    response = client.post("/api/jobs", data={"identity": "1000"},
                           files={"driving": ("broken.mp4", b"\x00\x00\x00 ftypisom" + bytes(500), "video/mp4")})
    assert response.status_code == 202, response.text
    status = wait(client, response.json()["id"])
    assert status["state"] == "failed"
    message = status["message"]
    assert message.startswith("broken.mp4: ") and "\n" not in message and "Traceback" not in message
    assert "/tmp" not in message and str(worker.work_dir) not in message
    assert uploads_left(worker) == []
    again = client.post("/api/jobs", data={"identity": "1000", "motion": "1000", "frames": "3"})
    assert wait(client, again.json()["id"])["state"] == "done"


def test_a_pose_video_with_nobody_in_it(server, monkeypatch, tmp_path):
    """Detection (MediaPipe) is replaced by one that finds nobody, as it would in a video of an empty room."""
    from contextlib import contextmanager

    from vid2vid.data import keypoints, prepare

    @contextmanager
    def finds_nobody(task, multi_person, label_colours=False, landmarks="mediapipe"):
        yield lambda image, name: {"openpose": keypoints.openpose_json([])}

    monkeypatch.setattr(prepare, "label_extractor", finds_nobody)
    video = tmp_path / "empty_room.mp4"
    with VideoWriter(video, fps=10) as writer:
        for i in range(4):
            writer.write(np.full((48, 48, 3), 40 + i, np.uint8))
    client, worker = server
    response = client.post("/api/jobs", data={"identity": "1000"},
                           files={"driving": ("empty_room.mp4", video.read_bytes(), "video/mp4")})
    status = wait(client, response.json()["id"])
    assert status["state"] == "failed"
    assert status["message"] == "empty_room.mp4: no person was found in any frame"


@pytest.mark.parametrize("fields, files, status_code, expected", [
    ({"identity": "1000"}, {"driving": ("notes.txt", b"hello", "text/plain")}, 400,
     "notes.txt: not a video"),
    ({"motion": "1000"}, {"references": ("cat.gif", b"GIF89a", "image/gif")}, 400,
     "cat.gif: not an image"),
    ({"motion": "1000"}, {"references": ("a.json", b"{}", "application/json")}, 400,
     "the references hold no image"),
    ({"motion": "1000"}, {}, 400, "a few-shot model needs reference images"),
    ({"identity": "1000"}, {}, 400, "give one driving input"),
    ({"identity": "1000", "motion": "1000", "frames": "500"}, {}, 400, "frames must be between 1 and 20"),
    ({"identity": "1000", "motion": "1000", "size": "33x32"}, {}, 400, "size 33x32 is not offered here"),
    ({"identity": "77", "motion": "1000"}, {}, 400, "identity must be between"),
    ({"identity": "1000"}, {"driving": ("big.mp4", bytes(3 * 2**20), "video/mp4")}, 413,
     "the upload is larger than this server takes (2 MB)"),
])
def test_bad_forms_are_refused_at_once(server, fields, files, status_code, expected):
    client, worker = server
    response = client.post("/api/jobs", data=fields, files=files or None)
    assert response.status_code == status_code
    assert response.json()["error"].startswith(expected), response.json()
    assert uploads_left(worker) == []
    assert client.get("/api/info").status_code == 200


@pytest.mark.parametrize("name, content, expected", [
    ("motion.zip", b"PK\x03\x04 not really", "motion.zip: not a readable .zip file"),
    ("evil.zip", None, "evil.zip: holds a path outside the archive"),
    ("street.zip", "street", "street.zip: has street labels, and this model takes pose labels (poses-openpose/)"),
    ("empty.zip", "empty", "empty.zip: not a prepared dataset folder"),
])
def test_bad_zips_fail_with_their_name(server, tmp_path, name, content, expected):
    client, worker = server
    if content is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("../../outside.txt", "x")
        content = buffer.getvalue()
    elif content == "street":
        from vid2vid.data.writer import write_synthetic

        write_synthetic("street", tmp_path / "street", sequences=1, frames=2, size=(32, 64), progress=False)
        content = zipped(tmp_path / "street")
    elif content == "empty":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("readme.txt", "nothing here")
        content = buffer.getvalue()
    response = client.post("/api/jobs", data={"identity": "1000"},
                           files={"driving": (name, content, "application/zip")})
    if response.status_code == 400:
        message = response.json()["error"]
    else:
        assert response.status_code == 202
        status = wait(client, response.json()["id"])
        assert status["state"] == "failed"
        message = status["message"]
    assert message.startswith(expected), message
    assert not (tmp_path.parent / "outside.txt").exists()
    assert uploads_left(worker) == []


@pytest.mark.parametrize("names, expected", [
    (["holiday/a.jpg", "holiday/b.jpg"],
     "holiday: not a prepared dataset folder (no images/ folder in it; see `vid2vid prepare`)"),
    (["data/x", "data/x/y"], "data/x: File exists"),  # a file and a folder of one name
])
def test_refused_folder_uploads(server, names, expected):
    client, worker = server
    files = [("driving_folder", (name, b"x", "application/octet-stream")) for name in names]
    response = client.post("/api/jobs", data={"identity": "1000"}, files=files)
    assert response.status_code == 400
    assert response.json()["error"] == expected
    assert uploads_left(worker) == []


def test_one_job_at_a_time_and_a_bounded_queue(server):
    client, worker = server
    gate = hold(worker)
    form = {"identity": "1000", "motion": "1000", "frames": "2"}
    first = client.post("/api/jobs", data=form).json()
    time.sleep(0.3)  # the worker takes the first job
    second = client.post("/api/jobs", data=form).json()
    third = client.post("/api/jobs", data=form).json()
    assert client.get(f"/api/jobs/{first['id']}").json()["state"] == "running"
    assert client.get(f"/api/jobs/{second['id']}").json()["ahead"] == 1
    assert client.get(f"/api/jobs/{third['id']}").json()["ahead"] == 2
    refused = client.post("/api/jobs", data=form)
    assert refused.status_code == 503 and "the queue is full" in refused.json()["error"]
    assert len(list((worker.work_dir / "jobs").iterdir())) == 3  # the refused job left no folder
    gate.set()
    for job in (first, second, third):
        assert wait(client, job["id"])["state"] == "done"
    assert client.post("/api/jobs", data=form).status_code == 202


def test_a_run_folder_serves_its_latest_checkpoint(checkpoint, tmp_path):
    ckpt, root = checkpoint
    worker = Worker(root / "run", tmp_path, Limits(), device="cpu")
    try:
        assert worker.served().checkpoint == ckpt
        assert worker.info()["checkpoint"] == f"run/checkpoints/{ckpt.name}"
    finally:
        worker.stop()


def test_a_bug_while_rendering_gives_one_line_and_the_server_goes_on(server, monkeypatch):
    client, worker = server
    render = worker._render

    def broken(job):
        raise RuntimeError("something of ours broke")

    monkeypatch.setattr(worker, "_render", broken)
    form = {"identity": "1000", "motion": "1000", "frames": "2"}
    status = wait(client, client.post("/api/jobs", data=form).json()["id"])
    assert status["state"] == "failed"
    assert status["message"] == "the server could not render this job (an internal error, logged)"
    monkeypatch.setattr(worker, "_render", render)
    assert wait(client, client.post("/api/jobs", data=form).json()["id"])["state"] == "done"


def test_unknown_job_and_file(server):
    client, _ = server
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get("/api/jobs/nope/result.mp4").status_code == 404


def test_serve_command_refuses_a_missing_checkpoint(tmp_path, capsys):
    from vid2vid.cli import main

    assert main(["serve", "--checkpoint", str(tmp_path / "missing"), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing" in err[0]


def test_street_model_renders_a_builtin_sequence(tmp_path):
    """A vid2vid model: no references; built-in street sequences and colour-coded label videos."""
    from vid2vid.data.writer import write_synthetic
    from vid2vid.train import load_train_config, train

    write_synthetic("street", tmp_path / "street", sequences=1, frames=4, size=(64, 128), progress=False)
    cfg = load_train_config("train_street_cpu", data_root=str(tmp_path / "street"))
    cfg.schedule.iterations, cfg.data.clip_length, cfg.discriminator.temporal.enabled = 1, 2, False
    ckpt = train(cfg, tmp_path / "run", progress=False).last_checkpoint
    (tmp_path / "work").mkdir()
    worker = Worker(ckpt, tmp_path / "work", Limits(max_frames=10), device="cpu")
    try:
        with TestClient(make_app(worker)) as client:
            info = client.get("/api/info").json()
            assert info["few_shot"] is False and info["task"] == "street" and info["builtin"]["identities"] == []
            refused = client.post("/api/jobs", data={"identity": "1000", "motion": "1000"})
            assert refused.json()["error"] == "this is a vid2vid model: it takes no reference images"
            # A colour-coded label video drives it; a video of the street itself does not.
            from vid2vid.data.render import colours_from_ids
            from vid2vid.data.synthetic import sequence

            frames = list(sequence("street", 1004, 5, (64, 128)))
            for name, pictures in (("labels.mp4", [colours_from_ids(f.seg) for f in frames]),
                                   ("drive.mp4", [f.image for f in frames])):
                with VideoWriter(tmp_path / name, fps=10) as writer:
                    for picture in pictures:
                        writer.write(picture)
            job = client.post("/api/jobs", data={"frames": "4"},
                              files={"driving": ("labels.mp4", (tmp_path / "labels.mp4").read_bytes(), "video/mp4")})
            status = wait(client, job.json()["id"])
            assert status["state"] == "done", status
            assert frames_in(client.get(status["result"]).content) == (4, (64, 128))
            job = client.post("/api/jobs", files={"driving": ("drive.mp4", (tmp_path / "drive.mp4").read_bytes(),
                                                              "video/mp4")})
            status = wait(client, job.json()["id"])
            assert status["state"] == "failed"
            assert status["message"].startswith("drive.mp4: frame 00000: ") and "no Cityscapes label colour" in \
                status["message"], status["message"]
            job = client.post("/api/jobs", data={"motion": "1003", "frames": "3"}).json()
            status = wait(client, job["id"])
            assert status["state"] == "done", status
            assert frames_in(client.get(status["result"]).content) == (3, (64, 128))
            assert status["references"] == []
    finally:
        worker.stop()


def test_an_upload_without_a_length_is_cut_off_at_the_limit(server):
    client, worker = server
    boundary = "xyz"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="driving"; filename="big.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode()

    def body():  # streamed: no Content-Length, as a chunked upload sends it
        yield head
        for _ in range(40):
            yield bytes(2**17)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/api/jobs", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert response.json()["error"].startswith("the upload is larger than this server takes")
    assert uploads_left(worker) == []


def test_a_corrupt_reference_image_fails_with_its_name(server):
    client, worker = server
    response = client.post("/api/jobs", data={"motion": "1000"},
                           files={"references": ("me.png", b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png")})
    status = wait(client, response.json()["id"])
    assert status["state"] == "failed"
    assert status["message"].startswith("me.png: "), status["message"]
    assert uploads_left(worker) == []


def test_an_unlabelled_reference_needs_the_detector(server, checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if the extract extra were not installed
    client, worker = server
    image = sorted((checkpoint[1] / "refs" / "images").glob("*/*.png"))[0]
    response = client.post("/api/jobs", data={"motion": "1000"},
                           files={"references": ("me.png", image.read_bytes(), "image/png")})
    status = wait(client, response.json()["id"])
    assert status["state"] == "failed"
    assert status["message"] == 'pose/face extraction needs MediaPipe: pip install "vid2vid[extract]"'
    assert uploads_left(worker) == []


def test_face_model_renders_a_builtin_face(tmp_path):
    from vid2vid.data.writer import write_synthetic
    from vid2vid.train import load_train_config, train

    write_synthetic("faces", tmp_path / "faces", sequences=2, frames=4, size=(64, 64), progress=False)
    cfg = load_train_config("train_faces_cpu", data_root=str(tmp_path / "faces"))
    cfg.schedule.iterations = 1
    train(cfg, tmp_path / "run", progress=False)
    (tmp_path / "work").mkdir()
    worker = Worker(tmp_path / "run", tmp_path / "work", Limits(), device="cpu")
    try:
        with TestClient(make_app(worker)) as client:
            info = client.get("/api/info").json()
            assert info["task"] == "face" and info["label_file"] == "dlib-68 landmark JSON"
            job = client.post("/api/jobs", data={"identity": "1001", "k": "2", "motion": "1002", "frames": "3"})
            status = wait(client, job.json()["id"])
            assert status["state"] == "done", status
            assert frames_in(client.get(status["result"]).content) == (3, (64, 64))
            assert len(status["references"]) == 2
    finally:
        worker.stop()


def test_an_image_past_the_input_resolution_limit(checkpoint, tmp_path):
    ckpt, root = checkpoint
    worker = Worker(ckpt, tmp_path, Limits(max_input_resolution=40), device="cpu")
    try:
        with TestClient(make_app(worker)) as client:
            status = wait(client, client.post("/api/jobs", data={"motion": "1000"},
                                              files=reference_files(root, 1)).json()["id"])
            assert status["state"] == "failed"
            assert status["message"] == "00000.png: 48x48 is larger than this server takes (40 pixels a side at most)"
    finally:
        worker.stop()


def test_labelled_references_of_different_sizes(server, checkpoint, tmp_path):
    from vid2vid.data.writer import write_synthetic

    client, worker = server
    write_synthetic("dancers", tmp_path / "big", sequences=1, frames=1, size=(64, 80), first_index=1003,
                    progress=False)
    big = tmp_path / "big" / "images" / "dancers1003" / "00000.png"
    files = reference_files(checkpoint[1], 1) + [
        ("references", ("wide.png", big.read_bytes(), "image/png")),
        ("references", ("wide.json", (big.parents[2] / "poses-openpose" / "dancers1003" / "00000.json").read_bytes(),
                        "application/json"))]
    status = wait(client, client.post("/api/jobs", data={"motion": "1000", "frames": "2"}, files=files).json()["id"])
    assert status["state"] == "done", status
    assert len(status["references"]) == 2


def test_other_sites_and_host_names_are_refused(checkpoint, tmp_path):
    from vid2vid.serve import LOOPBACK_NAMES

    worker = Worker(checkpoint[0], tmp_path, Limits(), device="cpu")
    try:
        with TestClient(make_app(worker, LOOPBACK_NAMES), base_url="http://127.0.0.1:8000") as client:
            assert client.get("/api/info").status_code == 200
            posted = client.post("/api/jobs", data={"identity": "1000", "motion": "1000"},
                                 headers={"Origin": "https://evil.example"})
            assert posted.status_code == 403 and "only taken from this page" in posted.json()["error"]
            assert worker.jobs == {}
        with TestClient(make_app(worker, LOOPBACK_NAMES), base_url="http://rebound.example:8000") as client:
            assert client.get("/api/info").status_code == 400  # a name that was made to resolve to us
    finally:
        worker.stop()


def test_stopping_drops_queued_jobs(checkpoint, tmp_path):
    worker = Worker(checkpoint[0], tmp_path, Limits(), device="cpu")
    gate = hold(worker)
    with TestClient(make_app(worker)) as client:
        ids = [client.post("/api/jobs", data={"identity": "1000", "motion": "1000", "frames": "20"}).json()["id"]
               for _ in range(3)]
        time.sleep(0.3)
        gate.set()
        started = time.time()
        worker.stop()
        assert time.time() - started < 20 and not worker.thread.is_alive()
        states = [worker.jobs[i].state for i in ids]
        assert states[1:] == ["failed", "failed"] and worker.jobs[ids[2]].message == "the server stopped"
        assert uploads_left(worker) == []

"""Real photos (scikit-image's, read from the installed wheel) as the reference of the shipped model, end to end:
a person re-posed, odd photos framed as training framed its people, several people, a photo with nobody in it, and
`vid2vid serve` rendering an uploaded photo as `generate` does."""

import dataclasses
import io

import av
import cv2
import numpy as np
import pytest
import torch

from tests.test_keypoints import needs_mediapipe
from vid2vid.cli import main
from vid2vid.data import DataError, samples
from vid2vid.data.video import write_image
from vid2vid.data.writer import write_synthetic
from vid2vid.generate import data_config_for, generate, load_for_inference, references_for
from vid2vid.pretrained import shipped_model

pytest.importorskip("skimage")
pytestmark = needs_mediapipe


@pytest.fixture(scope="module")
def driving(tmp_path_factory):
    root = tmp_path_factory.mktemp("driving")
    write_synthetic("dancers", root, sequences=1, frames=4, size=(64, 64), first_index=1001, progress=False)
    return root


def frames_of(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_a_bundled_photo_is_rendered_by_the_shipped_model(driving, tmp_path, capsys):
    out = tmp_path / "astronaut.mp4"
    args = ["generate", "--checkpoint", str(shipped_model()), "--driving", str(driving), "--reference",
            str(samples.photo_path("astronaut")), "-o", str(out), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    frames = frames_of(out)
    assert len(frames) == 4 and frames[0].shape == (64, 64, 3)
    assert "people found" not in capsys.readouterr().err  # one person: nothing to say


def reference_person(photo: np.ndarray, tmp_path):
    """The K = 1 reference label and image the shipped model gets from this photo, and the drawn person's box."""
    path = tmp_path / "photo.png"
    write_image(path, photo)
    checkpoint = shipped_model()
    cfg = data_config_for(checkpoint, load_for_inference(checkpoint, torch.device("cpu")), None)
    cfg = dataclasses.replace(cfg, fit_person_box=True)  # as a model trained with it (the photo recipe) frames it
    work = tmp_path / "work"
    work.mkdir()
    refs = references_for([path], cfg, work)
    drawn = (refs.labels[0, 0, 3:] > -1).any(0).numpy()
    rows, cols = np.flatnonzero(drawn.any(1)), np.flatnonzero(drawn.any(0))
    return refs, (rows[0], rows[-1], cols[0], cols[-1])


@pytest.mark.parametrize("shape", ["wide", "tall"])
def test_odd_photos_are_framed_around_the_person_at_the_trained_scale(shape, tmp_path):
    camera = np.array(samples.photo("camera"))
    if shape == "wide":  # 3:1, the man at the left third
        photo = np.pad(camera, ((0, 0), (0, 1024), (0, 0)), mode="edge")
    else:  # 1:2, the man in the upper half
        photo = np.pad(camera, ((0, 512), (0, 0), (0, 0)), mode="constant", constant_values=90)
    refs, (top, bottom, left, right) = reference_person(photo, tmp_path)
    assert refs.images.shape == (1, 1, 3, 64, 64)
    # The box is 1.5 times the whole person's height (as in training; the man is cut at the knees and bent, so
    # his whole height comes from his shoulders and torso): his top a sixth of the frame down, centred across.
    assert 0.25 * 64 <= bottom - top <= 0.75 * 64
    assert abs((left + right) / 2 - 31.5) <= 8 and abs(top - 64 / 6) <= 5
    # Labels are drawn at the output's scale, so the limbs are unbroken lines (nearest-neighbour shrinking of a
    # drawing made at 512 px leaves gaps).
    drawn = (refs.labels[0, 0, 3:] > -1).any(0).numpy().astype(np.uint8)
    assert cv2.connectedComponents(drawn)[0] - 1 <= 3


def test_the_largest_of_several_people_is_rendered_and_said_in_one_line(driving, tmp_path, capsys):
    astronaut = np.array(samples.photo("astronaut"))
    photo = np.zeros((512, 896, 3), np.uint8)
    photo[:, :512] = astronaut
    photo[128:, 512:] = cv2.resize(astronaut, (384, 384), interpolation=cv2.INTER_AREA)
    path = tmp_path / "two.png"
    write_image(path, photo)
    out = tmp_path / "two.mp4"
    assert main(["generate", "--checkpoint", str(shipped_model()), "--driving", str(driving), "--reference",
                 str(path), "-o", str(out), "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "people found" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{path}: 2 people found; rendering the largest")
    (tmp_path / "again").mkdir()
    refs, (top, bottom, left, right) = reference_person(photo, tmp_path / "again")
    # The reference is cut around the larger person (the left one, 512 px of the 896), not the smaller.
    assert (left + right) / 2 < 40


def test_a_photo_with_nobody_in_it_is_one_line(driving, tmp_path, capsys):
    coffee = samples.photo_path("coffee")
    out = tmp_path / "coffee.mp4"
    assert main(["generate", "--checkpoint", str(shipped_model()), "--driving", str(driving), "--reference",
                 str(coffee), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {coffee}: no person was found in this reference image"
    assert not out.exists()


def test_serve_renders_an_uploaded_photo_as_generate_does(tmp_path):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from tests.test_serve import wait
    from vid2vid.serve import Limits, Worker, make_app

    checkpoint = shipped_model()
    photo = samples.photo_path("astronaut")
    work = tmp_path / "work"
    work.mkdir()
    worker = Worker(checkpoint, work, Limits(max_frames=20), device="cpu")
    try:
        with TestClient(make_app(worker)) as client:
            response = client.post("/api/jobs", data={"motion": "1001", "frames": "5", "size": "64x64"},
                                   files=[("references", ("astronaut.png", photo.read_bytes(), "image/png"))])
            assert response.status_code == 202, response.text
            status = wait(client, response.json()["id"], timeout=120)
            assert status["state"] == "done", status
            served = client.get(status["result"]).content
    finally:
        worker.stop()
    driving = worker.served().builtin.sequence(1001, 5, (64, 64))
    generate(checkpoint, driving, tmp_path / "generated.mp4", [photo], max_frames=5, progress=False)
    with av.open(io.BytesIO(served)) as container:
        from_serve = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    from_generate = frames_of(tmp_path / "generated.mp4")
    assert len(from_serve) == len(from_generate) == 5
    for a, b in zip(from_serve, from_generate, strict=True):
        assert np.array_equal(a, b)


def test_a_plain_backdrop_keeps_the_person_and_paints_the_rest_one_colour(tmp_path):
    """--reference-backdrop plain (the default): MediaPipe's person mask keeps the astronaut's pixels and puts a
    plain wall of the backdrop's median colour behind her; a photo with nobody in it is a one-line error."""
    from vid2vid.generate import plain_backdrop

    photo = np.array(samples.photo("astronaut"))
    plain = plain_backdrop(photo, tmp_path / "astronaut.png")
    assert plain.shape == photo.shape and plain.dtype == np.uint8
    face = (slice(80, 200), slice(180, 280))  # her face: the person, kept
    assert np.median(np.abs(plain[face].astype(int) - photo[face])) == 0
    corner = (slice(0, 60), slice(0, 60))  # the flag in the top-left corner: backdrop, now one colour
    assert photo[corner].std(axis=(0, 1)).max() > 30 and plain[corner].std(axis=(0, 1)).max() < 2
    with pytest.raises(DataError, match="wall.png: the person cannot be told from the backdrop"):
        plain_backdrop(np.full((256, 256, 3), 120, np.uint8), tmp_path / "wall.png")

"""The "face_photo" kind (the built-in talking heads filmed as by a camera, the shipped face model's data): backdrops
really cut from the bundled photos, per-seed determinism, a share kept as "faces" draws it, faces of varied size and
place whose landmarks never leave the frame, the camera's film, and a dataset the face task reads."""

import numpy as np
import pytest

from vid2vid.data import samples, synthetic
from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.synthetic import common, face_photo, photo
from vid2vid.data.writer import write_synthetic

pytest.importorskip("skimage")
SIZE = (64, 64)


def looks(count=80):
    return [(i, synthetic.identity("face_photo", i)) for i in range(count)]


def scene_of(index, look, size=SIZE):
    return face_photo.face_photo_scene(look, common._rng(0, "faces", index, common._MOTION_STREAM), size, 0, index)


def test_a_backdrop_is_the_photo_window_the_look_names():
    index, look = next((i, x) for i, x in looks() if x.backdrop is not None)
    window = photo.backdrop_window(samples.backdrops()[look.backdrop], look.window, SIZE).astype(np.float64)
    np.testing.assert_allclose(scene_of(index, look).background, window, atol=1e-6)
    assert not set(samples.PEOPLE) & set(samples.BACKDROP_PHOTOS)  # never a real face behind a synthetic one


def test_same_seed_same_frames_and_a_share_is_drawn_as_faces_draws_it():
    a = [f.image for f in synthetic.sequence("face_photo", 5, 3, SIZE)]
    b = [f.image for f in synthetic.sequence("face_photo", 5, 3, SIZE)]
    c = [f.image for f in synthetic.sequence("face_photo", 5, 3, SIZE, seed=1)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.abs(a[0].astype(int) - c[0]).mean() > 5
    all_looks = looks()
    plain = [i for i, x in all_looks if x.backdrop is None]
    assert 0.1 < len(plain) / len(all_looks) < 0.4
    faces = synthetic.sequence("faces", plain[0], 2, SIZE)
    for x, y in zip(synthetic.sequence("face_photo", plain[0], 2, SIZE), faces, strict=True):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.landmarks, y.landmarks)


def test_faces_vary_in_size_and_place_and_their_landmarks_stay_in_the_frame():
    widths, centres = [], []
    for index in range(60):
        for frame in synthetic.sequence("face_photo", index, 30, SIZE):
            points = frame.landmarks
            assert points.min() >= 0.99 and (points.max(axis=0) <= np.array([SIZE[1], SIZE[0]]) - 1.99).all()
        widths.append(np.ptp(points[:, 0]) / SIZE[1])
        centres.append(points[:, 0].mean() / SIZE[1])
    assert min(widths) < 0.25 and max(widths) > 0.45  # faces from under a quarter of the frame to near a half
    assert min(centres) < 0.4 and max(centres) > 0.6  # off centre both ways


def test_the_camera_films_every_frame_alike_but_for_its_noise():
    camera = photo.Camera(light=(0.3, 0.0), gain=(1.1, 1.0, 0.9), saturation=1.0, grey=False, blur=0.0, noise=0.0)
    flat = np.full((8, 8, 3), 100.0)
    filmed = photo.film(flat, camera, np.random.default_rng(0))
    # light grows to the right (angle 0) by strength times the pixel centre's distance from the frame's centre
    # (in frame widths: the outer columns' centres lie 3.5 / 8 from it); gain per channel
    np.testing.assert_allclose(filmed[:, -1, 0] / filmed[:, 0, 0], (1 + 0.3 * 3.5 / 8) / (1 - 0.3 * 3.5 / 8))
    np.testing.assert_allclose(filmed[0, 0] / filmed[0, 0, 1], (1.1, 1.0, 0.9))
    grey = photo.film(np.dstack([flat[:, :, 0], flat[:, :, 1] * 0.5, flat[:, :, 2]]),
                      photo.Camera((0.0, 0.0), (1, 1, 1), 1.0, True, 0.0, 2.0), np.random.default_rng(0))
    assert np.abs(grey - grey.mean(axis=2, keepdims=True)).max() < 1e-9  # one noise for the three channels
    assert 1.5 < grey.std() < 2.5


def test_a_written_face_photo_dataset_reads_as_a_face_dataset(tmp_path):
    write_synthetic("face_photo", tmp_path / "data", sequences=2, frames=3, size=(96, 96), progress=False)
    clips = VideoClips(tmp_path / "data", DataConfig(task="face", size=[64, 64], clip_length=2, num_references=1))
    item = clips[0]
    assert item["labels"].shape == (2, 1, 64, 64) and item["images"].shape == (2, 3, 64, 64)
    assert item["ref_images"].shape == (1, 3, 64, 64)
    assert (item["labels"] > 0).float().mean() > 0.01  # the edges are drawn

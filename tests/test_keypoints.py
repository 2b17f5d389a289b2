"""MediaPipe -> OpenPose / dlib-68 mapping tables, JSON round trips, and (where MediaPipe is installed) the
extractors on drawn images."""

import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vid2vid.data import keypoints, render
from vid2vid.data.detector import INSTALL_HINT
from vid2vid.data.keypoints import (
    BODY25_FROM_POSE33,
    BODY25_NAMES,
    DLIB68_FROM_FACEMESH,
    FACE70_FROM_FACEMESH,
    HAND21_FROM_MEDIAPIPE,
    POSE33_NAMES,
    FaceExtractor,
    MissingExtra,
    PoseExtractor,
    dlib68_json,
    map_points,
    openpose_json,
    openpose_person,
)

# CI installs the extract extra and sets VID2VID_REQUIRE_DETECTOR=1: there a missing MediaPipe fails these tests.
_MEDIAPIPE_MISSING = importlib.util.find_spec("mediapipe") is None and os.environ.get("VID2VID_REQUIRE_DETECTOR") != "1"
needs_mediapipe = pytest.mark.skipif(_MEDIAPIPE_MISSING, reason="MediaPipe not installed")

# Mirror pairs of the FaceMesh points the dlib table uses, found by reflecting measured landmarks of frontal faces
# across the face's plane of symmetry; midline points are their own mirror.
MESH_MIRROR_PAIRS = (
    (127, 356), (234, 454), (93, 323), (58, 288), (172, 397), (136, 365), (149, 378), (148, 377), (152, 152),
    (70, 300), (63, 293), (105, 334), (66, 296), (107, 336), (168, 168), (197, 197), (5, 5), (4, 4), (2, 2),
    (75, 305), (97, 326), (33, 263), (160, 387), (158, 385), (133, 362), (153, 380), (144, 373), (61, 291),
    (40, 270), (37, 267), (0, 0), (181, 405), (84, 314), (17, 17), (78, 308), (82, 312), (13, 13), (87, 317),
    (14, 14),
)
# dlib-68 point -> its mirror image (the horizontal-flip permutation of the 300-W layout).
DLIB68_MIRROR = (
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


def test_table_sizes_and_ranges():
    assert len(POSE33_NAMES) == 33 and len(BODY25_NAMES) == 25 == len(set(BODY25_NAMES))
    assert len(BODY25_FROM_POSE33) == 25
    assert all(0 <= i < 33 for entry in BODY25_FROM_POSE33 for i in entry)
    assert HAND21_FROM_MEDIAPIPE == tuple(range(21))
    assert len(DLIB68_FROM_FACEMESH) == 68 == len(set(DLIB68_FROM_FACEMESH))
    assert all(0 <= i < 468 for i in DLIB68_FROM_FACEMESH)
    assert FACE70_FROM_FACEMESH == DLIB68_FROM_FACEMESH + (468, 473)


def test_body25_shares_sources_only_for_the_toes():
    shared = {entry for entry in BODY25_FROM_POSE33 if BODY25_FROM_POSE33.count(entry) > 1}
    assert shared == {(31,), (32,)}
    named = {BODY25_NAMES[i]: [POSE33_NAMES[j] for j in entry] for i, entry in enumerate(BODY25_FROM_POSE33)}
    assert named["LBigToe"] == named["LSmallToe"] == ["left_foot_index"]
    assert named["RBigToe"] == named["RSmallToe"] == ["right_foot_index"]


def test_body25_left_and_right_come_from_the_same_side():
    for name, entry in zip(BODY25_NAMES, BODY25_FROM_POSE33, strict=True):
        sources = [POSE33_NAMES[i] for i in entry]
        if name[0] in "LR" and name[1].isupper():
            side = "left_" if name[0] == "L" else "right_"
            assert all(s.startswith(side) for s in sources), (name, sources)
        elif len(sources) == 2:  # a midpoint: one point from each side of the same joint
            assert sorted(s.split("_", 1)[0] for s in sources) == ["left", "right"], (name, sources)
            assert len({s.split("_", 1)[1] for s in sources}) == 1, (name, sources)
        else:
            assert sources == ["nose"], (name, sources)


def test_dlib68_left_right_pairs_map_to_mirror_mesh_points():
    mirror = {}
    for a, b in MESH_MIRROR_PAIRS:
        mirror[a], mirror[b] = b, a
    assert sorted(DLIB68_MIRROR) == list(range(68))
    for j, k in enumerate(DLIB68_MIRROR):
        assert mirror[DLIB68_FROM_FACEMESH[j]] == DLIB68_FROM_FACEMESH[k], (j, k)


def test_neck_and_mid_hip_are_synthesized_from_shoulders_and_hips():
    pose = np.zeros((33, 3))
    pose[:, 0], pose[:, 1], pose[:, 2] = np.arange(33) * 10.0, 100.0 + np.arange(33), 1.0
    pose[11], pose[12] = (100.0, 50.0, 0.9), (60.0, 54.0, 0.8)  # left, right shoulder
    pose[23], pose[24] = (90.0, 150.0, 0.7), (70.0, 146.0, 0.95)  # left, right hip
    body = map_points(pose, BODY25_FROM_POSE33)
    assert body.shape == (25, 3)
    np.testing.assert_allclose(body[1], (80.0, 52.0, 0.8))  # Neck: mean position, least confidence
    np.testing.assert_allclose(body[8], (80.0, 148.0, 0.7))  # MidHip
    np.testing.assert_allclose(body[2], pose[12])  # RShoulder
    np.testing.assert_allclose(body[5], pose[11])  # LShoulder
    np.testing.assert_allclose(body[19], pose[31])  # LBigToe <- left_foot_index
    np.testing.assert_allclose(body[24], pose[30])  # RHeel


def test_openpose_json_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.uniform(0, 500, (n, 3)).round(3) for n in (25, 70, 21, 21)]
    person = openpose_person(*parts)
    doc = openpose_json([person, openpose_person(parts[0])])
    assert doc["version"] == 1.3 and len(doc["people"]) == 2
    assert doc["people"][0]["person_id"] == [-1] and doc["people"][0]["pose_keypoints_3d"] == []
    assert [len(doc["people"][0][k]) for k in person] == [75, 210, 63, 63]
    path = tmp_path / "frame.json"
    path.write_text(json.dumps(doc))
    first, second = render.read_openpose_json(path)
    for got, want in zip((first.body, first.face, first.hand_left, first.hand_right), parts, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-3)
    assert not second.face.any() and not second.hand_left.any()


def test_dlib68_json_round_trip_in_imaginaire_format(tmp_path):
    points = np.random.default_rng(1).uniform(0, 640, (68, 2))
    data = dlib68_json(points)
    assert len(data) == 68 and all(len(p) == 2 for p in data)  # [[x, y], ...] like landmarks-dlib68/*.json
    path = tmp_path / "frame.json"
    path.write_text(json.dumps(data))
    np.testing.assert_allclose(render.read_landmarks_json(path), points, atol=0.01)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        dlib68_json(points[:67])


def test_missing_mediapipe_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    for extractor in (PoseExtractor, FaceExtractor):
        with pytest.raises(MissingExtra) as error:
            extractor()
        assert str(error.value) == INSTALL_HINT
    assert INSTALL_HINT == 'pose/face extraction needs MediaPipe: pip install "vid2vid[extract]"'



def test_missing_hog_detector_is_one_clear_line(monkeypatch):
    monkeypatch.delattr(cv2, "HOGDescriptor", raising=False)  # as in opencv-python-headless 5
    with pytest.raises(MissingExtra, match="^multi-person extraction needs OpenCV's HOG people detector: pip"):
        keypoints._people_detector()


SKIN, SHIRT, TROUSERS = (224, 172, 140), (50, 80, 160), (40, 40, 60)


def _draw_face(image, cx, cy):
    cv2.ellipse(image, (cx, cy), (34, 46), 0, 0, 360, SKIN, -1)
    cv2.ellipse(image, (cx, cy - 33), (38, 24), 0, 180, 360, (60, 40, 30), -1)  # hair
    for s in (-1, 1):
        cv2.ellipse(image, (cx + s * 14, cy - 7), (8, 4), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(image, (cx + s * 14, cy - 7), 3, (70, 50, 40), -1)
        cv2.line(image, (cx + s * 8, cy - 18), (cx + s * 22, cy - 19), (70, 50, 40), 3)
    cv2.line(image, (cx, cy - 5), (cx - 3, cy + 10), (180, 120, 100), 2)
    cv2.ellipse(image, (cx, cy + 22), (12, 5), 0, 0, 360, (170, 70, 80), -1)


def _draw_hand(image, cx, cy, thumb_side):
    """An open palm facing the camera, fingers up."""
    cv2.ellipse(image, (cx, cy), (21, 24), 0, 0, 360, SKIN, -1)
    for k, (dx, length) in enumerate(((-15, 35), (-5, 41), (5, 38), (15, 31))):
        x = cx - dx * thumb_side
        cv2.line(image, (x, cy - 17), (x - int((k - 1.5) * 3 * thumb_side), cy - 17 - length), SKIN, 8)
    cv2.line(image, (cx + 17 * thumb_side, cy + 3), (cx + 38 * thumb_side, cy - 17), SKIN, 9)


def _drawn_person(image, c, top):
    """A person facing the camera with both hands raised, palms forward; their left is the image's right."""
    cv2.rectangle(image, (c - 12, top + 100), (c + 12, top + 125), SKIN, -1)
    cv2.rectangle(image, (c - 55, top + 120), (c + 55, top + 300), SHIRT, -1)
    for s in (-1, 1):
        cv2.line(image, (c + s * 50, top + 130), (c + s * 110, top + 100), SHIRT, 22)
        cv2.line(image, (c + s * 110, top + 100), (c + s * 120, top + 10), SKIN, 16)
        _draw_hand(image, c + s * 120, top - 20, -s)  # thumbs towards the body
        cv2.line(image, (c + s * 28, top + 300), (c + s * 34, top + 420), TROUSERS, 30)
        cv2.line(image, (c + s * 34, top + 420), (c + s * 38, top + 500), TROUSERS, 24)
    _draw_face(image, c, top + 63)


@needs_mediapipe
def test_extractors_on_a_drawn_person():
    image = np.full((640, 480, 3), (200, 210, 220), np.uint8)
    _drawn_person(image, 240, 120)
    with PoseExtractor() as extract:
        (person,) = extract(image)
    body = np.array(person["pose_keypoints_2d"]).reshape(25, 3)
    face = np.array(person["face_keypoints_2d"]).reshape(70, 3)
    left = np.array(person["hand_left_keypoints_2d"]).reshape(21, 3)
    right = np.array(person["hand_right_keypoints_2d"]).reshape(21, 3)
    assert body[[0, 1, 2, 5, 8], 2].min() > 0.5
    assert abs(body[0, 0] - 240) < 6 and 176 < body[0, 1] < 200  # nose: between the eyes, above the mouth
    np.testing.assert_allclose(body[1, :2], body[[2, 5], :2].mean(0), atol=1e-3)  # neck, up to rounding
    assert body[5, 0] > 240 > body[2, 0]  # the left shoulder is on the image's right
    assert face[:, 2].min() == 1 and abs(face[68, 0] - 226) < 5 and abs(face[69, 0] - 254) < 5  # pupils
    assert left[:, 2].min() == 1 and right[:, 2].min() == 1
    assert abs(left[0, 0] - body[7, 0]) < 15 and abs(right[0, 0] - body[4, 0]) < 15  # hand wrist = body wrist
    assert left[4, 0] < left[0, 0] and right[4, 0] > right[0, 0]  # thumbs point to the body

    with FaceExtractor() as extract:
        landmarks = extract(image)
        assert extract(np.zeros((64, 64, 3), np.uint8)) is None
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    np.testing.assert_allclose(landmarks[36:42].mean(0), (226, 176), atol=4)  # right eye, drawn at (226, 176)
    np.testing.assert_allclose(landmarks[42:48].mean(0), (254, 176), atol=4)
    np.testing.assert_allclose(landmarks[48:68].mean(0), (240, 205), atol=5)  # mouth, drawn at (240, 205)


def _drawn_crowd(person_height: int) -> np.ndarray:
    """Three drawn people, each `person_height` px tall with raised hands, in a wide 960x480 frame."""
    canvas = np.full((640, 480, 3), (200, 210, 220), np.uint8)
    _drawn_person(canvas, 240, 120)
    person = cv2.resize(canvas, (person_height * 3 // 4, person_height), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 960, 3), (200, 210, 220), np.uint8)
    for x in (60, 360, 660):
        frame[200:200 + person_height, x:x + person.shape[1]] = person
    return frame


@needs_mediapipe
@pytest.mark.skipif(not hasattr(cv2, "HOGDescriptor"), reason="this OpenCV build has no HOG people detector")
def test_multi_person_finds_small_people_the_whole_frame_misses():
    frame = _drawn_crowd(120)
    with PoseExtractor() as extract:
        assert extract(frame) == []
    with PoseExtractor(multi_person=True) as extract:
        people = extract(frame)
    necks = sorted((np.array(p["pose_keypoints_2d"]).reshape(25, 3)[1] for p in people), key=lambda n: n[0])
    assert len(necks) == 3
    for neck, centre in zip(necks, (105, 405, 705), strict=True):  # each crop's points land on its own person
        assert abs(neck[0] - centre) < 6 and neck[2] > 0.5


@needs_mediapipe
@pytest.mark.skipif(not hasattr(cv2, "HOGDescriptor"), reason="this OpenCV build has no HOG people detector")
def test_multi_person_takes_images_smaller_than_the_people_detector_window():
    """OpenCV's HOG segfaults on images under its 64x128 window (96x96 and 64x112 did, 100x100 did not): a small
    reference photo took the server down. Run in a child process, so that a crash fails this test alone."""
    script = (
        "import numpy as np\n"
        "from vid2vid.data.keypoints import PoseExtractor\n"
        "with PoseExtractor(multi_person=True) as extract:\n"
        "    for h, w in [(64, 64), (96, 96), (64, 112), (128, 32), (20, 300)]:\n"
        "        assert extract(np.full((h, w, 3), 128, np.uint8)) == []\n"
        "print('survived')\n")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0 and child.stdout.strip().endswith("survived"), child.stderr[-2000:]

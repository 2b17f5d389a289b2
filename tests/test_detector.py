"""The keypoint detector's start: one line for each way it fails (missing, protobuf too new, no models, a broken
OpenCV, anything else), the Tasks API giving what the legacy API gives, fetching its models, and the bf16
warning on CPUs without bf16 instructions."""

import sys
import types
import warnings

import numpy as np
import pytest
import torch

from vid2vid.cli import main
from vid2vid.data import detector
from vid2vid.data.detector import INSTALL_HINT, MODEL_URLS, MissingExtra, assign_hands, fetch_models
from vid2vid.data.keypoints import FaceExtractor, PoseExtractor
from vid2vid.device import pick_precision


def point(x, y, visibility=1.0):
    return types.SimpleNamespace(x=x, y=y, z=0.0, visibility=visibility)


def body(seed=0):
    """33 pose landmarks of a person standing in the middle, wrists apart (15 left at x 0.3, 16 right at 0.7)."""
    rng = np.random.default_rng(seed)
    points = [point(0.4 + 0.2 * rng.random(), 0.1 + 0.8 * i / 33, 0.9) for i in range(33)]
    points[15], points[16] = point(0.3, 0.5, 0.9), point(0.7, 0.5, 0.9)
    return points


def hand(x, y):
    return [point(x + 0.01 * i, y + 0.005 * i, 0.0) for i in range(21)]


FACE = [point(0.45 + 0.1 * (i % 10) / 10, 0.1 + 0.05 * (i // 10) / 48, 0.0) for i in range(478)]


class FakeLandmarker:
    def __init__(self, field, value):
        self.field, self.value = field, value

    def detect(self, image):
        return types.SimpleNamespace(**{self.field: self.value})

    def close(self):
        pass


def fake_mediapipe(version_has_solutions: bool, pose, hands, face):
    """A stand-in mediapipe module: legacy solutions (Holistic, FaceMesh) or the Tasks API, both returning the
    given landmarks."""
    mp = types.SimpleNamespace(Image=lambda image_format, data: data, ImageFormat=types.SimpleNamespace(SRGB=1))
    left = min(hands, key=lambda h: h[0].x) if hands else None
    right = max(hands, key=lambda h: h[0].x) if len(hands) > 1 else None
    legacy = types.SimpleNamespace(
        pose_landmarks=types.SimpleNamespace(landmark=pose), face_landmarks=types.SimpleNamespace(landmark=face),
        left_hand_landmarks=left and types.SimpleNamespace(landmark=left),
        right_hand_landmarks=right and types.SimpleNamespace(landmark=right))

    class Holistic:
        def __init__(self, **options):
            pass

        def process(self, image):
            return legacy

        def close(self):
            pass

    class FaceMesh(Holistic):
        def process(self, image):
            return types.SimpleNamespace(multi_face_landmarks=[types.SimpleNamespace(landmark=face)])

    if version_has_solutions:
        mp.solutions = types.SimpleNamespace(holistic=types.SimpleNamespace(Holistic=Holistic),
                                             face_mesh=types.SimpleNamespace(FaceMesh=FaceMesh))
        return mp

    def landmarker(field, value):
        return types.SimpleNamespace(create_from_options=lambda options: FakeLandmarker(field, value))

    options = types.SimpleNamespace
    vision = types.SimpleNamespace(
        RunningMode=types.SimpleNamespace(IMAGE=0),
        PoseLandmarker=landmarker("pose_landmarks", [pose]), PoseLandmarkerOptions=options,
        HandLandmarker=landmarker("hand_landmarks", hands), HandLandmarkerOptions=options,
        FaceLandmarker=landmarker("face_landmarks", [face]), FaceLandmarkerOptions=options)
    mp.tasks = types.SimpleNamespace(BaseOptions=lambda model_asset_path: model_asset_path, vision=vision)
    return mp


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv(detector.MODELS_ENV, str(tmp_path / "models"))
    return tmp_path / "models"


def test_tasks_api_gives_what_the_legacy_api_gives(monkeypatch, models):
    """The same landmarks through the legacy solutions and through the Tasks landmarkers (hands listed the other
    way round, as the Tasks model may): the same OpenPose people and dlib-68 points."""
    image = np.zeros((64, 48, 3), np.uint8)
    pose, hands = body(), [hand(0.3, 0.52), hand(0.7, 0.52)]
    monkeypatch.setitem(sys.modules, "mediapipe", fake_mediapipe(True, pose, hands, FACE))
    monkeypatch.setattr(detector, "_version", lambda package: "4.25.9" if package == "protobuf" else "0.10.14")
    monkeypatch.setattr(detector, "_needs_old_protobuf", lambda: True)
    legacy_people, legacy_face = PoseExtractor()(image), FaceExtractor()(image)
    monkeypatch.setitem(sys.modules, "mediapipe", fake_mediapipe(False, pose, hands[::-1], FACE))
    models.mkdir()
    for name in MODEL_URLS:
        (models / name).write_bytes(b"model")
    tasks_people, tasks_face = PoseExtractor()(image), FaceExtractor()(image)
    assert legacy_people and tasks_people == legacy_people
    assert np.array_equal(tasks_face, legacy_face)
    assert any(v > 0 for v in tasks_people[0]["hand_left_keypoints_2d"])


def test_hands_go_to_the_nearer_wrist():
    pose = body()
    near_left, near_right = hand(0.31, 0.5), hand(0.69, 0.5)
    assert assign_hands([near_right, near_left], pose) == {"left": near_left, "right": near_right}
    assert assign_hands([near_right], pose) == {"right": near_right}
    assert assign_hands([], pose) == {}


def test_protobuf_too_new_is_one_line(monkeypatch):
    """Said before MediaPipe is imported (0.10.14 under protobuf 7 prints a traceback line while importing)."""
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # an import would fail differently
    monkeypatch.setattr(detector, "_needs_old_protobuf", lambda: True)  # 0.10.14's metadata: protobuf<5,>=4.25.3
    monkeypatch.setattr(detector, "_version", lambda package: "7.36.2" if package == "protobuf" else "0.10.14")
    with pytest.raises(MissingExtra) as error:
        PoseExtractor()
    assert str(error.value) == ("MediaPipe 0.10.14 needs protobuf < 5, but protobuf 7.36.2 is installed (another "
                                "install raised it): pip install 'protobuf>=4.25.3,<5'")


def test_missing_detector_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(MissingExtra) as error:
        FaceExtractor()
    assert str(error.value) == INSTALL_HINT
    monkeypatch.setattr(detector, "sys", types.SimpleNamespace(version_info=(3, 13, 1)))
    with pytest.raises(MissingExtra, match=r"on Python 3\.13 it installs MediaPipe's Tasks API; then fetch its "
                                           r"models once: vid2vid detector-models --fetch\)$"):
        FaceExtractor()


def test_tasks_api_without_models_names_the_folder_and_the_fetch(monkeypatch, models):
    monkeypatch.setitem(sys.modules, "mediapipe", fake_mediapipe(False, body(), [], FACE))
    monkeypatch.setattr(detector, "_version", lambda package: "1.2.3")
    with pytest.raises(MissingExtra) as error:
        PoseExtractor()
    assert str(error.value) == (f"MediaPipe 1.2.3 carries no models; pose_landmarker_full.task, hand_landmarker.task, "
                                f"face_landmarker.task not in {models}: fetch them once with `vid2vid detector-models "
                                "--fetch`, or give --detector-models DIR")


def test_a_detector_that_fails_to_start_is_one_line(monkeypatch):
    mp = fake_mediapipe(True, body(), [], FACE)

    def broken(**options):
        raise AttributeError("'google._upb._message.FieldDescriptor' object has no attribute 'label'")

    mp.solutions.holistic.Holistic = broken
    monkeypatch.setitem(sys.modules, "mediapipe", mp)
    monkeypatch.setattr(detector, "_version", lambda package: "4.25.9")
    with pytest.raises(MissingExtra, match=r"^the MediaPipe pose detector cannot start \(AttributeError: .*label'\); "
                                           r"`pip check` lists broken requirements"):
        PoseExtractor()


def test_an_opencv_that_does_not_load_is_one_line(monkeypatch, capsys, tmp_path):
    """Two packages writing one cv2 folder can leave it broken: the command says so and how to mend it."""
    import vid2vid.data.prepare as prepare_module

    def prepare(*args, **kwargs):
        raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(prepare_module, "prepare", prepare)
    assert main(["prepare", str(tmp_path / "v.mp4"), str(tmp_path / "out"), "--task", "pose"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: OpenCV (cv2) cannot load (libGL.so.1")
    assert "pip install --force-reinstall --no-deps 'opencv-python-headless>=4.8,<5'" in err[0]


def test_fetch_models_from_a_mirror_once(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in MODEL_URLS:
        (mirror / name).write_bytes(name.encode())
    folder = tmp_path / "models"
    written = fetch_models(folder, mirror.as_uri())
    assert sorted(p.name for p in written) == sorted(MODEL_URLS)
    assert all((folder / name).read_bytes() == name.encode() for name in MODEL_URLS)
    assert fetch_models(folder, mirror.as_uri()) == []  # present files are kept
    assert not list(folder.glob(".*"))  # no temporary files left
    (folder / "hand_landmarker.task").unlink()
    assert main(["detector-models", "--dir", str(folder), "--fetch", "--from", mirror.as_uri()]) == 0
    out = capsys.readouterr().out
    assert f"wrote {folder / 'hand_landmarker.task'}" in out and out.count(": present") == 3
    with pytest.raises(OSError, match="cannot download"):
        fetch_models(tmp_path / "other", (tmp_path / "nowhere").as_uri())


def test_detector_models_flag_sets_the_folder(monkeypatch, tmp_path):
    import vid2vid.cli as cli
    monkeypatch.setenv(detector.MODELS_ENV, "elsewhere")  # restored after the test, whatever main sets
    seen = []
    monkeypatch.setattr(cli, "cmd_prepare", lambda args: seen.append(detector.models_folder()))
    assert main(["prepare", "in.mp4", "out", "--task", "pose", "--detector-models", str(tmp_path)]) == 0
    assert seen == [tmp_path]


@pytest.mark.parametrize("flags, warns", [({"avx2", "fma"}, True), ({"avx2", "avx512_bf16"}, False),
                                          ({"amx_bf16"}, False), (None, False)])
def test_bf16_on_a_cpu_without_bf16_instructions_warns(monkeypatch, flags, warns):
    import vid2vid.device as device
    monkeypatch.setattr(device, "cpu_flags", lambda: None if flags is None else frozenset(flags))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pick_precision("bf16", torch.device("cpu")) == torch.bfloat16
        pick_precision("fp32", torch.device("cpu"))
    messages = [str(w.message) for w in caught]
    assert len(messages) == int(warns), messages
    if warns:
        assert "emulated and about 400x slower than fp32" in messages[0] and "--precision fp32" in messages[0]

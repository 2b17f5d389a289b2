"""The MediaPipe models behind `keypoints.py`, and one line saying why they cannot start when they cannot.

Two ways to run them, with the same outputs (legacy-shaped results: `pose_landmarks`, `face_landmarks`,
`left_hand_landmarks`, `right_hand_landmarks`, each with a `.landmark` list of x, y (normalised), visibility):

- the legacy `mp.solutions` API of MediaPipe 0.10.14, whose wheel carries its models: offline, used by the tests
  and the demo (Python <= 3.12);
- MediaPipe's Tasks API (0.10.35 and later, any Python): Pose, Hand and Face landmarkers whose model files live
  in a folder: `--detector-models DIR`, else $VID2VID_DETECTOR_MODELS, else ~/.cache/vid2vid/detector-models.
  `vid2vid detector-models --fetch` downloads them there once (internet needed; MODEL_URLS).

The legacy API is taken where it exists; the Tasks API otherwise.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vid2vid.files import atomic_write_bytes

INSTALL_HINT = 'pose/face extraction needs MediaPipe: pip install "vid2vid[extract]"'
MODELS_ENV = "VID2VID_DETECTOR_MODELS"
MODEL_URLS = {
    "pose_landmarker_full.task": "https://storage.googleapis.com/mediapipe-models/pose_landmarker/"
                                 "pose_landmarker_full/float16/latest/pose_landmarker_full.task",
    "hand_landmarker.task": "https://storage.googleapis.com/mediapipe-models/hand_landmarker/hand_landmarker/"
                            "float16/latest/hand_landmarker.task",
    "face_landmarker.task": "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/"
                            "float16/latest/face_landmarker.task",
}
LEFT_WRIST, RIGHT_WRIST = 15, 16  # MediaPipe Pose landmarks
OPENCV_FIX = ("two OpenCV packages share the cv2 folder (opencv-python-headless, ours, and opencv-contrib-python, "
              "MediaPipe's); reinstall ours over it: pip install --force-reinstall --no-deps "
              "'opencv-python-headless>=4.8,<5'")


class MissingExtra(RuntimeError):
    """An optional dependency is missing or cannot start; the message is one line saying what to run."""


def models_folder() -> Path:
    """Where the Tasks API's model files are looked for (and fetched to)."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "vid2vid" / "detector-models"


def fetch_models(folder: Path | None = None, base_url: str | None = None) -> list[Path]:
    """Download the Tasks API's model files that are not in folder yet (each written whole or not at all);
    base_url replaces the folder of every URL (a mirror). Returns the files written."""
    folder = folder or models_folder()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, url in MODEL_URLS.items():
        if (folder / name).is_file():
            continue
        source = f"{base_url.rstrip('/')}/{name}" if base_url else url
        try:
            with urllib.request.urlopen(source, timeout=60) as response:
                data = response.read()
        except OSError as exc:
            raise OSError(f"{source}: cannot download ({exc}); with no internet here, copy the files from a "
                          f"machine that has it into {folder}") from None
        atomic_write_bytes(folder / name, data)
        written.append(folder / name)
    return written


def _import_mediapipe():
    """mediapipe, after the checks that turn its known failures into one line."""
    protobuf = _version("protobuf")
    # Before the import: MediaPipe 0.10.14 under protobuf >= 5 prints a traceback line while importing.
    if protobuf is not None and int(protobuf.split(".")[0]) >= 5 and _needs_old_protobuf():
        raise MissingExtra(f"MediaPipe {_version('mediapipe')} needs protobuf < 5, but protobuf {protobuf} is "
                           "installed (another install raised it): pip install 'protobuf>=4.25.3,<5'")
    try:
        import mediapipe
    except ImportError as exc:
        if "cv2" in str(exc) or "libGL" in str(exc):
            raise MissingExtra(f"MediaPipe cannot import OpenCV ({exc}): {OPENCV_FIX}") from None
        python = tuple(sys.version_info[:2])
        if python >= (3, 13):
            raise MissingExtra(f"{INSTALL_HINT} (on Python {python[0]}.{python[1]} it installs MediaPipe's Tasks "
                               "API; then fetch its models once: vid2vid detector-models --fetch)") from None
        raise MissingExtra(INSTALL_HINT) from None
    return mediapipe


def _needs_old_protobuf() -> bool:
    """Whether the installed MediaPipe asks for protobuf < 5 (0.10.14 does; the Tasks-only releases need none)."""
    try:
        requirements = importlib.metadata.requires("mediapipe") or []
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(r.replace(" ", "").startswith("protobuf") and "<5" in r.replace(" ", "") for r in requirements)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _has_legacy_solutions(mediapipe) -> bool:
    try:
        return hasattr(mediapipe.solutions, "holistic")
    except AttributeError:  # MediaPipe 0.10.35 and later have no solutions package
        return False


def _starting(what: str, make):
    """make() with an unexpected failure of MediaPipe's start reported as one line that says what to check."""
    try:
        return make()
    except MissingExtra:
        raise
    except Exception as exc:  # noqa: BLE001 - MediaPipe raises whatever its C++ or protobuf layers raise
        raise MissingExtra(f"the MediaPipe {what} cannot start ({type(exc).__name__}: {exc}); `pip check` lists "
                           "broken requirements, and pip install 'vid2vid[extract]' sets them right") from None


def holistic(tracking: bool):
    """Body + face + hands on one frame: legacy Holistic (model complexity 1, refined face) or the Tasks
    landmarkers."""
    mp = _import_mediapipe()
    if _has_legacy_solutions(mp):
        return _starting("pose detector", lambda: mp.solutions.holistic.Holistic(
            static_image_mode=not tracking, model_complexity=1, refine_face_landmarks=True))
    return _starting("pose detector", lambda: TasksHolistic(mp, _task_models(
        "pose_landmarker_full.task", "hand_landmarker.task", "face_landmarker.task")))


def face_finder():
    """Face boxes, near and far (legacy FaceDetection, full-range model), to propose people for the pose; None
    where MediaPipe has only the Tasks API (whose face detector needs a downloaded model)."""
    mp = _import_mediapipe()
    if not _has_legacy_solutions(mp):
        return None
    return _starting("face finder", lambda: mp.solutions.face_detection.FaceDetection(
        model_selection=1, min_detection_confidence=0.5))


def person_segmenter():
    """Person-versus-background masks: legacy SelfieSegmentation (its general model); the Tasks API has no
    bundled equivalent, so that path raises MissingExtra."""
    mp = _import_mediapipe()
    if not _has_legacy_solutions(mp):
        raise MissingExtra("person segmentation needs MediaPipe's legacy solutions (mediapipe 0.10.14, Python <= "
                           "3.12): pip install 'vid2vid[extract]'")
    return _starting("person segmenter", lambda: mp.solutions.selfie_segmentation.SelfieSegmentation(
        model_selection=0))


def face_mesh(tracking: bool):
    """468 face points + 10 iris points on one face: legacy FaceMesh (refined) or the Tasks face landmarker."""
    mp = _import_mediapipe()
    if _has_legacy_solutions(mp):
        return _starting("face detector", lambda: mp.solutions.face_mesh.FaceMesh(
            static_image_mode=not tracking, max_num_faces=1, refine_landmarks=True))
    return _starting("face detector", lambda: TasksFaceMesh(mp, _task_models("face_landmarker.task")))


def _task_models(*names: str) -> list[Path]:
    folder = models_folder()
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise MissingExtra(f"MediaPipe {_version('mediapipe')} carries no models; {', '.join(missing)} not in "
                           f"{folder}: fetch them once with `vid2vid detector-models --fetch`, or give "
                           "--detector-models DIR")
    return [folder / name for name in names]


def _landmarks(points) -> SimpleNamespace:
    return SimpleNamespace(landmark=list(points))


def assign_hands(hands: list, pose: list) -> dict:
    """{"left": hand, "right": hand} for up to two found hands: by the nearer pose wrist, and for two hands the
    pairing with the smaller total wrist distance."""
    def distance(hand, wrist):
        return float(np.hypot(hand[0].x - pose[wrist].x, hand[0].y - pose[wrist].y))  # hand point 0: its wrist
    if not hands:
        return {}
    if len(hands) == 1:
        return {"left" if distance(hands[0], LEFT_WRIST) <= distance(hands[0], RIGHT_WRIST) else "right": hands[0]}
    a, b = hands[:2]
    straight = distance(a, LEFT_WRIST) + distance(b, RIGHT_WRIST)
    crossed = distance(a, RIGHT_WRIST) + distance(b, LEFT_WRIST)
    return {"left": a, "right": b} if straight <= crossed else {"left": b, "right": a}


class TasksHolistic:
    """The Tasks API's pose, hand and face landmarkers in the shape of a legacy Holistic result. Hands are given
    to the nearer wrist of the pose (the person's own left and right, as Holistic gives them; the Tasks hand
    model's handedness assumes a mirrored selfie image)."""

    def __init__(self, mp, models: list[Path]):
        vision, base = mp.tasks.vision, mp.tasks.BaseOptions
        self._mp = mp
        image = vision.RunningMode.IMAGE
        self._pose = vision.PoseLandmarker.create_from_options(vision.PoseLandmarkerOptions(
            base_options=base(model_asset_path=str(models[0])), running_mode=image, num_poses=1))
        self._hands = vision.HandLandmarker.create_from_options(vision.HandLandmarkerOptions(
            base_options=base(model_asset_path=str(models[1])), running_mode=image, num_hands=2))
        self._face = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
            base_options=base(model_asset_path=str(models[2])), running_mode=image, num_faces=1))

    def process(self, image: np.ndarray) -> SimpleNamespace:
        frame = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        pose = self._pose.detect(frame).pose_landmarks
        result = SimpleNamespace(pose_landmarks=None, face_landmarks=None, left_hand_landmarks=None,
                                 right_hand_landmarks=None)
        if not pose:
            return result
        result.pose_landmarks = _landmarks(pose[0])
        faces = self._face.detect(frame).face_landmarks
        if faces:
            result.face_landmarks = _landmarks(faces[0])
        hands = self._hands.detect(frame).hand_landmarks
        for side, hand in assign_hands(hands, pose[0]).items():
            setattr(result, f"{side}_hand_landmarks", _landmarks(hand))
        return result

    def close(self) -> None:
        for landmarker in (self._pose, self._hands, self._face):
            landmarker.close()


class TasksFaceMesh:
    """The Tasks face landmarker (478 points: the mesh and the irises) in the shape of a legacy FaceMesh result."""

    def __init__(self, mp, models: list[Path]):
        vision, base = mp.tasks.vision, mp.tasks.BaseOptions
        self._mp = mp
        self._face = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
            base_options=base(model_asset_path=str(models[0])), running_mode=vision.RunningMode.IMAGE,
            num_faces=1))

    def process(self, image: np.ndarray) -> SimpleNamespace:
        frame = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        faces = self._face.detect(frame).face_landmarks
        return SimpleNamespace(multi_face_landmarks=[_landmarks(f) for f in faces[:1]] or None)

    def close(self) -> None:
        self._face.close()

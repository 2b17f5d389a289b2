"""Pose, face and hand keypoints from images with MediaPipe, as OpenPose BODY_25 / face-70 / hand-21 and dlib-68;
dlib's own 68-point predictor as a second face landmark source; how steady landmarks are and how far two
sources lie apart.

MediaPipe (the optional extra `vid2vid[extract]`, its legacy or its Tasks API: `detector.py`) finds 33 body,
478 face (468 mesh + 10 iris) and 21 + 21 hand landmarks. The tables below map them onto the layouts our datasets
store, the same as imaginaire's: `poses-openpose/*.json` (OpenPose 1.x JSON) and `landmarks-dlib68/*.json` (a list
of 68 [x, y]).
The tables and the JSON writers need only numpy; MediaPipe is started when an extractor is built.
Left and right are always the person's own, in MediaPipe as in OpenPose; dlib-68 numbers the jaw from the
image-left end, which on a frontal face is the person's right side.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from vid2vid.data import detector
from vid2vid.data.detector import MissingExtra

# MediaPipe Pose landmarks in index order (mediapipe.solutions.pose.PoseLandmark).
POSE33_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

# OpenPose BODY_25 in index order (OpenPose doc/02_output.md).
BODY25_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel",
    "RBigToe", "RSmallToe", "RHeel",
)

# BODY_25 point <- the mean of these MediaPipe Pose points; its confidence is the least of their visibilities.
# Synthesized: Neck (mid-shoulders) and MidHip (mid-hips); OpenPose's own neck and mid-hip sit within 1% of body
# height of these. Approximated: MediaPipe has one toe point (foot_index, the tip of the foot), so BigToe and
# SmallToe are both that point. The other 21 are the same anatomical points in both.
BODY25_FROM_POSE33 = (
    (0,),       # Nose
    (11, 12),   # Neck = midpoint of the shoulders
    (12,),      # RShoulder
    (14,),      # RElbow
    (16,),      # RWrist
    (11,),      # LShoulder
    (13,),      # LElbow
    (15,),      # LWrist
    (23, 24),   # MidHip = midpoint of the hips
    (24,),      # RHip
    (26,),      # RKnee
    (28,),      # RAnkle
    (23,),      # LHip
    (25,),      # LKnee
    (27,),      # LAnkle
    (5,),       # REye
    (2,),       # LEye
    (8,),       # REar
    (7,),       # LEar
    (31,),      # LBigToe <- left_foot_index
    (31,),      # LSmallToe <- left_foot_index (approximate)
    (29,),      # LHeel
    (32,),      # RBigToe <- right_foot_index
    (32,),      # RSmallToe <- right_foot_index (approximate)
    (30,),      # RHeel
)

# OpenPose hand-21 <- MediaPipe hand-21: the same points in the same order (wrist, then thumb CMC/MCP/IP/tip and
# index/middle/ring/little MCP/PIP/DIP/tip), so the table is the identity.
HAND21_FROM_MEDIAPIPE = tuple(range(21))

# dlib-68 (iBUG 300-W order) <- MediaPipe FaceMesh index. Chosen on anatomy first (the mesh's own contours: face
# oval, upper brow line, eye and lip rings), then, among neighbours, by distance to dlib and OpenPose reference
# landmarks (docs/data.md has the figures). Each left/right pair of dlib points maps to a mirror pair of mesh points.
DLIB68_FROM_FACEMESH = (
    # 0-16 jaw, on the face-oval contour from the right ear's level through the chin (152) to the left
    127, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 356,
    # 17-21 right brow, outer to inner; 22-26 left brow, inner to outer (upper edge of the brow)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # 27-30 nose bridge, top to tip; 31-35 lower edge of the nose, right to left
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # 36-41 right eye, 42-47 left eye: outer/inner corner, two upper-lid points, corner, two lower-lid points
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # 48-59 outer lip ring from the right corner over the upper lip, 60-67 inner lip ring the same way
    61, 40, 37, 0, 267, 270, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)

# OpenPose face-70 = dlib-68 + 68 right pupil, 69 left pupil: MediaPipe's iris centres (478-point mesh).
FACE70_FROM_FACEMESH = DLIB68_FROM_FACEMESH + (468, 473)

# MediaPipe's documented visibility cut-off (drawing_utils); below it a body point is written as OpenPose writes
# an undetected one: x = y = confidence = 0.
MIN_VISIBILITY = 0.5

_MID_HIP = BODY25_NAMES.index("MidHip")
_R_SHOULDER, _L_SHOULDER = BODY25_NAMES.index("RShoulder"), BODY25_NAMES.index("LShoulder")


def map_points(points: np.ndarray, table) -> np.ndarray:
    """(N, 3) x, y, confidence -> (len(table), 3). An entry is one index or a tuple whose points are averaged;
    the confidence of an average is the least of its parts'."""
    rows = [np.atleast_1d(entry) for entry in table]
    xy = np.stack([points[r, :2].mean(0) for r in rows])
    conf = np.array([points[r, 2].min() for r in rows])
    return np.concatenate([xy, conf[:, None]], axis=1)


def openpose_person(body=None, face=None, hand_left=None, hand_right=None) -> dict:
    """One OpenPose person from (25, 3), (70, 3), (21, 3), (21, 3) arrays of x, y, confidence; None -> zeros."""
    def flat(points, n):
        points = np.zeros((n, 3)) if points is None else np.asarray(points, dtype=np.float64).reshape(n, 3)
        return [round(float(v), 3) for v in points.ravel()]
    return {"pose_keypoints_2d": flat(body, 25), "face_keypoints_2d": flat(face, 70),
            "hand_left_keypoints_2d": flat(hand_left, 21), "hand_right_keypoints_2d": flat(hand_right, 21)}


def openpose_json(people: list[dict]) -> dict:
    """The OpenPose 1.3 JSON document for one frame (what OpenPose's --write_json writes); read it back with
    `render.read_openpose_json`."""
    empty_3d = {part: [] for part in ("pose_keypoints_3d", "face_keypoints_3d", "hand_left_keypoints_3d",
                                      "hand_right_keypoints_3d")}
    return {"version": 1.3, "people": [{"person_id": [-1], **person, **empty_3d} for person in people]}


def dlib68_json(points: np.ndarray) -> list:
    """(68, 2) landmarks -> the JSON list of imaginaire's landmarks-dlib68 files, [[x, y], ...] in pixels; read it
    back with `render.read_landmarks_json`."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"dlib-68 landmarks must be (68, 2), got {points.shape}")
    return [[round(float(x), 2), round(float(y), 2)] for x, y in points]


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")


def _pixels(landmarks, box, confidence: bool) -> np.ndarray:
    """MediaPipe landmarks normalised to a crop -> (N, 3) x, y, confidence in the full image's pixels.
    No half-pixel shift: x * width as it is lands closer to OpenPose's and dlib's points than x * width - 0.5.
    Face and hand landmarks carry no score in the legacy API: a found face or hand gets confidence 1."""
    x0, y0, w, h = box
    return np.array([[x0 + p.x * w, y0 + p.y * h, min(max(p.visibility, 0.0), 1.0) if confidence else 1.0]
                     for p in landmarks.landmark])


def _keep_visible(points: np.ndarray, width: int, height: int, min_confidence: float) -> np.ndarray:
    """Zero the points OpenPose would not report: low confidence or outside the image."""
    x, y, c = points.T
    keep = (c >= min_confidence) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    return np.where(keep[:, None], points, 0.0)


def _bounds(person: dict) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of a person's detected body points."""
    body = np.asarray(person["pose_keypoints_2d"]).reshape(25, 3)
    body = body[body[:, 2] > 0]
    return body[:, 0].min(), body[:, 1].min(), body[:, 0].max(), body[:, 1].max()


def _contains(bounds, x: float, y: float) -> bool:
    return bounds[0] <= x <= bounds[2] and bounds[1] <= y <= bounds[3]


class PoseExtractor:
    """RGB frame -> OpenPose people (BODY_25 + face-70 + hands) with MediaPipe Holistic, model_complexity 1.

    Single-person mode runs on the whole frame and finds at most one person, the most prominent. With
    `multi_person`, OpenCV's HOG people detector then proposes boxes; each box whose centre is not already on a
    found person is padded to a square (Holistic wants the whole body with a margin), upscaled so its longer side
    is at least `crop_size`, and run on its own; a pose found there counts only with its hips visible, and its
    points are mapped back to the frame. HOG's window is 128 px high, so people shorter than about 100 px are
    found only when `min_person_height` says so (the frame is upscaled for HOG by 96 / min_person_height).
    HOG misses people who do not stand like pedestrians (at a tripod, seen from the waist up), so MediaPipe's face
    finder proposes a box around each face too (a body's height of 8 faces below it, 4 faces wide), where a pose
    counts with its shoulders seen.
    `tracking` lets MediaPipe follow the person from one call to the next (consecutive video frames, single
    person); without it each frame is independent.
    """

    def __init__(self, multi_person: bool = False, tracking: bool = False, min_person_height: int = 96,
                 crop_size: int = 512, min_confidence: float = MIN_VISIBILITY):
        if multi_person and tracking:
            raise ValueError("tracking follows one person; it cannot be combined with multi_person")
        self.min_person_height, self.crop_size, self.min_confidence = min_person_height, crop_size, min_confidence
        self._hog = _people_detector() if multi_person else None
        self._faces = detector.face_finder() if multi_person else None
        self._holistic = detector.holistic(tracking)

    def __call__(self, image: np.ndarray) -> list[dict]:
        _check_image(image)
        height, width = image.shape[:2]
        people = []
        whole = self._person(image, (0, 0, width, height))
        if whole is not None:
            people.append(whole)
        if self._hog is None:
            return people
        proposals = [(box, (_MID_HIP,)) for box in self._people_boxes(image)]
        proposals += [(box, (_R_SHOULDER, _L_SHOULDER)) for box in self._face_boxes(image)]
        for box, needed in proposals:
            x, y, w, h = box
            if any(_contains(_bounds(p), x + w / 2, y + h / 2) for p in people):
                continue
            person = self._person(image, _square_crop(box, width, height))
            # HOG proposes whole standing bodies; a pose without hips in its box is MediaPipe seeing a person in
            # something else (a church tower in a Cityscapes frame gave a confident head and shoulders). A face's
            # box needs the shoulders under it.
            if person is None or any(person["pose_keypoints_2d"][3 * k + 2] == 0 for k in needed):
                continue
            x0, y0, x1, y1 = _bounds(person)
            if not any(_contains(_bounds(p), (x0 + x1) / 2, (y0 + y1) / 2) for p in people):
                people.append(person)
        return people

    def _person(self, image: np.ndarray, box: tuple[int, int, int, int]) -> dict | None:
        x0, y0, w, h = box
        crop = image[y0:y0 + h, x0:x0 + w]
        scale = self.crop_size / max(w, h)
        if scale > 1:  # normalised landmarks do not depend on the crop's resolution, so no scale to undo
            crop = cv2.resize(crop, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
        result = self._holistic.process(np.ascontiguousarray(crop))
        if result.pose_landmarks is None:
            return None
        height, width = image.shape[:2]

        def part(landmarks, table, confidence):
            if landmarks is None:
                return None
            points = map_points(_pixels(landmarks, box, confidence), table)
            return _keep_visible(points, width, height, self.min_confidence)

        body = part(result.pose_landmarks, BODY25_FROM_POSE33, True)
        if not (body[:, 2] > 0).any():
            return None
        return openpose_person(body, part(result.face_landmarks, FACE70_FROM_FACEMESH, False),
                               part(result.left_hand_landmarks, HAND21_FROM_MEDIAPIPE, False),
                               part(result.right_hand_landmarks, HAND21_FROM_MEDIAPIPE, False))

    def _people_boxes(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        scale = max(1.0, 96 / self.min_person_height)
        if scale > 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        # OpenCV 4.14's HOG crashes the process (a segfault, no exception) on an image smaller than its window:
        # a 64x64 reference photo killed the server. Pad the bottom and right with black up to the window.
        window_w, window_h = self._hog.winSize
        short_y, short_x = max(0, window_h - image.shape[0]), max(0, window_w - image.shape[1])
        if short_y or short_x:
            image = cv2.copyMakeBorder(image, 0, short_y, 0, short_x, cv2.BORDER_CONSTANT, value=0)
        boxes, _ = self._hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05)
        return [tuple(float(v) / scale for v in box) for box in boxes]

    def _face_boxes(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """A standing body's box under each face MediaPipe finds, largest face first."""
        if self._faces is None:
            return []
        found = self._faces.process(np.ascontiguousarray(image)).detections or []
        height, width = image.shape[:2]
        boxes = []
        for detection in found:
            face = detection.location_data.relative_bounding_box
            w, h = face.width * width, face.height * height
            cx = (face.xmin + face.width / 2) * width
            boxes.append((cx - 2 * w, face.ymin * height - 0.5 * h, 4 * w, 8 * h))
        return sorted(boxes, key=lambda b: -b[3])

    def close(self) -> None:
        self._holistic.close()
        if self._faces is not None:
            self._faces.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _people_detector():
    # opencv-python(-headless) 5 moved HOG out of the main package; opencv-contrib-python still has it.
    if not hasattr(cv2, "HOGDescriptor"):
        raise MissingExtra("multi-person extraction needs OpenCV's HOG people detector: "
                           "pip install opencv-contrib-python (or opencv-python-headless<5)")
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())
    return hog


def _square_crop(box, width: int, height: int, margin: float = 0.25) -> tuple[int, int, int, int]:
    """x, y, w, h of a square around a HOG box, its side the box's height plus `margin` of it, clipped to the image."""
    x, y, w, h = box
    side = h * (1 + margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    x1, y1 = min(width, round(cx + side / 2)), min(height, round(cy + side / 2))
    return x0, y0, x1 - x0, y1 - y0


class FaceExtractor:
    """RGB frame -> dlib-68 landmarks, (68, 2) float32 pixels, of one face (MediaPipe FaceMesh with its iris
    refinement, which also moves the eye contours closer to dlib's), or None where no face is found.
    `tracking` lets MediaPipe follow the face across consecutive video frames."""

    def __init__(self, tracking: bool = False):
        self._mesh = detector.face_mesh(tracking)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        _check_image(image)
        result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        height, width = image.shape[:2]
        points = _pixels(result.multi_face_landmarks[0], (0, 0, width, height), False)
        return points[list(DLIB68_FROM_FACEMESH), :2].astype(np.float32)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _dlib_models() -> Path:
    """The model folder of `face-recognition-models` (found without importing it: its __init__ needs
    pkg_resources, which recent setuptools dropped)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra(DLIB_FIX)
    return Path(next(iter(spec.submodule_search_locations))) / "models"


DLIB_FIX = "dlib's landmarks need the dlib extra: pip install 'vid2vid[dlib]' (dlib-bin and face-recognition-models)"


class DlibFaceExtractor:
    """RGB frame -> dlib-68 landmarks, (68, 2) float32 pixels, of the largest face, or None: dlib's own HOG face
    detector and its 68-point shape predictor (shape_predictor_68_face_landmarks.dat, as `face-recognition-models`
    bundles it), what imaginaire's face data and published checkpoint were made with. `upsample`: the detector
    looks at the frame this many times doubled (it misses faces under about 80 px otherwise)."""

    def __init__(self, upsample: int = 1):
        try:
            import dlib
        except ImportError:
            raise MissingExtra(DLIB_FIX) from None
        model = _dlib_models() / "shape_predictor_68_face_landmarks.dat"
        if not model.is_file():
            raise MissingExtra(f"{model}: missing ({DLIB_FIX})")
        self._detect = dlib.get_frontal_face_detector()
        self._predict = dlib.shape_predictor(str(model))
        self.upsample = upsample

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        _check_image(image)
        image = np.ascontiguousarray(image)
        faces = self._detect(image, self.upsample)
        if not faces:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = self._predict(image, face)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


LANDMARK_SOURCES = ("mediapipe", "dlib")

# dlib-68's parts, as its points are numbered (the person's right first: image-left on a frontal face).
LANDMARK_GROUPS = {"jaw": range(0, 17), "right brow": range(17, 22), "left brow": range(22, 27),
                   "nose": range(27, 36), "right eye": range(36, 42), "left eye": range(42, 48),
                   "mouth": range(48, 68)}


def inter_ocular(points: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (...,): the distance between the eyes' outer corners (points 36 and 45), the unit face
    landmark errors are given in."""
    return np.linalg.norm(points[..., 36, :] - points[..., 45, :], axis=-1)


def landmark_jitter(track: np.ndarray, window: int = 5) -> float:
    """How much landmarks tremble along a video: (T, 68, 2) points of consecutive frames -> the median distance of
    each point from its own moving average over `window` frames (centred; frames near the ends left out), in
    inter-ocular distances. Motion that lasts longer than the window is not counted; detection noise is."""
    track = np.asarray(track, np.float64)
    if len(track) < window:
        return float("nan")
    kernel = np.ones(window) / window
    smooth = np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, track)
    half = window // 2
    distances = np.linalg.norm(track[half:len(track) - half] - smooth, axis=-1)
    return float(np.median(distances / inter_ocular(track[half:len(track) - half])[:, None]))


def group_distances(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two sets of dlib-68 landmarks of the same frames, (T, 68, 2) each -> per group, the mean distance between
    corresponding points in inter-ocular distances (of the first set)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    distances = np.linalg.norm(a - b, axis=-1) / inter_ocular(a)[:, None]
    groups = {name: float(distances[:, list(points)].mean()) for name, points in LANDMARK_GROUPS.items()}
    groups["all"] = float(distances.mean())
    return groups

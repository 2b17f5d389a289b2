"""Label rendering: keypoints, DensePose and segmentation ids -> label maps, with imaginaire's conventions.

imaginaire's released checkpoints were trained on labels drawn by its own numpy/cv2 code; to feed them what they
saw, this module reproduces that drawing rule for rule, quirks included (each quirk is named where it is kept).
Everything here is a pure function of arrays, except the two JSON readers.

    OpenPose   read_openpose_json -> Person; draw_openpose -> (H, W, 3) colour limbs or (H, W, 27) one limb a channel
    DensePose  densepose_to_label: IUV PNG -> (H, W, 3) in [-1, 1], channel 2 = part index p as p / 24 * 2 - 1
    dlib-68    read_landmarks_json -> (68, 2); draw_face_edges -> (H, W) edge map; test-time normalisation/smoothing
    seg ids    segmentation_one_hot -> (H, W, C); instance_boundaries -> (H, W)
    crops      person_crop_box, face_crop_box -> CropBox; flips: flip_openpose, flip_landmarks

Label arrays are (H, W, C) like the images they are cropped with; the dataset transposes them for torch.
Images are indexed [row, column] and keypoints are (x, y) in pixels of the frame they were detected in, with pixel
centres at integers (OpenPose and dlib write column/row indices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vid2vid.data import DataError
from vid2vid.files import read_json

# ----------------------------------------------------------------------------------------------------------------
# Curves and strokes: imaginaire's drawing primitive, shared by the pose and face maps.


def _curve_pixels(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer pixels along the line (2 points) or parabola (3 points) through the points, or None if none drawn.

    The curve is a function of the axis along which consecutive points move the most, sampled round(length) times
    between the first and last point along that axis and truncated to integers. A parabola bending more than
    |a| = 1 is not drawn. imaginaire fits the curve with scipy's curve_fit; we interpolate in closed (Lagrange)
    form, exact at the points themselves, where the iterative fit lands within ~1e-13 on either side, so a curve
    through integer coordinates can truncate one pixel lower there in imaginaire (see docs/data.md).
    """
    if np.abs(np.diff(xs)).max() < np.abs(np.diff(ys)).max():
        curve = _curve_pixels(ys, xs)
        return None if curve is None else (curve[1], curve[0])
    if len(np.unique(xs)) < len(xs):
        # Two of three points share the abscissa: the parabola is undetermined, and scipy either fails, returns
        # |a| > 1 (both: nothing drawn) or some arbitrary curve. We draw nothing. Two equal points: nothing either.
        return None
    if len(xs) == 3:
        x0, x1, x2 = xs
        y0, y1, y2 = ys
        leading = y0 / ((x0 - x1) * (x0 - x2)) + y1 / ((x1 - x0) * (x1 - x2)) + y2 / ((x2 - x0) * (x2 - x1))
        if abs(leading) > 1:
            return None
    start, stop = (xs[0], xs[-1]) if xs[0] <= xs[-1] else (xs[-1], xs[0])
    curve_x = np.linspace(start, stop, int(np.round(stop - start)))
    if curve_x.size == 0:
        return None
    curve_y = np.zeros_like(curve_x)
    for i in range(len(xs)):
        basis = np.ones_like(curve_x)
        for j in range(len(xs)):
            if j != i:
                basis *= (curve_x - xs[j]) / (xs[i] - xs[j])
        curve_y += ys[i] * basis
    return curve_x.astype(int), curve_y.astype(int)


def _paint(canvas: np.ndarray, rows: np.ndarray, cols: np.ndarray, color) -> None:
    """Set pixels; on a colour canvas, average with what is there if any of them is already inked.

    The average is imaginaire's: when any pixel of the set is non-zero, every pixel of the set becomes
    floor((old + colour) / 2), so blank pixels next to a crossing get half the colour.
    """
    if canvas.ndim == 2:
        canvas[rows, cols] = color
    elif not canvas[rows, cols].any():
        canvas[rows, cols] = color
    else:
        canvas[rows, cols] = ((canvas[rows, cols].astype(np.float64) + color) / 2).astype(np.uint8)


def _stroke(canvas: np.ndarray, curve: tuple[np.ndarray, np.ndarray], half_width: int, color,
            end_points: bool) -> None:
    """Stamp the curve with a square pen: offsets -half_width..half_width-1 on both axes (2 * half_width pixels).

    With end_points, both ends also get a disc: offsets -2h..2h-1 with dx^2 + dy^2 < 4h^2 (h = half_width).
    On colour canvases the offsets are painted one after another in imaginaire's order (rows outer, columns
    inner), since _paint's averaging depends on it; a single-channel canvas is painted in one go.
    """
    h, w = canvas.shape[:2]
    cols, rows = curve
    passes = [(rows + dy, cols + dx) for dy in range(-half_width, half_width) for dx in range(-half_width, half_width)]
    if end_points:
        end_rows, end_cols = rows[[0, -1]], cols[[0, -1]]
        radius = 2 * half_width
        passes += [(end_rows + dy, end_cols + dx) for dy in range(-radius, radius) for dx in range(-radius, radius)
                   if dy * dy + dx * dx < radius * radius]
    if canvas.ndim == 2:
        passes = [(np.concatenate([r for r, _ in passes]), np.concatenate([c for _, c in passes]))]
    for pass_rows, pass_cols in passes:
        # Points off the canvas are pulled onto its border, as imaginaire does.
        _paint(canvas, np.minimum(np.maximum(pass_rows, 0), h - 1), np.minimum(np.maximum(pass_cols, 0), w - 1), color)


# ----------------------------------------------------------------------------------------------------------------
# OpenPose (BODY_25 body, 70-point face, 21-point hands).

BODY_25_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye",
    "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
    "right_small_toe", "right_heel",
)

# Limbs in drawing order with their (channel 0, 1, 2) colours; in the 27-channel map limb k is channel k.
BODY_LIMBS = (
    (17, 15), (15, 0), (0, 16), (16, 18),  # head
    (0, 1), (1, 8),  # trunk
    (1, 2), (2, 3), (3, 4),  # right arm
    (1, 5), (5, 6), (6, 7),  # left arm
    (8, 9), (9, 10), (10, 11),  # right leg
    (8, 12), (12, 13), (13, 14),  # left leg
)
BODY_COLORS = (
    (153, 0, 153), (153, 0, 102), (102, 0, 153), (51, 0, 153),
    (153, 0, 51), (153, 0, 0),
    (153, 51, 0), (153, 102, 0), (153, 153, 0),
    (102, 153, 0), (51, 153, 0), (0, 153, 0),
    (0, 153, 51), (0, 153, 102), (0, 153, 153),
    (0, 102, 153), (0, 51, 153), (0, 0, 153),
)
FOOT_LIMBS = ((11, 24), (11, 22), (22, 23), (14, 21), (14, 19), (19, 20))  # right foot, left foot
FOOT_COLORS = ((0, 153, 153),) * 3 + ((0, 0, 153),) * 3

HAND_FINGERS = ((0, 1, 2, 3, 4), (0, 5, 6, 7, 8), (0, 9, 10, 11, 12), (0, 13, 14, 15, 16), (0, 17, 18, 19, 20))
HAND_COLORS = ((204, 0, 0), (163, 204, 0), (0, 204, 82), (0, 82, 204), (163, 0, 204))

# Face-70 polylines as the pose map draws them (no inner lips, no pupils); each is kept or dropped as a whole.
OPENPOSE_FACE_LINES = (
    tuple(range(0, 17)),  # jaw
    tuple(range(17, 22)), tuple(range(22, 27)),  # eyebrows
    (28, 31), tuple(range(31, 36)), (35, 28),  # nose
    (36, 37, 38, 39), (39, 40, 41, 36),  # eye
    (42, 43, 44, 45), (45, 46, 47, 42),  # eye
    tuple(range(48, 55)), (54, 55, 56, 57, 58, 59, 48),  # outer lips
)

BODY_MIN_CONFIDENCE = 0.01
HAND_MIN_CONFIDENCE = 0.01
FACE_MIN_CONFIDENCE = 0.1
OPENPOSE_ONE_HOT_CHANNELS = 27  # 24 limbs, left hand, right hand, face


@dataclass(frozen=True, eq=False)
class Person:
    """One OpenPose detection; every array holds rows of (x, y, confidence), confidence 0 where not detected.

    float64 arrays holding the file's values rounded to float32: imaginaire stores keypoints as float32
    (openpose_to_npy) and its augmentation turns them into float64 before drawing; truncation to pixels sees
    exactly those values.
    """

    body: np.ndarray  # (25, 3), BODY_25 order
    face: np.ndarray  # (70, 3), dlib-68 order + right pupil (68), left pupil (69)
    hand_left: np.ndarray  # (21, 3)
    hand_right: np.ndarray  # (21, 3)


def _keypoint_rows(path: str | Path, person: dict, key: str, count: int, required: bool) -> np.ndarray:
    values = person.get(key)
    if values is None and required:
        raise DataError(f"{path}: a person without {key}")
    if not values and not required:
        # OpenPose run without --face or --hand writes empty lists; those parts are simply undetected.
        return np.zeros((count, 3))
    try:
        rows = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {key} is not a list of numbers") from None
    if key == "pose_keypoints_2d" and rows.shape == (18 * 3,):
        raise DataError(f"{path}: COCO-18 body keypoints; imaginaire's models need BODY_25 (run OpenPose with "
                        "--model_pose BODY_25)")
    if rows.shape != (count * 3,):
        raise DataError(f"{path}: {key} has {rows.size} numbers, expected {count * 3} ({count} x, y, confidence)")
    with np.errstate(over="ignore"):
        rows = rows.astype(np.float32)  # what imaginaire reads (see Person); a value beyond float32 becomes inf
    if not np.isfinite(rows).all():
        raise DataError(f"{path}: {key} has NaN or infinite values")
    return rows.reshape(count, 3).astype(np.float64)


def read_openpose_json(path: str | Path) -> list[Person]:
    """The people of one OpenPose JSON file (possibly none: a frame where nobody was found is valid)."""
    path = Path(path)
    try:
        content = read_json(path)
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    return openpose_people(content, path)


def openpose_people(content, source: str | Path) -> list[Person]:
    """The people of an OpenPose JSON document (`keypoints.openpose_json`'s, or a file's read by
    read_openpose_json); source names it in errors."""
    if not isinstance(content, dict) or not isinstance(content.get("people"), list):
        raise DataError(f"{source}: not OpenPose JSON (no 'people' list)")
    people = []
    for person in content["people"]:
        if not isinstance(person, dict):
            raise DataError(f"{source}: not OpenPose JSON ('people' holds {type(person).__name__}, not objects)")
        people.append(Person(
            body=_keypoint_rows(source, person, "pose_keypoints_2d", 25, required=True),
            face=_keypoint_rows(source, person, "face_keypoints_2d", 70, required=False),
            hand_left=_keypoint_rows(source, person, "hand_left_keypoints_2d", 21, required=False),
            hand_right=_keypoint_rows(source, person, "hand_right_keypoints_2d", 21, required=False),
        ))
    return people


def check_points_in_frame(path: str | Path, points: np.ndarray, height: int, width: int, margin: float) -> None:
    """(N, 2) points lie within the image, give or take margin times its size; points far outside mean the
    keypoints were found on a video of another size (frames resized after extraction)."""
    x, y = points[:, 0], points[:, 1]
    outside = (x < -margin * width) | (x > (1 + margin) * width) | (y < -margin * height) | (y > (1 + margin) * height)
    if outside.any():
        bad = points[outside][0]
        raise DataError(f"{path}: keypoint ({bad[0]:g}, {bad[1]:g}) outside the {width}x{height} image "
                        "(keypoints found on another size of the video?)")


def check_people_in_frame(path: str | Path, people: list[Person], height: int, width: int) -> None:
    """OpenPose reports no detected keypoint outside its image (nor does `prepare`): a 10% margin is plenty."""
    for person in people:
        for part in (person.body, person.face, person.hand_left, person.hand_right):
            check_points_in_frame(path, part[part[:, 2] > 0, :2], height, width, margin=0.1)


def _check_on_canvas(points: np.ndarray, height: int, width: int) -> None:
    """Drawing samples a curve once per pixel of its length: a point many canvases away would take forever."""
    if len(points) and np.abs(points).max() > 4 * max(height, width):
        raise ValueError(f"keypoints far outside the {width}x{height} canvas (largest coordinate "
                         f"{np.abs(points).max():g}); keypoints must be in the canvas's pixels")


def largest_person(people: list[Person]) -> Person | None:
    """The tallest person: largest vertical extent of body points with confidence > 0.01; first one on ties.

    imaginaire's vid2vid pose datasets draw this person (openpose_to_npy_largest_only); its few-shot datasets draw
    the first person of the file (or the one named in all_indices.json). imaginaire fails when no person has a
    positive extent; we return the first person then, and None when there is nobody.
    """
    best, best_extent = (people[0] if people else None), 0.0
    for person in people:
        ys = person.body[person.body[:, 2] > BODY_MIN_CONFIDENCE, 1]
        extent = float(ys.max() - ys.min()) if ys.size else 0.0
        if extent > best_extent:
            best, best_extent = person, extent
    return best


def scale_person(person: Person, scale: tuple[float, float], shift: tuple[float, float] = (0.0, 0.0)) -> Person:
    """Keypoints through a resize and crop of the frame: x -> x * scale_x + shift_x, same for y; undetected points
    stay at (0, 0). imaginaire moves keypoints this way (albumentations: no half-pixel offset) before drawing."""
    def move(rows: np.ndarray) -> np.ndarray:
        rows = rows.copy()
        detected = rows[:, 2] > 0
        rows[detected, 0] = rows[detected, 0] * scale[0] + shift[0]
        rows[detected, 1] = rows[detected, 1] * scale[1] + shift[1]
        return rows

    return Person(move(person.body), move(person.face), move(person.hand_left), move(person.hand_right))


def hide_points_below(person: Person, y_max: float) -> Person:
    """The person as a frame ending at row y_max shows it: points below are undetected (zeros)."""
    def hide(rows: np.ndarray) -> np.ndarray:
        rows = rows.copy()
        rows[rows[:, 1] > y_max] = 0.0
        return rows

    return Person(hide(person.body), hide(person.face), hide(person.hand_left), hide(person.hand_right))


def _valid_points(keypoints: np.ndarray, min_confidence: float, lines: tuple[tuple[int, ...], ...] | None):
    """(N, 3) -> (N, 2) float64 with undetected points at (0, 0), which the drawing skips.

    With lines, a line's points are kept only if all of them pass the threshold (hands and face); otherwise each
    point is judged alone (body).
    """
    points = np.zeros((len(keypoints), 2))
    if lines is None:
        valid = keypoints[:, 2] > min_confidence
        points[valid] = keypoints[valid, :2]
    else:
        for line in lines:
            line = list(line)
            if (keypoints[line, 2] > min_confidence).all():
                points[line] = keypoints[line, :2]
    return points


def _draw_polyline(canvas: np.ndarray, points: np.ndarray, line: tuple[int, ...], half_width: int, color,
                   end_points: bool, keep) -> None:
    """Each consecutive pair of the line is a straight segment, dropped at random by keep() and skipped when one
    of its points has x == 0 (undetected; also a detected point exactly on column 0, as in imaginaire)."""
    for a, b in zip(line[:-1], line[1:], strict=True):
        if not keep():
            continue
        xs, ys = points[[a, b], 0], points[[a, b], 1]
        if (xs == 0).any():
            continue
        curve = _curve_pixels(xs, ys)
        if curve is not None:
            _stroke(canvas, curve, half_width, color, end_points)


def draw_openpose(person: Person | None, height: int, width: int, *, one_hot: bool = False,
                  basic_points_only: bool = False, with_face: bool = True, drop_prob: float = 0.0,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """imaginaire's pose map of one person: (H, W, 3) uint8 coloured limbs, or (H, W, 27) uint8 0/255 with one_hot.

    Colour map: body limbs in BODY_COLORS with discs at their ends, hands in HAND_COLORS (one per finger), face
    lines in white; where strokes overlap, colours average (see _paint). One-hot map: limb k in channel k (feet
    included: 24 limbs), left hand 24, right hand 25, face 26. basic_points_only leaves out feet, hands and face;
    with_face=False is imaginaire's remove_face_labels. Each segment is dropped with probability drop_prob
    (training augmentation, one rng.random() per segment in drawing order); rng None draws every segment.

    Keypoints must be in pixels of the (height, width) canvas, i.e. after the frame's resize and crop. Pen
    half-widths follow imaginaire: max(1, h // 150) for the body and max(1, h // 450) for hands and face, where h
    is int(max - min) of the body's y over all 25 points with undetected ones at 0: as soon as one body point is
    undetected (nearly always), h is the lowest body point's y, not the body's height, so the pen depends on
    where the person stands in the canvas (kept: the checkpoints were trained so).
    """
    canvas = np.zeros((height, width, OPENPOSE_ONE_HOT_CHANNELS if one_hot else 3), np.uint8)
    if person is None:
        return canvas

    def keep() -> bool:
        return rng is None or rng.random() > drop_prob

    body = _valid_points(person.body, BODY_MIN_CONFIDENCE, None)
    face = _valid_points(person.face, FACE_MIN_CONFIDENCE, OPENPOSE_FACE_LINES)
    hands = [_valid_points(hand, HAND_MIN_CONFIDENCE, HAND_FINGERS) for hand in (person.hand_left, person.hand_right)]
    _check_on_canvas(np.concatenate([body, face, *hands]), height, width)
    body_span = int(body[:, 1].max() - body[:, 1].min())

    limbs, colors = BODY_LIMBS, BODY_COLORS
    if not basic_points_only:
        limbs, colors = limbs + FOOT_LIMBS, colors + FOOT_COLORS
    body_width = max(1, body_span // 150)
    for k, (limb, color) in enumerate(zip(limbs, colors, strict=True)):
        target, ink = (canvas[:, :, k], 255) if one_hot else (canvas, color)
        _draw_polyline(target, body, limb, body_width, ink, end_points=True, keep=keep)
    if basic_points_only:
        return canvas

    detail_width = max(1, body_span // 450)
    for side, hand in enumerate(hands):
        for finger, color in zip(HAND_FINGERS, HAND_COLORS, strict=True):
            target, ink = (canvas[:, :, 24 + side], 255) if one_hot else (canvas, color)
            _draw_polyline(target, hand, finger, detail_width, ink, end_points=False, keep=keep)
    if with_face:
        target, ink = (canvas[:, :, 26], 255) if one_hot else (canvas, (255, 255, 255))
        for line in OPENPOSE_FACE_LINES:
            _draw_polyline(target, face, line, detail_width, ink, end_points=False, keep=keep)
    return canvas


def label_to_float(label: np.ndarray, signed: bool) -> np.ndarray:
    """(H, W, C) uint8 drawing -> (H, W, C) float32: x / 255, then x * 2 - 1 when signed.

    imaginaire's ranges: signed for labels that contain DensePose (few-shot pose: the whole DensePose + OpenPose
    label goes through x * 2 - 1); unsigned, in [0, 1], for OpenPose-only labels (vid2vid dancing, 27 channels)
    and for face edge maps (pass edges[:, :, None]).
    """
    scaled = label.astype(np.float32) / 255
    return scaled * 2 - 1 if signed else scaled


# ----------------------------------------------------------------------------------------------------------------
# DensePose IUV.

DENSEPOSE_PARTS = 24  # part indices 1..24; 23 and 24 are the face


def densepose_to_label(densepose: np.ndarray, dropped_parts: tuple[int, ...] = (), source: str = "DensePose map"
                       ) -> np.ndarray:
    """A DensePose PNG decoded to RGB -> (H, W, 3) float32 in [-1, 1], in imaginaire's channel order.

    densepose: (H, W, 3) uint8 as an RGB decoder returns it (PIL, as imaginaire reads it, or
    vid2vid.data.video.read_image): channels (V, U, I), V and U in 0..255 and the part index I in 0..24
    (0 = background). The file itself stores (I, U, V) in cv2's BGR order, as DensePose writes it. Output:
    V / 255 * 2 - 1, U / 255 * 2 - 1, I / 24 * 2 - 1 (background -1, face parts 23 and 24 at 11/12 and 1).
    Pixels of dropped_parts (training augmentation, see sample_dropped_parts) become -1 in all three channels.
    """
    if densepose.ndim != 3 or densepose.shape[2] != 3 or densepose.dtype != np.uint8:
        raise DataError(f"{source}: DensePose must be an 8-bit 3-channel image, got {densepose.dtype} "
                        f"{densepose.shape}")
    part = densepose[:, :, 2]
    if part.max() > DENSEPOSE_PARTS:
        raise DataError(f"{source}: DensePose part index {int(part.max())} above {DENSEPOSE_PARTS} in channel 2 "
                        "(decode the PNG to RGB: V, U, I)")
    label = np.empty(densepose.shape, np.float32)
    label[:, :, :2] = densepose[:, :, :2] / 255
    label[:, :, 2] = part / DENSEPOSE_PARTS
    if dropped_parts:
        label[np.isin(part, dropped_parts)] = 0
    return label * 2 - 1


def sample_dropped_parts(rng: np.random.Generator, drop_prob: float) -> tuple[int, ...]:
    """DensePose parts 1..24 to drop, each with probability drop_prob; imaginaire drops the same parts from every
    frame of a batch, so draw once per clip (its few-shot trainer also applies it to the reference labels)."""
    return tuple(p for p in range(1, DENSEPOSE_PARTS + 1) if rng.random() < drop_prob)


# ----------------------------------------------------------------------------------------------------------------
# dlib-68 face landmarks.

# Polylines of the face edge map, drawn as parabolas through points (i, i+1, i+2), (i+2, i+3, i+4), ...
FACE_EDGE_LINES = (
    tuple(range(17, 22)), tuple(range(22, 27)),  # eyebrows
    (28, 31), tuple(range(31, 36)), (35, 28),  # nose
    (36, 37, 38, 39), (39, 40, 41, 36),  # eye
    (42, 43, 44, 45), (45, 46, 47, 42),  # eye
    tuple(range(48, 55)), (54, 55, 56, 57, 58, 59, 48),  # outer lips
    tuple(range(60, 65)), (64, 65, 66, 67, 60),  # inner lips
)
JAW = tuple(range(0, 17))
# With the upper face, the jaw closes into a loop through the 15 synthesized forehead points 68..82.
FACE_OUTLINE = JAW + tuple(range(68, 83)) + (0,)


def read_landmarks_json(path: str | Path) -> np.ndarray:
    """A dlib-68 landmark file, a JSON list of 68 [x, y] pairs -> (68, 2) float64."""
    path = Path(path)
    try:
        content = read_json(path)
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    try:
        points = np.asarray(content, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: not dlib-68 landmarks (expected a list of 68 [x, y] pairs)") from None
    if points.shape != (68, 2):
        raise DataError(f"{path}: not dlib-68 landmarks (shape {points.shape}, expected 68 [x, y] pairs)")
    if not np.isfinite(points).all():
        raise DataError(f"{path}: landmarks have NaN or infinite values")
    return points


def add_upper_face(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) -> (83, 2): append 15 forehead points, jaw points 15..1 mirrored above the line joining the jaw's
    ends at 2/3 of their distance below it, in imaginaire's integer arithmetic (coordinates truncated)."""
    jaw = landmarks[:17].astype(np.int32)
    baseline = (jaw[0, 1] + jaw[16, 1]) / 2
    upper = jaw[1:16].copy()
    upper[:, 1] = baseline + np.floor_divide((baseline - upper[:, 1]) * 2, 3)
    return np.vstack([landmarks, upper[::-1]])


def draw_face_edges(landmarks: np.ndarray, height: int, width: int, *, upper_face: bool = True,
                    stroke: int | None = None) -> np.ndarray:
    """imaginaire's face sketch: (68, 2) landmarks -> (H, W) uint8, 255 on the edges, 0 elsewhere.

    Each polyline is cut into pieces of three points sharing their ends, each drawn as a parabola (two points: a
    line) with a 2*stroke square pen; stroke defaults to max(1, height // 256), with height the frame's height
    before imaginaire crops the face (it draws on the whole resized frame, then crops and resizes bilinearly).
    The face_forensics config draws the upper face (jaw closed over a synthesized forehead); its distance-transform
    and positional-encoding options are off there and not reproduced.
    """
    _check_on_canvas(np.asarray(landmarks, np.float64), height, width)
    points = add_upper_face(landmarks) if upper_face else np.asarray(landmarks, np.float64)
    stroke = max(1, height // 256) if stroke is None else stroke
    canvas = np.zeros((height, width), np.uint8)
    for line in ((FACE_OUTLINE if upper_face else JAW),) + FACE_EDGE_LINES:
        for start in range(0, max(1, len(line) - 1), 2):
            piece = list(line[start:start + 3])
            curve = _curve_pixels(points[piece, 0].astype(np.float64), points[piece, 1].astype(np.float64))
            if curve is not None:
                _stroke(canvas, curve, stroke, 255, end_points=False)
    return canvas


# Landmark groups normalised together at test time: symmetric pairs, the chin (7, 9, 8) and midline points.
FACE_NORMALIZATION_GROUPS = (
    (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9, 8),
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
    (27,), (28,), (29,), (30,), (31, 35), (32, 34), (33,),
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
    (48, 54), (49, 53), (50, 52), (51,), (55, 59), (56, 58), (57,),
    (60, 64), (61, 63), (62,), (65, 67), (66,),
)
FACE_CENTER = 8  # chin


def _spread_and_offset(points: np.ndarray, face_center: np.ndarray) -> tuple[float, float]:
    """Mean distance of a group's points from their centre, and the centre's distance from the face centre."""
    center = points.mean(axis=0)
    spread = float(np.mean([np.linalg.norm(p - center) for p in points])) + 1e-3
    offset = float(np.linalg.norm(center - face_center)) + 1e-3
    return spread, offset


def normalize_face_landmarks(landmarks: np.ndarray, reference: np.ndarray, momentum: float = 0.9) -> np.ndarray:
    """Give a driving face the reference face's proportions, frame by frame, as imaginaire's face test does
    (FaceProportions over the frames in order). landmarks (T, 68, 2), reference (68, 2) -> (T, 68, 2)."""
    out = np.array(landmarks, dtype=np.float64)
    if out.ndim != 3 or out.shape[1:] != (68, 2):
        raise ValueError(f"expected (T, 68, 2) landmarks and a (68, 2) reference, got {out.shape}, "
                         f"{np.shape(reference)}")
    proportions = FaceProportions(reference, momentum)
    return np.stack([proportions(frame) for frame in out]) if len(out) else out


class FaceProportions:
    """A driving face given the reference face's proportions, one frame after another (a video, or a camera).

    For each group, the spread of its points about their centre and the distance of that centre from the chin
    are rescaled to the reference's, times the ratio of the faces' widths (driving / reference, measured once on
    the first frame), so the face keeps its size and place. Scales are smoothed over time:
    s_t = momentum * s_{t-1} + (1 - momentum) * s_new. Points at x == 0 count as missing and stay as they are.
    Where imaginaire fails (a group missing in some frame, or only some of a group's points missing) we carry the
    previous scale and move only the points present. `reset()` starts afresh (another face stepped in)."""

    def __init__(self, reference: np.ndarray, momentum: float = 0.9):
        self.reference = np.asarray(reference, dtype=np.float64)
        if self.reference.shape != (68, 2):
            raise ValueError(f"expected a (68, 2) reference, got {self.reference.shape}")
        self.momentum = momentum
        self.reset()

    def reset(self) -> None:
        self.scales: list[tuple[float, float] | None] = [None] * len(FACE_NORMALIZATION_GROUPS)
        self.width_ratio: float | None = None

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        """(68, 2) driving landmarks -> (68, 2) on the reference's proportions."""
        frame = np.array(landmarks, dtype=np.float64)
        if frame.shape != (68, 2):
            raise ValueError(f"expected (68, 2) landmarks, got {frame.shape}")
        reference, momentum = self.reference, self.momentum
        reference_center = reference[FACE_CENTER]
        face_center = frame[FACE_CENTER].copy()
        if self.width_ratio is None:
            self.width_ratio = np.ptp(frame[:, 0]) / np.ptp(reference[:, 0])
        for g, group in enumerate(FACE_NORMALIZATION_GROUPS):
            indices = [i for i in group if frame[i, 0] != 0]
            if not indices:
                continue
            points = frame[indices]
            spread, offset = _spread_and_offset(points, face_center)
            ref_spread, ref_offset = _spread_and_offset(reference[list(group)], reference_center)
            new = (ref_spread / spread * self.width_ratio, ref_offset / offset * self.width_ratio)
            if self.scales[g] is not None:
                old = self.scales[g]
                new = (old[0] * momentum + new[0] * (1 - momentum), old[1] * momentum + new[1] * (1 - momentum))
            self.scales[g] = new
            center = points.mean(axis=0)
            frame[indices] = (points - center) * new[0] + (center - face_center) * new[1] + face_center
        return frame


def relative_face_landmarks(landmarks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The reference face moved as the driving face moves from its first frame (FOMM's "relative" motion transfer).

    landmarks (T, 68, 2) and reference (68, 2), each in its own file's pixels -> (T, 68, 2) in the driving file's
    pixels: the reference's landmarks scaled to the driving face's width and centred on it, as they lie on the
    first frame, plus each frame's motion from the first (landmarks[t] - landmarks[0]). Frame 0 is the reference's
    own face shape, so a model need not reshape it into the driver's; the driver's first frame should hold a face
    at rest, roughly as the reference holds it. Points at x == 0 (missing) in frame t or in frame 0 do not move.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2) or reference.shape != (68, 2):
        raise ValueError(f"expected (T, 68, 2) landmarks and a (68, 2) reference, got {landmarks.shape}, "
                         f"{reference.shape}")
    first = landmarks[0]
    seen = first[:, 0] != 0
    if seen.sum() < 2:
        raise ValueError("the driving face's first frame has fewer than 2 landmarks")
    scale = np.ptp(first[seen, 0]) / max(np.ptp(reference[seen, 0]), 1e-6)
    at_rest = (reference - reference[seen].mean(axis=0)) * scale + first[seen].mean(axis=0)
    present = (landmarks[..., 0] != 0) & seen[None]
    motion = np.where(present[..., None], landmarks - first[None], 0.0)
    return at_rest[None] + motion


def smooth_face_landmarks(landmarks: np.ndarray, kernel_size: int = 5) -> np.ndarray:
    """imaginaire's temporal median filter of test-time landmarks: (T, 68, 2) -> (T, 68, 2).

    Frame t >= kernel_size - 1 becomes the per-coordinate median of frames t-kernel_size+1..t, i.e. the smoothed
    landmarks of frame t - kernel_size // 2: imaginaire's driving labels lag the driving video by kernel_size // 2
    frames from then on (kept). Earlier frames pass unchanged. Medians that are 0 (missing points) are filled
    from the window's earlier, zero-padded medians, as scipy's medfilt pads and imaginaire fills.
    """
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    landmarks = np.asarray(landmarks, dtype=np.float64)
    out = landmarks.copy()
    half = kernel_size // 2
    for t in range(kernel_size - 1, len(landmarks)):
        window = landmarks[t - kernel_size + 1:t + 1]
        padded = np.concatenate([np.zeros((half,) + window.shape[1:]), window])
        # Medians centred on window rows 0..half; row 0 and 1 see the zero padding, row `half` the full window.
        medians = [np.median(padded[r:r + kernel_size], axis=0) for r in range(half + 1)]
        for r in range(1, half + 1):
            missing = medians[r] == 0
            medians[r][missing] = np.maximum(medians[r], medians[r - 1])[missing]
        out[t] = medians[half]
    return out


# ----------------------------------------------------------------------------------------------------------------
# Horizontal flips that keep left and right meaning what they mean.


def _swap_table(size: int, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    table = np.arange(size)
    for a, b in pairs:
        table[a], table[b] = b, a
    return table


BODY_25_FLIP = _swap_table(25, ((2, 5), (3, 6), (4, 7), (9, 12), (10, 13), (11, 14), (15, 16), (17, 18),
                                (19, 22), (20, 23), (21, 24)))
DLIB_68_FLIP = _swap_table(68, tuple((i, 16 - i) for i in range(8))  # jaw
                           + tuple((17 + i, 26 - i) for i in range(5))  # eyebrows
                           + ((31, 35), (32, 34))  # nostrils
                           + ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46))  # eyes
                           + ((48, 54), (49, 53), (50, 52), (55, 59), (56, 58))  # outer lips
                           + ((60, 64), (61, 63), (65, 67)))  # inner lips
FACE_70_FLIP = np.concatenate([DLIB_68_FLIP, [69, 68]])  # pupils
HAND_21_FLIP = np.arange(21)  # a hand maps to itself; flip_openpose swaps the left and right hands


def flip_openpose(people: list[Person], width: int) -> list[Person]:
    """Mirror detections for a frame flipped left-right: x -> width - 1 - x, and left/right parts swapped, so the
    mirrored person's right arm is drawn in the right-arm colour, as OpenPose would label the mirrored image.
    Undetected points (confidence 0) stay at (0, 0, 0). imaginaire flips only x (no pose config flips)."""
    def mirror(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
        rows = rows[table].copy()
        detected = rows[:, 2] > 0
        rows[detected, 0] = (width - 1) - rows[detected, 0]
        return rows

    return [Person(body=mirror(p.body, BODY_25_FLIP), face=mirror(p.face, FACE_70_FLIP),
                   hand_left=mirror(p.hand_right, HAND_21_FLIP), hand_right=mirror(p.hand_left, HAND_21_FLIP))
            for p in people]


def flip_landmarks(points: np.ndarray, width: int) -> np.ndarray:
    """Mirror dlib-68 landmarks (..., 68, 2) for a frame flipped left-right; points at (0, 0) (missing) stay."""
    points = np.asarray(points, dtype=np.float64)
    flipped = points[..., DLIB_68_FLIP, :].copy()
    present = (flipped != 0).any(axis=-1)
    flipped[..., 0] = np.where(present, (width - 1) - flipped[..., 0], 0)
    return flipped


# ----------------------------------------------------------------------------------------------------------------
# Segmentation.

CITYSCAPES_NUM_CLASSES = 35  # Cityscapes label ids 0..33 (gtFine *_labelIds.png) in imaginaire's 35 channels


# The colours cityscapesScripts draws label ids 0..33 in (its labels.py): a "colour label video" is frames of
# these. Ids 0-4 share black and 17/18 share grey; a colour reads back as the first id that has it.
CITYSCAPES_COLOURS = (
    (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (111, 74, 0), (81, 0, 81), (128, 64, 128),
    (244, 35, 232), (250, 170, 160), (230, 150, 140), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (180, 165, 180), (150, 100, 100), (150, 120, 90), (153, 153, 153), (153, 153, 153), (250, 170, 30),
    (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142),
    (0, 0, 70), (0, 60, 100), (0, 0, 90), (0, 0, 110), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# A frame of a label video sits within this RGB distance of the palette almost everywhere (video coding moves
# colours by a few levels, more along edges); a photograph does not.
LABEL_COLOUR_TOLERANCE = 40.0
LABEL_COLOUR_BLEND = 10.0


def _distinct_colours() -> tuple[np.ndarray, np.ndarray]:
    """The palette's distinct colours in id order (K, 3) and the first id drawn in each (K,): what a colour
    reads back as."""
    first_id: dict[tuple[int, int, int], int] = {}
    for i, colour in enumerate(CITYSCAPES_COLOURS):
        first_id.setdefault(colour, i)
    return np.asarray(list(first_id), dtype=np.float32), np.asarray(list(first_id.values()), dtype=np.uint8)


_PALETTE, _PALETTE_IDS = _distinct_colours()  # once: ids_from_colours runs on every frame


def colours_from_ids(ids: np.ndarray) -> np.ndarray:
    """(H, W) Cityscapes label ids -> (H, W, 3) uint8 in cityscapesScripts' colours."""
    return np.asarray(CITYSCAPES_COLOURS, dtype=np.uint8)[np.clip(ids, 0, len(CITYSCAPES_COLOURS) - 1)]


def ids_from_colours(image: np.ndarray, source: str = "label image") -> np.ndarray:
    """(H, W, 3) uint8 frame of a colour label map -> (H, W) uint8 ids.

    Each pixel takes its nearest palette colour, except where video coding has blended two classes' colours
    along an edge (more than LABEL_COLOUR_BLEND levels from any colour): those take the class most of their
    clean 3x3 neighbours have. Exact for lossless frames (PNG); from 4:2:0 H.264 ~1% of the pixels, all on
    class edges, still read wrong at 256x512.
    """
    pixels = image.reshape(-1, 3).astype(np.float32)
    nearest = np.empty(len(pixels), dtype=np.int64)
    off = np.empty(len(pixels), dtype=np.float32)
    for start in range(0, len(pixels), 2**16):  # in chunks: (pixels, colours) distances of a 4K frame are GBs
        chunk = pixels[start:start + 2**16]
        distance = ((chunk[:, None, :] - _PALETTE[None]) ** 2).sum(-1)
        nearest[start:start + len(chunk)] = distance.argmin(1)
        off[start:start + len(chunk)] = np.sqrt(distance.min(1))
    if (off > LABEL_COLOUR_TOLERANCE).mean() > 0.05:
        raise DataError(f"{source}: {(off > LABEL_COLOUR_TOLERANCE).mean():.0%} of the pixels are no Cityscapes "
                        "label colour; a street model is driven by colour-coded label maps (or seg_maps)")
    height, width = image.shape[:2]
    nearest, clean = nearest.reshape(height, width), (off <= LABEL_COLOUR_BLEND).reshape(height, width)
    voters = np.pad(np.where(clean, nearest, len(_PALETTE)), 1, constant_values=len(_PALETTE))  # K: no vote
    ys, xs = np.nonzero(~clean)
    neighbours = np.stack([voters[ys + dy, xs + dx] for dy in range(3) for dx in range(3)], axis=1)
    votes = (neighbours[:, :, None] == np.arange(len(_PALETTE))).sum(1)  # (blended pixels, K)
    has_votes = votes.max(1) > 0
    nearest[ys[has_votes], xs[has_votes]] = votes[has_votes].argmax(1)
    return _PALETTE_IDS[nearest]


def segmentation_one_hot(ids: np.ndarray, num_classes: int, source: str = "segmentation map") -> np.ndarray:
    """(H, W) integer class ids -> (H, W, num_classes) float32 one-hot; class c is channel c.

    imaginaire silently turns ids outside 0..num_classes-1 into all-zero pixels (its "don't care" without the
    extra channel); we refuse them, naming source, since a wrong class count or id encoding is the usual cause.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{source}: class ids must be a single-channel integer image, got {ids.dtype} {ids.shape}")
    outside = np.unique(ids[(ids < 0) | (ids >= num_classes)])
    if outside.size:
        shown = ", ".join(str(int(v)) for v in outside[:8]) + (" ..." if outside.size > 8 else "")
        raise DataError(f"{source}: class ids {shown} outside 0..{num_classes - 1}")
    return (ids[:, :, None] == np.arange(num_classes)).astype(np.float32)


def instance_boundaries(instance_ids: np.ndarray) -> np.ndarray:
    """(H, W) instance ids -> (H, W) float32, 1 on both pixels of every horizontally or vertically adjacent pair
    with different ids (pix2pixHD's edge map, as imaginaire computes it)."""
    ids = np.asarray(instance_ids)
    edges = np.zeros(ids.shape, bool)
    across = ids[:, 1:] != ids[:, :-1]
    edges[:, 1:] |= across
    edges[:, :-1] |= across
    down = ids[1:, :] != ids[:-1, :]
    edges[1:, :] |= down
    edges[:-1, :] |= down
    return edges.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Crop boxes (imaginaire crops the person or face region of every frame of a clip with one box).


class CropBox(NamedTuple):
    """Rows top..top+height-1 and columns left..left+width-1; may reach outside the frame (imaginaire then
    slices whatever lies inside)."""

    top: int
    left: int
    height: int
    width: int


# The built-in dancers' proportions (medians over 320 frames of `vid2vid synth dancers`), as shares of the person's
# height: shoulder width, neck to mid-hip, and the neck's depth below the top of the person.
SHOULDER_SHARE, TORSO_SHARE, NECK_DEPTH = 0.24, 0.29, 0.15


def whole_person_rows(person: Person | None) -> tuple[float, float] | None:
    """The rows (top, bottom) a person cut by the frame would span if whole: the height from the shoulder width
    or the torso's length, whichever is longer (both only shrink when the person turns or bends), hung from the
    neck by the built-in dancers' proportions and never shorter than the points seen. None without neck and
    shoulders or torso."""
    if person is None:
        return None
    body = person.body
    seen = body[:, 2] > BODY_MIN_CONFIDENCE
    if not seen[1]:
        return None
    heights = []
    if seen[2] and seen[5]:
        heights.append(float(np.linalg.norm(body[2, :2] - body[5, :2])) / SHOULDER_SHARE)
    if seen[8]:
        heights.append(float(np.linalg.norm(body[1, :2] - body[8, :2])) / TORSO_SHARE)
    if not heights:
        return None
    points = np.concatenate([body, person.face, person.hand_left, person.hand_right])
    ys = points[points[:, 2] > BODY_MIN_CONFIDENCE, 1]
    neck, height = float(body[1, 1]), max(heights)
    return min(float(ys.min()), neck - NECK_DEPTH * height), max(float(ys.max()), neck + (1 - NECK_DEPTH) * height)


def person_crop_box(foreground: np.ndarray, aspect: float, scale: float = 1.5,
                    offset: tuple[float, float] = (0.0, 0.0), min_frame_share: float = 0.5,
                    whole_rows: tuple[float, float] | None = None) -> CropBox:
    """The box imaginaire's few-shot pose data crops around the person (crop_person_from_data).

    foreground: (H, W) or (T, H, W) bool, the pixels where any of the label's first three channels is non-zero
    (the DensePose channels, or the OpenPose colours when there is no DensePose), over all frames cropped with
    this box. aspect: output width / height. The box is scale times the foreground's height (at least half the
    frame's height, at most all of it; at least scale times its width), centred on it, shifted by offset (x, y)
    in units of the box's half-size and kept inside the frame (min_frame_share: imaginaire's half of the frame;
    0 for photos of any aspect, where a tall photo would make the person small). Without foreground: a centred
    full-height box. whole_rows (whole_person_rows): the rows the person would span if whole; the box then fits
    the whole person, centred, and may reach outside the frame (a person cut by the frame is framed as a whole
    one would be, the rest padded).
    Training jitter: see random_person_crop_jitter.
    """
    foreground = np.asarray(foreground, bool)
    height, width = foreground.shape[-2:]
    rows = np.flatnonzero(foreground.reshape(-1, height, width).any(axis=(0, 2)))
    cols = np.flatnonzero(foreground.reshape(-1, height, width).any(axis=(0, 1)))
    if rows.size == 0:
        half_w = int(height * aspect // 2)
        return CropBox(0, width // 2 - half_w, height, 2 * half_w)
    y_min, y_max, x_min, x_max = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    largest = height
    if whole_rows is not None:
        y_min, y_max = min(y_min, int(whole_rows[0])), max(y_max, int(round(whole_rows[1])))
        largest = max(height, int((y_max - y_min) * scale) + 2)  # the box may leave the frame
    y_center, x_center = (y_min + y_max) // 2, (x_min + x_max) // 2
    half_h = int(min(largest, max(int(height * min_frame_share), (y_max - y_min) * scale))) // 2
    half_h = max(half_h, int((x_max - x_min) * scale / aspect) // 2)
    half_w = int(half_h * aspect)
    x_center += int(offset[0] * half_w)
    y_center += int(offset[1] * half_h)
    if whole_rows is None:
        x_center = max(half_w, min(width - half_w, x_center))
        y_center = max(half_h, min(height - half_h, y_center))
    return CropBox(y_center - half_h, x_center - half_w, 2 * half_h, 2 * half_w)


def random_person_crop_jitter(rng: np.random.Generator, for_reference: bool) -> tuple[float, tuple[float, float]]:
    """imaginaire's training jitter of person_crop_box: (scale, offset), scale ~ clip(1.5 + N(0, s), 1, 2) and
    offset ~ clip(N(0, s), -1, 1)^2, with s = 0.05 for the driving clip and 0.02 for reference images."""
    sigma = 0.02 if for_reference else 0.05
    offset = np.clip(rng.standard_normal(2) * sigma, -1, 1)
    scale = float(np.clip(1.5 + rng.standard_normal() * sigma, 1, 2))
    return scale, (float(offset[0]), float(offset[1]))


def face_crop_box(landmarks: np.ndarray, image_size: tuple[int, int], offset: tuple[float, float] = (0.0, 0.0),
                  scale: tuple[float, float] = (1.0, 1.0)) -> CropBox:
    """The box imaginaire's face data crops (crop_face_from_data, from the first frame's landmarks).

    With w the landmarks' width, scaled by scale (x, y): a 2w x 2w box, its centre 1/4 of the box above the
    landmarks' centre, shifted by offset times w and kept inside the frame where the frame is large enough.
    image_size is (height, width). Training jitter: see random_face_crop_jitter.
    """
    frame_h, frame_w = image_size
    min_y, max_y = int(landmarks[:, 1].min()), int(landmarks[:, 1].max())
    min_x, max_x = int(landmarks[:, 0].min()), int(landmarks[:, 0].max())
    x_center, y_center = (min_x + max_x) // 2, (min_y + max_y) // 2
    w = (max_x - min_x) * scale[0]
    h = (max_x - min_x) * scale[1]  # the face's width sets both sides, as in imaginaire
    x_center += int(offset[0] * w)
    y_center += int(offset[1] * h)
    x_center = max(w, min(frame_w - w, x_center))
    y_center = max(h * 1.25, min(frame_h - h * 0.75, y_center))
    top, left = int(y_center - h * 1.25), int(x_center - w)
    bottom, right = int(y_center - h * 1.25 + h * 2), int(x_center - w + w * 2)
    return CropBox(top, left, bottom - top, right - left)


def random_face_crop_jitter(rng: np.random.Generator, scale: tuple[float, float] | None = None
                            ) -> tuple[tuple[float, float], tuple[float, float]]:
    """imaginaire's training jitter of face_crop_box: (offset, scale) with offset ~ U(-0.2, 0.2)^2 and, unless
    given, scale ~ U(0.8, 1.2)^2. imaginaire draws the scale for the reference and reuses it for the driving clip
    (pass the reference's scale back in); each gets its own offset."""
    offset = rng.uniform(-0.2, 0.2, 2)
    if scale is None:
        drawn = rng.uniform(0.8, 1.2, 2)
        scale = (float(drawn[0]), float(drawn[1]))
    return (float(offset[0]), float(offset[1])), scale

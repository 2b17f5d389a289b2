"""Label rendering: hand-made keypoints whose pixels imaginaire's drawing rules fix, flips, DensePose, one-hot."""

import json

import numpy as np
import pytest
import torch

from vid2vid.data import DataError, render
from vid2vid.models.fs_vid2vid import face_mask


def person(body=None, face=None, hand_left=None, hand_right=None) -> render.Person:
    """A Person from {index: (x, y, confidence)} dicts; everything else undetected."""
    def rows(count, points):
        array = np.zeros((count, 3), np.float32)
        for i, point in (points or {}).items():
            array[i] = point
        return array

    return render.Person(rows(25, body), rows(70, face), rows(21, hand_left), rows(21, hand_right))


# Neck (1) above mid-hip (8): the trunk limb, colour (153, 0, 0), channel 5 of the one-hot map. Its body span is
# int(40 - 0) = 40 (undetected points count as y = 0), so the pen is 2x2: columns 19 and 20.
TRUNK = {1: (20, 10, 0.9), 8: (20, 40, 0.9)}


def test_one_limb_has_its_colour_at_the_midpoint_and_nothing_far_away():
    image = render.draw_openpose(person(TRUNK), 50, 60)
    assert image.shape == (50, 60, 3) and image.dtype == np.uint8
    assert image[25, 19].tolist() == [153, 0, 0] and image[25, 20].tolist() == [153, 0, 0]
    assert not image[25, 18].any() and not image[25, 21].any()  # the 2-pixel pen, offsets -1 and 0
    assert not image[:, 30:].any() and not image[45:].any()
    # End discs of radius 2 (dy^2 + dx^2 < 4): the 3x3 block around each end, so column 21 is inked beside
    # the neck (row 11) but not further down, and nothing lies two rows above it.
    assert image[11, 21].any() and not image[12, 21].any() and not image[8, 20].any()


def test_one_hot_map_puts_each_limb_hand_and_face_in_its_channel():
    face = {i: (30 + i % 5, 5 + i // 5, 0.9) for i in range(17)}  # a zig-zag jaw, all confident
    hand = {0: (40, 30, 0.9), 1: (44, 30, 0.9), 2: (48, 30, 0.9), 3: (52, 30, 0.9), 4: (56, 30, 0.9)}  # thumb
    image = render.draw_openpose(person(TRUNK, face=face, hand_right=hand), 50, 60, one_hot=True)
    assert image.shape == (50, 60, 27)
    assert [c for c in range(27) if image[:, :, c].any()] == [5, 25, 26]
    assert set(np.unique(image)) == {0, 255}
    assert image[25, 19, 5] == 255 and image[30, 48, 25] == 255
    without_face = render.draw_openpose(person(TRUNK, face=face, hand_right=hand), 50, 60, one_hot=True,
                                        with_face=False)
    assert not without_face[:, :, 26].any()
    basic = render.draw_openpose(person(TRUNK, face=face, hand_right=hand), 50, 60, basic_points_only=True)
    assert not basic[:, 30:].any()  # no hand, no face


def test_keypoints_below_the_confidence_threshold_draw_nothing():
    weak_end = {1: (20, 10, 0.9), 8: (20, 40, 0.01)}  # threshold 0.01 is exclusive
    assert not render.draw_openpose(person(weak_end), 50, 60).any()
    jaw = {i: (10 + 2 * i, 20, 0.9) for i in range(17)}
    assert render.draw_openpose(person(face=jaw), 50, 60).any()
    jaw[16] = (42, 20, 0.1)  # one weak face point drops its whole line (face threshold 0.1)
    assert not render.draw_openpose(person(face=jaw), 50, 60).any()
    assert not render.draw_openpose(None, 50, 60).any()


def test_body_pen_width_follows_the_lowest_body_point():
    # span = int(310 - 0) = 310 -> half-width 310 // 150 = 2: a 4-pixel pen.
    image = render.draw_openpose(person({1: (20, 10, 0.9), 8: (20, 310, 0.9)}), 320, 60)
    assert np.flatnonzero(image[160, :, 0]).tolist() == [18, 19, 20, 21]


def test_a_limb_drawn_over_existing_ink_is_averaged_with_it():
    # The right shoulder limb (1, 2), colour (153, 51, 0), starts on the trunk's ink, so each pen pass averages:
    # blank pixels get half the colour, then the next pass lifts them to 3/4: (114, 38, 0), as imaginaire draws.
    image = render.draw_openpose(person({**TRUNK, 2: (50, 10, 0.9)}), 50, 60)
    assert image[10, 35].tolist() == [114, 38, 0]
    assert image[25, 19].tolist() == [153, 0, 0]


def test_random_segment_drop_is_seeded_and_none_keeps_everything():
    people = person(TRUNK, hand_right={0: (40, 30, 0.9), 1: (44, 30, 0.9), 2: (48, 30, 0.9)})
    full = render.draw_openpose(people, 50, 60)
    assert np.array_equal(render.draw_openpose(people, 50, 60, drop_prob=0.9), full)  # no rng: no drop
    assert not render.draw_openpose(people, 50, 60, drop_prob=1.0, rng=np.random.default_rng(0)).any()
    first = render.draw_openpose(people, 50, 60, drop_prob=0.5, rng=np.random.default_rng(3))
    assert np.array_equal(first, render.draw_openpose(people, 50, 60, drop_prob=0.5, rng=np.random.default_rng(3)))


def test_label_to_float_ranges():
    image = render.draw_openpose(person(TRUNK), 50, 60)
    signed = render.label_to_float(image, signed=True)
    assert signed.shape == (50, 60, 3) and signed.dtype == np.float32
    assert signed.min() == -1 and abs(signed[25, 19, 0] - (153 / 255 * 2 - 1)) < 1e-6
    assert abs(render.label_to_float(image, signed=False)[25, 19, 0] - 153 / 255) < 1e-6


def test_scale_person_moves_detected_points_only():
    moved = render.scale_person(person(TRUNK), scale=(0.5, 0.25), shift=(-3.0, 2.0))
    assert moved.body[1, :2].tolist() == [7.0, 4.5] and moved.body[8, :2].tolist() == [7.0, 12.0]
    assert moved.body[1, 2] == person(TRUNK).body[1, 2]
    assert not moved.body[0].any() and not moved.face.any()


def test_largest_person_is_the_tallest():
    short = person({1: (10, 10, 0.9), 8: (10, 30, 0.9)})
    tall = person({1: (40, 5, 0.9), 8: (40, 45, 0.9), 11: (40, 90, 0.005)})  # the weak ankle does not count
    assert render.largest_person([short, tall]) is tall
    assert render.largest_person([tall, short]) is tall
    assert render.largest_person([]) is None


def test_swap_tables_are_involutions_that_pair_left_with_right():
    for table in (render.BODY_25_FLIP, render.FACE_70_FLIP, render.DLIB_68_FLIP, render.HAND_21_FLIP):
        assert np.array_equal(table[table], np.arange(len(table)))
    names = render.BODY_25_NAMES
    for i, j in enumerate(render.BODY_25_FLIP):
        assert names[j] == names[i].replace("right", "#").replace("left", "right").replace("#", "left")
    assert render.DLIB_68_FLIP[[0, 8, 17, 30, 36, 48, 57, 60]].tolist() == [16, 8, 26, 30, 45, 54, 57, 64]
    assert render.FACE_70_FLIP[[68, 69]].tolist() == [69, 68]


def test_flipping_twice_is_identity_and_once_mirrors_and_swaps_sides():
    rng = np.random.default_rng(0)

    def random_rows(count):
        rows = np.concatenate([rng.uniform(0, 99, (count, 2)), rng.uniform(0.2, 1, (count, 1))], 1)
        rows[::4] = 0  # undetected points
        return rows.astype(np.float32)

    people = [render.Person(random_rows(25), random_rows(70), random_rows(21), random_rows(21))]
    once = render.flip_openpose(people, width=100)[0]
    twice = render.flip_openpose(render.flip_openpose(people, width=100), width=100)[0]
    for field in ("body", "face", "hand_left", "hand_right"):
        assert np.allclose(getattr(twice, field), getattr(people[0], field), atol=1e-4)
    assert np.isclose(once.body[5, 0], 99 - people[0].body[2, 0])  # right shoulder -> left shoulder, mirrored
    assert not once.body[7].any()  # the undetected right wrist (4) becomes an undetected left wrist
    assert np.isclose(once.hand_left[3, 0], 99 - people[0].hand_right[3, 0])

    landmarks = rng.uniform(1, 99, (3, 68, 2))
    landmarks[1, 5] = 0
    flipped = render.flip_landmarks(landmarks, width=100)
    assert np.allclose(render.flip_landmarks(flipped, width=100), landmarks)
    assert np.isclose(flipped[0, 16, 0], 99 - landmarks[0, 0, 0]) and flipped[0, 16, 1] == landmarks[0, 0, 1]
    assert (flipped[1, 11] == 0).all()


def synthetic_face() -> np.ndarray:
    """dlib-68 landmarks of a schematic face in a 128 x 128 frame: a U-shaped jaw, brows, nose, eyes, lips."""
    points = np.zeros((68, 2))
    angles = np.linspace(np.pi, 0, 17)
    points[:17] = np.stack([64 + 40 * np.cos(angles), 60 + 45 * np.sin(angles)], 1)  # jaw, y down
    points[17:22] = np.stack([np.linspace(34, 56, 5), [50, 46, 45, 46, 48]], 1)
    points[22:27] = np.stack([np.linspace(72, 94, 5), [48, 46, 45, 46, 50]], 1)
    points[27:31] = np.stack([[64] * 4, [55, 62, 69, 76]], 1)
    points[31:36] = np.stack([np.linspace(56, 72, 5), [80, 82, 83, 82, 80]], 1)
    for start, cx in ((36, 45), (42, 83)):
        points[start:start + 6] = np.stack([cx + np.array([-8, -4, 4, 8, 4, -4]), 60 + np.array([0, -3, -3, 0, 3, 3])],
                                           1)
    points[48:60] = np.stack([64 + 16 * np.cos(np.linspace(np.pi, -np.pi, 13)[:12]),
                              92 + 6 * np.sin(np.linspace(np.pi, -np.pi, 13)[:12])], 1)
    points[60:68] = np.stack([64 + 10 * np.cos(np.linspace(np.pi, -np.pi, 9)[:8]),
                              92 + 3 * np.sin(np.linspace(np.pi, -np.pi, 9)[:8])], 1)
    return points


def test_face_edge_map_has_ink_along_the_jaw_and_none_far_away():
    landmarks = synthetic_face()
    edges = render.draw_face_edges(landmarks, 128, 128, upper_face=False)
    assert edges.shape == (128, 128) and edges.dtype == np.uint8 and set(np.unique(edges)) == {0, 255}
    for x, y in landmarks[:17]:
        assert edges[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].any(), (x, y)
    assert not edges[:40].any() and not edges[110:].any() and not edges[:, :20].any()
    with_forehead = render.draw_face_edges(landmarks, 128, 128)
    assert with_forehead[:40].any() and np.array_equal(with_forehead[62:], edges[62:])
    wide = render.draw_face_edges(landmarks, 128, 128, upper_face=False, stroke=3)
    assert (wide > 0).sum() > (edges > 0).sum()


def test_upper_face_points_mirror_the_jaw_in_integer_arithmetic():
    jaw = np.zeros((68, 2))
    jaw[:17, 0] = np.arange(17) * 10 + 0.7
    jaw[:17, 1] = [100] + [130 + i for i in range(15)] + [101]
    upper = render.add_upper_face(jaw)[68:]
    # baseline 100.5; point k (y = 129 + k) goes to 100.5 + floor((100.5 - y) * 2 / 3), truncated.
    assert upper.shape == (15, 2)
    assert upper[0].tolist() == [150, int(100.5 + np.floor((100.5 - 144) * 2 / 3))]  # jaw point 15, x truncated
    assert upper[-1].tolist() == [10, 80]  # jaw point 1 (y 130): 100.5 + floor(-59 / 3) = 80.5 -> 80


def test_curves_follow_the_dominant_axis_and_steep_parabolas_are_skipped():
    xs, ys = render._curve_pixels(np.array([0.0, 10.0]), np.array([0.0, 5.0]))
    assert len(xs) == 10 and xs[0] == 0 and xs[-1] == 10 and ys[0] == 0 and ys[-1] == 5  # round(length) samples
    xs, ys = render._curve_pixels(np.array([0.0, 4.0, 8.0]), np.array([0.0, 20.0, 40.0]))  # steep: x as f(y)
    assert len(ys) == 40 and ys[-1] == 40 and xs[-1] == 8
    assert render._curve_pixels(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0])) is not None  # a = -1
    assert render._curve_pixels(np.array([0.0, 1.0, 1.5]), np.array([0.0, 1.0, 0.0])) is None  # a = -2
    assert render._curve_pixels(np.array([5.0, 5.0]), np.array([7.0, 7.0])) is None


def test_face_normalization_gives_the_reference_proportions():
    reference = synthetic_face()
    driving = reference.copy()
    center = driving[[36, 45]].mean(axis=0)
    driving[[36, 45]] = center + (driving[[36, 45]] - center) * 1.25  # eye corners further apart, inside the jaw
    out = render.normalize_face_landmarks(driving[None], reference)[0]
    assert np.allclose(out[[36, 45]], reference[[36, 45]], atol=0.01)
    assert np.allclose(out[:17], reference[:17], atol=0.01)
    # A face with the reference's proportions keeps its own size (x2 about the chin here).
    big = (reference - reference[8]) * 2 + reference[8]
    assert np.allclose(render.normalize_face_landmarks(big[None], reference)[0], big, atol=0.01)
    # With momentum, the second frame's scale is 0.9 * previous + 0.1 * new.
    two = render.normalize_face_landmarks(np.stack([reference, driving]), reference, momentum=0.9)
    spread = np.linalg.norm(two[1, 45] - two[1, 36]) / np.linalg.norm(reference[45] - reference[36])
    assert abs(spread - 1.25 * (0.9 + 0.1 * 0.8)) < 0.001


def test_landmark_smoothing_is_a_lagged_median():
    sequence = np.ones((9, 68, 2)) * 50
    sequence[1] = 90  # a one-frame glitch
    sequence[5:] = 70  # a step at frame 5
    out = render.smooth_face_landmarks(sequence, kernel_size=5)
    assert np.array_equal(out[:4], sequence[:4])  # too few frames yet
    assert (out[4] == 50).all()  # median of frames 0..4 removes the glitch
    assert (out[6] == 50).all() and (out[7] == 70).all()  # the step shows 2 frames late


def test_densepose_channels_and_face_parts_match_the_generator():
    densepose = np.zeros((4, 5, 3), np.uint8)  # decoded to RGB: channels (V, U, I)
    densepose[0, 0] = (200, 10, 23)
    densepose[0, 1] = (0, 255, 24)
    densepose[1, 0] = (64, 128, 2)
    label = render.densepose_to_label(densepose)
    assert label.shape == (4, 5, 3) and label.dtype == np.float32
    assert np.allclose(label[0, 0], [200 / 255 * 2 - 1, 10 / 255 * 2 - 1, 23 / 24 * 2 - 1], atol=1e-6)
    assert np.allclose(label[1, 0], [64 / 255 * 2 - 1, 128 / 255 * 2 - 1, 2 / 24 * 2 - 1], atol=1e-6)
    assert (label[3] == -1).all()  # background
    mask = face_mask(torch.from_numpy(label[None, :, :, 2]))[0].numpy()
    assert np.argwhere(mask).tolist() == [[0, 0], [0, 1]]
    dropped = render.densepose_to_label(densepose, dropped_parts=(23,))
    assert (dropped[0, 0] == -1).all() and np.array_equal(dropped[0, 1], label[0, 1])
    assert render.sample_dropped_parts(np.random.default_rng(0), 0.0) == ()
    assert render.sample_dropped_parts(np.random.default_rng(0), 1.0) == tuple(range(1, 25))
    densepose[2, 2, 2] = 200
    with pytest.raises(DataError, match="part.png: DensePose part index 200"):
        render.densepose_to_label(densepose, source="part.png")


def test_one_hot_sums_to_one_with_class_c_in_channel_c():
    ids = np.array([[0, 1, 34], [7, 7, 2]], np.uint8)
    one_hot = render.segmentation_one_hot(ids, render.CITYSCAPES_NUM_CLASSES)
    assert one_hot.shape == (2, 3, 35) and one_hot.dtype == np.float32
    assert (one_hot.sum(axis=2) == 1).all()
    assert (one_hot.argmax(axis=2) == ids).all()
    with pytest.raises(DataError, match=r"seg/a.png: class ids 35, 255 outside 0..34"):
        render.segmentation_one_hot(np.array([[35, 255, 3]], np.uint8), 35, source="seg/a.png")


def test_instance_boundaries_mark_both_sides_of_every_change():
    ids = np.zeros((6, 6), np.int32)
    ids[2:4, 2:4] = 5
    edges = render.instance_boundaries(ids)
    expected = np.zeros((6, 6), np.float32)
    expected[1:5, 2:4] = 1
    expected[2:4, 1:5] = 1
    assert np.array_equal(edges, expected)
    assert not render.instance_boundaries(np.full((3, 4), 9)).any()


def test_person_crop_box():
    mask = np.zeros((2, 100, 200), bool)
    mask[0, 20:60, 90:101] = True  # y 20..59, x 90..100
    mask[1, 30:70, 95:100] = True  # together: y 20..69, x 90..100
    # half height = int(min(100, max(50, 49 * 1.5))) // 2 = 36; half width = int(36 * 0.5) = 18; centre (44, 95).
    assert render.person_crop_box(mask, aspect=0.5) == render.CropBox(8, 77, 72, 36)
    # An offset of (1, 1) half-boxes moves the centre by (18, 36), then the box is kept in the frame.
    assert render.person_crop_box(mask, aspect=0.5, offset=(1.0, 1.0)) == render.CropBox(28, 95, 72, 36)
    assert render.person_crop_box(np.zeros((100, 200), bool), aspect=0.5) == render.CropBox(0, 75, 100, 50)
    wide = np.zeros((100, 200), bool)
    wide[40:50, 20:180] = True  # the width sets the size: half height int(159 * 1.5 / 0.5) // 2 = 238
    assert render.person_crop_box(wide, aspect=0.5) == render.CropBox(0, 0, 476, 238)  # larger than the frame
    scale, offset = render.random_person_crop_jitter(np.random.default_rng(0), for_reference=False)
    assert 1 <= scale <= 2 and all(-1 <= o <= 1 for o in offset)


def test_face_crop_box():
    landmarks = np.array([[100.0, 150.0], [160.9, 230.0]])  # width int(160.9) - 100 = 60, centre (130, 190)
    box = render.face_crop_box(landmarks, (480, 640))
    assert box == render.CropBox(190 - 75, 130 - 60, 120, 120)  # 2 face widths square, centre 1/4 box higher
    # A face near the top is pushed down so that 1.25 widths fit above its centre.
    assert render.face_crop_box(landmarks - [0, 140], (480, 640)).top == 0
    offset, scale = render.random_face_crop_jitter(np.random.default_rng(0))
    assert render.random_face_crop_jitter(np.random.default_rng(1), scale=scale)[1] == scale
    assert all(-0.2 <= o <= 0.2 for o in offset) and all(0.8 <= s <= 1.2 for s in scale)


def write(tmp_path, name, content) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_read_openpose_json(tmp_path):
    body = [float(v) for v in range(75)]
    full = {"people": [{"pose_keypoints_2d": body, "face_keypoints_2d": [1.0] * 210,
                        "hand_left_keypoints_2d": [2.0] * 63, "hand_right_keypoints_2d": [3.0] * 63}]}
    (found,) = render.read_openpose_json(write(tmp_path, "a.json", full))
    assert found.body.shape == (25, 3) and found.body[24, 2] == 74
    assert found.face.shape == (70, 3) and found.hand_left[0, 0] == 2 and found.hand_right[20, 2] == 3
    (body_only,) = render.read_openpose_json(write(tmp_path, "b.json", {"people": [{"pose_keypoints_2d": body}]}))
    assert not body_only.face.any() and not body_only.hand_left.any()
    assert render.read_openpose_json(write(tmp_path, "c.json", {"version": 1.3, "people": []})) == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ({"persons": []}, "not OpenPose JSON"),
    ({"people": [{"pose_keypoints_2d": [1.0] * 54}]}, "COCO-18"),
    ({"people": [{"pose_keypoints_2d": [1.0] * 74 + ["x"]}]}, "not a list of numbers"),
    ('{"people": [{"pose_keypoints_2d": [NaN' + ", 1" * 74 + "]}]}", "NaN"),
    ({"people": [{"face_keypoints_2d": []}]}, "without pose_keypoints_2d"),
])
def test_read_openpose_json_names_the_file_and_the_problem(tmp_path, content, message):
    path = write(tmp_path, "bad.json", content)
    with pytest.raises(DataError, match=message) as error:
        render.read_openpose_json(path)
    assert str(error.value).startswith(path) and "\n" not in str(error.value)


def test_read_landmarks_json(tmp_path):
    points = render.read_landmarks_json(write(tmp_path, "f.json", [[i, 2 * i] for i in range(68)]))
    assert points.shape == (68, 2) and points.dtype == np.float64 and points[67].tolist() == [67, 134]
    for bad in ([[1, 2]] * 67, [[1, 2, 3]] * 68, {"landmarks": []}):
        with pytest.raises(DataError, match="not dlib-68 landmarks"):
            render.read_landmarks_json(write(tmp_path, "g.json", bad))
    with pytest.raises(DataError, match="NaN"):
        render.read_landmarks_json(write(tmp_path, "h.json", "[" + ", ".join(["[NaN, 1]"] * 68) + "]"))

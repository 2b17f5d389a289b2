"""Property-based tests: whatever a keypoint, landmark or segmentation file holds, reading and rendering it
gives a valid label map or a DataError / ValueError that names the problem; never a crash from inside."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vid2vid.data import DataError
from vid2vid.data.render import (
    OPENPOSE_ONE_HOT_CHANNELS,
    check_people_in_frame,
    draw_face_edges,
    draw_openpose,
    read_landmarks_json,
    read_openpose_json,
    segmentation_one_hot,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
# Coordinates as detectors and hand edits produce them: mostly in the frame, some outside, some absurd.
coordinate = st.one_of(st.floats(-10, 80), st.floats(-1e6, 1e6), st.sampled_from([0.0, -1.0, 1e300]),
                       st.floats(allow_nan=True, allow_infinity=True))
confidence = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.05, 1.0, -1.0, 2.0]))


def keypoint_list(count: int):
    return st.lists(st.tuples(coordinate, coordinate, confidence), min_size=count, max_size=count).map(
        lambda rows: [v for row in rows for v in row])


openpose_person = st.fixed_dictionaries(
    {"pose_keypoints_2d": keypoint_list(25)},
    optional={"face_keypoints_2d": st.one_of(st.just([]), keypoint_list(70)),
              "hand_left_keypoints_2d": st.one_of(st.just([]), keypoint_list(21)),
              "hand_right_keypoints_2d": st.one_of(st.just([]), keypoint_list(21))})
sizes = st.tuples(st.integers(1, 64), st.integers(1, 64))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_names_the_file(error: Exception, path: Path) -> None:
    message = str(error)
    assert message.startswith(str(path)) and "\n" not in message, message


def check_pose_map(canvas: np.ndarray, height: int, width: int, channels: int) -> None:
    assert canvas.shape == (height, width, channels) and canvas.dtype == np.uint8


@SETTINGS
@given(content=json_values)
def test_any_json_is_openpose_people_or_a_named_error(tmp_path, content):
    path = write(tmp_path, "any.json", json.dumps(content))
    try:
        people = read_openpose_json(path)
    except DataError as error:
        assert_names_the_file(error, path)
        return
    for person in people:
        for part, count in ((person.body, 25), (person.face, 70), (person.hand_left, 21), (person.hand_right, 21)):
            assert part.shape == (count, 3) and np.isfinite(part).all()


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_are_read_or_refused_with_the_file_named(tmp_path, data):
    for name, read in (("pose.json", read_openpose_json), ("face.json", read_landmarks_json)):
        path = tmp_path / name
        path.write_bytes(data)
        try:
            read(path)
        except DataError as error:
            assert_names_the_file(error, path)


@SETTINGS
@given(people=st.lists(openpose_person, max_size=2), size=sizes, one_hot=st.booleans())
def test_openpose_files_render_to_a_pose_map_or_a_clear_error(tmp_path, people, size, one_hot):
    """The dataset's path: read, check against the frame, draw the tallest person."""
    height, width = size
    path = write(tmp_path, "frame.json", json.dumps({"version": 1.3, "people": people}))
    try:
        read = read_openpose_json(path)
        check_people_in_frame(path, read, height, width)
    except DataError as error:
        assert_names_the_file(error, path)
        return
    for person in read:
        canvas = draw_openpose(person, height, width, one_hot=one_hot)
        check_pose_map(canvas, height, width, OPENPOSE_ONE_HOT_CHANNELS if one_hot else 3)
        if one_hot:
            assert set(np.unique(canvas)) <= {0, 255}


@SETTINGS
@given(person=openpose_person, size=sizes)
def test_draw_openpose_refuses_points_far_off_the_canvas(person, size):
    """Drawn directly (no frame check), finite keypoints anywhere give a map or a ValueError, quickly."""
    height, width = size
    rows = {k: np.nan_to_num(np.asarray(v, np.float64), nan=0.0, posinf=0.0, neginf=0.0) for k, v in person.items()}
    from vid2vid.data.render import Person

    def part(key, count):
        values = rows.get(key)
        return values.reshape(count, 3) if values is not None and values.size else np.zeros((count, 3))

    drawn = Person(part("pose_keypoints_2d", 25), part("face_keypoints_2d", 70), part("hand_left_keypoints_2d", 21),
                   part("hand_right_keypoints_2d", 21))
    try:
        canvas = draw_openpose(drawn, height, width)
    except ValueError as error:
        assert "far outside" in str(error)
        return
    check_pose_map(canvas, height, width, 3)


@SETTINGS
@given(points=st.lists(st.tuples(coordinate, coordinate), min_size=0, max_size=70), size=sizes)
def test_landmark_files_render_to_an_edge_map_or_a_clear_error(tmp_path, points, size):
    height, width = size
    path = write(tmp_path, "face.json", json.dumps([list(p) for p in points]))
    try:
        landmarks = read_landmarks_json(path)
    except DataError as error:
        assert_names_the_file(error, path)
        assert len(points) != 68 or not all(math.isfinite(v) for p in points for v in p)
        return
    try:
        edges = draw_face_edges(landmarks, height, width)
    except ValueError as error:
        assert "far outside" in str(error)
        return
    assert edges.shape == (height, width) and edges.dtype == np.uint8
    assert set(np.unique(edges)) <= {0, 255}


@SETTINGS
@given(ids=st.lists(st.integers(-3, 40), min_size=1, max_size=64), num_classes=st.integers(1, 35),
       dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32]))
def test_segmentation_ids_give_a_one_hot_map_or_a_clear_error(ids, num_classes, dtype):
    array = np.asarray(ids).clip(0 if dtype in (np.uint8, np.uint16) else -3).astype(dtype).reshape(1, -1)
    try:
        one_hot = segmentation_one_hot(array, num_classes, source="seg.png")
    except DataError as error:
        assert str(error).startswith("seg.png: ")
        in_range = (array >= 0).all() and (array < num_classes).all()
        assert not in_range or dtype == np.float32
        return
    assert one_hot.shape == (1, len(ids), num_classes)
    np.testing.assert_array_equal(one_hot.sum(axis=2), 1)
    np.testing.assert_array_equal(one_hot.argmax(axis=2), array.astype(np.int64))

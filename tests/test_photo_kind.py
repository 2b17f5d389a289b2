"""The "photo" kind (dancers on real backdrops) and the framing of real photos as references: backdrops really
cut from the bundled photos, per-seed determinism, cloth textures, people cut by the frame's edge, references cut
in training, and labels drawn with the person's box at the output size."""

import dataclasses

import cv2
import numpy as np
import pytest

from vid2vid.data import render, samples, synthetic
from vid2vid.data.datasets import DataConfig, Frame, VideoClips, cut_frame, person_box_scale, random_reference_cut
from vid2vid.data.synthetic import common, photo
from vid2vid.data.writer import write_synthetic

pytest.importorskip("skimage")
SIZE = (64, 64)


def looks(count=80):
    return [(i, synthetic.identity("photo", i)) for i in range(count)]


def test_backdrops_come_from_the_bundled_photos_and_videos_and_never_show_the_people():
    pictures = samples.backdrops()
    assert len(pictures) == len(samples.BACKDROP_PHOTOS) + len(samples.BACKDROP_VIDEOS) * samples.VIDEO_FRAMES
    coffee = cv2.imread(str(samples.photo_path("coffee")))[:, :, ::-1]
    assert np.array_equal(pictures[samples.BACKDROP_PHOTOS.index("coffee")], coffee)
    assert not set(samples.PEOPLE) & set(samples.BACKDROP_PHOTOS) and "astronaut" not in samples.TEXTURE_PHOTOS
    assert "carphone_pristine" not in samples.BACKDROP_VIDEOS  # a man talking


def test_a_backdrop_is_the_photo_window_a_look_names_with_a_shadow_under_the_feet():
    index, look = next((i, x) for i, x in looks() if x.backdrop is not None)
    scene = photo.photo_scene(look, common._rng(0, "dancers", index, common._MOTION_STREAM), SIZE, 0, index)
    window = photo.backdrop_window(samples.backdrops()[look.backdrop], look.window, SIZE).astype(np.float64)
    far_from_feet = np.abs(np.arange(SIZE[0]) - look.ground * SIZE[0])[:, None] > 0.2 * SIZE[0]
    np.testing.assert_allclose(scene.background[np.broadcast_to(far_from_feet, SIZE)],
                               window[np.broadcast_to(far_from_feet, SIZE)], atol=1e-6)
    under_feet = (round(min(look.ground, 0.99) * SIZE[0]), round(look.centre * (SIZE[1] - 1)))
    assert scene.background[under_feet].sum() < window[under_feet].sum() * (1 - 0.5 * look.shadow)


def test_backdrop_window_cuts_resizes_and_mirrors():
    picture = np.arange(40 * 80 * 3, dtype=np.uint8).reshape(40, 80, 3)
    whole = photo.backdrop_window(picture, (1.0, 0.0, 0.0, False), (20, 20))  # the left 40x40, halved
    np.testing.assert_array_equal(whole, cv2.resize(picture[:, :40], (20, 20), interpolation=cv2.INTER_AREA))
    right = photo.backdrop_window(picture, (0.5, 1.0, 1.0, True), (20, 20))  # the bottom-right 20x20, mirrored
    np.testing.assert_array_equal(right, picture[20:, 60:][:, ::-1])


def test_same_seed_same_frames_and_a_share_keeps_the_flat_room():
    a = [f.image for f in synthetic.sequence("photo", 7, 3, SIZE)]
    b = [f.image for f in synthetic.sequence("photo", 7, 3, SIZE)]
    c = [f.image for f in synthetic.sequence("photo", 7, 3, SIZE, seed=1)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.abs(a[0].astype(int) - c[0]).mean() > 5
    all_looks = looks()
    plain = [x for _, x in all_looks if x.backdrop is None]
    assert 0.1 < len(plain) / len(all_looks) < 0.4
    i = next(i for i, x in all_looks if x.backdrop is None)  # a plain one is dancer i, pixel for pixel
    dancer = [f.image for f in synthetic.sequence("dancers", i, 2, SIZE)]
    assert all(np.array_equal(x.image, y) for x, y in zip(synthetic.sequence("photo", i, 2, SIZE), dancer,
                                                            strict=True))


def test_the_camera_varies_size_place_colour_and_grey():
    all_looks = [x for _, x in looks(200) if x.backdrop is not None]
    statures = [x.stature for x in all_looks]
    assert min(statures) < 0.5 and max(statures) > 0.75
    assert any(x.ground > 1.0 for x in all_looks)  # legs cut by the bottom edge
    assert any(x.centre < 0.15 or x.centre > 0.85 for x in all_looks)  # cut by a side
    assert any(x.camera.grey for x in all_looks) and not all(x.camera.grey for x in all_looks)
    assert any(x.dancer.shirt.pattern == "texture" for x in all_looks)
    i = next(i for i, x in looks() if x.camera is not None and x.camera.grey and x.backdrop is not None)
    image = next(iter(synthetic.sequence("photo", i, 1, SIZE))).image.astype(int)
    assert np.abs(image - image.mean(axis=2, keepdims=True)).max() <= 1  # grey up to rounding


def test_a_texture_tile_is_sampled_bilinearly_and_tiles():
    tile = np.arange(16, dtype=np.float32).reshape(4, 4) / 15
    centres = (np.arange(4) + 0.5) / 4
    np.testing.assert_allclose(common._tile(tile, centres, np.full(4, centres[2])), tile[2], atol=1e-6)
    np.testing.assert_allclose(common._tile(tile, centres + 3, np.full(4, centres[2] - 2)), tile[2], atol=1e-6)
    between = common._tile(tile, np.array([(0.5 + 0.5) / 4]), np.array([0.5 / 4]))  # halfway from texel 0 to 1
    np.testing.assert_allclose(between, [(tile[0, 0] + tile[0, 1]) / 2], atol=1e-6)
    assert samples.texture("brick").shape == (24, 24) and 0 <= samples.texture("brick").min() < 0.1


def test_points_outside_the_frame_are_undetected():
    i, look = next((i, x) for i, x in looks(200) if x.backdrop is not None and x.ground > 1.05)
    for frame in synthetic.sequence("photo", i, 2, SIZE):
        body = np.array(frame.people[0]["pose_keypoints_2d"]).reshape(25, 3)
        seen = body[:, 2] > 0
        assert not seen[[11, 14, 19, 22]].any()  # ankles and toes below the frame
        assert seen[[1, 8]].all()
        assert (body[seen, :2] >= 0).all() and (body[seen, 0] <= SIZE[1] - 1).all()
        assert (body[seen, 1] <= SIZE[0] - 1).all()


def person_frame(height=512, width=512, top=50, bottom=450) -> Frame:
    body = np.zeros((25, 3))
    for k, y in ((0, top + 20), (1, top + 60), (8, (top + bottom) / 2), (11, bottom), (14, bottom), (17, top)):
        body[k] = (width / 2, y, 1.0)
    people = [render.Person(body, np.zeros((70, 3)), np.zeros((21, 3)), np.zeros((21, 3)))]
    return Frame(np.zeros((height, width, 3), np.uint8), people, source_size=(height, width))


def test_the_person_box_scale_brings_a_large_photo_to_the_output_size():
    assert person_box_scale(person_frame(), 64) == pytest.approx(64 / 512)  # 1.5 x 400 px: the whole frame
    assert person_box_scale(person_frame(1000, 1000, 100, 300), 64) == pytest.approx(64 / 300)  # 1.5 x 200 px
    assert person_box_scale(person_frame(64, 64, 10, 52), 64) == 1.0  # never up
    assert person_box_scale(Frame(np.zeros((300, 200, 3), np.uint8), []), 64) == pytest.approx(64 / 150)


def test_a_cut_frame_keeps_the_top_rows_and_hides_the_points_below():
    frame = person_frame()
    cut = cut_frame(frame, 300)
    assert cut.image.shape == (300, 512, 3)
    body = cut.people[0].body
    assert body[[0, 1, 8], 2].all() and not body[[11, 14], 2].any()
    rows = set()
    rng = np.random.default_rng(0)
    for _ in range(50):
        rows.add(random_reference_cut(frame, rng).image.shape[0])
    mid_torso, ankles = (110 + 250) / 2, 450
    assert min(rows) >= mid_torso and max(rows) <= ankles + 1 and len(rows) > 20


def test_training_references_are_cut_at_the_configured_rate_and_the_clip_never(tmp_path):
    write_synthetic("photo", tmp_path, sequences=3, frames=8, size=SIZE, progress=False)
    cfg = DataConfig(task="pose", size=SIZE, clip_length=2, num_references=2, fit_person_box=True, teacher_flow=False)
    whole = VideoClips(tmp_path, cfg)
    cut = VideoClips(tmp_path, dataclasses.replace(cfg, reference_cut=1.0))
    for i in range(4):
        a, b = whole[i], cut[i]
        assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["labels"], b["labels"])
    # A reference cut between torso and ankles is framed larger: its drawn ankles are gone.
    ankles_seen = [bool((cut[i]["ref_labels"][:, 3:] > -1).any()) for i in range(4)]
    assert all(ankles_seen)  # the upper body is still drawn
    assert any(not np.array_equal(whole[i]["ref_images"], cut[i]["ref_images"]) for i in range(4))
    with pytest.raises(ValueError, match="reference_cut"):
        DataConfig(task="pose", reference_cut=1.5)


def dancer_frame(tmp_path) -> Frame:
    """A built-in dancer's first frame (64x64), read as training reads it."""
    from vid2vid.data.datasets import read_frame
    from vid2vid.data.layout import scan

    write_synthetic("dancers", tmp_path, sequences=1, frames=2, size=SIZE, progress=False)
    return read_frame(scan(tmp_path, "pose")[0], 0)


def test_a_person_cut_at_the_hips_is_estimated_whole_from_the_shoulders_and_torso(tmp_path):
    frame = dancer_frame(tmp_path)
    person = render.largest_person(frame.people)
    top, bottom = render.whole_person_rows(person)
    seen = np.concatenate([person.body, person.face])
    ys = seen[seen[:, 2] > 0, 1]
    # Within 15% of the whole dancer's extent, and no shorter than it.
    assert ys.max() - ys.min() <= bottom - top <= 1.15 * (ys.max() - ys.min())
    hips = int(person.body[8, 1]) + 1
    cut = render.largest_person(cut_frame(frame, hips).people)
    cut_top, cut_bottom = render.whole_person_rows(cut)  # legs unseen: from the shoulders and torso alone
    assert cut_top == pytest.approx(top) and abs(cut_bottom - ys.max()) <= 0.1 * (ys.max() - ys.min())
    bare = render.Person(np.zeros((25, 3)), np.zeros((70, 3)), np.zeros((21, 3)), np.zeros((21, 3)))
    assert render.whole_person_rows(bare) is None and render.whole_person_rows(None) is None


def test_a_cut_reference_is_framed_at_the_scale_of_the_whole_person_and_padded(tmp_path):
    """With whole_person_box an upper-body reference is drawn as large as the whole one, at the same place, with
    background labels and the frame's border colour where the frame ends (off: the cut one is zoomed in).
    Reverted (whole_rows ignored in person_crop_box), the shoulders come out 1.7x wider (15.2 px against 9.0)."""
    frame = dancer_frame(tmp_path)
    cfg = DataConfig(task="pose", size=SIZE, clip_length=1, num_references=1, fit_person_box=True,
                     whole_person_box=True, teacher_flow=False)
    clips = VideoClips(tmp_path, cfg)
    person = render.largest_person(frame.people)
    hips = int(person.body[8, 1]) + 1
    cut = cut_frame(frame, hips)

    def shoulders(f, c):
        labels = [c.render(f, None, ())]
        box = c.reference_boxes([f], labels, None, (1.0, 1.0))[0]
        points = datasets_keypoints(f, box)
        return float(np.linalg.norm(points[2, :2] - points[5, :2])), points[1], c.crop_references([f], labels, [box])

    whole_width, whole_neck, _ = shoulders(frame, clips)
    cut_width, cut_neck, (labels, images) = shoulders(cut, clips)
    assert cut_width == pytest.approx(whole_width, rel=0.12)  # the estimate is within 11% for 9 in 10 dancers
    assert np.abs(cut_neck[:2] - whole_neck[:2]).max() <= 1.5
    below = int(round(float(cut_neck[1]) + (hips - person.body[1, 1]) * 64 / cut_box_height(cut, clips))) + 2
    assert (labels[0, :, below:] == -1).all()  # no limb drawn beyond the cut
    border = np.median(np.concatenate([cut.image[0], cut.image[-1], cut.image[:, 0], cut.image[:, -1]]), axis=0)
    np.testing.assert_allclose(images[0, :, -1, 0].numpy(), border / 127.5 - 1, atol=1.01 / 127.5)  # uint8 fill
    zoomed = VideoClips(tmp_path, dataclasses.replace(cfg, whole_person_box=False))
    assert shoulders(cut, zoomed)[0] > 1.3 * whole_width


def datasets_keypoints(frame, box):
    from vid2vid.data.datasets import keypoints_in_box

    return keypoints_in_box(frame.people, box, SIZE).numpy()


def cut_box_height(frame, clips):
    return clips.reference_boxes([frame], [clips.render(frame, None, ())], None, (1.0, 1.0))[0].height

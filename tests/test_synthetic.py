"""Procedural datasets: determinism, label/image consistency, identity/motion separation and exact flow."""

import dataclasses
import functools
import itertools
from itertools import pairwise

import cv2
import numpy as np
import pytest
import torch

from vid2vid.data.synthetic import CITYSCAPES_IDS, KINDS, common, dancers, identity, sequence, turned_away
from vid2vid.nn.warp import warp

SIZE = (96, 128)  # (height, width): not square, so a swap of the axes shows
pytestmark = pytest.mark.filterwarnings("error")  # e.g. a division by zero at the horizon


@functools.cache
def frames(kind, index, count=6, size=SIZE, seed=0, motion_index=None):
    return list(sequence(kind, index, count, size, seed=seed, motion_index=motion_index))


def body_points(frame):
    return np.array(frame.people[0]["pose_keypoints_2d"]).reshape(25, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_same_arguments_same_bytes_and_indices_differ(kind):
    a, b = frames(kind, 3), list(sequence(kind, 3, 6, SIZE, seed=0))
    for x, y in zip(a, b, strict=True):
        assert x.image.tobytes() == y.image.tobytes() and x.parts.tobytes() == y.parts.tobytes()
        assert (x.flow is None and y.flow is None) or x.flow.tobytes() == y.flow.tobytes()
        assert x.people == y.people
    other_index, other_seed = frames(kind, 4), list(sequence(kind, 3, 6, SIZE, seed=1))
    assert np.abs(a[0].image.astype(int) - other_index[0].image).mean() > 5
    assert np.abs(a[0].image.astype(int) - other_seed[0].image).mean() > 5


@pytest.mark.parametrize("kind", KINDS)
def test_frame_does_not_depend_on_sequence_length(kind):
    short, long = list(sequence(kind, 2, 2, SIZE)), frames(kind, 2)
    assert all(s.image.tobytes() == f.image.tobytes() for s, f in zip(short, long[:2], strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_dtypes(kind):
    h, w = SIZE
    for t, f in enumerate(frames(kind, 0)):
        assert f.image.shape == (h, w, 3) and f.image.dtype == np.uint8
        assert f.parts.shape == (h, w) and f.parts.dtype == np.uint16
        if t == 0:
            assert f.flow is None and f.flow_valid is None
        else:
            assert f.flow.shape == (h, w, 2) and f.flow.dtype == np.float32 and np.isfinite(f.flow).all()
            assert f.flow_valid.shape == (h, w) and f.flow_valid.dtype == bool
        assert (f.people is not None) == (kind in ("dancers", "turning", "photo"))
        assert (f.landmarks is not None) == (kind in ("faces", "face_photo", "face_talk"))
        assert (f.seg is not None) == (kind == "street")
        if f.people is not None:
            p = f.people[0]
            assert [len(p[k]) for k in ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                                        "hand_right_keypoints_2d")] == [75, 210, 63, 63]
        if kind == "faces":
            assert f.landmarks.shape == (68, 2) and f.landmarks.dtype == np.float32
        if kind == "street":
            assert f.seg.shape == (h, w) and f.seg.dtype == np.uint8


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown kind"):
        sequence("cats", 0, 2, SIZE)
    with pytest.raises(ValueError, match="at least 8x8"):
        sequence("faces", 0, 2, (4, 64))
    with pytest.raises(ValueError, match=">= 0"):
        identity("faces", -1)


def test_coverage_is_unbiased():
    # Pixel centres at integers, as warp() samples. Coverage is counted on a 4x finer grid, so edges land on
    # quarter pixels: areas within perimeter / 8, centroids within 1/8 pixel, and no growth of the shape.
    ys, xs = np.mgrid[0:10, 0:12]
    shapes = [common._rect(2.3, 1.2, 7.8, 5.6), common._rect(1.6, 2.9, 9.1, 5.4), common._rect(3, 2, 4, 3),
              np.array([[1.3, 1.1], [10.2, 2.4], [4.4, 8.3]])]
    for poly in shapes:
        a = common._coverage([poly], 0, 0, 12, 10).astype(float) / 255
        edges = np.roll(poly, -1, 0) - poly
        area = 0.5 * abs(np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1]))
        assert abs(a.sum() - area) <= np.linalg.norm(edges, axis=1).sum() / 8 + 0.05, (a.sum(), area)
        if area > 2:
            centroid = poly.mean(0) if len(poly) == 3 else 0.5 * (poly.min(0) + poly.max(0))
            assert abs((a * xs).sum() / a.sum() - centroid[0]) < 0.13
            assert abs((a * ys).sum() / a.sum() - centroid[1]) < 0.13


def test_dancer_keypoints_inside_the_image_and_on_the_body():
    h, w = SIZE
    for index in range(4):
        for f in frames("dancers", index):
            p = f.people[0]
            for key in ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                        "hand_right_keypoints_2d"):
                k = np.array(p[key]).reshape(-1, 3)
                assert (k[:, 2] == 1).all()
                assert (k[:, 0] >= 0).all() and (k[:, 0] <= w - 1).all(), key
                assert (k[:, 1] >= 0).all() and (k[:, 1] <= h - 1).all(), key
            body = body_points(f)
            x, y = np.rint(body[:, 0]).astype(int), np.rint(body[:, 1]).astype(int)
            # Joints sit on drawn parts (not the background), in the colour of the person, not of the wall.
            on_body = f.parts[y, x] != 0
            assert on_body[:15].all(), np.nonzero(~on_body[:15])
            assert body[2, 0] < body[5, 0] and body[9, 0] < body[12, 0]  # R on the image left
            assert body[15, 0] < body[16, 0] and body[0, 1] < body[1, 1] < body[8, 1]


def test_dancer_joints_differ_from_the_background_colour():
    f0 = frames("dancers", 1)[0]
    background = dancers._DancerScene(identity("dancers", 1), common._rng(0, "dancers", 1, 1), SIZE).background
    body = body_points(f0)
    x, y = np.rint(body[:15, 0]).astype(int), np.rint(body[:15, 1]).astype(int)
    assert (np.abs(f0.image[y, x].astype(float) - background[y, x]).sum(-1) > 20).all()



TURNING = 16  # frames: every turning dancer shows both sides within 16 frames


def test_turning_dancers_show_both_sides_in_spans_of_4_to_8_frames():
    for index in range(40):
        views = turned_away(index, 40)
        assert any(views[:TURNING]) and not all(views[:TURNING]), index
        spans = [len(list(g)) for _, g in itertools.groupby(views)]
        assert all(4 <= n <= 8 for n in spans[1:-1]), (index, spans)


def test_a_turning_dancer_facing_the_camera_is_the_dancer_of_the_same_index():
    for index in (0, 3):
        views = turned_away(index, TURNING)
        own, dancer = frames("turning", index, TURNING), frames("dancers", index, TURNING)
        assert identity("turning", index).shirt == identity("dancers", index).shirt
        for t, (f, g) in enumerate(zip(own, dancer, strict=True)):
            if not views[t]:
                assert f.image.tobytes() == g.image.tobytes() and f.people == g.people, (index, t)
                if t > 0 and not views[t - 1]:
                    assert f.flow_valid.tobytes() == g.flow_valid.tobytes()


def test_a_turned_dancer_is_the_front_view_mirrored_without_a_face():
    index = 3
    views = turned_away(index, TURNING)
    own, dancer = frames("turning", index, TURNING), frames("dancers", index, TURNING)
    assert any(views)
    for t in np.nonzero(views)[0]:
        back, front = body_points(own[t]), body_points(dancer[t])
        seen = np.ones(25, bool)
        seen[[0, 15, 16]] = False  # nose and eyes: hidden, as OpenPose reports them (0, 0, 0)
        assert (back[~seen] == 0).all() and (back[seen, 2] == 1).all()
        # Mirrored about the body's vertical axis: x_back + x_front is the same for every joint, y unchanged.
        total = back[seen, 0] + front[seen, 0]
        assert np.ptp(total) < 1e-3 and np.abs(back[seen, 1] - front[seen, 1]).max() < 1e-3
        assert back[2, 0] > back[5, 0] and back[9, 0] > back[12, 0]  # the person's right on the image right
        face = np.array(own[t].people[0]["face_keypoints_2d"]).reshape(-1, 3)
        assert (face == 0).all()
        hand = np.array(own[t].people[0]["hand_right_keypoints_2d"]).reshape(-1, 3)
        assert (hand[:, 2] == 1).all()
        assert (own[t].parts[own[t].parts > 0] > dancers._BACK_VIEW_IDS).all()  # the back view's own parts


def test_a_turned_dancer_shows_the_shirts_back_and_no_flow_crosses_a_turn():
    index = 3
    look = identity("turning", index)
    assert look.back is not None and look.back != look.shirt
    motion = functools.partial(common._rng, 0, "dancers", index, common._MOTION_STREAM)
    turns = functools.partial(common._rng, 0, "turning", index, common._MOTION_STREAM)

    def render(ident):
        scene = dancers._DancerScene(ident, motion(), SIZE, dancers._Turns(turns()))
        return list(common._frames(scene, TURNING))

    own, one_sided = render(look), render(dataclasses.replace(look, back=look.shirt))
    views = turned_away(index, TURNING)
    shirt = {dancers._BACK_VIEW_IDS + n for n in (43, 44, 45, 46, 52, 53, 54)}  # torso and sleeves seen from behind
    for t, (f, g) in enumerate(zip(own, one_sided, strict=True)):
        differs = np.abs(f.image.astype(int) - g.image).sum(-1) > 0
        if not views[t]:
            assert not differs.any()
            continue
        # The back garment is everything that changes (beside the shirt's own pixels: the anti-aliased fringes
        # of the parts over and under it), and the torso is mostly that garment's colours.
        near_shirt = cv2.dilate(np.isin(f.parts, list(shirt)).astype(np.uint8), np.ones((5, 5))) > 0
        assert differs.any() and not (differs & ~near_shirt).any()
        torso = f.parts == dancers._BACK_VIEW_IDS + 43
        assert differs[torso].mean() > 0.9
        if t > 0 and views[t - 1] != views[t]:  # a turn: no body pixel's flow is valid, the backdrop's is
            assert not f.flow_valid[f.parts > 0].any() and f.flow_valid[f.parts == 0].mean() > 0.9



def test_a_turning_dancers_densepose_tells_front_from_back():
    index = 3
    views, own = turned_away(index, TURNING), frames("turning", index, TURNING)
    assert frames("dancers", index, TURNING)[0].densepose is None
    for t, f in enumerate(own):
        dp = f.densepose
        assert dp.shape == (*f.image.shape[:2], 3) and dp.dtype == np.uint8
        part = dp[:, :, 2]
        assert ((part > 0) == (f.parts > 0)).all()  # a part wherever the body owns the pixel
        torso = f.parts % dancers._BACK_VIEW_IDS == 43
        assert (part[torso] == (1 if views[t] else 2)).all()  # DensePose's torso pair: back 1, front 2
        shoulders = body_points(f)[[2, 5]]  # right and left upper arm: 16/18 and 15/17, on their own sides
        for (x, _, _), arm in zip(shoulders, ((16, 18), (15, 17)), strict=True):
            seen = np.isin(part, arm[0] if views[t] else arm[1])
            assert seen.any() and abs(np.nonzero(seen)[1].mean() - x) < 8
        assert 0 < dp[:, :, :2][part > 0].std()  # U, V vary over the surface


def test_face_landmarks_on_the_face():
    h, w = SIZE
    for index in range(4):
        for f in frames("faces", index):
            lm = f.landmarks
            assert (lm[:, 0] >= 0).all() and (lm[:, 0] <= w - 1).all() and (lm[:, 1] >= 0).all()
            assert (lm[:, 1] <= h - 1).all()
            x, y = np.rint(lm[:, 0]).astype(int), np.rint(lm[:, 1]).astype(int)
            head = np.isin(f.parts, np.arange(11, 30))  # the face's regions (ids 10.. in _PortraitScene)
            assert head[y[27:], x[27:]].all()  # nose, eyes and mouth points lie on drawn face features
            # Jaw points are on the outline of the skin: within a pixel of it.
            near = cv2.dilate(head.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert near[y[:17], x[:17]].all()
            assert lm[0, 0] < lm[8, 0] < lm[16, 0]  # jaw from the image-left ear to the image-right ear
            assert lm[17:22, 1].mean() < lm[36:42, 1].mean() and lm[22:27, 1].mean() < lm[42:48, 1].mean()
            assert lm[33, 1] < lm[51, 1] < lm[57, 1] < lm[8, 1]
            assert lm[36:42, 0].mean() < lm[42:48, 0].mean()


def test_street_labels_are_cityscapes_and_cars_move():
    fs = frames("street", 1, 8, (96, 160))
    allowed = set(CITYSCAPES_IDS.values())
    seen = set()
    for f in fs:
        ids = set(np.unique(f.seg).tolist())
        assert ids <= allowed, ids - allowed
        seen |= ids
        assert (f.seg[0] == CITYSCAPES_IDS["sky"]).mean() > 0.3  # sky on top
        road = f.seg == CITYSCAPES_IDS["road"]
        assert road[-20:].mean() > 0.3 and road[:30].mean() == 0  # road at the bottom, none in the top third
    assert {CITYSCAPES_IDS[k] for k in ("road", "sidewalk", "building", "sky", "car")} <= seen
    # Cars move: their pixels change between frames and their flow is not zero.
    cars = [f.seg == CITYSCAPES_IDS["car"] for f in fs]
    assert all(c.any() for c in cars) and (cars[0] != cars[-1]).mean() > 0.002
    moving = [np.abs(f.flow[c]).max() for f, c in zip(fs[1:], cars[1:], strict=True)]
    assert min(moving) > 0.3


def test_identities_differ():
    a, b = frames("dancers", 0, motion_index=0), frames("dancers", 1, motion_index=0)

    def torso(f):
        body = body_points(f)
        x, y = np.rint(0.5 * (body[1, :2] + body[8, :2])).astype(int)
        return f.image[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3).astype(float).mean(0)

    assert np.linalg.norm(torso(a[0]) - torso(b[0])) > 40
    fa, fb = identity("faces", 0), identity("faces", 1)
    assert fa.face != fb.face and fa.backdrop != fb.backdrop
    assert identity("street", 0).buildings != identity("street", 1).buildings


def test_identity_performs_another_sequences_motion():
    # Dancers: joint angles come from the motion, lengths and looks from the identity.
    own, moved = frames("dancers", 5), frames("dancers", 2, motion_index=5)
    for f, g in zip(own, moved, strict=True):
        for a, b in ((2, 3), (3, 4), (9, 10), (1, 8)):
            va, vb = body_points(f)[b, :2] - body_points(f)[a, :2], body_points(g)[b, :2] - body_points(g)[a, :2]
            assert abs(np.arctan2(va[1], va[0]) - np.arctan2(vb[1], vb[0])) < 1e-4
    assert np.abs(moved[0].image.astype(int) - frames("dancers", 2)[0].image).mean() < np.abs(
        moved[0].image.astype(int) - own[0].image).mean()  # it still looks like dancer 2
    # Faces: the head turns as in the motion's sequence (eye line angle), the face is the identity's.
    own, moved = frames("faces", 5), frames("faces", 2, motion_index=5)
    for f, g in zip(own, moved, strict=True):
        def tilt(lm):
            d = lm[42:48].mean(0) - lm[36:42].mean(0)
            return np.arctan2(d[1], d[0])
        assert abs(tilt(f.landmarks) - tilt(g.landmarks)) < 1e-4
    # Street: the layout and the drive are the motion's, the colours the identity's.
    own, moved = frames("street", 5), frames("street", 2, motion_index=5)
    assert all((f.seg == g.seg).all() for f, g in zip(own, moved, strict=True))
    assert np.abs(own[0].image.astype(int) - moved[0].image).mean() > 5


def _border(parts):
    k = np.ones((3, 3), np.uint8)
    p = parts.astype(np.float32)
    return cv2.dilate(p, k) != cv2.erode(p, k)


def _warp(image, flow):
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))
    x = x.permute(2, 0, 1)[None] if x.ndim == 3 else x[None, None]
    return warp(x, torch.from_numpy(flow).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


# Warping the previous frame by the flow reproduces the current frame on valid pixels, up to bilinear
# resampling of the textures (colour levels, 0-255). The pixels compared: flow_valid, not within a pixel of a
# region border in this frame nor (warped) in the previous one: border pixels mix two regions that move
# differently. What is left: texture edges are 2-pixel ramps, and resampling a ramp of contrast C half a pixel
# off errs by up to C/8 (a few dozen levels at lane markings and stripes); patterns finer than 8 pixels fade
# to their mean, where the error is below 8% of their amplitude; and both images are rounded to uint8. So
# the mean is small and the tail is bounded by the sharpest edges. Where the frame changed (by more than 3
# levels), the flow must explain it: zero flow, or the flow half a pixel off, is far worse.
# photo 29: a real backdrop with little blur and no noise (blur and noise are what separate the others from exact).
FLOW_CASES = {"dancers": (2, (160, 160)), "faces": (2, (192, 192)), "street": (2, (128, 128)),
              "turning": (2, (160, 160)), "photo": (29, (160, 160)),
              "face_photo": (122, (192, 192)),  # a real backdrop, little blur and noise
              "face_talk": (3, (192, 192))}  # the head turns in depth: homographies


def _noise(kind: str, index: int) -> float:
    """The camera's sensor noise sigma (of 255) of a filmed kind, else 0: frame to frame, two draws of it differ by
    about 1.13 sigma on average, which no flow can warp away."""
    camera = getattr(identity(kind, index), "camera", None)
    return 0.0 if camera is None else camera.noise


@pytest.mark.parametrize("kind", KINDS)
def test_flow_is_exact(kind):
    index, size = FLOW_CASES[kind]
    fs = frames(kind, index, 7, size)
    errors = {"true": [], "zero": [], "shifted": []}  # (error on interior pixels, error where the frame changed)
    for a, b in pairwise(fs):
        interior = b.flow_valid & ~_border(b.parts) & ~(_warp(_border(a.parts), b.flow)[..., 0] > 0)
        assert interior.mean() > 0.5
        changed = interior & (np.abs(a.image.astype(np.float32) - b.image).mean(-1) > 3)
        for name, flow in (("true", b.flow), ("zero", 0 * b.flow), ("shifted", b.flow + 0.5)):
            e = np.abs(_warp(a.image, flow) - b.image).mean(-1)
            errors[name].append((e[interior], e[changed]))
    everywhere = np.concatenate([e for e, _ in errors["true"]])
    floor = 1.2 * _noise(kind, index)
    assert everywhere.mean() < 1.0 + floor and np.percentile(everywhere, 99) < 12 + 3 * floor, (
        everywhere.mean(), np.percentile(everywhere, 99))
    true, zero, shifted = (np.concatenate([c for _, c in errors[k]]) for k in ("true", "zero", "shifted"))
    assert len(true) > 50 and true.mean() < 3.0 + floor, (len(true), true.mean())
    assert zero.mean() > 4 * true.mean() and shifted.mean() > 1.5 * true.mean(), (
        true.mean(), zero.mean(), shifted.mean())


@pytest.mark.parametrize("kind", KINDS)
def test_flow_valid_marks_disocclusions(kind):
    fs = frames(kind, 1, 4, (96, 96))
    h, w = 96, 96
    for a, b in pairwise(fs):
        q = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1) + b.flow
        outside = (q[..., 0] < 0) | (q[..., 0] > w - 1) | (q[..., 1] < 0) | (q[..., 1] > h - 1)
        assert not b.flow_valid[outside].any()
        qx = np.clip(np.rint(q[..., 0]), 0, w - 1).astype(int)
        qy = np.clip(np.rint(q[..., 1]), 0, h - 1).astype(int)
        assert (b.flow_valid == (~outside & (a.parts[qy, qx] == b.parts))).all()
        assert not b.flow_valid.all()  # something was uncovered or came in

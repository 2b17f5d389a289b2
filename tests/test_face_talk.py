"""Kind "face_talk" (the shipped face model's third stage's data): face_photo's looks with heads that turn in depth
and mouths that open wider; the homography of a turn; and the "relative" retargeting of driving landmarks and the
no-feedback rendering the face demo uses."""

import math

import numpy as np
import torch

from vid2vid.data import render, synthetic
from vid2vid.data.synthetic import faces
from vid2vid.data.synthetic.common import _apply
from vid2vid.face_metrics import inter_ocular

from .conftest import TINY_GENERATOR

SIZE = (64, 64)


def test_a_turn_in_depth_draws_the_side_turned_away_smaller():
    assert np.allclose(faces._turn_in_depth(0.0, 0.0), np.eye(3))
    left, right = np.array([[-0.5, 0.0], [-0.4, 0.0]]), np.array([[0.4, 0.0], [0.5, 0.0]])
    yaw = faces._turn_in_depth(30.0, 0.0)
    # Worked by hand: x -> x cos(a) / (1 - x sin(a) / d) for a point (x, 0) of the face's plane.
    a, d = math.radians(30.0), faces.CAMERA_DISTANCE
    assert np.allclose(_apply(yaw, np.array([[0.5, 0.0]]))[0], [0.5 * math.cos(a) / (1 - 0.5 * math.sin(a) / d), 0])
    width = lambda m, p: np.ptp(_apply(m, p)[:, 0])  # noqa: E731
    assert width(yaw, right) > 0.1 * math.cos(a) > width(yaw, left)  # the right comes nearer, the left goes away
    pitch = faces._turn_in_depth(0.0, 12.0)
    top, bottom = np.array([[-0.1, -0.5], [0.1, -0.5]]), np.array([[-0.1, 0.5], [0.1, 0.5]])
    assert width(pitch, top) != width(pitch, bottom)


def test_face_talk_keeps_face_photos_looks_and_turns_the_head_further():
    assert synthetic.identity("face_talk", 7) == synthetic.identity("face_photo", 7)
    a = [f.image for f in synthetic.sequence("face_talk", 7, 3, SIZE)]
    b = [f.image for f in synthetic.sequence("face_talk", 7, 3, SIZE)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    def asymmetry(kind):
        """How far the nose bridge sits from the middle of the jaw line, in inter-ocular distances, over talks."""
        out = []
        for index in range(12):
            for frame in synthetic.sequence(kind, index, 16, (128, 128)):
                lm = frame.landmarks
                out.append(abs(lm[27, 0] - (lm[0, 0] + lm[16, 0]) / 2) / inter_ocular(lm))
        return np.percentile(out, 90)

    # Rolls and shifts leave the face symmetric about its nose; only a yaw moves the nose off the jaw's middle.
    assert asymmetry("face_photo") < 0.01 < asymmetry("face_talk")


def face(width=40.0, x=100.0, y=60.0):
    base = np.stack([np.linspace(-0.5, 0.5, 68), np.cos(np.linspace(0, 6.0, 68)) * 0.3], axis=1)
    return base * width + [x, y]


def test_relative_landmarks_are_the_reference_at_rest_moved_as_the_driver_moves():
    reference = face(width=200.0, x=256.0, y=256.0)  # another file's pixels: a 512-px photo
    driving = np.stack([face(), face(x=104.0), face(x=104.0)])
    driving[2, 50] += [0.0, 3.0]  # the lower lip drops
    driving[2, 10] = 0.0  # a missing point
    out = render.relative_face_landmarks(driving, reference)
    at_rest = (reference - reference.mean(axis=0)) * 40.0 / 200.0 + driving[0].mean(axis=0)
    assert np.allclose(out[0], at_rest)
    assert np.allclose(out[1], at_rest + [4.0, 0.0])
    assert np.allclose(out[2, 50], at_rest[50] + [4.0, 3.0])
    assert np.allclose(out[2, 10], at_rest[10])  # missing: not moved


def test_without_feedback_every_frame_is_made_as_the_first(tmp_path):
    from vid2vid.generate import generate_frames
    from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator
    from vid2vid.step import References

    torch.manual_seed(0)
    model = FewShotGenerator(FewShotConfig(**TINY_GENERATOR)).eval()
    c = model.cfg.label_channels
    refs = References(torch.rand(1, 1, c, 16, 16), torch.rand(1, 1, 3, 16, 16) * 2 - 1)
    labels = [torch.rand(c, 16, 16) for _ in range(3)]
    alone = [next(generate_frames(model, iter([{"label": lab}]), refs, torch.device("cpu")))[0] for lab in labels]
    fed = [r for r, _ in generate_frames(model, iter({"label": lab} for lab in labels), refs, torch.device("cpu"))]
    unfed = [r for r, _ in generate_frames(model, iter({"label": lab} for lab in labels), refs, torch.device("cpu"),
                                           feed_back=False)]
    assert all(np.array_equal(a, b) for a, b in zip(alone, unfed, strict=True))
    assert np.array_equal(fed[0], alone[0]) and not np.array_equal(fed[2], alone[2])  # feedback changes frame 2


def test_few_shot_face_models_render_without_feedback_and_by_the_landmarks_in_generate_serve_and_live():
    """One rule (step.feeds_back) for generate's default, serve and live: a few-shot face model makes every frame
    from the references; a few-shot pose model and a vid2vid face model feed their outputs back."""
    from types import SimpleNamespace

    from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator
    from vid2vid.models.vid2vid import Vid2VidConfig, Vid2VidGenerator
    from vid2vid.serve.jobs import ServedModel
    from vid2vid.step import feeds_back, reference_warp_for

    few_shot = FewShotGenerator(FewShotConfig(**TINY_GENERATOR))
    vid2vid_model = Vid2VidGenerator(Vid2VidConfig(num_filters=8, max_filters=32))
    assert not feeds_back(few_shot, "face")
    assert feeds_back(few_shot, "pose") and feeds_back(vid2vid_model, "face")
    served = SimpleNamespace(model=few_shot, data=SimpleNamespace(task="face"))
    assert ServedModel.feedback.fget(served) is False
    # And the reference warped by the landmarks for few-shot face models only (the pose keypoint warp is asked for).
    assert reference_warp_for(few_shot, "face") == "landmarks"
    assert reference_warp_for(few_shot, "pose") == reference_warp_for(vid2vid_model, "face") == "network"


def test_generate_feeds_back_by_the_models_rule_unless_told():
    from vid2vid.cli import build_parser

    def feedback(*flags):
        return build_parser().parse_args(["generate", "--checkpoint", "C", "--driving", "D", "-o", "o.mp4",
                                          *flags]).feedback

    assert feedback() is None  # generate(feedback=None): step.feeds_back decides
    assert feedback("--feedback") is True and feedback("--no-feedback") is False


def test_generate_takes_the_reference_warp_by_the_models_rule_unless_told():
    from vid2vid.cli import build_parser

    def warp(*flags):
        return build_parser().parse_args(["generate", "--checkpoint", "C", "--driving", "D", "-o", "o.mp4",
                                          *flags]).reference_warp

    assert warp() is None and warp("--reference-warp", "network") == "network"

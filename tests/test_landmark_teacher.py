"""The face teacher flow from landmarks (data.landmark_teacher): a thin-plate spline through the 68 correspondences
of a frame and a reference, backward as every flow here (target(p) ~ reference(p + flow(p))), trusted on the
face's landmark hull but not inside the target's inner lips, DIS's flow around the face."""

import numpy as np
import torch

from vid2vid.data import render
from vid2vid.data.datasets import DataConfig, VideoClips, landmarks_in_box
from vid2vid.data.synthetic import face_model
from vid2vid.data.teacher_flow import landmark_flow, reference_flows, thin_plate_spline
from vid2vid.data.writer import write_synthetic
from vid2vid.face_metrics import MOUTH_BOTTOM, MOUTH_TOP


def face_points(mouth_open: float = 6.0) -> np.ndarray:
    """The synthetic face model's dlib-68 template (closed lips) in a 64 x 64 frame, the lower lip (inner and
    outer) dropped by mouth_open pixels."""
    points = face_model._face_template() * 40.0 + 32.0
    points[[55, 56, 57, 58, 59, 65, 66, 67], 1] += mouth_open
    return points


def test_the_spline_holds_an_affine_motion_exactly_and_passes_near_its_points():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 64, (20, 2))
    at = rng.uniform(0, 64, (50, 2))
    affine = lambda p: p @ np.array([[1.1, 0.2], [-0.1, 0.9]]) + np.array([3.0, -2.0])  # noqa: E731
    assert np.allclose(thin_plate_spline(points, affine(points), at), affine(at), atol=1e-6)
    bumpy = rng.normal(0, 2, (20, 2))
    assert np.allclose(thin_plate_spline(points, bumpy, points, smoothing=0.0), bumpy, atol=1e-6)


def test_landmark_flow_points_from_the_target_to_the_reference_and_distrusts_the_open_mouth():
    target = face_points(mouth_open=6.0)
    shift = np.array([2.0, -3.0])
    flow, on_face, confidence = landmark_flow(target, target + shift, (64, 64))
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    assert np.allclose(flow, shift, atol=1e-4)  # the reference is the target moved by +2, -3: so is the flow
    mouth = np.round((target[MOUTH_TOP] + target[MOUTH_BOTTOM]) / 2).astype(int)
    assert on_face[mouth[1], mouth[0]] and confidence[mouth[1], mouth[0]] == 0  # inside the inner lips
    cheek = np.round(target[[1, 31]].mean(0)).astype(int)
    assert confidence[cheek[1], cheek[0]] == 1
    assert not on_face[0, 0] and confidence[0, 0] == 0
    # The jaw drops in the target, not in the reference: the target's lower lip reads the reference's, above it.
    closed = target.copy()
    closed[[55, 56, 57, 58, 59, 65, 66, 67], 1] -= 3.0  # the lower lip
    closed[5:12, 1] -= 3.0  # the chin
    flow, _, _ = landmark_flow(target, closed, (64, 64))
    lip = np.round(target[57]).astype(int)
    assert flow[lip[1], lip[0], 1] < -2.0


def test_reference_flows_take_the_landmarks_on_the_face_and_dis_around_it():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32))
    refs = torch.roll(images, shifts=(1, 2), dims=(2, 3))
    labels = torch.zeros(1, 1, 64, 64)
    target = torch.from_numpy(face_points()).float()[None]
    reference = (target + torch.tensor([4.0, 4.0]))  # the landmarks say (4, 4); the pixels (DIS) say (-2, -1)
    plain, plain_conf = reference_flows(labels, images, labels, refs, "face")
    flow, confidence = reference_flows(labels, images, labels, refs, "face", landmarks=(target, reference))
    assert flow.shape == (1, 1, 2, 64, 64) and confidence.shape == (1, 1, 1, 64, 64)
    _, on_face, face_conf = landmark_flow(target[0].numpy(), reference[0].numpy(), (64, 64))
    on_face = torch.from_numpy(on_face)
    assert torch.allclose(flow[0, 0, :, on_face], torch.full((2, int(on_face.sum())), 4.0), atol=1e-3)
    assert torch.equal(flow[0, 0, :, ~on_face], plain[0, 0, :, ~on_face])
    assert torch.equal(confidence[0, 0, 0, ~on_face], plain_conf[0, 0, 0, ~on_face])
    assert torch.equal(confidence[0, 0, 0, on_face], torch.from_numpy(face_conf)[on_face])


def test_a_face_dataset_with_the_landmark_teacher_maps_each_landmark_onto_the_references(tmp_path):
    """On built-in talking heads, the teacher flow read at a frame's landmark lands on the reference's same
    landmark (to the spline's smoothing), where DIS's misses by more."""
    root = tmp_path / "faces"
    write_synthetic("face_talk", root, sequences=2, frames=8, size=(96, 96))
    misses = {}
    for teacher in (False, True):
        cfg = DataConfig(task="face", size=(64, 64), clip_length=2, num_references=1, augment=False,
                         landmark_teacher=teacher)
        clips = VideoClips(root, cfg)
        sequence = clips.sequences[0]
        sample = clips.load(sequence, [6, 7], [0], None)
        frame, ref = clips.working_frame(sequence, 7, False), clips.working_frame(sequence, 0, False)
        box = render.face_crop_box(clips.working_frame(sequence, 6, False).landmarks, frame.image.shape[:2],
                                   (0.0, 0.0), (1.0, 1.0))
        ref_box = render.face_crop_box(ref.landmarks, ref.image.shape[:2], (0.0, 0.0), (1.0, 1.0))
        target_points = landmarks_in_box(frame.landmarks, box, (64, 64)).numpy()
        ref_points = landmarks_in_box(ref.landmarks, ref_box, (64, 64)).numpy()
        pixels = np.clip(np.round(target_points).astype(int), 0, 63)
        flow = sample["ref_flow"][1, 0].numpy()  # (2, H, W), frame 7 -> the reference
        landed = pixels + flow[:, pixels[:, 1], pixels[:, 0]].T
        misses[teacher] = float(np.linalg.norm(landed - ref_points, axis=1).mean())
    assert misses[True] < 1.0
    assert misses[True] < misses[False]


def test_a_given_reference_flow_replaces_the_networks_where_its_weight_is_one():
    """FewShotGenerator(ref_flow=(flows, weights)): flow = w * given + (1 - w) * predicted for the reference it
    warps; w = 1 is the given flow exactly (and the warped reference is the reference warped by it), w = 0 the
    network's."""
    from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator
    from vid2vid.nn.warp import warp

    from .conftest import TINY_GENERATOR

    torch.manual_seed(0)
    model = FewShotGenerator(FewShotConfig(**TINY_GENERATOR)).eval()
    c = model.cfg.label_channels
    label, ref_labels = torch.rand(1, c, 16, 16), torch.rand(1, 2, c, 16, 16)
    ref_images = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    given = torch.randn(1, 2, 2, 16, 16) * 2
    with torch.no_grad():
        plain = model(label, ref_labels, ref_images)
        ones = model(label, ref_labels, ref_images, ref_flow=(given, torch.ones(1, 2, 1, 16, 16)))
        zeros = model(label, ref_labels, ref_images, ref_flow=(given, torch.zeros(1, 2, 1, 16, 16)))
        half = model(label, ref_labels, ref_images, ref_flow=(given, torch.full((1, 2, 1, 16, 16), 0.5)))
    k = int(ones.ref_idx[0])
    assert torch.equal(ones.fake_flow_maps[0], given[:, k])
    assert torch.allclose(ones.warped_images[0], warp(ref_images[:, k], given[:, k]))
    assert torch.equal(zeros.fake_flow_maps[0], plain.fake_flow_maps[0])
    assert torch.allclose(half.fake_flow_maps[0], (given[:, k] + plain.fake_flow_maps[0]) / 2, atol=1e-6)


def test_generation_warps_a_face_reference_by_the_landmarks_softened_at_the_faces_edge(monkeypatch):
    """step(..., landmarks): the generator gets landmark_flows of the driving face to each reference face, weight
    1 well inside the face, 0 off it, a ramp between; without the references' landmarks, nothing."""
    from vid2vid import step as step_module
    from vid2vid.data.teacher_flow import landmark_flows
    from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator

    from .conftest import TINY_GENERATOR

    target = torch.from_numpy(face_points()).float()
    references = torch.stack([target + torch.tensor([1.0, -2.0]), target * 0.9 + 3.0])
    flows, weights = landmark_flows(target, references, (64, 64))
    assert flows.shape == (2, 2, 64, 64) and weights.shape == (2, 1, 64, 64)
    flow, on_face, _ = landmark_flow(target.numpy(), references[0].numpy(), (64, 64))
    assert torch.equal(flows[0], torch.from_numpy(flow).permute(2, 0, 1))
    middle = np.round(target[[27, 30, 33]].mean(0).numpy()).astype(int)  # the nose: deep inside
    assert weights[0, 0, middle[1], middle[0]] == 1 and weights[0, 0, 0, 0] == 0
    assert ((weights > 0) & (weights < 1)).any() and torch.equal(weights[0, 0] > 0, torch.from_numpy(on_face))

    seen = []
    model = FewShotGenerator(FewShotConfig(**TINY_GENERATOR)).eval()
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **kw: seen.append(kw.get("ref_flow")) or real_forward(*a, **kw))
    c = model.cfg.label_channels
    refs = step_module.References(torch.rand(1, 2, c, 64, 64), torch.rand(1, 2, 3, 64, 64), None, references[None])
    with torch.no_grad():
        step_module.step(model, torch.rand(1, c, 64, 64), step_module.new_history(model), refs, target)
        step_module.step(model, torch.rand(1, c, 64, 64), step_module.new_history(model),
                         step_module.References(refs.labels, refs.images), target)
    assert torch.equal(seen[0][0][0], flows) and torch.equal(seen[0][1][0], weights)
    assert seen[1] is None


def test_a_pose_reference_is_warped_by_the_body_keypoints_on_the_drawn_body_only():
    """keypoint_flows: the spline through the BODY_25 points seen in both people, weight 1 on the driving body
    (torso, limbs, head), 0 off it; fewer than 4 points in common: weight 0, nothing given."""
    from vid2vid.data.teacher_flow import keypoint_flows

    body = np.zeros((67, 3), np.float32)
    joints = {0: (32, 10), 1: (32, 16), 2: (26, 17), 3: (24, 24), 4: (23, 30), 5: (38, 17), 6: (40, 24),
              7: (41, 30), 8: (32, 34), 9: (28, 34), 10: (28, 44), 11: (28, 54), 12: (36, 34), 13: (36, 44),
              14: (36, 54)}
    for i, (x, y) in joints.items():
        body[i] = (x, y, 0.9)
    shifted = body.copy()
    shifted[:25, :2] += np.array([3.0, -1.0], np.float32) * (body[:25, 2:] > 0)
    target, reference = torch.from_numpy(body), torch.from_numpy(shifted)
    flows, weights = keypoint_flows(target, torch.stack([reference, torch.zeros(67, 3)]), (64, 64))
    assert flows.shape == (2, 2, 64, 64) and weights.shape == (2, 1, 64, 64)
    on_body = weights[0, 0] > 0
    assert torch.allclose(flows[0, :, on_body], torch.tensor([[3.0], [-1.0]]), atol=1e-3)
    assert weights[0, 0, 25, 32] == 1 and weights[0, 0, 2, 2] == 0 and weights[0, 0, 45, 5] == 0  # chest; corners
    assert weights[0, 0, 44, 28] > 0  # the right knee's line
    assert torch.equal(weights[1], torch.zeros(1, 64, 64))  # no points in common with an empty reference


def test_the_forehead_points_mirror_the_jaw_across_its_own_axis():
    """with_forehead: jaw points 1..15 mirrored across the line through jaw points 0 and 16, at 2/3 of their
    distance (worked by hand on a level face), and turned with the face (rotation commutes)."""
    from vid2vid.data.teacher_flow import with_forehead

    points = face_points()
    points[[0, 16]] = [[10.0, 30.0], [54.0, 30.0]]
    points[8] = [32.0, 48.0]  # the chin 18 px below the jaw's line
    out = with_forehead(points)
    assert out.shape == (83, 2) and np.array_equal(out[:68], points)
    assert np.allclose(out[68 + 7], [32.0, 30.0 - 12.0])  # jaw point 8, the 8th mirrored (1..15 in order)
    angle = np.radians(25.0)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert np.allclose(with_forehead(points @ turn.T), out @ turn.T)


def test_references_carry_face_landmarks_and_pose_keypoints_apart():
    """references_of (generate's and evaluate's references): a face sample's points are its landmarks, a pose
    sample's its keypoints for fine-tuning's region boxes; never the one in the other's place."""
    from vid2vid.step import references_of

    labels, images = torch.zeros(2, 1, 8, 8), torch.zeros(2, 3, 8, 8)
    face = references_of(labels, images, torch.ones(2, 68, 2), "face")
    pose = references_of(labels, images, torch.ones(2, 67, 3), "pose")
    assert face.keypoints is None and face.face_landmarks.shape == (1, 2, 68, 2)
    assert pose.face_landmarks is None and pose.keypoints.shape == (1, 2, 67, 3)
    assert references_of(labels, images, None, "street").keypoints is None


def test_a_vid2vid_face_model_warps_its_previous_output_by_the_two_frames_landmarks(monkeypatch):
    """Vid2VidGenerator(prev_flow=(flow, weight)) at weight 1 takes the given flow exactly; step passes the
    landmark flow from this frame's face to the previous frame's (kept in the history) once there is one."""
    from vid2vid import step as step_module
    from vid2vid.data.teacher_flow import landmark_flows
    from vid2vid.models.vid2vid import Vid2VidConfig, Vid2VidGenerator

    torch.manual_seed(0)
    model = Vid2VidGenerator(Vid2VidConfig(label_channels=1, num_filters=8, max_filters=32, num_layers=4,
                                           num_downsamples_img=2, embed_num_downsamples=2, flow_num_downsamples=2,
                                           num_prev_frames=1)).eval()
    label, prev = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 1, 64, 64)
    images = torch.rand(1, 1, 3, 64, 64) * 2 - 1
    given = torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        out = model(label, prev, images, prev_flow=(given, torch.ones(1, 1, 64, 64)))
    assert torch.equal(out.fake_flow_maps, given)

    seen = []
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **kw: seen.append(kw.get("prev_flow")) or real_forward(*a, **kw))
    now, before = torch.from_numpy(face_points(6.0)).float(), torch.from_numpy(face_points(0.0)).float()
    history = step_module.new_history(model)
    with torch.no_grad():
        first = step_module.step(model, label, history, None, before)
        history.push(label, first.fake_images, before)
        step_module.step(model, label, history, None, now)
    flows, weights = landmark_flows(now, before[None], (64, 64))
    assert seen[0] is None and torch.equal(seen[1][0], flows) and torch.equal(seen[1][1], weights)


def test_the_landmark_warp_runs_under_bf16_autocast_as_cuda_renders():
    """CPU stand-in for CUDA's default few-shot precision (bf16 autocast): the given flow is cast to the
    network's flow dtype; frames come out finite and near fp32's."""
    from vid2vid.generate import generate_frames
    from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator
    from vid2vid.step import References

    from .conftest import TINY_GENERATOR

    torch.manual_seed(0)
    model = FewShotGenerator(FewShotConfig(**{**TINY_GENERATOR, "label_channels": 1, "pose_type": None})).eval()
    points = torch.from_numpy(face_points()).float()
    refs = References(torch.rand(1, 1, 1, 64, 64), torch.rand(1, 1, 3, 64, 64) * 2 - 1, None,
                      (points + 1.5)[None, None])
    items = [{"label": torch.rand(1, 64, 64), "landmarks": points + i} for i in range(2)]
    cpu = torch.device("cpu")
    full = [r for r, _ in generate_frames(model, iter(items), refs, cpu, feed_back=False, landmark_warp=True)]
    half = [r for r, _ in generate_frames(model, iter(items), refs, cpu, torch.bfloat16, feed_back=False,
                                          landmark_warp=True)]
    plain = [r for r, _ in generate_frames(model, iter(items), refs, cpu, feed_back=False)]
    assert not np.array_equal(full[0], plain[0])  # the warp changed the frame
    for a, b in zip(full, half, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 8

"""Clip datasets on built-in synthetic data: shapes, ranges, references, determinism, teacher flow."""

import json
import shutil

import numpy as np
import pytest
import torch

from vid2vid.cli import main
from vid2vid.data import DataError
from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.layout import read_marker, scan
from vid2vid.data.video import write_image
from vid2vid.nn.warp import warp


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    for kind in ("dancers", "faces", "street"):
        code = main(["synth", kind, str(root / kind), "--sequences", "2", "--frames", "8", "--size", "64x96",
                     "--quiet"])
        assert code == 0
    return root


def warp_error(sample, start=1):
    """Mean |warp(previous, flow) - current| and |previous - current| over confident pixels."""
    images, flow, conf = sample["images"], sample["flow"][start:], sample["flow_confidence"][start:]
    warped = warp(images[start - 1:-1], flow)
    current = images[start:]
    weight = conf.sum()
    with_flow = ((warped - current).abs().mean(1, keepdim=True) * conf).sum() / weight
    without = ((images[start - 1:-1] - current).abs().mean(1, keepdim=True) * conf).sum() / weight
    return float(with_flow), float(without)


def test_synth_writes_the_layout(synth_root):
    for kind, task in (("dancers", "pose"), ("faces", "face"), ("street", "street")):
        seqs = scan(synth_root / kind, task)
        assert [s.name for s in seqs] == [f"{kind}0000", f"{kind}0001"]
        assert all(len(s) == 8 for s in seqs)
        assert seqs[0].files["flow"][0] is None and all(p is not None for p in seqs[0].files["flow"][1:])
        assert read_marker(synth_root / kind)["task"] == task


def test_synth_resumes_and_refuses_other_settings(synth_root, tmp_path, capsys):
    root = tmp_path / "d"
    shutil.copytree(synth_root / "faces", root)
    victim = root / "images" / "faces0001" / "00005.png"
    victim.unlink()
    assert main(["synth", "faces", str(root), "--sequences", "2", "--frames", "8", "--size", "64x96",
                 "--quiet"]) == 0
    assert "(1 frames written)" in capsys.readouterr().out
    assert victim.is_file()
    assert main(["synth", "faces", str(root), "--sequences", "3", "--frames", "8", "--size", "64x96",
                 "--quiet"]) == 2
    assert "holds a different dataset" in capsys.readouterr().err


def test_pose_clips(synth_root):
    cfg = DataConfig(task="pose", size=(64, 48), clip_length=3, num_references=2, max_stride=2)
    clips = VideoClips(synth_root / "dancers", cfg, seed=1)
    sample = clips[0]
    assert sample["labels"].shape == (3, 6, 64, 48)
    assert sample["images"].shape == (3, 3, 64, 48)
    assert sample["ref_labels"].shape == (2, 6, 64, 48) and sample["ref_images"].shape == (2, 3, 64, 48)
    assert sample["flow"].shape == (3, 2, 64, 48) and sample["flow_confidence"].shape == (3, 1, 64, 48)
    assert sample["images"].min() >= -1 and sample["images"].max() <= 1
    assert sample["labels"].min() >= -1 and sample["labels"].max() <= 1
    assert torch.all(sample["labels"][:, :3] == -1)  # no DensePose in this dataset
    assert (sample["labels"][:, 3:] > -1).any()  # the skeleton is drawn
    assert torch.all(sample["flow"][0] == 0) and torch.all(sample["flow_confidence"][0] == 0)


def test_references_never_come_from_the_clip(synth_root):
    cfg = DataConfig(task="pose", size=(64, 48), clip_length=4, num_references=3, max_stride=1)
    clips = VideoClips(synth_root / "dancers", cfg, seed=0)
    for index in range(12):
        rng = np.random.default_rng([0, 0, index])
        sequence, clip, refs = clips.choose(rng)
        assert len(clip) == 4 and len(refs) == 3
        assert not set(clip) & set(refs)
        assert clip == list(range(clip[0], clip[0] + 4))


def test_each_reference_is_framed_as_it_would_be_alone(synth_root):
    """reference_crop "each": K references are cut as each would be as the only one, in training samples and for
    inference; "together" (imaginaire) cuts all in the box around the person in all of them."""
    from dataclasses import replace

    cfg = DataConfig(task="pose", size=(64, 48), clip_length=1, num_references=2, augment=False)
    clips = VideoClips(synth_root / "dancers", cfg)
    sequence = clips.sequences[0]
    frames = [clips.working_frame(sequence, i, False) for i in range(len(sequence))]
    boxes = [clips.crop_box([f], [clips.render(f, None, ())], None, (1.0, 1.0), reference=True) for f in frames]
    i, j = next((i, j) for i in range(len(boxes)) for j in range(i) if boxes[i] != boxes[j])  # framed apart
    labels, images, _ = clips.references(sequence, [i, j])
    for position, index in enumerate((i, j)):
        alone_labels, alone_images, _ = clips.references(sequence, [index])
        assert torch.equal(labels[position], alone_labels[0]) and torch.equal(images[position], alone_images[0])
    sample = clips.load(sequence, [0], [i, j], None)
    assert torch.equal(sample["ref_labels"], labels) and torch.equal(sample["ref_images"], images)

    together = VideoClips(synth_root / "dancers", replace(cfg, reference_crop="together"))
    _, together_images, _ = together.references(sequence, [i, j])
    assert not torch.equal(together_images, images)  # one of the two is cut in the other's box
    with pytest.raises(ValueError, match="reference_crop must be 'each' or 'together'"):
        DataConfig(task="pose", reference_crop="first")


def test_items_are_reproducible_per_epoch(synth_root):
    cfg = DataConfig(task="pose", size=(64, 48), clip_length=2, num_references=1, horizontal_flip=True,
                     pose_limb_drop=0.1)
    clips = VideoClips(synth_root / "dancers", cfg, seed=3)
    a, b = clips[5], clips[5]
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])
    draws = {tuple(clips[i]["frames"]) + (clips[i]["sequence"],) for i in range(8)}
    clips.set_epoch(1)
    assert len(draws) > 1
    assert any(not torch.equal(clips[i]["labels"], VideoClips(synth_root / "dancers", cfg, seed=3)[i]["labels"])
               for i in range(4))


def test_clip_length_can_change(synth_root):
    cfg = DataConfig(task="pose", size=(32, 32), clip_length=2, num_references=1)
    clips = VideoClips(synth_root / "dancers", cfg)
    clips.set_clip_length(6)
    assert clips[0]["images"].shape[0] == 6
    with pytest.raises(DataError, match="need longer sequences"):
        clips.set_clip_length(8)
    with pytest.raises(DataError, match="longest sequence has 8 frames"):
        VideoClips(synth_root / "dancers", DataConfig(task="pose", clip_length=8, num_references=2))


@pytest.mark.parametrize("kind, task", [("dancers", "pose"), ("faces", "face"), ("street", "street")])
def test_stored_flow_aligns_frames(synth_root, kind, task):
    """The synthetic ground-truth flow, through crop, resize and flips, warps each frame onto the next."""
    cfg = DataConfig(task=task, size=(64, 96) if task == "street" else (64, 64), clip_length=4, max_stride=1,
                     horizontal_flip=True, augment=True)
    clips = VideoClips(synth_root / kind, cfg, seed=0)
    for index in range(3):
        with_flow, without = warp_error(clips[index])
        assert with_flow < 0.5 * without + 0.01, (index, with_flow, without)


def test_flow_over_a_stride_is_chained(synth_root):
    """Flow chained over three frames, and scaled with a resize to half size."""
    cfg = DataConfig(task="street", size=(32, 48), clip_length=3, max_stride=3, augment=False, crop="resize")
    clips = VideoClips(synth_root / "street", cfg, seed=0)
    sequence = clips.sequences[0]
    sample = clips.load(sequence, [0, 3, 6], [], None)
    with_flow, without = warp_error(sample)
    assert with_flow < 0.6 * without  # wrong scaling of the vectors gives more than without


def test_flow_is_computed_when_not_stored(synth_root, tmp_path):
    root = tmp_path / "street"
    shutil.copytree(synth_root / "street", root)
    shutil.rmtree(root / "flow")
    cfg = DataConfig(task="street", size=(64, 96), clip_length=3, augment=False, crop="resize")
    sample = VideoClips(root, cfg).load(scan(root, "street")[0], [2, 3, 4], [], None)
    with_flow, without = warp_error(sample)
    assert with_flow < 0.7 * without


def test_face_and_street_labels(synth_root):
    face = VideoClips(synth_root / "faces", DataConfig(task="face", size=(64, 64), clip_length=2))[0]
    assert face["labels"].shape == (2, 1, 64, 64)
    assert face["labels"].min() >= 0 and face["labels"].max() <= 1 and face["labels"].max() > 0.5
    street = VideoClips(synth_root / "street", DataConfig(task="street", size=(64, 96), clip_length=2))[0]
    assert street["labels"].shape == (2, 35, 64, 96)
    assert torch.all(street["labels"].sum(1) == 1)
    present = street["labels"].sum((0, 2, 3)).nonzero().flatten().tolist()
    assert {7, 11, 23} <= set(present)  # road, building, sky


def test_unreadable_label_names_the_file(synth_root, tmp_path):
    root = tmp_path / "dancers"
    shutil.copytree(synth_root / "dancers", root)
    bad = root / "poses-openpose" / "dancers0000" / "00002.json"
    bad.write_text('{"people": [{"pose_keypoints_2d": [1, 2]}]}')
    clips = VideoClips(root, DataConfig(task="pose", size=(32, 32), clip_length=8, augment=False))
    with pytest.raises(DataError, match="00002.json"):
        clips.load(clips.sequences[0], list(range(8)), [], None)


def test_frames_of_different_sizes_name_the_file(synth_root, tmp_path):
    root = tmp_path / "faces"
    shutil.copytree(synth_root / "faces", root)
    image = root / "images" / "faces0000" / "00003.png"
    write_image(image, np.zeros((32, 32, 3), np.uint8))
    clips = VideoClips(root, DataConfig(task="face", size=(32, 32), clip_length=8, augment=False, teacher_flow=False))
    # The frame alone was made smaller: its landmarks now lie outside it.
    with pytest.raises(DataError, match=r"00003.json: keypoint .* outside the 32x32 image"):
        clips.load(clips.sequences[0], list(range(8)), [], None)
    # Frame and landmarks resized together: the clip's sizes disagree.
    landmarks = root / "landmarks-dlib68" / "faces0000" / "00003.json"
    points = np.array(json.loads(landmarks.read_text())) * [32 / 96, 32 / 64]  # x by width, y by height
    landmarks.write_text(json.dumps(points.tolist()))
    with pytest.raises(DataError, match="00003.png: size 32x32 differs from the sequence's 96x64"):
        clips.load(clips.sequences[0], list(range(8)), [], None)


def test_synth_turning_writes_pose_data_whose_back_views_have_no_face(tmp_path):
    from vid2vid.data.render import draw_openpose, read_openpose_json

    root = tmp_path / "turning"
    assert main(["synth", "turning", str(root), "--sequences", "1", "--frames", "16", "--size", "64x64",
                 "--quiet"]) == 0
    (seq,) = scan(root, "pose")
    assert seq.name == "turning0000" and read_marker(root)["task"] == "pose"
    assert all(path is not None and path.is_file() for path in seq.files["densepose"])
    faces = []
    for path in seq.files["openpose"]:
        (person,) = read_openpose_json(path)
        one_hot = draw_openpose(person, 64, 64, one_hot=True)
        faces.append(bool(one_hot[:, :, 26].any()))
        assert one_hot[:, :, :24].any()  # the body is drawn from behind too
        assert (person.face[:, 2] > 0).all() == faces[-1]  # a face drawn exactly where OpenPose would see one
    assert any(faces) and not all(faces)  # both sides within 16 frames
    # The pose dataset reads it like any other: the turn's frame has no confident teacher flow on the body.
    clip = VideoClips(root, DataConfig(task="pose", clip_length=16, size=(64, 64)))[0]
    turn = next(t for t in range(1, 16) if faces[t] != faces[t - 1])
    densepose_part = (clip["labels"][:, 2] + 1) / 2 * 24  # the label's I channel, back in part indices
    assert torch.isclose(densepose_part, torch.tensor(2.0), atol=1e-3).any(dim=(1, 2)).tolist() == faces
    assert clip["flow_confidence"][turn].mean() < clip["flow_confidence"][turn - 1 if turn > 1 else turn + 1].mean()

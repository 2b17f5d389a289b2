"""The folder contract, video and image I/O, teacher flow and `vid2vid prepare` (without a keypoint detector)."""

import json

import cv2
import numpy as np
import pytest

from vid2vid.cli import main
from vid2vid.data import DataError
from vid2vid.data.layout import MARKER, claim_output, natural_key, scan
from vid2vid.data.prepare import prepare
from vid2vid.data.teacher_flow import compose, dis_flow, read_flow, sample, write_flow
from vid2vid.data.video import VideoWriter, read_frames, read_image, read_video, write_image


def textured(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (7, 7), 2)


def moving_frames(n, h=48, w=64, step=(2, 1)):
    """Frames of a texture sliding by step (dx, dy) pixels per frame: backward flow is -step."""
    big = textured(h + 4 * n, w + 4 * n)
    return [big[2 * n - i * step[1]: 2 * n - i * step[1] + h, 2 * n - i * step[0]: 2 * n - i * step[0] + w].copy()
            for i in range(n)]


def write_video(path, frames, fps=10):
    with VideoWriter(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)


def make_pose_dataset(root, frames=("000", "001", "002"), sequences=("a",)):
    for seq in sequences:
        for name in frames:
            (root / "images" / seq).mkdir(parents=True, exist_ok=True)
            (root / "poses-openpose" / seq).mkdir(parents=True, exist_ok=True)
            write_image(root / "images" / seq / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
            (root / "poses-openpose" / seq / f"{name}.json").write_text('{"people": []}')


def test_natural_order():
    assert sorted(["f10", "f2", "f1"], key=natural_key) == ["f1", "f2", "f10"]


def test_scan_pairs_frames_by_name(tmp_path):
    make_pose_dataset(tmp_path, frames=("10", "9", "100"), sequences=("s1", "s0"))
    seqs = scan(tmp_path, "pose")
    assert [s.name for s in seqs] == ["s0", "s1"]
    assert seqs[0].frames == ["9", "10", "100"]
    assert [p.stem for p in seqs[0].files["openpose"]] == ["9", "10", "100"]
    assert "densepose" not in seqs[0].files


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "poses-openpose/a/003.json").write_text("{}"), "003.json: OpenPose JSON without an image"),
    (lambda r: (r / "poses-openpose/a/001.json").unlink(), "001.png: no OpenPose JSON"),
    (lambda r: (r / "images/b").mkdir(), "images/b: no frames"),
    (lambda r: write_image(r / "images/a/001.jpg", np.zeros((8, 8, 3), np.uint8)), "two image files"),
    (lambda r: (r / "pose_maps-densepose/a").mkdir(parents=True), "000.png: no DensePose"),
])
def test_scan_names_the_bad_file(tmp_path, damage, message):
    make_pose_dataset(tmp_path)
    damage(tmp_path)
    with pytest.raises(DataError, match=message):
        scan(tmp_path, "pose")


def test_scan_without_images_folder(tmp_path):
    with pytest.raises(DataError, match="no images/ folder"):
        scan(tmp_path, "pose")


def test_claim_output_protects_other_data(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="holds other data"):
        claim_output(tmp_path, {"command": "synth"}, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "keep me"

    out = tmp_path / "out"
    assert claim_output(out, {"command": "synth", "kind": "faces"}, overwrite=False) is False
    (out / "images").mkdir()
    assert claim_output(out, {"command": "synth", "kind": "faces"}, overwrite=False) is True
    with pytest.raises(DataError, match="different dataset"):
        claim_output(out, {"command": "synth", "kind": "street"}, overwrite=False)
    assert claim_output(out, {"command": "synth", "kind": "street"}, overwrite=True) is False
    assert not (out / "images").exists()
    assert json.loads((out / MARKER).read_text())["kind"] == "street"


def test_image_round_trip_and_conversions(tmp_path):
    rgb = textured(10, 12)
    write_image(tmp_path / "a.png", rgb)
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)
    grey = rgb[:, :, 0]
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    assert np.array_equal(read_image(tmp_path / "g.png"), np.repeat(grey[:, :, None], 3, 2))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([rgb[:, :, ::-1], np.full((10, 12), 7, np.uint8)]))
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match="zero.png: not a readable image"):
        read_image(tmp_path / "zero.png")
    (tmp_path / "trunc.png").write_bytes((tmp_path / "a.png").read_bytes()[:30])
    with pytest.raises(DataError, match="trunc.png: not a readable image"):
        read_image(tmp_path / "trunc.png")


def test_video_round_trip(tmp_path):
    frames = moving_frames(12)
    write_video(tmp_path / "v.mp4", frames)
    back = list(read_video(tmp_path / "v.mp4"))
    assert len(back) == 12 and back[0].shape == (48, 64, 3)
    assert np.abs(back[5].astype(int) - frames[5]).mean() < 6  # H.264 at crf 18 is close to lossless


def test_video_writer_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "v.mp4") as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"not a video" * 50, "not a readable video")])
def test_bad_video(tmp_path, content, message):
    (tmp_path / "bad.mp4").write_bytes(content)
    with pytest.raises(DataError, match=f"bad.mp4: .*{message}"):
        list(read_video(tmp_path / "bad.mp4"))


def test_frame_folder_with_mixed_sizes(tmp_path):
    write_image(tmp_path / "0.png", np.zeros((8, 8, 3), np.uint8))
    write_image(tmp_path / "1.png", np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(DataError, match="1.png: size 10x8 differs"):
        list(read_frames(tmp_path))


def test_dis_flow_finds_a_translation():
    previous, current = moving_frames(2, h=96, w=96, step=(3, -2))
    flow, confidence = dis_flow(current, previous)
    inner = (slice(10, -10), slice(10, -10))
    assert np.allclose(np.median(flow[inner], axis=(0, 1)), [-3, 2], atol=0.1)
    assert confidence[inner].mean() > 0.9
    # Content entering at the left border (flow points 3 px left) has no source in the previous frame.
    assert confidence[:, :3].max() == 0


def test_sample_and_compose_are_consistent():
    h, w = 20, 30
    later = np.full((h, w, 2), [1.5, -1.0], np.float32)
    earlier = np.full((h, w, 2), [2.0, 0.5], np.float32)
    flow, conf = compose(later, earlier, np.ones((h, w), np.float32), np.ones((h, w), np.float32))
    assert np.allclose(flow[5:-5, 5:-5], [3.5, -0.5])
    ramp = np.arange(w, dtype=np.float32)[None, :, None].repeat(h, 0)
    assert np.allclose(sample(ramp, later)[5:-5, 5:-5, 0], ramp[5:-5, 5:-5, 0] + 1.5)


def test_flow_file_round_trip(tmp_path):
    flow = np.random.default_rng(0).normal(size=(6, 7, 2)).astype(np.float32) * 10
    write_flow(tmp_path / "f.npz", flow, np.ones((6, 7)))
    back, conf = read_flow(tmp_path / "f.npz", size=(6, 7))
    assert np.abs(back - flow).max() < 0.02 and conf.min() == 1
    with pytest.raises(DataError, match="f.npz: flow is 7x6"):
        read_flow(tmp_path / "f.npz", size=(8, 8))
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="bad.npz: not a flow file"):
        read_flow(tmp_path / "bad.npz")


def test_prepare_video_resumes_and_protects(tmp_path):
    frames = moving_frames(6)
    write_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "data"
    reports = prepare([tmp_path / "clip.mp4"], out, "street", progress=False)
    assert reports[0].written == 6
    images = sorted((out / "images" / "clip").iterdir())
    assert [p.name for p in images] == [f"{i:05d}.jpg" for i in range(6)]
    flows = sorted((out / "flow" / "clip").iterdir())
    assert [p.stem for p in flows] == [f"{i:05d}" for i in range(1, 6)]
    flow, _ = read_flow(flows[0])
    assert np.allclose(np.median(flow[8:-8, 8:-8], axis=(0, 1)), [-2, -1], atol=0.25)

    # An interrupted run: the last two frames are gone; re-running writes only those.
    for path in images[4:]:
        path.unlink()
    before = images[0].stat().st_mtime_ns
    again = prepare([tmp_path / "clip.mp4"], out, "street", progress=False)[0]
    assert (again.written, again.skipped_done) == (2, 4)
    assert images[0].stat().st_mtime_ns == before

    # A different task into the same folder needs --overwrite.
    with pytest.raises(DataError, match="different dataset"):
        prepare([tmp_path / "clip.mp4"], out, "pose", extract_labels=False, progress=False)


def test_cli_prepare_reports_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    code = main(["prepare", str(tmp_path / "broken.mp4"), str(tmp_path / "out"), "--task", "street", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "broken.mp4" in err and "\n" not in err


def test_prepare_a_colour_label_video_reads_back_the_class_ids(tmp_path, capsys):
    """A street label video in cityscapesScripts' colours, through H.264, becomes seg_maps of the same ids."""
    from vid2vid.data.render import CITYSCAPES_COLOURS, colours_from_ids, ids_from_colours
    from vid2vid.data.synthetic import sequence
    from vid2vid.data.video import read_id_map

    truth = [frame.seg for frame in sequence("street", 3, 4, (128, 256))]
    with VideoWriter(tmp_path / "labels.mp4", fps=10) as writer:
        for ids in truth:
            writer.write(colours_from_ids(ids))
    (tmp_path / "pngs").mkdir()
    for i, ids in enumerate(truth):
        write_image(tmp_path / "pngs" / f"{i:05d}.png", colours_from_ids(ids))
    out = tmp_path / "data"
    assert main(["prepare", str(tmp_path / "labels.mp4"), str(out), "--task", "street", "--label-colours",
                 "--no-flow", "--quiet"]) == 0
    seq = scan(out, "street")[0]
    assert len(seq) == 4
    shared = {0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 18: 17}  # ids that share a colour read back as the first of them
    for ids, path in zip(truth, seq.files["seg"], strict=True):
        want = np.vectorize(lambda i: shared.get(int(i), int(i)))(ids)
        assert (read_id_map(path) == want).mean() > 0.96  # 4:2:0 video coding blends colours along edges
    # Lossless frames read back exactly.
    assert main(["prepare", str(tmp_path / "pngs"), str(tmp_path / "exact"), "--task", "street", "--label-colours",
                 "--no-flow", "--quiet"]) == 0
    for ids, path in zip(truth, scan(tmp_path / "exact", "street")[0].files["seg"], strict=True):
        assert (read_id_map(path) == np.vectorize(lambda i: shared.get(int(i), int(i)))(ids)).all()
    assert (ids_from_colours(np.asarray(CITYSCAPES_COLOURS, np.uint8)[None]) ==
            [shared.get(i, i) for i in range(len(CITYSCAPES_COLOURS))]).all()
    # A photograph is not a label video.
    photo = next(iter(sequence("street", 3, 1, (64, 128)))).image
    with pytest.raises(DataError, match="frame 7: .* no Cityscapes label colour"):
        ids_from_colours(photo, "frame 7")
    capsys.readouterr()
    assert main(["prepare", str(tmp_path / "labels.mp4"), str(tmp_path / "pose"), "--task", "pose",
                 "--label-colours", "--quiet"]) == 2
    assert "--label-colours is for the street task" in capsys.readouterr().err


def test_street_labels_are_pictured_in_cityscapes_colours():
    import torch

    from vid2vid.data.render import colours_from_ids, segmentation_one_hot
    from vid2vid.pictures import label_picture

    ids = np.array([[7, 26], [23, 11]])
    one_hot = torch.from_numpy(segmentation_one_hot(ids, 35)).permute(2, 0, 1)[None]
    picture = ((label_picture(one_hot)[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    assert (picture == colours_from_ids(ids)).all()


def test_prepare_max_read_stops_reading_a_video_without_faces(tmp_path, monkeypatch):
    """Frames without a face do not count toward max_frames; max_read bounds what is read all the same."""
    from contextlib import contextmanager

    from vid2vid.data import prepare as prepare_module

    looked_at = []

    @contextmanager
    def finds_no_face(task, multi_person, label_colours=False, landmarks="mediapipe"):
        yield lambda image, name: looked_at.append(name)  # None: no face, the frame is left out

    monkeypatch.setattr(prepare_module, "label_extractor", finds_no_face)
    write_video(tmp_path / "room.mp4", moving_frames(12))
    report = prepare([tmp_path / "room.mp4"], tmp_path / "out", "face", flow=False, max_frames=3, max_read=5,
                     progress=False)[0]
    assert len(looked_at) == 5 and report.written == 0 and report.skipped_no_face == 5

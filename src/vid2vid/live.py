"""Live mode: a camera's frames rendered as they come, with bounded latency.

`LiveRenderer` is one stream's state: its own copy of the model (the generator keeps the reference encoding and
the reference it warps from frame to frame), the references, the last outputs fed back, the crop box, and a
landmark detector that follows the person from frame to frame. Each frame is labelled (pose or face landmarks,
by the model's task), framed as `vid2vid generate` frames a driving video (the box of the first frame with
someone in it), and rendered by one frame step. Where nobody is in view the last result is held.

`LivePipeline` runs its two halves, the detector and the frame step, on two threads one frame apart, and keeps
only the newest frame waiting (`NewestSlot`): a renderer slower than the camera drops frames rather than
queueing them, and the latency from capture to result stays bounded. `vid2vid live` (`run_live`) feeds it from a
camera or a video file standing in for one; `vid2vid serve`'s Live page from a browser's camera
(vid2vid.serve.live).
"""

from __future__ import annotations

import copy
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vid2vid.data import DataError, render
from vid2vid.data.datasets import DataConfig, DrivingFramer, Frame, Framing, resize_frame
from vid2vid.step import References, feeds_back, is_few_shot, new_history, reference_warp_for, step, unwrap

# Frames in a row without anyone in view after which the next person found is framed afresh, and the outputs fed
# back are forgotten (someone else may have stepped in, elsewhere in the picture).
REFRAME_AFTER = 15
LIVE_TASKS = ("pose", "face")


def check_live_task(task: str) -> None:
    if task not in LIVE_TASKS:
        raise ValueError(f"live mode drives pose and face models; this one's task is {task}")


@dataclass
class LiveFrame:
    """What one camera frame gave."""
    result: np.ndarray | None  # (H, W, 3) uint8: this frame's output, or the last one held (None before any)
    label: np.ndarray | None  # (H, W, 3) uint8 picture of the driving labels; None where nobody was found
    person: bool  # someone (pose) or a face (face) was found on this frame
    label_ms: float  # the landmark detector's time
    generate_ms: float  # the frame step's time (0 where nobody was found)


class Labeller:
    """RGB frame -> a Frame with the largest person's keypoints (pose) or the face's landmarks (face), or None
    where there is nobody. MediaPipe follows the person from one call to the next (tracking)."""

    def __init__(self, task: str):
        from vid2vid.data import keypoints

        check_live_task(task)
        self.task = task
        self.extract = keypoints.PoseExtractor(tracking=True) if task == "pose" else keypoints.FaceExtractor(True)

    def __call__(self, image: np.ndarray) -> Frame | None:
        from vid2vid.data import keypoints

        size = image.shape[:2]
        if self.task == "face":
            landmarks = self.extract(image)
            return None if landmarks is None else Frame(image, landmarks=landmarks, source_size=size)
        people = render.openpose_people(keypoints.openpose_json(self.extract(image)), "a camera frame")
        person = render.largest_person(people)
        return None if person is None else Frame(image, people=[person], source_size=size)

    def close(self) -> None:
        self.extract.close()


@dataclass
class Labelled:
    """A camera frame labelled, ready for the frame step (LiveRenderer.label's answer)."""
    label: torch.Tensor | None  # (C, H, W), framed; None where nobody was found
    fresh: bool  # framed afresh (nobody for REFRAME_AFTER frames): the outputs fed back are forgotten
    label_ms: float
    landmarks: torch.Tensor | None = None  # (68, 2) the face's landmarks in output pixels (face models)


class LiveRenderer:
    """One camera stream: frames in, results out. `renderer(image)` does both halves; `label` (the detector and
    the framing) and `render` (the frame step) touch separate state, so that LivePipeline can run them on two
    threads, one frame apart. Each half is for one thread at a time.

    model: this stream's own generator (`for_stream` copies a shared one); refs: the few-shot references (None for
    vid2vid); labeller: a callable image -> Frame | None (default: `Labeller` for the task). As `generate` renders:
    a few-shot face model gets the camera's face on the first reference's proportions (render.FaceProportions,
    where the references carry their landmarks), the reference warped onto it by the landmarks
    (step.reference_warp_for), and makes every frame from the references alone; feed_back overrides the last
    (default: step.feeds_back)."""

    def __init__(self, model: torch.nn.Module, cfg: DataConfig, refs: References | None, device: torch.device,
                 amp_dtype: torch.dtype | None = None, labeller: Callable[[np.ndarray], Frame | None] | None = None,
                 feed_back: bool | None = None):
        if is_few_shot(model) and refs is None:
            raise ValueError("a few-shot model needs references to render live")
        self.model, self.device, self.amp_dtype = model, device, amp_dtype
        self.refs = None if refs is None else refs.to(device)
        self.feed_back = feeds_back(model, cfg.task) if feed_back is None else feed_back
        self.proportions, self.landmark_warp = None, False
        if cfg.task == "face" and refs is not None and refs.face_landmarks is not None:
            self.proportions = render.FaceProportions(refs.face_landmarks[0, 0].numpy())
            self.landmark_warp = reference_warp_for(model, cfg.task) == "landmarks"
        self.framing = Framing(cfg)
        self.framer = DrivingFramer(self.framing)
        check_live_task(cfg.task)
        # The detector is made on the thread that labels (MediaPipe's graph made, run and closed on one thread;
        # made on another, a server's memory grew by each session).
        self.labeller = labeller
        self.history = new_history(model)
        self.last: np.ndarray | None = None
        self.missing = 0
        model.reset()

    def __call__(self, image: np.ndarray) -> LiveFrame:
        return self.render(self.label(image))

    def label(self, image: np.ndarray) -> Labelled:
        start = time.perf_counter()
        if self.labeller is None:
            self.labeller = Labeller(self.framing.cfg.task)
        frame = self.labeller(image)
        if frame is None:
            self.missing += 1
            fresh = self.missing == REFRAME_AFTER
            if fresh:
                self.framer.reset()
                if self.proportions is not None:
                    self.proportions.reset()
            return Labelled(None, fresh, 1000 * (time.perf_counter() - start))
        self.missing = 0
        if self.proportions is not None and frame.landmarks is not None:
            frame.landmarks = self.proportions(frame.landmarks)
        frame = resize_frame(frame, self.framing.scale_for(frame.source_size))
        item = self.framer(frame)
        return Labelled(item["label"], False, 1000 * (time.perf_counter() - start), item.get("landmarks"))

    def render(self, labelled: Labelled) -> LiveFrame:
        from vid2vid.generate import label_to_uint8, to_uint8

        if labelled.fresh:
            self.history = new_history(self.model)
        if labelled.label is None:
            return LiveFrame(self.last, None, False, labelled.label_ms, 0.0)
        start = time.perf_counter()
        label = labelled.label[None].to(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                             enabled=self.amp_dtype is not None):
            out = step(self.model, label, self.history, self.refs,
                       labelled.landmarks if self.landmark_warp else None)
        output = out.fake_images.float()
        if self.feed_back:
            self.history.push(label, output)
        self.last = to_uint8(output[0])
        return LiveFrame(self.last, label_to_uint8(labelled.label), True, labelled.label_ms,
                         1000 * (time.perf_counter() - start))

    def close(self) -> None:
        """Close the detector (once: LivePipeline closes it at its end, a caller may too)."""
        close = getattr(self.labeller, "close", None)
        self.labeller = None
        if close is not None:
            close()


class NewestSlot:
    """A slot for the newest item (a camera frame): put() replaces one nobody took (counted as dropped), take()
    waits for one. No queue: who takes always gets the newest."""

    def __init__(self):
        self.item = None
        self.ended = False
        self.puts = self.dropped = 0
        self.taken_at = 0.0  # time.perf_counter() of the last take
        self.changed = threading.Condition()

    def put(self, item, wait: bool = False) -> None:
        """wait: until the item before was taken (frames of a file, every one taken, or a hand-over)."""
        with self.changed:
            if wait:
                self.changed.wait_for(lambda: self.item is None or self.ended)
            self.puts += 1
            if self.item is not None:
                self.dropped += 1
            self.item = item
            self.changed.notify_all()

    def end(self) -> None:
        """No more items: take() answers None once the last one is taken; a waiting put() gives up."""
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def take(self):
        """The newest item not yet taken; None once the slot has ended and its last item was taken."""
        with self.changed:
            self.changed.wait_for(lambda: self.item is not None or self.ended)
            item, self.item = self.item, None
            self.taken_at = time.perf_counter()
            self.changed.notify_all()
            return item

    def wait_empty(self) -> float:
        """Wait until the item put last was taken (or the slot ended); when it was taken."""
        with self.changed:
            self.changed.wait_for(lambda: self.item is None or self.ended)
            return self.taken_at


class LivePipeline:
    """A LiveRenderer's two halves on two threads: the detector labels frame n + 1 while the frame step renders
    frame n, so frames come at the pace of the slower half rather than of both together (on 2 cores at 64x64:
    benchmarks/RESULTS.md, "Live"). submit() hands in a frame (the newest waits; one not yet taken is dropped);
    on_result(tag, LiveFrame, time) is called in order, on the frame step's thread; on_end() once after the last,
    also after an error (then kept in .error). The labeller is closed on its own thread at the end."""

    def __init__(self, renderer: LiveRenderer, on_result: Callable[[object, LiveFrame, float], None],
                 on_end: Callable[[], None] = lambda: None):
        self.renderer, self.on_result, self.on_end = renderer, on_result, on_end
        self.frames, self.labelled = NewestSlot(), NewestSlot()
        self.error: BaseException | None = None
        self.label_seconds = self.render_seconds = 0.0  # running averages of each half's time
        self.threads = [threading.Thread(target=self._label, name="vid2vid-live-label", daemon=True),
                        threading.Thread(target=self._render, name="vid2vid-live-render", daemon=True)]
        for thread in self.threads:
            thread.start()

    def submit(self, tag, image: np.ndarray | Callable[[], np.ndarray], wait: bool = False) -> None:
        """image: the frame, or a callable that makes it (decoded on the labelling thread)."""
        self.frames.put((tag, image), wait=wait)

    def finish(self) -> None:
        """No more frames: those handed in are still rendered."""
        self.frames.end()

    def close(self) -> None:
        """Stop now (frames waiting are dropped) and wait for both threads."""
        self.frames.end()
        self.labelled.end()
        for thread in self.threads:
            thread.join(10)

    def _label(self) -> None:
        try:
            while True:
                # The next frame is taken once the frame step has started on the last one, and, where the frame
                # step is the slower half, only so long before it ends as labelling takes: taken at once, it would
                # wait labelled, growing stale.
                started = self.labelled.wait_empty()
                time.sleep(max(0.0, started + self.render_seconds - self.label_seconds - time.perf_counter()))
                if (item := self.frames.take()) is None:
                    break
                tag, image = item
                start = time.perf_counter()
                labelled = self.renderer.label(image() if callable(image) else image)
                self.label_seconds = average(self.label_seconds, time.perf_counter() - start)
                self.labelled.put((tag, labelled), wait=True)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever reads .error
            self.error = self.error or exc
        finally:
            self.labelled.end()
            self.renderer.close()

    def _render(self) -> None:
        if self.renderer.device.type == "cpu":
            # The two halves share the cores: the frame step takes half of torch's threads (this thread's own
            # setting), the detector the rest. At 64x64 on 2 cores one thread is as fast as two, and two contend
            # with MediaPipe (benchmarks/RESULTS.md, "Live").
            torch.set_num_threads(max(1, torch.get_num_threads() // 2))
        try:
            while (item := self.labelled.take()) is not None:
                tag, labelled = item
                start = time.perf_counter()
                frame = self.renderer.render(labelled)
                self.on_result(tag, frame, time.perf_counter())
                self.render_seconds = average(self.render_seconds, time.perf_counter() - start)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever reads .error
            self.error = self.error or exc
            self.frames.end()
        finally:
            self.on_end()


def average(mean: float, value: float, weight: float = 0.2) -> float:
    """A running average that follows the last few values (the first value starts it)."""
    return value if mean == 0 else (1 - weight) * mean + weight * value


def for_stream(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of a shared generator for one stream: the frame step keeps per-stream state in the generator (the
    reference encoding, the reference warped last), so two streams must not share one. A torch.compile wrapper
    (serve --compile) is left behind: the copy runs eager rather than build again for each stream."""
    return copy.deepcopy(unwrap(model))


def live_references(checkpoint: str | Path, model: torch.nn.Module, cfg: DataConfig, references: list[Path],
                    workdir: Path, device: torch.device, *, backdrop: str = "plain", finetune_steps: int = 0,
                    amp_dtype: torch.dtype | None = None,
                    on_finetune: Callable[[int, int], None] | None = None) -> tuple[torch.nn.Module, References]:
    """(this stream's model, its references) from reference images (labelled in workdir, as `generate` does):
    a copy of model, or with finetune_steps a copy fine-tuned on the references."""
    from vid2vid.generate import references_for

    refs = references_for(references, cfg, workdir, backdrop).to(device)
    if not finetune_steps:
        return for_stream(model), refs
    from vid2vid.finetune import finetune_checkpoint_model

    tuned = finetune_checkpoint_model(
        checkpoint, model, refs, finetune_steps, amp_dtype=amp_dtype,
        on_step=None if on_finetune is None else lambda i, _: on_finetune(i + 1, finetune_steps))
    return tuned.model, refs


# ----------------------------------------------------------------------------------------------------------------
# Camera frames for `vid2vid live`


@dataclass
class Captured:
    image: np.ndarray  # (H, W, 3) RGB uint8
    index: int  # the camera's frame number, from 0
    time: float  # time.perf_counter() when it was read


def camera_frames(source: str) -> tuple[Iterator[np.ndarray], float, bool]:
    """(RGB frames, frames/s, whether it is a file to pace) of a camera index ("0") or a video file."""
    if source.isdigit():
        import cv2

        logging = getattr(cv2, "utils", None) and getattr(cv2.utils, "logging", None)
        if logging is not None:  # OpenCV's own lines about a missing camera would come before our one line
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        capture = cv2.VideoCapture(int(source))
        if not capture.isOpened():
            raise DataError(f"camera {source}: cannot be opened (no such camera, or another program has it)")
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0

        def read() -> Iterator[np.ndarray]:
            try:
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        return
                    yield bgr[:, :, ::-1].copy()
            finally:
                capture.release()

        return read(), fps, False
    from vid2vid.data.video import read_video, video_info

    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: no such video file (give a camera index, such as 0, or a video)")
    return read_video(path), video_info(path).fps or 25.0, True


def capture(frames: Iterator[np.ndarray], fps: float, pace: bool, wait: bool, pipeline: LivePipeline,
            stop: threading.Event, errors: list, max_frames: int | None = None) -> None:
    """Reader thread: frames into the pipeline as a camera delivers them (a file at its frame rate when pace; each
    frame once the one before was taken when wait). The camera's error, if any, goes into errors."""
    start = time.perf_counter()
    try:
        for index, image in enumerate(frames):
            if stop.is_set() or (max_frames is not None and index >= max_frames):
                break
            if pace:
                time.sleep(max(0.0, start + index / fps - time.perf_counter()))
            pipeline.submit(Captured(image, index, time.perf_counter()), image, wait=wait)
    except BaseException as exc:  # noqa: BLE001 - the main thread reports it
        errors.append(exc)
    finally:
        pipeline.finish()


@dataclass
class LiveReport:
    captured: int = 0  # frames the camera gave
    rendered: int = 0  # frames the renderer took (the rest were dropped)
    no_person: int = 0  # frames taken with nobody in view (the last result held)
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # capture -> result, per frame taken
    label_ms: list[float] = field(default_factory=list)
    generate_ms: list[float] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C (or SIGTERM)

    @property
    def fps(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else 0.0

    def latency(self, percent: float) -> float:
        return float(np.percentile(self.latencies_ms, percent)) if self.latencies_ms else 0.0

    def line(self) -> str:
        stopped = "stopped; " if self.interrupted else ""
        return (f"{stopped}{self.rendered} of {self.captured} camera frames rendered ({self.captured - self.rendered} "
                f"dropped, {self.no_person} with nobody in view) in {self.seconds:.1f} s: {self.fps:.1f} frames/s, "
                f"latency p50 {self.latency(50):.0f} ms, p95 {self.latency(95):.0f} ms (detector "
                f"{np.median(self.label_ms or [0]):.0f} ms, frame step {np.median(self.generate_ms or [0]):.0f} ms)")


def run_live(checkpoint: str | Path, source: str, output: str | Path | None, references: list[str | Path] = (),
             *, overwrite: bool = False, side_by_side: bool = False, max_frames: int | None = None,
             seconds: float | None = None, pace: bool | None = None, device: str = "auto", precision: str = "auto",
             finetune_steps: int = 0, backdrop: str = "plain", renderer: LiveRenderer | None = None,
             on_frame: Callable[[Captured, LiveFrame], None] | None = None) -> LiveReport:
    """Render a camera (an index such as "0") or a video file standing in for one, live: frames the renderer is
    too slow for are dropped. output: an mp4 with one frame per camera frame (the result shown at that moment:
    held over dropped frames; side_by_side adds the camera and labels). pace (default: for files) feeds a file
    at its frame rate, as a camera would; pace False takes every frame. renderer: one made already (tests)."""
    from vid2vid.data.video import VideoWriter
    from vid2vid.device import pick_device
    from vid2vid.generate import check_output_video, data_config_for, inference_precision, load_for_inference

    output = None if output is None else Path(output)
    if output is not None:
        check_output_video(output, overwrite)
    frames, fps, is_file = camera_frames(str(source))
    pace = is_file if pace is None else pace
    report = LiveReport()
    with ExitStack() as stack:
        if renderer is None:
            torch_device = pick_device(device)
            model = load_for_inference(checkpoint, torch_device)
            amp = inference_precision(precision, model, torch_device)
            cfg = data_config_for(checkpoint, model, None)
            refs = None
            if is_few_shot(model):
                if not references:
                    raise ValueError("a few-shot model needs --reference images of the person to render")
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vid2vid-live-")))
                model, refs = live_references(checkpoint, model, cfg, [Path(r) for r in references], workdir,
                                              torch_device, backdrop=backdrop, finetune_steps=finetune_steps,
                                              amp_dtype=amp)
            renderer = LiveRenderer(model, cfg, refs, torch_device, amp)
        writer = stack.enter_context(VideoWriter(output, fps=fps)) if output is not None else None
        results: queue.Queue = queue.Queue()
        pipeline = LivePipeline(renderer, lambda captured, frame, at: results.put((captured, frame, at)),
                                on_end=lambda: results.put(None))
        stack.callback(pipeline.close)  # also closes the renderer's detector
        stop, errors = threading.Event(), []
        wait = is_file and not pace  # every frame of a file, none dropped
        reader = threading.Thread(target=capture, args=(frames, fps, pace, wait, pipeline, stop, errors, max_frames),
                                  name="vid2vid-live-camera", daemon=True)
        stack.callback(reader.join, 5)
        stack.callback(stop.set)
        start = time.perf_counter()
        reader.start()
        shown, last_index = None, -1
        try:
            while (item := results.get()) is not None:
                captured, frame, at = item
                report.latencies_ms.append(1000 * (at - captured.time))
                report.label_ms.append(frame.label_ms)
                report.rendered += 1
                if frame.person:
                    report.generate_ms.append(frame.generate_ms)
                else:
                    report.no_person += 1
                if writer is not None and frame.result is not None:
                    shown = picture(captured.image, frame, side_by_side)
                    for _ in range(captured.index - last_index):  # the frames dropped since showed the last result
                        writer.write(shown)
                last_index = captured.index
                if on_frame is not None:
                    on_frame(captured, frame)
                if seconds is not None and time.perf_counter() - start >= seconds:
                    break
        except KeyboardInterrupt:  # Ctrl-C ends a camera session: what was shown so far is kept
            report.interrupted = True
        stop.set()
        pipeline.close()
        for error in [*errors, pipeline.error]:
            if error is not None:
                raise error
        report.seconds = time.perf_counter() - start
        report.captured = pipeline.frames.puts
        if writer is not None and shown is None:
            raise DataError(f"{source}: nobody was found on any frame, so there is nothing to write")
    return report


def picture(camera: np.ndarray, frame: LiveFrame, side_by_side: bool) -> np.ndarray:
    """The frame written for one camera frame: the result, or camera | labels | result."""
    if not side_by_side:
        return frame.result
    import cv2

    h = frame.result.shape[0]
    scale = h / camera.shape[0]
    small = cv2.resize(camera, (max(1, round(camera.shape[1] * scale)), h), interpolation=cv2.INTER_AREA)
    label = frame.label if frame.label is not None else np.zeros_like(frame.result)
    return np.concatenate([small, label, frame.result], axis=1)

"""`vid2vid generate`: stream a driving sequence through a generator into an mp4.

Frames are made one after another with the previous outputs fed back (`vid2vid.step`); only the history
window is kept, so memory stays flat however long the video. Driving input is a prepared dataset folder or
raw video (prepared on the fly for the model's label type); references are frames of a prepared folder or
loose images (their labels extracted on the fly).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vid2vid.checkpoint import load_generator, read_model_info
from vid2vid.data import DataError, render
from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.layout import MODALITIES, scan
from vid2vid.data.video import VideoWriter, is_video, read_image, video_info, write_image
from vid2vid.device import pick_device, pick_precision
from vid2vid.files import refuse_overlap
from vid2vid.nn.blocks import fold_spectral_norm
from vid2vid.pictures import label_picture
from vid2vid.step import (
    REFERENCE_WARPS,
    References,
    feeds_back,
    is_few_shot,
    new_history,
    reference_warp_for,
    references_of,
    size_multiple,
    step,
)

LABEL_SUBJECT = {"pose": "person", "face": "face"}  # what a task's detector looks for


@dataclass
class GenerateReport:
    frames: int
    seconds: float
    output: Path


def data_config_for(checkpoint: str | Path, model, size: tuple[int, int] | None) -> DataConfig:
    """How driving labels are made: as in training (saved with our checkpoints), else from the label
    channels (6 pose, 1 face, otherwise street)."""
    info = read_model_info(checkpoint)
    values = dict(info.get("data") or {"task": DataConfig.task_for_label_channels(model.cfg.label_channels)})
    values.update(clip_length=1, num_references=0, min_references=None, augment=False, max_stride=1,
                  teacher_flow=False)
    if size is not None:
        values["size"] = size
    if values["task"] == "street":
        values.setdefault("crop", "resize")
        values["num_classes"] = model.cfg.label_channels - int(values.get("instance_boundaries", False))
    cfg = DataConfig.from_dict(values)
    step_size = size_multiple(model)
    if cfg.size[0] % step_size or cfg.size[1] % step_size:
        raise ValueError(f"output size {cfg.size[0]}x{cfg.size[1]} must be a multiple of {step_size} for this model")
    return cfg


def load_for_inference(checkpoint: str | Path, device: torch.device) -> torch.nn.Module:
    """The generator in eval mode with spectral norm folded into plain weights: the same numbers, less work
    per frame."""
    return fold_spectral_norm(load_generator(checkpoint, device))


def _prepared(source: Path, task: str, workdir: Path, name: str, max_frames: int | None = None) -> Path:
    """A dataset folder for source: itself when it is one, else its first max_frames frames prepared into
    workdir (labels extracted)."""
    if source.is_dir() and (source / MODALITIES["images"].folder).is_dir():
        return source
    from vid2vid.data.prepare import prepare

    root = workdir / name
    # A street model's video is a colour-coded label video: there is no segmentation network here.
    # max_read: the first max_frames frames of the video, so that a long one without a face is not read to its end.
    reports = prepare([source], root, task, flow=False, max_read=max_frames, label_colours=task == "street",
                      progress=False)
    if task != "street" and not any(r.labelled for r in reports):
        raise DataError(f"{source}: no {LABEL_SUBJECT[task]} was found in any frame")
    return root


REFERENCE_BACKDROPS = ("photo", "plain")


def plain_backdrop(image: np.ndarray, source: Path) -> np.ndarray:
    """The photo's person on a plain wall of its backdrop's median colour (MediaPipe's person segmentation,
    soft at the edges): the built-in dancers a model was trained on stand before plain walls."""
    from vid2vid.data.detector import person_segmenter

    segmenter = person_segmenter()
    try:
        person = segmenter.process(np.ascontiguousarray(image)).segmentation_mask[:, :, None]
    finally:
        segmenter.close()
    if not (person < 0.5).any() or not (person > 0.5).any():
        raise DataError(f"{source}: the person cannot be told from the backdrop (use --reference-backdrop photo)")
    wall = np.median(image[person[:, :, 0] < 0.5], axis=0)
    return (image * person + wall * (1 - person)).round().clip(0, 255).astype(np.uint8)


def reference_locations(paths: list[Path], task: str, workdir: Path, backdrop: str = "plain"
                         ) -> list[tuple[Path, str, str]]:
    """(dataset root, sequence, frame) for each reference image; loose images are prepared (labelled) here,
    for a pose model on a plain backdrop when backdrop is "plain"."""
    found, loose = [], []
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such reference image")
        if path.parent.parent.name == MODALITIES["images"].folder:
            found.append((path.parents[2], path.parent.name, path.stem))
        else:
            loose.append(path)
    if loose:
        from vid2vid.data.prepare import prepare

        # One sequence per image: references may differ in size, and each is labelled on its own.
        copies = []
        for i, path in enumerate(loose):
            copies.append(workdir / "reference_images" / f"{i:05d}")
            copies[-1].mkdir(parents=True)
            if backdrop == "plain" and task == "pose":
                write_image(copies[-1] / f"00000{path.suffix.lower()}", plain_backdrop(read_image(path), path))
            else:
                shutil.copy(path, copies[-1] / f"00000{path.suffix.lower()}")
        root = workdir / "references"
        try:
            # Several people: all are found (OpenCV's people detector and MediaPipe's faces propose boxes, then the
            # pose on each), the largest drawn.
            reports = prepare(copies, root, task, flow=False, progress=False, multi_person=task == "pose")
        except DataError as exc:
            message = str(exc)
            for copy, path in zip(copies, loose, strict=True):
                message = message.replace(str(copy / f"00000{path.suffix.lower()}"), str(path))
                message = message.replace(str(copy), str(path))
            raise DataError(message) from None
        for path, report in zip(loose, reports, strict=True):
            if task != "street" and not report.labelled:
                raise DataError(f"{path}: no {LABEL_SUBJECT[task]} was found in this reference image")
            if task == "pose":
                _say_people(path, root, report.sequence)
            found.append((root, report.sequence, "00000"))
    return found


def _say_people(path: Path, root: Path, sequence: str) -> None:
    """One line on stderr when a reference photo shows several people: which one is rendered."""
    from vid2vid.data import render

    files = next(s for s in scan(root, "pose") if s.name == sequence).files["openpose"]
    people = render.read_openpose_json(files[0])
    if len(people) > 1:
        person = render.largest_person(people)
        ys = person.body[person.body[:, 2] > render.BODY_MIN_CONFIDENCE, 1]
        print(f"{path}: {len(people)} people found; rendering the largest ({ys.max() - ys.min():.0f} px tall)",
              file=sys.stderr)


FACE_PROPORTIONS = ("reference", "relative", "driving")


def driving_face_landmarks(sequence, reference: np.ndarray, max_frames: int | None,
                           proportions: str = "reference") -> np.ndarray:
    """The driving face's landmarks (T, 68, 2), file pixels, fitted to the reference face's landmarks (68, 2; any
    pixels, as References.face_landmarks holds them: only their shape counts) so that the shape does not carry
    the driver's identity over. proportions "reference": the driver's expression and head motion on the
    reference's face proportions, as imaginaire's face test gives them (render.normalize_face_landmarks);
    "relative": the reference's own landmarks moved as the driver's move from the first frame
    (render.relative_face_landmarks)."""
    reference = np.asarray(reference, np.float64)
    files = sequence.files["dlib68"][:max_frames]
    driving = np.stack([render.read_landmarks_json(f) for f in files])
    if proportions == "relative":
        return render.relative_face_landmarks(driving, reference)
    return render.normalize_face_landmarks(driving, reference)


def references_for(paths: list[str | Path], cfg: DataConfig, workdir: Path, backdrop: str = "plain") -> References:
    """The references of reference images (frames of a prepared folder, or loose images labelled in workdir)."""
    return load_references(reference_locations([Path(p) for p in paths], cfg.task, workdir, backdrop), cfg)


def load_references(locations, cfg: DataConfig) -> References:
    labels, images, points = [], [], []
    for root, name, frame in locations:
        sequence = next((s for s in scan(root, cfg.task) if s.name == name), None)
        if sequence is None or frame not in sequence.frames:
            raise DataError(f"{root}: no frame {name}/{frame} in this dataset")
        clips = VideoClips(root, cfg)
        ref_labels, ref_images, ref_points = clips.references(sequence, [sequence.frames.index(frame)])
        labels.append(ref_labels)
        images.append(ref_images)
        points.append(ref_points)
    return references_of(torch.cat(labels), torch.cat(images),
                         torch.cat(points) if all(p is not None for p in points) else None, cfg.task)


def generate_frames(model, frames: Iterator[dict], refs: References | None, device: torch.device,
                    amp_dtype: torch.dtype | None = None, feed_back: bool = True, landmark_warp: bool = False
                    ) -> Iterator[tuple[np.ndarray, dict]]:
    """(result RGB uint8 (H, W, 3), driving item) per driving frame, previous outputs fed back unless
    `feed_back` is off: then a few-shot model makes every frame as it makes the first, from the references.
    landmark_warp (face references with landmarks, items with theirs): the reference is warped onto each face by
    the landmarks (step)."""
    model.reset()
    history = new_history(model)
    if refs is not None:
        refs = refs.to(device)
    for item in frames:
        label = item["label"][None].to(device)
        landmarks = (item.get("landmarks", item.get("keypoints")) if landmark_warp else None)
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                             enabled=amp_dtype is not None):
            out = step(model, label, history, refs, landmarks)
        image = out.fake_images.float()
        if feed_back:
            history.push(label, image, landmarks)
        yield to_uint8(image[0]), item


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def label_to_uint8(label: torch.Tensor) -> np.ndarray:
    return to_uint8(label_picture(label[None])[0])


def check_output_video(output: Path, overwrite: bool) -> None:
    """An .mp4 to write: not a folder, not there already (unless overwrite), in a folder that exists."""
    if output.suffix.lower() != ".mp4":
        raise ValueError(f"{output}: the output must be an .mp4 file")
    if output.is_dir():
        raise ValueError(f"{output}: is a folder, not a video file")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output}: exists (use --overwrite to replace it)")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"{output.parent}: no such folder for the output")


def inference_precision(precision: str, model: torch.nn.Module, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a generator renders with (None: fp32). auto keeps vid2vid models in fp32: bf16 moved
    a full-size (random-weight) vid2vid generator's frames to 15.6 dB from fp32, the first frame alone to 23.5 dB
    (benchmarks/RESULTS.md); few-shot stays at 41 dB, and auto gives it bf16 on CUDA."""
    return None if precision == "auto" and not is_few_shot(model) else pick_precision(precision, device)


def generate(checkpoint: str | Path, driving: str | Path, output: str | Path, references: list[str | Path] = (),
             *, sequence: str | None = None, size: tuple[int, int] | None = None, frames_dir: str | Path | None = None,
             side_by_side: bool = False, max_frames: int | None = None, fps: float | None = None,
             overwrite: bool = False, device: str = "auto", precision: str = "auto",
             progress: bool = True, compile_model: bool = False, model: torch.nn.Module | None = None,
             labels_output: str | Path | None = None,
             on_frame: Callable[[int, int], None] | None = None, finetune_steps: int = 0,
             finetune_lr: float | None = None, finetune_adversarial: bool = False, finetune_augment: str = "roll",
             seed: int = 0, reference_backdrop: str = "plain", face_proportions: str = "reference",
             on_finetune: Callable[[int, int], None] | None = None, feedback: bool | None = None,
             reference_warp: str | None = None) -> GenerateReport:
    """precision: auto (bf16 autocast on CUDA for few-shot models, otherwise fp32), fp32, or bf16 (also on CPU:
    about twice as fast where the CPU has bf16 instructions, ~41 dB from fp32 for few-shot; see
    benchmarks/RESULTS.md). compile_model runs
    the frame step through torch.compile: minutes to build at full size on a CPU, then faster frames, the same
    to ~1e-5; it pays for long videos.

    For callers that render many videos with one model (`vid2vid serve`): model is the checkpoint's generator
    already loaded by `load_for_inference`; labels_output an .mp4 for the driving labels, frame for frame;
    on_frame(done, total) is called after each frame.

    finetune_steps > 0 first fine-tunes a copy of the few-shot model on the references (`vid2vid.finetune`,
    deterministic for a seed; on_finetune(done, total) after each step); the loaded model is not changed.
    reference_backdrop "plain" (pose models): a loose reference photo's person is put on a plain wall first,
    as the built-in dancers stand (study 6: a person found on 47-81% of the frames against 12-47% with the photo's
    own backdrop); "photo": as it is. face_proportions "reference" (few-shot face models): the driving landmarks
    take the first reference face's proportions (driving_face_landmarks); "relative": the first reference's own
    landmarks moved as the driver's move; "driving": as detected. feedback off (few-shot models): every frame is
    made as the first is, from the references alone, not from the previous output (steadier identity on a real
    photo: docs/RESULTS.md, study 9, run 3); None: off for few-shot face models, on for the others (feeds_back).
    reference_warp (few-shot models): "landmarks" warps the reference onto the driving face by the landmarks, or
    onto the driving person by the body keypoints (a thin-plate spline on the face or body; the flow network's
    flow around it), "network" by the flow network alone; None: the model's default (step.reference_warp_for:
    landmarks for face models); for a vid2vid face model "landmarks" warps the previous output so.
    """
    output, driving = Path(output), Path(driving)
    check_output_video(output, overwrite)
    frames_dir = Path(frames_dir) if frames_dir else None
    if frames_dir is not None and frames_dir.exists() and any(frames_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{frames_dir}: holds files (use --overwrite to replace them)")
    refuse_overlap([("output video", output), ("frames folder", frames_dir), ("labels video", labels_output)],
                   [("driving input", driving), ("checkpoint", checkpoint)]
                   + [("reference", r) for r in references])
    torch_device = pick_device(device)
    if reference_backdrop not in REFERENCE_BACKDROPS:
        raise ValueError(f"reference_backdrop must be one of {', '.join(REFERENCE_BACKDROPS)}, "
                         f"got {reference_backdrop!r}")
    if face_proportions not in FACE_PROPORTIONS:
        raise ValueError(f"face_proportions must be one of {', '.join(FACE_PROPORTIONS)}, got {face_proportions!r}")
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if model is None:
        model = load_for_inference(checkpoint, torch_device)
    amp = inference_precision(precision, model, torch_device)
    cfg = data_config_for(checkpoint, model, size)
    if is_few_shot(model) and not references:
        raise ValueError("a few-shot model needs --reference images of the person or scene to render")
    if not is_few_shot(model) and references:
        raise ValueError("--reference is for few-shot models; this checkpoint is a vid2vid model")
    if finetune_steps < 0:
        raise ValueError(f"--finetune takes a number of steps, 0 or more, got {finetune_steps}")
    if finetune_steps and not is_few_shot(model):
        raise ValueError("--finetune is for few-shot models; this checkpoint is a vid2vid model")
    if feedback is False and not is_few_shot(model):
        raise ValueError("--no-feedback is for few-shot models; a vid2vid model makes frames from the one before")
    feedback = feeds_back(model, cfg.task) if feedback is None else feedback
    if reference_warp not in (None, *REFERENCE_WARPS):
        raise ValueError(f"reference_warp must be one of {', '.join(REFERENCE_WARPS)}, got {reference_warp!r}")
    if reference_warp == "landmarks" and not (cfg.task == "face" or (is_few_shot(model) and cfg.task == "pose")):
        raise ValueError("--reference-warp landmarks is for face models and few-shot pose models")
    reference_warp = reference_warp or reference_warp_for(model, cfg.task)

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vid2vid-generate-")))
        root = _prepared(driving, cfg.task, workdir, "driving", max_frames)
        sequences = scan(root, cfg.task)
        chosen = [s for s in sequences if sequence is None or s.name == sequence]
        if not chosen:
            raise DataError(f"{root}: no sequence {sequence!r} (has {', '.join(s.name for s in sequences)})")
        locations = reference_locations([Path(p) for p in references], cfg.task, workdir, reference_backdrop)
        refs = load_references(locations, cfg) if references else None
        landmarks = None
        if cfg.task == "face" and refs is not None and face_proportions != "driving":
            landmarks = driving_face_landmarks(chosen[0], refs.face_landmarks[0, 0].numpy(), max_frames,
                                               face_proportions)
        if finetune_steps:
            from vid2vid.finetune import finetune_checkpoint_model

            refs = refs.to(torch_device)
            if on_finetune is not None:
                on_finetune(0, finetune_steps)
            tuned = finetune_checkpoint_model(
                checkpoint, model, refs, finetune_steps, lr=finetune_lr, amp_dtype=amp, seed=seed,
                adversarial=finetune_adversarial, augment=finetune_augment,
                progress=progress, notice=(lambda line: print(line, file=sys.stderr)) if progress else None,
                on_step=None if on_finetune is None else lambda i, _: on_finetune(i + 1, finetune_steps))
            model = tuned.model
        if compile_model:
            model = torch.compile(model)
        if fps is None:
            fps = video_info(driving).fps if is_video(driving) else 25.0
        frames_tmp = None
        if frames_dir is not None:
            frames_dir.parent.mkdir(parents=True, exist_ok=True)
            # PNGs go to a hidden folder renamed into place at the end: no half-written frame folder.
            frames_tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
                dir=frames_dir.parent, prefix=f".{frames_dir.name}.", ignore_cleanup_errors=True)))
        stream = VideoClips(root, cfg).stream(chosen[0], max_frames, landmarks)
        total = len(chosen[0]) if max_frames is None else min(max_frames, len(chosen[0]))
        reference_picture = None if refs is None else to_uint8(refs.images[0, 0])
        start, count = time.perf_counter(), 0
        bar = stack.enter_context(tqdm(total=total, desc="generate", unit="frame", disable=not progress))
        writer = stack.enter_context(VideoWriter(output, fps=fps))
        labels_writer = stack.enter_context(VideoWriter(labels_output, fps=fps)) if labels_output else None
        for result, item in generate_frames(model, stream, refs, torch_device, amp, feed_back=feedback,
                                            landmark_warp=reference_warp == "landmarks"):
            picture = result
            if side_by_side:
                parts = [label_to_uint8(item["label"]), result]
                if reference_picture is not None:
                    parts.append(reference_picture)
                picture = np.concatenate(parts, axis=1)
            writer.write(picture)
            if labels_writer is not None:
                labels_writer.write(label_to_uint8(item["label"]))
            if frames_tmp is not None:
                write_image(frames_tmp / f"{item['frame']}.png", result)
            count += 1
            bar.update(1)
            if on_frame is not None:
                on_frame(count, total)
        if frames_tmp is not None:
            if frames_dir.exists():
                shutil.rmtree(frames_dir)
            frames_tmp.rename(frames_dir)
    return GenerateReport(count, time.perf_counter() - start, output)

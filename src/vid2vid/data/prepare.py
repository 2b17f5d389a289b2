"""`vid2vid prepare`: real video -> a dataset folder (frames, keypoints or landmarks, teacher flow).

One input (a video file or a folder of frames) becomes one sequence named after it. Several inputs
may go into one dataset folder, one run each or all at once; re-running resumes where a run stopped.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vid2vid.data import DataError
from vid2vid.data.keypoints import LANDMARK_SOURCES, landmark_jitter
from vid2vid.data.teacher_flow import dis_flow
from vid2vid.data.video import is_video, read_frames, video_info
from vid2vid.data.writer import DatasetWriter
from vid2vid.files import refuse_overlap

TASKS = ("pose", "face", "street")


@dataclass
class PrepareReport:
    sequence: str
    written: int = 0
    skipped_done: int = 0  # already in the folder from an earlier run
    skipped_no_face: int = 0  # face task: frames where no face was found are left out
    jitter: float | None = None  # face task: landmark_jitter over the longest run of frames with a face
    tracks: list = field(default_factory=list, repr=False)  # face task: runs of consecutive frames' landmarks
    labelled: int = 0  # frames written with a person or face in their labels


@contextmanager
def label_extractor(task: str, multi_person: bool, label_colours: bool = False, landmarks: str = "mediapipe"):
    """A callable (frame, name) -> labels for writer.write_frame, or None for a frame to leave out.

    One per sequence: MediaPipe tracks landmarks from frame to frame within a video, which is steadier.
    label_colours (street): the frames are colour-coded label maps, read back into class ids. landmarks (face):
    "mediapipe" (FaceMesh mapped to dlib-68) or "dlib" (dlib's own 68-point predictor).
    """
    if task == "street":
        if label_colours:
            from vid2vid.data.render import ids_from_colours

            yield lambda image, name: {"seg": ids_from_colours(image, name)}
        else:
            yield lambda image, name: {}
        return
    from vid2vid.data import keypoints

    if task == "pose":
        with keypoints.PoseExtractor(multi_person=multi_person, tracking=not multi_person) as extract:
            yield lambda image, name: {"openpose": keypoints.openpose_json(extract(image))}
        return
    extractor = keypoints.DlibFaceExtractor() if landmarks == "dlib" else keypoints.FaceExtractor(tracking=True)
    with extractor as extract:
        def face(image, name):
            points = extract(image)
            return None if points is None else {"landmarks": keypoints.dlib68_json(points)}
        yield face


@contextmanager
def no_labels():
    yield lambda image, name: {}


def sequence_name(source: Path) -> str:
    return source.stem if is_video(source) else source.name


def prepare(sources: list[str | Path], out: str | Path, task: str, *, overwrite: bool = False,
            extract_labels: bool = True, flow: bool = True, every: int = 1, max_frames: int | None = None,
            multi_person: bool = False, label_colours: bool = False, max_read: int | None = None,
            landmarks: str = "mediapipe", progress: bool = True) -> list[PrepareReport]:
    """max_frames counts frames written (a face video's frames without a face do not count); max_read stops
    after that many frames of each input, written or not. landmarks (face): mediapipe or dlib. Face reports
    carry the landmarks' jitter (keypoints.landmark_jitter) over the frames this run labelled."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if every < 1:
        raise ValueError(f"--every must be at least 1, got {every}")
    sources = [Path(s) for s in sources]
    names = [sequence_name(s) for s in sources]
    for source in sources:
        if not source.exists():
            raise DataError(f"{source}: no such file or folder")
    if len(set(names)) != len(names):
        raise DataError(f"{out}: two inputs would make the same sequence name; rename one of {names}")
    for source in sources:
        _check_source(source)
    if landmarks not in LANDMARK_SOURCES:
        raise ValueError(f"landmarks must be one of {', '.join(LANDMARK_SOURCES)}, got {landmarks!r}")
    if landmarks != "mediapipe" and task != "face":
        raise ValueError("--landmarks is for the face task")
    if label_colours and task != "street":
        raise ValueError("--label-colours is for the street task (colour-coded segmentation videos)")
    info = {"command": "prepare", "task": task, "labels": extract_labels and (task != "street" or label_colours),
            "flow": flow}
    if task == "face":
        info["landmarks"] = landmarks
    out = Path(out)
    refuse_overlap([("dataset folder", out)], [("input", s) for s in sources])
    created = not out.exists()
    writer = DatasetWriter(out, info, overwrite=overwrite, image_extension=".jpg")
    reports: list[PrepareReport] = []
    try:
        for source, name in zip(sources, names, strict=True):
            reports.append(PrepareReport(name))
            labels = label_extractor(task, multi_person, label_colours, landmarks) if extract_labels else no_labels()
            with labels as labels_for:
                _prepare_one(source, name, writer, labels_for, flow, every, max_frames, max_read, progress,
                             reports[-1])
    except BaseException as exc:
        # Bad input fails again on every run, so a folder this run started is removed; an interrupted or
        # out-of-space run keeps its frames for the next run to resume from.
        if created and (isinstance(exc, DataError) or not any(r.written for r in reports)):
            shutil.rmtree(out, ignore_errors=True)
        raise
    return reports


def _check_source(source: Path) -> None:
    """Fail before writing anything when an input cannot give a first frame."""
    next(iter(read_frames(source)))


def _prepare_one(source: Path, name: str, writer: DatasetWriter, labels_for, flow: bool, every: int,
                 max_frames: int | None, max_read: int | None, progress: bool, report: PrepareReport) -> None:
    total = video_info(source).frames if is_video(source) else None
    previous = None  # the last frame that is in the dataset, for the teacher flow
    frames = read_frames(source)
    bar = tqdm(total=total, desc=f"prepare {name}", unit="frame", disable=not progress)
    with bar:
        for index, (frame_name, image) in enumerate(frames):
            if max_read is not None and index >= max_read:
                break
            bar.update(1)
            if index % every:
                continue
            if max_frames is not None and report.written + report.skipped_done >= max_frames:
                break
            if previous is not None and image.shape != previous.shape:
                raise DataError(f"{source}: frame {frame_name} is {image.shape[1]}x{image.shape[0]}, "
                                f"earlier frames {previous.shape[1]}x{previous.shape[0]}")
            if writer.has_frame(name, frame_name):
                report.skipped_done += 1
                previous = image
                continue
            labels = labels_for(image, f"{source}: frame {frame_name}")
            if labels is None:
                report.skipped_no_face += 1
                if report.tracks and report.tracks[-1]:
                    report.tracks.append([])  # a gap ends a run: jitter is measured within runs of frames
                continue
            if "landmarks" in labels:
                if not report.tracks:
                    report.tracks.append([])
                report.tracks[-1].append(np.asarray(labels["landmarks"], np.float64))
            teacher = dis_flow(image, previous) if flow and previous is not None else None
            writer.write_frame(name, frame_name, image, flow=teacher, **labels)
            report.written += 1
            report.labelled += bool(labels.get("landmarks") or labels.get("openpose", {}).get("people")
                                    or labels.get("seg") is not None)
            previous = image
    longest = max(report.tracks, key=len, default=[])
    if len(longest) >= 5:
        report.jitter = landmark_jitter(np.stack(longest))

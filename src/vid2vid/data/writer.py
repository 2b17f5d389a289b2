"""Writing a dataset folder frame by frame, for `vid2vid prepare` and `vid2vid synth`.

Each file is written atomically and the image last, so a frame whose image exists is complete: an
interrupted run resumes by skipping those frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vid2vid.data.layout import claim_output, frame_path
from vid2vid.data.teacher_flow import write_flow
from vid2vid.data.video import write_image
from vid2vid.files import atomic_write_bytes


def _write_json(path: Path, value) -> None:
    atomic_write_bytes(path, (json.dumps(value) + "\n").encode())


class DatasetWriter:
    """Writes frames into ROOT in the layout of vid2vid.data.layout."""

    def __init__(self, root: str | Path, info: dict, overwrite: bool = False, image_extension: str = ".png"):
        self.root = Path(root)
        self.resumed = claim_output(self.root, info, overwrite)
        self.image_extension = image_extension

    def path(self, modality: str, sequence: str, frame: str) -> Path:
        extension = self.image_extension if modality == "images" else None
        path = frame_path(self.root, modality, sequence, frame, extension)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def has_frame(self, sequence: str, frame: str) -> bool:
        return frame_path(self.root, "images", sequence, frame, self.image_extension).is_file()

    def write_frame(self, sequence: str, frame: str, image: np.ndarray, *, openpose: dict | None = None,
                    landmarks: list | None = None, seg: np.ndarray | None = None,
                    densepose: np.ndarray | None = None, flow: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """One frame: its labels and teacher flow (flow, confidence) first, the image last."""
        if openpose is not None:
            _write_json(self.path("openpose", sequence, frame), openpose)
        if landmarks is not None:
            _write_json(self.path("dlib68", sequence, frame), landmarks)
        if seg is not None:
            write_image(self.path("seg", sequence, frame), seg)
        if densepose is not None:
            write_image(self.path("densepose", sequence, frame), densepose)
        if flow is not None:
            write_flow(self.path("flow", sequence, frame), *flow)
        write_image(self.path("images", sequence, frame), image)


SYNTHETIC_TASKS = {"dancers": "pose", "street": "street", "faces": "face", "turning": "pose", "photo": "pose",
                   "face_photo": "face", "face_talk": "face"}


def write_synthetic(kind: str, root: str | Path, *, sequences: int, frames: int, size: tuple[int, int],
                    seed: int = 0, first_index: int = 0, motion_offset: int = 0, overwrite: bool = False,
                    progress: bool = True) -> int:
    """Write sequences first_index.. of a built-in synthetic kind; returns the number of frames written.

    With motion_offset k, sequence i shows identity i performing the motion of sequence i + k (named
    KINDiiii_motionjjjj): ground truth for a person doing a motion never seen with them. Ground-truth flow is
    written as teacher flow with confidence 1 where it is exact.
    """
    from vid2vid.data import keypoints, synthetic

    if kind not in SYNTHETIC_TASKS:
        raise ValueError(f"unknown synthetic kind {kind!r}; choose from {', '.join(SYNTHETIC_TASKS)}")
    if sequences < 1 or frames < 1 or first_index < 0:
        raise ValueError(f"synth needs --sequences >= 1, --frames >= 1 and --first-index >= 0, got {sequences}, "
                         f"{frames} and {first_index}")
    info = {"command": "synth", "kind": kind, "task": SYNTHETIC_TASKS[kind], "sequences": sequences,
            "frames": frames, "size": list(size), "seed": seed, "first_index": first_index,
            "motion_offset": motion_offset}
    writer = DatasetWriter(root, info, overwrite=overwrite, image_extension=".png")
    written = 0
    indices = range(first_index, first_index + sequences)
    with tqdm(total=sequences * frames, desc=f"synth {kind}", unit="frame", disable=not progress) as bar:
        for index in indices:
            name = f"{kind}{index:04d}" + (f"_motion{index + motion_offset:04d}" if motion_offset else "")
            names = [f"{t:05d}" for t in range(frames)]
            if all(writer.has_frame(name, f) for f in names):
                bar.update(frames)
                continue
            for frame_name, frame in zip(names, synthetic.sequence(kind, index, frames, size, seed,
                                                                                motion_index=index + motion_offset),
                                         strict=True):
                bar.update(1)
                if writer.has_frame(name, frame_name):
                    continue
                labels = {}
                if frame.people is not None:
                    labels["openpose"] = keypoints.openpose_json(frame.people)
                if frame.landmarks is not None:
                    labels["landmarks"] = keypoints.dlib68_json(frame.landmarks)
                if frame.seg is not None:
                    labels["seg"] = frame.seg
                if frame.densepose is not None:
                    labels["densepose"] = frame.densepose
                flow = None if frame.flow is None else (frame.flow, frame.flow_valid.astype(np.float32))
                writer.write_frame(name, frame_name, frame.image, flow=flow, **labels)
                written += 1
    return written

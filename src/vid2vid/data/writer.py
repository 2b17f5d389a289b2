"""Writing a dataset folder frame by frame, for `vid2vid prepare` and `vid2vid synth`.

Each file is written atomically and the image last, so a frame whose image exists is complete: an
interrupted run resumes by skipping those frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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

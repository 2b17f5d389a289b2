"""The dataset folder contract, the same as imaginaire's raw-folder layout so existing data can be reused.

    ROOT/images/SEQ/FRAME.jpg|png              the video frames (RGB)
    ROOT/poses-openpose/SEQ/FRAME.json         OpenPose JSON (BODY_25 + face-70 + hands)
    ROOT/pose_maps-densepose/SEQ/FRAME.png     DensePose IUV
    ROOT/landmarks-dlib68/SEQ/FRAME.json       68 face landmarks
    ROOT/seg_maps/SEQ/FRAME.png                class ids (Cityscapes ids for street data)
    ROOT/instance_maps/SEQ/FRAME.png           instance ids (optional)
    ROOT/flow/SEQ/FRAME.npz                    teacher flow to the previous frame (optional)
    ROOT/vid2vid-data.json                     which command wrote the folder (only in folders we wrote)

Frames pair by name (the file stem) across folders and are ordered by name, numbers compared as numbers.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from vid2vid.data import DataError
from vid2vid.files import atomic_write_bytes, read_json

MARKER = "vid2vid-data.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Modality:
    folder: str
    extensions: tuple[str, ...]
    description: str


MODALITIES = {
    "images": Modality("images", (".jpg", ".jpeg", ".png"), "image"),
    "openpose": Modality("poses-openpose", (".json",), "OpenPose JSON"),
    "densepose": Modality("pose_maps-densepose", (".png",), "DensePose IUV image"),
    "dlib68": Modality("landmarks-dlib68", (".json",), "dlib-68 landmark JSON"),
    "seg": Modality("seg_maps", (".png",), "segmentation map"),
    "instance": Modality("instance_maps", (".png",), "instance map"),
    "flow": Modality("flow", (".npz",), "teacher flow"),
}


@dataclass(frozen=True)
class Task:
    required: tuple[str, ...]  # label modalities every frame must have
    optional: tuple[str, ...]  # used where present; when a sequence has the folder, every frame must have a file


TASKS = {
    "pose": Task(required=("openpose",), optional=("densepose",)),
    "face": Task(required=("dlib68",), optional=()),
    "street": Task(required=("seg",), optional=("instance",)),
}


@dataclass
class Sequence:
    name: str
    frames: list[str]  # frame names (file stems) in order
    files: dict[str, list[Path | None]]  # modality -> one path per frame; None where the file is absent

    def __len__(self) -> int:
        return len(self.frames)


def natural_key(name: str) -> list:
    """Sort key comparing digit runs as numbers: frame2 < frame10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_path(root: str | Path, modality: str, sequence: str, frame: str, extension: str | None = None) -> Path:
    spec = MODALITIES[modality]
    return Path(root) / spec.folder / sequence / f"{frame}{extension or spec.extensions[0]}"


def _frames_in(folder: Path, modality: str) -> dict[str, Path]:
    spec = MODALITIES[modality]
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.name.startswith(".") or path.suffix.lower() not in spec.extensions or not path.is_file():
            continue
        if path.stem in found:
            raise DataError(f"{path}: two {spec.description} files for frame {path.stem!r} ({found[path.stem].name})")
        found[path.stem] = path
    return found


def _match(root: Path, sequence: str, frames: list[str], images: dict[str, Path], modality: str,
           every_frame: bool) -> list[Path | None]:
    spec = MODALITIES[modality]
    folder = root / spec.folder / sequence
    if not folder.is_dir():
        raise DataError(f"{folder}: missing (every sequence needs its {spec.description} files)")
    labels = _frames_in(folder, modality)
    for name in sorted(set(labels) - set(frames), key=natural_key):
        raise DataError(f"{labels[name]}: {spec.description} without an image (no images/{sequence}/{name}.*)")
    if every_frame:
        for name in frames:
            if name not in labels:
                raise DataError(f"{images[name]}: no {spec.description} ({folder / (name + spec.extensions[0])})")
    return [labels.get(name) for name in frames]


def scan(root: str | Path, task: str) -> list[Sequence]:
    """All sequences of a dataset folder, with the files the task uses paired by frame name."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    root = Path(root)
    images_root = root / MODALITIES["images"].folder
    if not images_root.is_dir():
        raise DataError(f"{root}: no images/ folder (a dataset holds images/SEQ/FRAME.jpg; see docs/data.md)")
    names = sorted((p.name for p in images_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                   key=natural_key)
    if not names:
        raise DataError(f"{images_root}: no sequence folders (expected images/SEQ/FRAME.jpg)")
    spec = TASKS[task]
    sequences = []
    for name in names:
        images = _frames_in(images_root / name, "images")
        if not images:
            raise DataError(f"{images_root / name}: no frames (.jpg or .png)")
        frames = sorted(images, key=natural_key)
        files: dict[str, list[Path | None]] = {"images": [images[f] for f in frames]}
        for modality in spec.required:
            files[modality] = _match(root, name, frames, images, modality, every_frame=True)
        for modality in spec.optional:
            if (root / MODALITIES[modality].folder / name).is_dir():
                files[modality] = _match(root, name, frames, images, modality, every_frame=True)
        if (root / MODALITIES["flow"].folder / name).is_dir():
            # The first frame has no previous frame; flow missing elsewhere is computed when needed.
            files["flow"] = _match(root, name, frames, images, "flow", every_frame=False)
        sequences.append(Sequence(name, frames, files))
    return sequences


def read_marker(root: str | Path) -> dict | None:
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    try:
        info = read_json(path)
    except ValueError as exc:
        raise DataError(f"{path}: not a vid2vid dataset description ({exc})") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: not a vid2vid dataset description")
    return info


def claim_output(root: str | Path, info: dict, overwrite: bool) -> bool:
    """Make root ready to receive a dataset described by info; True when it resumes an unfinished one.

    A folder we wrote with the same description resumes; a different one is refused. With overwrite,
    a folder we wrote is emptied of the folders of our layout and started afresh. A folder holding
    anything else is never touched.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        marker = read_marker(root)
        if marker is None:
            raise DataError(f"{root}: holds other data (no {MARKER}); choose an empty or new folder")
        if marker == info and not overwrite:
            return True
        if not overwrite:
            raise DataError(f"{root}: holds a different dataset ({marker.get('command')} "
                            f"{marker.get('task') or marker.get('kind')}); use --overwrite to replace it")
        for spec in MODALITIES.values():
            shutil.rmtree(root / spec.folder, ignore_errors=True)
        (root / MARKER).unlink()
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / MARKER, (json.dumps(info, indent=2) + "\n").encode())
    return False

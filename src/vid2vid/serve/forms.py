"""Reading a job's form: sizes and counts checked, uploads saved under safe names, references paired with their
label files, a driving input picked."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

from vid2vid.data import DataError
from vid2vid.data.layout import MODALITIES
from vid2vid.data.video import VIDEO_EXTENSIONS
from vid2vid.errors import one_line, shown
from vid2vid.serve.jobs import (
    BUILTIN,
    LABEL_MODALITY,
    BadRequest,
    Job,
    Limits,
    ServedModel,
    Worker,
    find_dataset_root,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def safe_name(name: str, fallback: str) -> str:
    """A file name from a browser, made safe to put in a folder: its last part, odd characters replaced, a long
    one cut in its stem so that it keeps its extension."""
    name = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(name.replace("\\", "/")).name).strip(" .")
    stem, suffix = Path(name).stem, Path(name).suffix
    if len(suffix) > 12:  # not an extension: part of the name
        stem, suffix = name, ""
    return (stem[:120 - len(suffix)] + suffix if len(name) > 120 else name) or fallback


def save_upload(upload, folder: Path, fallback: str, taken: set[str]) -> Path:
    name = safe_name(upload.filename or "", fallback)
    stem, suffix, n = Path(name).stem, Path(name).suffix, 1
    while name in taken:
        name, n = f"{stem}_{n}{suffix}", n + 1
    taken.add(name)
    path = folder / name
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out)
    return path


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,5})\s*x\s*(\d{1,5})\s*", text or "")
    if not match:
        raise BadRequest(f"size must be HxW, got {shown(text)}")
    return int(match[1]), int(match[2])


def parse_count(text: str, what: str, low: int, high: int) -> int:
    if not isinstance(text, str) or not re.fullmatch(r"\s*[+-]?\d{1,18}\s*", text):
        raise BadRequest(f"{what} must be a whole number from {low} to {high}, got {shown(text)}")
    value = int(text)
    if not low <= value <= high:
        raise BadRequest(f"{what} must be between {low} and {high}, got {value}")
    return value


def read_job_form(form, worker: Worker) -> Job:
    """The fields: model (a name of info's models; default the first), size (HxW, one of its sizes), frames (at
    most max_frames), finetune (steps of fine-tuning on the references first, few-shot; at most max_finetune_steps);
    references: uploaded images (with label files named like them, optional) or identity (a built-in index)
    and k; driving: one file (a video or a .zip of a prepared folder), files with relative paths (a prepared
    folder, picked in the browser), or motion (a built-in index)."""
    limits = worker.limits
    served = worker.served(form.get("model"))
    sizes = served.sizes(limits)
    size = parse_size(form.get("size") or "x".join(map(str, served.data.size)))
    if size not in sizes:
        raise BadRequest(f"size {size[0]}x{size[1]} is not offered here "
                         f"(choose {', '.join(f'{h}x{w}' for h, w in sizes)})")
    frames = parse_count(form.get("frames") or str(min(32, limits.max_frames)), "frames", 1, limits.max_frames)
    job_id = uuid.uuid4().hex[:12]
    folder = worker.work_dir / "jobs" / job_id
    job = Job(job_id, folder, served.name, served.few_shot, size, frames)
    if form.get("finetune"):
        if not served.few_shot:
            raise BadRequest("this is a vid2vid model: fine-tuning on references is for few-shot models")
        job.finetune = parse_count(form.get("finetune"), "fine-tuning steps", 0, limits.max_finetune_steps)
    job.uploads.mkdir(parents=True)
    labelled = [f"uploads/labelled_references/{MODALITIES[m].folder}/references/"
                for m in ("images", LABEL_MODALITY.get(served.data.task)) if m]
    for folder_name in ("uploads/references/", "uploads/driving/", *labelled, "uploads/", ""):
        job.names[f"{folder}/{folder_name}"] = ""
    job.names[str(served.builtin.root) + "/"] = "built-in data: "
    try:
        _read_references(form, served, limits, job)
        _read_driving(form, job)
    except (DataError, OSError) as exc:  # OSError: a folder upload with a file and a folder of one name, say
        shutil.rmtree(folder, ignore_errors=True)
        raise BadRequest(job.readable(one_line(exc))) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return job


def _uploads(form, key: str) -> list:
    return [f for f in form.getlist(key) if hasattr(f, "filename") and f.filename]


def _read_references(form, served: ServedModel, limits: Limits, job: Job) -> None:
    uploads = _uploads(form, "references")
    if not served.few_shot:
        if uploads or form.get("identity"):
            raise BadRequest("this is a vid2vid model: it takes no reference images")
        return
    if not uploads:
        if not form.get("identity"):
            raise BadRequest("a few-shot model needs reference images: upload some or pick a built-in identity")
        index = parse_count(form.get("identity"), "identity", BUILTIN[0], BUILTIN[-1])
        job.identity = (index, parse_count(form.get("k") or "1", "K", 1, limits.max_references))
        return
    folder = job.uploads / "references"
    folder.mkdir()
    taken: set[str] = set()
    paths = [save_upload(u, folder, f"reference_{i}", taken) for i, u in enumerate(uploads)]
    images = [p for p in paths if p.suffix.lower() in IMAGE_EXTENSIONS]
    labels = {p.stem: p for p in paths if p.suffix.lower() == ".json"}
    for path in paths:
        if path not in images and path.suffix.lower() != ".json":
            raise BadRequest(f"{path.name}: not an image ({', '.join(IMAGE_EXTENSIONS)}) or a label file (.json)")
    if not images:
        raise BadRequest("the references hold no image (.png, .jpg)")
    if len(images) > limits.max_references:
        raise BadRequest(f"{len(images)} reference images; this server takes at most {limits.max_references}")
    modality = LABEL_MODALITY.get(served.data.task)
    for stem in labels:
        if stem not in {p.stem for p in images}:
            raise BadRequest(f"{labels[stem].name}: a label file with no image of the same name")
    job.references = [_with_labels(image, labels.get(image.stem), modality, job.uploads) for image in images]


def _with_labels(image: Path, label: Path | None, modality: str | None, uploads: Path) -> Path:
    """An image with its label file goes into a one-frame dataset folder (ROOT/images/SEQ/FRAME) so that its
    labels are read rather than detected."""
    if label is None or modality is None:
        return image
    root = uploads / "labelled_references"
    frame = image.stem
    image_dir = root / MODALITIES["images"].folder / "references"
    label_dir = root / MODALITIES[modality].folder / "references"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(image, image_dir / image.name)
    shutil.move(label, label_dir / f"{frame}.json")
    return image_dir / image.name


def _read_driving(form, job: Job) -> None:
    files = _uploads(form, "driving")
    folder_files = _uploads(form, "driving_folder")
    if len(files) + bool(folder_files) + bool(form.get("motion")) != 1:
        raise BadRequest("give one driving input: a video, a .zip of a prepared folder, a folder, or a built-in motion")
    if form.get("motion"):
        job.motion = parse_count(form.get("motion"), "motion", BUILTIN[0], BUILTIN[-1])
        return
    folder = job.uploads / "driving"
    folder.mkdir()
    if folder_files:
        job.driving = _save_folder(folder_files, folder)
        return
    path = save_upload(files[0], folder, "driving", set())
    suffix = path.suffix.lower()
    if suffix == ".zip":
        job.driving = path  # unpacked by the worker
        job.names[f"{path}.contents"] = path.name
    elif suffix in VIDEO_EXTENSIONS:
        job.driving = path  # street models: a colour-coded label video
    else:
        raise BadRequest(f"{path.name}: not a video ({', '.join(VIDEO_EXTENSIONS)}) or a .zip of a prepared folder")


def _save_folder(uploads: list, folder: Path) -> Path:
    """Files picked as a folder in the browser, each named by its path inside it; rebuilt under folder."""
    for upload in uploads:
        parts = [safe_name(p, "_") for p in upload.filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or ".." in upload.filename.split("/"):
            raise BadRequest(f"{upload.filename}: not a path inside the folder")
        path = folder.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out)
    top = [p for p in folder.iterdir()]
    return find_dataset_root(folder, top[0].name if len(top) == 1 else "the driving folder")

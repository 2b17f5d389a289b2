"""`vid2vid serve`: a local web page to try a checkpoint: references and a driving input in, a video out.

The page (vid2vid/web/) talks to a small JSON API:

    GET  /api/info              the model, its sizes, the limits, the built-in identities and motions
    POST /api/jobs              a multipart form (see `read_job_form`); answers 202 with the job's id
    GET  /api/jobs/ID           state (queued, running, done, failed, cancelled), queue position, frames done
    POST /api/jobs/ID/cancel    drop a queued job, or stop a running one at its next frame or fine-tuning step
    GET  /api/jobs/ID/FILE      result.mp4, labels.mp4 (the driving labels), reference_N.png
    GET  /api/builtin/N.png     a picture of built-in identity N

One worker thread renders the jobs one after another with the model loaded once (`vid2vid.generate`);
the others wait in a queue whose length is limited. Each job's uploads live in its own folder and are
removed when it ends; its results are kept for the last few jobs. Bad input fails the job with a one-line
message naming the uploaded file; the server goes on to the next job.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import av
import torch

from vid2vid.checkpoint import model_folder, read_model_info
from vid2vid.data import DataError
from vid2vid.data.detector import MissingExtra
from vid2vid.data.layout import MODALITIES, TASKS
from vid2vid.data.video import VIDEO_EXTENSIONS, PixelLimit, pixel_limit, read_image, write_image
from vid2vid.data.writer import write_synthetic
from vid2vid.device import pick_device
from vid2vid.errors import one_line, shown
from vid2vid.generate import data_config_for, generate, load_for_inference
from vid2vid.step import is_few_shot, size_multiple, unwrap

log = logging.getLogger("vid2vid.serve")

WEB = Path(__file__).parent / "web"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SYNTHETIC_KIND = {"pose": "dancers", "face": "faces", "street": "street"}
LABEL_MODALITY = {"pose": "openpose", "face": "dlib68"}  # the label file a reference image may come with
# Built-in identities and motions: indices no built-in training recipe reaches (the demo trains 0..199).
BUILTIN = tuple(range(1000, 1006))
BUILTIN_FRAMES = 12  # frames synthesized per built-in identity, to take references from
KEPT_RESULTS = 16  # finished jobs whose videos stay downloadable
MAX_ZIP_FILES = 100_000


@dataclass
class Limits:
    max_upload_mb: float = 200.0  # one request, all files together
    max_frames: int = 300  # frames rendered per job; longer driving videos are cut
    max_resolution: int = 1024  # longest side of the output
    max_input_resolution: int = 4096  # longest side of an uploaded image or video
    max_references: int = 8
    max_queue: int = 8  # jobs waiting, besides the one rendering
    max_finetune_steps: int = 300  # fine-tuning steps a job may ask for (a step costs about a frame's training)


class BadRequest(Exception):
    """A form that cannot make a job: answered at once with its message."""


class QueueFull(BadRequest):
    pass


class ServerStopping(Exception):
    pass


class JobCancelled(Exception):
    pass


@dataclass
class Job:
    id: str
    folder: Path  # uploads/ (removed when the job ends) and the results
    few_shot: bool
    size: tuple[int, int]
    frames: int
    references: list[Path] = field(default_factory=list)
    identity: tuple[int, int] | None = None  # (built-in index, K) instead of uploaded references
    driving: Path | None = None
    motion: int | None = None  # a built-in index instead of an uploaded driving input
    finetune: int = 0  # steps of fine-tuning on the references before rendering
    phase: str = "render"  # while running: "finetune", then "render"
    names: dict[str, str] = field(default_factory=dict)  # paths in messages -> what the user calls them
    state: str = "queued"  # then running, and done, failed or cancelled
    cancel: bool = False  # asked to stop: a running job stops at its next frame or fine-tuning step
    done: int = 0
    total: int = 0
    started: float = 0.0
    seconds: float = 0.0
    message: str = ""

    @property
    def uploads(self) -> Path:
        return self.folder / "uploads"

    def status(self, position: int | None) -> dict:
        status = {"id": self.id, "state": self.state, "phase": self.phase, "done": self.done, "total": self.total,
                  "fps": self.done / self.seconds if self.seconds > 0 else 0.0, "message": self.message,
                  "size": list(self.size), "finetune": self.finetune,
                  "cancelling": self.cancel and self.state == "running"}
        if position is not None:
            status["ahead"] = position
        if self.state == "done":
            files = f"/api/jobs/{self.id}"
            status["result"] = f"{files}/result.mp4"
            status["labels"] = f"{files}/labels.mp4"
            status["references"] = [f"{files}/{p.name}" for p in sorted(self.folder.glob("reference_*.png"))]
        return status

    def readable(self, text: str) -> str:
        for path, name in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(path, name)
        return text


class Worker:
    """Renders jobs one at a time, in the order they came, with one loaded model."""

    def __init__(self, checkpoint: Path, work_dir: Path, limits: Limits, device: str = "auto",
                 precision: str = "auto", compile_model: bool = False):
        self.checkpoint, self.work_dir, self.limits = model_folder(checkpoint), work_dir, limits
        self.device, self.precision = pick_device(device), precision
        self.model = load_for_inference(self.checkpoint, self.device)
        if compile_model:  # once for the server's life: each new frame size or K compiles on its first job
            self.model = torch.compile(self.model)
        self.few_shot = is_few_shot(self.model)
        self.data = data_config_for(self.checkpoint, self.model, None)
        self.builtin = Builtin(work_dir / "builtin", self.data.task)
        self.jobs: dict[str, Job] = {}
        self.waiting: queue.Queue[Job | None] = queue.Queue()
        self.lock = threading.Lock()
        self.order: list[str] = []  # ids of queued jobs, oldest first
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vid2vid-serve-worker", daemon=True)
        self.thread.start()

    def info(self) -> dict:
        info = read_model_info(self.checkpoint)
        return {
            "model": "few-shot vid2vid" if self.few_shot else "vid2vid", "few_shot": self.few_shot,
            "checkpoint": "/".join(self.checkpoint.resolve().parts[-3:]), "task": self.data.task,
            "device": str(self.device), "compiled": self.model is not unwrap(self.model),
            "size": list(self.data.size), "sizes": [list(s) for s in self.sizes()],
            "builtin": {"identities": list(BUILTIN) if self.few_shot else [], "motions": list(BUILTIN)},
            "limits": {"max_upload_mb": self.limits.max_upload_mb, "max_frames": self.limits.max_frames,
                       "max_resolution": self.limits.max_resolution,
                       "max_references": self.limits.max_references, "max_queue": self.limits.max_queue,
                       "max_finetune_steps": self.limits.max_finetune_steps if self.few_shot else 0},
            "label_file": MODALITIES[LABEL_MODALITY[self.data.task]].description
            if self.data.task in LABEL_MODALITY else None,
            "trained_iterations": info.get("iteration"),
        }

    def sizes(self) -> list[tuple[int, int]]:
        """The output sizes offered: the trained size, halved and doubled where the model and limits allow."""
        height, width = self.data.size
        multiple = size_multiple(self.model)
        sizes = []
        for scale in (0.5, 1, 2):
            h, w = int(height * scale), int(width * scale)
            if h % multiple == 0 and w % multiple == 0 and max(h, w) <= self.limits.max_resolution:
                sizes.append((h, w))
        return sizes or [tuple(self.data.size)]

    def check_room(self) -> None:
        if len(self.order) >= self.limits.max_queue:
            raise QueueFull(f"the queue is full ({self.limits.max_queue} jobs waiting); try again later")

    def submit(self, job: Job) -> int:
        """Queue a job; the number of jobs ahead of it."""
        with self.lock:
            self.check_room()
            self.jobs[job.id] = job
            self.order.append(job.id)
            ahead = len(self.order) - 1 + any(j.state == "running" for j in self.jobs.values())
        self.waiting.put(job)
        return ahead

    def position(self, job: Job) -> int | None:
        with self.lock:
            if job.id not in self.order:
                return None
            return self.order.index(job.id) + any(j.state == "running" for j in self.jobs.values())

    def cancel(self, job: Job) -> bool:
        """Drop a queued job, or ask a running one to stop at its next frame; False when it had ended."""
        with self.lock:
            if job.state not in ("queued", "running"):
                return False
            job.cancel = True
            if job.state == "queued":  # the worker skips it when it comes out of the queue
                self.order.remove(job.id)
                shutil.rmtree(job.uploads, ignore_errors=True)
                job.message, job.state = "cancelled", "cancelled"
        return True

    def stop(self) -> None:
        """End the running job at its next frame, drop the queued ones, and wait for the worker."""
        self.stopping.set()
        self.waiting.put(None)
        self.thread.join(timeout=60)

    def _run(self) -> None:
        while (job := self.waiting.get()) is not None:
            with self.lock:
                if job.state == "cancelled":
                    continue
                self.order.remove(job.id)
                job.state = "running"
            if self.stopping.is_set():
                shutil.rmtree(job.uploads, ignore_errors=True)
                job.message, job.state = "the server stopped", "failed"
                continue
            job.started = time.perf_counter()
            state, message = "failed", ""
            try:
                self._render(job)
                state = "done"
            except JobCancelled:
                state, message = "cancelled", "cancelled"
            except (DataError, ValueError, OSError, MissingExtra, av.error.FFmpegError, ServerStopping) as exc:
                message = job.readable(one_line(exc))
            except Exception:  # a bug of ours: the page gets one line, the server log the traceback
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                message = "the server could not render this job (an internal error, logged)"
            finally:
                job.seconds = time.perf_counter() - job.started
                shutil.rmtree(job.uploads, ignore_errors=True)
                job.message, job.state = message, state  # last: a client that sees the end sees all of it
                self._forget_old()

    def _render(self, job: Job) -> None:
        # Every image and video frame the job reads, uploaded or unpacked, is checked against the input limit
        # from its header before it is decoded (vid2vid.data.video's gate), so a job's memory is bounded.
        side = self.limits.max_input_resolution
        with pixel_limit(PixelLimit(side=side, pixels=side * side, file_mb=self.limits.max_upload_mb,
                                    reader="this server")):
            self._render_within_limits(job)

    def _render_within_limits(self, job: Job) -> None:
        # Built-in data is synthesized here rather than in the request: it can take seconds at large sizes.
        if job.identity is not None:
            job.references = self.builtin.references(*job.identity, job.size)
        if job.motion is not None:
            job.driving = self.builtin.sequence(job.motion, job.frames, job.size)
        if job.driving.suffix.lower() == ".zip":
            job.driving = extract_dataset_zip(job.driving, int(4 * self.limits.max_upload_mb * 2**20))
        if job.driving.is_dir():
            check_label_type(job.driving, self.data.task)
        references = job.references
        for i, path in enumerate(references):
            write_image(job.folder / f"reference_{i}.png", read_image(path))

        def progress(phase: str):
            def report(done: int, total: int) -> None:
                if phase == "render" and job.phase != "render":  # the clock of frames/s starts with the frames
                    job.started = time.perf_counter()
                job.phase, job.done, job.total = phase, done, total
                job.seconds = time.perf_counter() - job.started
                if self.stopping.is_set():
                    raise ServerStopping("the server stopped")
                if job.cancel:
                    raise JobCancelled()
            return report

        if job.finetune:
            job.phase = "finetune"
        generate(self.checkpoint, job.driving, job.folder / "result.mp4", references, size=job.size,
                 max_frames=job.frames, device=str(self.device), precision=self.precision, progress=False,
                 model=self.model, labels_output=job.folder / "labels.mp4", on_frame=progress("render"),
                 finetune_steps=job.finetune, on_finetune=progress("finetune"))

    def _forget_old(self) -> None:
        with self.lock:
            ended = [j for j in self.jobs.values() if j.state in ("done", "failed", "cancelled")]
            for job in ended[:-KEPT_RESULTS]:
                shutil.rmtree(job.folder, ignore_errors=True)
                del self.jobs[job.id]


class Builtin:
    """The built-in synthetic identities and motions, synthesized at the size asked the first time they are
    used and kept for the server's life."""

    def __init__(self, root: Path, task: str):
        self.root, self.kind = root, SYNTHETIC_KIND[task]
        self.lock = threading.Lock()
        self.made: dict[tuple[int, tuple[int, int]], list[tuple[int, Path]]] = {}  # -> (frames, folder)

    def sequence(self, index: int, frames: int, size: tuple[int, int]) -> Path:
        """A dataset folder with the one sequence of identity `index` doing its own motion, at least `frames`
        long (frame t does not depend on the length, so a longer one serves shorter requests too). A longer
        request makes a new folder beside the old ones, which may be in use by a job or a thumbnail."""
        if index not in BUILTIN:
            raise BadRequest(f"no built-in sequence {index} (there are {BUILTIN[0]}..{BUILTIN[-1]})")
        with self.lock:
            made = self.made.setdefault((index, size), [])
            for length, folder in made:
                if length >= frames:
                    return folder
            length = max(frames, BUILTIN_FRAMES)
            folder = self.root / f"{self.kind}{index}_{size[0]}x{size[1]}_{length}"
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".new."))
            try:
                write_synthetic(self.kind, tmp / "data", sequences=1, frames=length, size=size, first_index=index,
                                progress=False)
                (tmp / "data").rename(folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            made.append((length, folder))
        return folder

    def references(self, index: int, k: int, size: tuple[int, int]) -> list[Path]:
        """k frames of identity `index`, spread over its sequence."""
        root = self.sequence(index, BUILTIN_FRAMES, size)
        frames = sorted((root / MODALITIES["images"].folder).glob("*/*"))[:BUILTIN_FRAMES]
        step = max(1, len(frames) // k)
        return frames[::step][:k]

    def picture(self, index: int, size: tuple[int, int]) -> Path:
        return self.references(index, 1, size)[0]


def check_label_type(root: Path, task: str) -> None:
    """A prepared folder with another task's labels (street maps for a pose model, say) is named as such."""
    required = [MODALITIES[m] for m in TASKS[task].required]
    if any((root / m.folder).is_dir() for m in required):
        return
    others = sorted({t for t, spec in TASKS.items() for m in spec.required if (root / MODALITIES[m].folder).is_dir()})
    has = f"has {' and '.join(others)} labels" if others else "has no labels"
    raise DataError(f"{root}: {has}, and this model takes {task} labels "
                    f"({', '.join(f'{m.folder}/' for m in required)})")


# --------------------------------------------------------------------------------------------------------------
# Reading the form


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


def extract_dataset_zip(path: Path, limit_bytes: int) -> Path:
    """A .zip of a prepared dataset folder, extracted beside it; the folder that holds images/."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise DataError(f"{path}: not a readable .zip file") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_FILES:
            raise DataError(f"{path}: holds more than {MAX_ZIP_FILES} files")
        if sum(m.file_size for m in members) > limit_bytes:
            raise DataError(f"{path}: unpacks to more than {limit_bytes // 2**20} MB")
        for member in members:
            parts = Path(member.filename).parts
            if member.filename.startswith("/") or ".." in parts or (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(f"{path}: holds a path outside the archive ({member.filename})")
        target = path.with_name(path.name + ".contents")
        try:
            archive.extractall(target)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error) as exc:
            # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile does not know
            raise DataError(f"{path}: cannot be unpacked ({one_line(exc)})") from None
    return find_dataset_root(target, path.name)


def find_dataset_root(folder: Path, what: str) -> Path:
    images = MODALITIES["images"].folder
    if (folder / images).is_dir():
        return folder
    inner = [p for p in folder.iterdir() if p.is_dir() and (p / images).is_dir()]
    if len(inner) == 1:
        return inner[0]
    raise DataError(f"{what}: not a prepared dataset folder (no {images}/ folder in it; see `vid2vid prepare`)")


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
    """The fields: size (HxW, one of info's sizes), frames (at most max_frames), finetune (steps of fine-tuning on
    the references first, few-shot; at most max_finetune_steps);
    references: uploaded images (with label files named like them, optional) or identity (a built-in index)
    and k; driving: one file (a video or a .zip of a prepared folder), files with relative paths (a prepared
    folder, picked in the browser), or motion (a built-in index)."""
    limits = worker.limits
    size = parse_size(form.get("size") or "x".join(map(str, worker.data.size)))
    if size not in worker.sizes():
        raise BadRequest(f"size {size[0]}x{size[1]} is not offered here "
                         f"(choose {', '.join(f'{h}x{w}' for h, w in worker.sizes())})")
    frames = parse_count(form.get("frames") or str(min(32, limits.max_frames)), "frames", 1, limits.max_frames)
    job_id = uuid.uuid4().hex[:12]
    folder = worker.work_dir / "jobs" / job_id
    job = Job(job_id, folder, worker.few_shot, size, frames)
    if form.get("finetune"):
        if not worker.few_shot:
            raise BadRequest("this is a vid2vid model: fine-tuning on references is for few-shot models")
        job.finetune = parse_count(form.get("finetune"), "fine-tuning steps", 0, limits.max_finetune_steps)
    job.uploads.mkdir(parents=True)
    labelled = [f"uploads/labelled_references/{MODALITIES[m].folder}/references/"
                for m in ("images", LABEL_MODALITY.get(worker.data.task)) if m]
    for folder_name in ("uploads/references/", "uploads/driving/", *labelled, "uploads/", ""):
        job.names[f"{folder}/{folder_name}"] = ""
    job.names[str(worker.builtin.root) + "/"] = "built-in data: "
    try:
        _read_references(form, worker, job)
        _read_driving(form, worker, job)
    except (DataError, OSError) as exc:  # OSError: a folder upload with a file and a folder of one name, say
        shutil.rmtree(folder, ignore_errors=True)
        raise BadRequest(job.readable(one_line(exc))) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return job


def _uploads(form, key: str) -> list:
    return [f for f in form.getlist(key) if hasattr(f, "filename") and f.filename]


def _read_references(form, worker: Worker, job: Job) -> None:
    uploads = _uploads(form, "references")
    if not worker.few_shot:
        if uploads or form.get("identity"):
            raise BadRequest("this is a vid2vid model: it takes no reference images")
        return
    limits = worker.limits
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
    modality = LABEL_MODALITY.get(worker.data.task)
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


def _read_driving(form, worker: Worker, job: Job) -> None:
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


# --------------------------------------------------------------------------------------------------------------
# The web application


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def make_app(worker: Worker, allowed_hosts: list[str] | None = None):
    """allowed_hosts: the Host names requests may carry (a page of another site whose name was made to resolve
    to this machine carries its own name); None takes any."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    max_bytes = int(worker.limits.max_upload_mb * 2**20)

    async def index(request):
        return FileResponse(WEB / "index.html")

    async def info(request):
        return JSONResponse(worker.info())

    def builtin_picture(request):  # synthesizes on first use: a plain function, run in a thread
        index = request.path_params["index"]
        try:
            path = worker.builtin.picture(index, tuple(worker.data.size))
        except BadRequest as exc:
            raise HTTPException(404, str(exc)) from None
        return FileResponse(path)

    async def submit(request):
        length = request.headers.get("content-length", "0")
        if length.isdigit() and int(length) > max_bytes:
            return too_large()
        if not same_origin(request):
            return JSONResponse({"error": f"jobs are only taken from this page, not from "
                                          f"{shown(request.headers.get('origin'))}"}, status_code=403)
        try:
            worker.check_room()  # before taking the upload in
            async with request.form(max_files=4096, max_fields=64) as form:
                job = await run_in_threadpool(read_job_form, form, worker)  # file copies: off the event loop
            try:
                ahead = worker.submit(job)
            except QueueFull:  # filled up while this upload came in
                shutil.rmtree(job.folder, ignore_errors=True)
                raise
        except UploadTooLarge:
            return too_large()
        except QueueFull as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except HTTPException as exc:  # a form the multipart parser refuses
            return JSONResponse({"error": f"the upload could not be read: {exc.detail}"}, status_code=400)
        except ClientDisconnect:
            return JSONResponse({"error": "the upload was broken off"}, status_code=400)
        return JSONResponse({**job.status(ahead)}, status_code=202)

    async def status(request):
        job = worker.jobs.get(request.path_params["job"])
        if job is None:
            return JSONResponse({"error": "no such job (results are kept for the last few jobs)"}, status_code=404)
        return JSONResponse(job.status(worker.position(job)))

    async def job_file(request):
        job = worker.jobs.get(request.path_params["job"])
        name = request.path_params["name"]
        known = re.fullmatch(r"(result|labels)\.mp4|reference_\d{1,3}\.png", name)
        if job is None or job.state != "done" or not known or not (job.folder / name).is_file():
            return JSONResponse({"error": "no such file"}, status_code=404)
        return FileResponse(job.folder / name)

    async def cancel(request):
        if not same_origin(request):
            return JSONResponse({"error": "jobs are only cancelled from this page"}, status_code=403)
        job = worker.jobs.get(request.path_params["job"])
        if job is None:
            return JSONResponse({"error": "no such job (results are kept for the last few jobs)"}, status_code=404)
        if not worker.cancel(job):
            return JSONResponse({"error": f"the job has ended ({job.state})", **job.status(None)}, status_code=409)
        return JSONResponse(job.status(worker.position(job)))

    def same_origin(request) -> bool:
        """False for another site's page posting here through the user's browser."""
        origin = request.headers.get("origin")
        return not origin or urlsplit(origin).netloc == request.headers.get("host")

    def too_large():
        return JSONResponse({"error": f"the upload is larger than this server takes "
                                      f"({worker.limits.max_upload_mb:g} MB)"}, status_code=413)

    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    app = Starlette(middleware=middleware, routes=[
        Route("/", index),
        Route("/api/info", info),
        Route("/api/builtin/{index:int}.png", builtin_picture),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job}", status),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/jobs/{job}/{name}", job_file),
        Mount("/static", StaticFiles(directory=WEB), name="static"),
    ])
    return BodyLimit(app, max_bytes)


class UploadTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies past the limit while they stream in (a chunked upload has no length to check
    up front)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise UploadTooLarge()
            return message

        await self.app(scope, limited, send)


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          device: str = "auto", precision: str = "auto", compile_model: bool = False) -> None:
    """Run the web app until interrupted; its working folder is removed at the end."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtra("vid2vid serve needs the web extra: pip install 'vid2vid[web]'") from None
    checkpoint = Path(checkpoint)
    with tempfile.TemporaryDirectory(prefix="vid2vid-serve-", ignore_cleanup_errors=True) as work_dir:
        worker = Worker(checkpoint, Path(work_dir), limits or Limits(), device, precision, compile_model)
        print(f"vid2vid serve: {worker.info()['model']} from {checkpoint} on {worker.device}; "
              f"open http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        # uvicorn shuts down gracefully on SIGTERM, then raises it again for the handler it found; the default
        # one would end the process on the spot and leave the working folder behind.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        try:
            hosts = LOOPBACK_NAMES if host in LOOPBACK_NAMES else None
            uvicorn.run(make_app(worker, hosts), host=host, port=port, log_level="warning")
        finally:
            signal.signal(signal.SIGTERM, previous)
            worker.stop()

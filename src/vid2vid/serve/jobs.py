"""The jobs of `vid2vid serve`: one worker thread renders them one after another with the model loaded once, and
the built-in identities and motions they may name."""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
import time
import traceback
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import av
import torch

from vid2vid.checkpoint import model_folder, read_model_info
from vid2vid.data import DataError
from vid2vid.data.datasets import DataConfig
from vid2vid.data.detector import MissingExtra
from vid2vid.data.layout import MODALITIES, TASKS
from vid2vid.data.video import PixelLimit, pixel_limit, read_image, write_image
from vid2vid.data.writer import write_synthetic
from vid2vid.device import pick_device
from vid2vid.errors import one_line, shown
from vid2vid.generate import data_config_for, generate, load_for_inference
from vid2vid.live import LIVE_TASKS
from vid2vid.step import feeds_back, is_few_shot, size_multiple, unwrap

log = logging.getLogger("vid2vid.serve")

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
    max_live: int = 2  # live sessions (browser tabs with the camera on) at once
    max_live_frame_kb: int = 2048  # one camera frame sent by a live page


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
    model: str  # the name of the model it renders with (Worker.models)
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


@dataclass
class ServedModel:
    """One model the server renders with, loaded once, and the built-in data of its task."""

    name: str
    checkpoint: Path
    model: torch.nn.Module
    data: DataConfig  # how its labels are made: as trained
    builtin: Builtin

    @property
    def few_shot(self) -> bool:
        return is_few_shot(self.model)

    @property
    def feedback(self) -> bool:
        """Whether each output is fed back as the previous frame (step.feeds_back: not for few-shot face models)."""
        return feeds_back(self.model, self.data.task)

    def sizes(self, limits: Limits) -> list[tuple[int, int]]:
        """The output sizes offered: the trained size, halved and doubled where the model and limits allow."""
        height, width = self.data.size
        multiple = size_multiple(self.model)
        sizes = []
        for scale in (0.5, 1, 2):
            h, w = int(height * scale), int(width * scale)
            if h % multiple == 0 and w % multiple == 0 and max(h, w) <= limits.max_resolution:
                sizes.append((h, w))
        return sizes or [tuple(self.data.size)]


def model_names(folders: list[Path]) -> list[str]:
    """A name per checkpoint folder for the page: the folder's name, or its run's for a run's checkpoint
    (RUN/checkpoints/N), made unique."""
    names: list[str] = []
    for folder in folders:
        folder = folder.resolve()
        base = folder.parent.parent.name if folder.parent.name == "checkpoints" else folder.name
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


class Worker:
    """Renders jobs one at a time, in the order they came, with its models loaded once (the first is the page's
    default)."""

    def __init__(self, checkpoints: Path | list[Path], work_dir: Path, limits: Limits, device: str = "auto",
                 precision: str = "auto", compile_model: bool = False):
        checkpoints = [Path(checkpoints)] if isinstance(checkpoints, (str, Path)) else [Path(c) for c in checkpoints]
        if not checkpoints:
            raise ValueError("vid2vid serve needs at least one checkpoint")
        self.work_dir, self.limits = work_dir, limits
        self.device, self.precision = pick_device(device), precision
        self.models: dict[str, ServedModel] = {}
        folders = [model_folder(c) for c in checkpoints]
        for name, folder in zip(model_names(folders), folders, strict=True):
            model = load_for_inference(folder, self.device)
            if compile_model:  # once for the server's life: each new frame size or K compiles on its first job
                model = torch.compile(model)
            data = data_config_for(folder, model, None)
            builtin = Builtin(work_dir / "builtin" / name, data.task)
            self.models[name] = ServedModel(name, folder, model, data, builtin)
        self.default = next(iter(self.models))
        self.jobs: dict[str, Job] = {}
        self.waiting: queue.Queue[Job | None] = queue.Queue()
        self.lock = threading.Lock()
        self.order: list[str] = []  # ids of queued jobs, oldest first
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vid2vid-serve-worker", daemon=True)
        self.thread.start()

    def served(self, name: str | None = None) -> ServedModel:
        """The model of this name (None: the default); BadRequest for a name the server does not have."""
        if not name:
            return self.models[self.default]
        if name not in self.models:
            raise BadRequest(f"no model {shown(name)} here (there are {', '.join(self.models)})")
        return self.models[name]

    def info(self, name: str | None = None) -> dict:
        served = self.served(name)
        info = read_model_info(served.checkpoint)
        few_shot, task = served.few_shot, served.data.task
        return {
            "name": served.name, "models": [{"name": m.name, "task": m.data.task, "few_shot": m.few_shot}
                                            for m in self.models.values()],
            "model": "few-shot vid2vid" if few_shot else "vid2vid", "few_shot": few_shot,
            "checkpoint": "/".join(served.checkpoint.resolve().parts[-3:]), "task": task,
            "device": str(self.device), "compiled": served.model is not unwrap(served.model),
            "size": list(served.data.size), "sizes": [list(s) for s in served.sizes(self.limits)],
            "builtin": {"identities": list(BUILTIN) if few_shot else [], "motions": list(BUILTIN)},
            "limits": {"max_upload_mb": self.limits.max_upload_mb, "max_frames": self.limits.max_frames,
                       "max_resolution": self.limits.max_resolution,
                       "max_references": self.limits.max_references, "max_queue": self.limits.max_queue,
                       "max_finetune_steps": self.limits.max_finetune_steps if few_shot else 0,
                       "max_live": self.limits.max_live},
            "live": task in LIVE_TASKS and self.limits.max_live > 0,
            "label_file": MODALITIES[LABEL_MODALITY[task]].description if task in LABEL_MODALITY else None,
            "trained_iterations": info.get("iteration"),
        }

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
        served = self.served(job.model)
        # Built-in data is synthesized here rather than in the request: it can take seconds at large sizes.
        if job.identity is not None:
            job.references = served.builtin.references(*job.identity, job.size)
        if job.motion is not None:
            job.driving = served.builtin.sequence(job.motion, job.frames, job.size)
        if job.driving.suffix.lower() == ".zip":
            job.driving = extract_dataset_zip(job.driving, int(4 * self.limits.max_upload_mb * 2**20))
        if job.driving.is_dir():
            check_label_type(job.driving, served.data.task)
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
        generate(served.checkpoint, job.driving, job.folder / "result.mp4", references, size=job.size,
                 max_frames=job.frames, device=str(self.device), precision=self.precision, progress=False,
                 model=served.model, labels_output=job.folder / "labels.mp4", on_frame=progress("render"),
                 finetune_steps=job.finetune, on_finetune=progress("finetune"), feedback=served.feedback)

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

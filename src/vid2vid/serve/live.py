"""Live mode in `vid2vid serve`: a browser's camera drives the model over a WebSocket, /api/live, one per tab.

    page -> server  text    {"identity": N, "k": K} (a built-in identity) or {"upload": true} then the photo as
                            one binary message; "finetune": steps (optional, few-shot). A vid2vid model takes {}.
    server -> page  text    {"type": "progress", "phase": "references" | "finetune", "done", "total"}
                    text    {"type": "ready", "size": [H, W]}
    page -> server  binary  a camera frame: its number and the count of "frame" messages the page has had so far
                            (4 bytes each, little-endian), then a JPEG or PNG
    server -> page  text    {"type": "frame", "seq", "person", "result", "server_ms", "label_ms", "generate_ms",
                            "fps", "dropped"}, then (where "result") the result as a JPEG, binary
                    text    {"type": "error", "message"}, and the socket closes

Latency stays bounded: frames are read as they come and only the newest waits; one the renderer had no time
for is dropped (counted in "dropped"), never queued. Nor do results queue on their way to a page slower than
the server: a frame that comes while the page is MAX_UNSEEN results behind is dropped too. The page sends a
frame when one has come back, at most two out at once, so frames do not pile up in the network. Each tab has
its own state (a copy of the model, the references, the outputs fed back, the landmark tracker, a thread); at
most Limits.max_live tabs at once, the next is told the server is busy. Closing the tab ends its session and
frees all of it.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import json
import logging
import shutil
import struct
import threading
import time
import traceback
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vid2vid.data import DataError
from vid2vid.data.detector import MissingExtra
from vid2vid.errors import one_line
from vid2vid.generate import inference_precision
from vid2vid.live import (
    LIVE_TASKS,
    LiveFrame,
    LivePipeline,
    LiveRenderer,
    check_live_task,
    for_stream,
    live_references,
)
from vid2vid.serve.jobs import BUILTIN, BadRequest, ServedModel, Worker

log = logging.getLogger("vid2vid.serve")

BUSY = 1013  # WebSocket close code: try again later
FRAME_HEADER = struct.Struct("<II")  # frame number, results the page has had
MAX_UNSEEN = 2  # results sent that the page has not had yet, past which its frames are dropped


class LiveSessions:
    """The count of live sessions at once, under a limit."""

    def __init__(self, limit: int):
        self.limit, self.open = limit, 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.open -= 1


class Closed(Exception):
    """The page went away while its session was being set up."""


def decode_frame(data: bytes, max_side: int) -> np.ndarray:
    """A camera frame's image (JPEG or PNG) as RGB uint8, its size checked from the header before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) > max_side:
                raise BadRequest(f"a camera frame of {image.size[0]}x{image.size[1]} is larger than this server "
                                 f"takes ({max_side} px a side)")
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadRequest(f"a camera frame is not a readable JPEG or PNG ({one_line(exc)})") from None


def encode_jpeg(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=92)
    return out.getvalue()


class Session:
    """One tab's live session: set up from its first message, then frames in, results out."""

    def __init__(self, worker: Worker, websocket):
        self.worker, self.websocket = worker, websocket
        self.folder = worker.work_dir / "live" / uuid.uuid4().hex[:12]
        self.served: ServedModel | None = None  # the model the first message names
        self.renderer: LiveRenderer | None = None
        self.closed = threading.Event()  # the page went away: a fine-tuning in progress stops at its next step
        self.pipeline: LivePipeline | None = None
        self.results: asyncio.Queue = asyncio.Queue()  # (tag, LiveFrame, JPEG) from the pipeline; None at its end
        self.sent = 0  # "frame" messages sent
        self.held_back = 0  # frames dropped because the page was behind
        self.done_times: deque[float] = deque(maxlen=30)  # when the last results were sent: frames/s
        # The set-up (references labelled, fine-tuning, the model copied) in a thread of the session's own, which
        # ends with it; the frames then go through the pipeline's two threads (the detector is made on its own).
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="vid2vid-live")

    async def in_thread(self, call, *args):
        return await asyncio.get_running_loop().run_in_executor(self.thread, call, *args)

    async def run(self) -> None:
        try:
            await self.start()
            loop = asyncio.get_running_loop()

            def post(item) -> None:  # from the pipeline's frame-step thread
                loop.call_soon_threadsafe(self.results.put_nowait, item)

            self.pipeline = LivePipeline(self.renderer, lambda tag, frame, at: post((tag, frame, encode(frame))),
                                         on_end=lambda: post(None))
            reader = asyncio.create_task(self.read_frames())
            try:
                await self.send_results(reader)
            finally:
                reader.cancel()
        finally:
            self.closed.set()
            if self.pipeline is not None:
                await asyncio.to_thread(self.pipeline.close)  # closes the renderer's detector on its thread
            elif self.renderer is not None:
                await self.in_thread(self.renderer.close)
            self.thread.shutdown(wait=False)
            shutil.rmtree(self.folder, ignore_errors=True)
            await asyncio.to_thread(give_memory_back)

    async def start(self) -> None:
        """The first message: which references, fine-tuned or not; the renderer made off the event loop."""
        worker, limits = self.worker, self.worker.limits
        message = await self.websocket.receive()
        self.check_open(message)
        try:
            request = json.loads(message.get("text") or "")
        except ValueError:
            raise BadRequest("the first message must be JSON saying which references to render") from None
        if not isinstance(request, dict):
            raise BadRequest("the first message must be a JSON object")
        model = request.get("model")
        if model is not None and not isinstance(model, str):
            raise BadRequest("model must be the name of one of the server's models")
        self.served = served = worker.served(model)
        check_live_task(served.data.task)
        steps = request.get("finetune") or 0
        if not isinstance(steps, int) or not 0 <= steps <= limits.max_finetune_steps or (steps and not served.few_shot):
            raise BadRequest(f"finetune must be a whole number of steps from 0 to {limits.max_finetune_steps}"
                             + ("" if served.few_shot else " (0: this is a vid2vid model)"))
        self.folder.mkdir(parents=True)
        references: list[Path] = []
        if served.few_shot:
            if request.get("upload"):
                photo = await self.websocket.receive()
                self.check_open(photo)
                data = photo.get("bytes")
                if not data:
                    raise BadRequest("the reference photo did not come (send it as one binary message)")
                if len(data) > limits.max_upload_mb * 2**20:
                    raise BadRequest(f"the reference photo is larger than this server takes "
                                     f"({limits.max_upload_mb:g} MB)")
                image = decode_frame(data, limits.max_input_resolution)
                references = [self.folder / "reference.png"]
                Image.fromarray(image).save(references[0])
            else:
                index, k = request.get("identity"), request.get("k", 1)
                if index not in BUILTIN or not isinstance(k, int) or not 1 <= k <= limits.max_references:
                    raise BadRequest(f"identity must be one of {BUILTIN[0]}..{BUILTIN[-1]} and k from 1 to "
                                     f"{limits.max_references}, or upload a photo")
                references = await asyncio.to_thread(served.builtin.references, index, k, tuple(served.data.size))
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int) -> None:
            if self.closed.is_set():
                raise Closed()
            note = {"type": "progress", "phase": "finetune", "done": done, "total": total}
            loop.call_soon_threadsafe(asyncio.ensure_future, self.websocket.send_json(note))

        await self.websocket.send_json({"type": "progress", "phase": "references", "done": 0, "total": 1})
        self.renderer = await self.in_thread(self.make_renderer, references, steps, progress)
        await self.websocket.send_json({"type": "ready", "size": list(served.data.size), "model": served.name})

    def make_renderer(self, references: list[Path], steps: int, progress) -> LiveRenderer:
        worker, served = self.worker, self.served
        amp = inference_precision(worker.precision, served.model, worker.device)
        if not served.few_shot:
            return LiveRenderer(for_stream(served.model), served.data, None, worker.device, amp)
        try:
            model, refs = live_references(served.checkpoint, served.model, served.data, references,
                                          self.folder / "work", worker.device, finetune_steps=steps, amp_dtype=amp,
                                          on_finetune=progress)
        except DataError as exc:  # named as the page knows it, not by its path here
            raise DataError(str(exc).replace(str(self.folder / "reference.png"), "the reference photo")) from None
        return LiveRenderer(model, served.data, refs, worker.device, amp)

    def check_open(self, message: dict) -> None:
        if message["type"] == "websocket.disconnect":
            raise Closed()

    async def read_frames(self) -> None:
        """Every message as it comes, into the pipeline (where the newest waits and one not yet taken is dropped);
        a frame of a page MAX_UNSEEN results behind is held back (dropped) here."""
        limits = self.worker.limits
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise Closed()
            data = message.get("bytes")
            if data is None:
                raise BadRequest("live frames are binary messages: a frame number, then the image")
            if len(data) > limits.max_live_frame_kb * 1024:
                raise BadRequest(f"a camera frame of {len(data) // 1024} kB is larger than this server takes "
                                 f"({limits.max_live_frame_kb} kB)")
            if len(data) <= FRAME_HEADER.size:
                raise BadRequest("a live frame holds no image")
            seq, had = FRAME_HEADER.unpack_from(data)
            if self.sent - had >= MAX_UNSEEN:  # the page is behind: its results would queue on the way
                self.held_back += 1
                continue
            image = data[FRAME_HEADER.size:]
            self.pipeline.submit((seq, time.perf_counter()),
                                 lambda image=image: decode_frame(image, limits.max_input_resolution))

    async def send_results(self, reader: asyncio.Task) -> None:
        """Each result as the pipeline gives it, in order, with the server's timings."""
        while True:
            getter = asyncio.create_task(self.results.get())
            await asyncio.wait([getter, reader], return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():  # the page went away, or sent something wrong
                getter.cancel()
                reader.result()
                return
            item = getter.result()
            if item is None:  # the pipeline stopped
                if self.pipeline.error is not None:
                    raise self.pipeline.error
                return
            (seq, arrived), frame, jpeg = item
            now = time.perf_counter()
            self.done_times.append(now)
            span = self.done_times[-1] - self.done_times[0]
            fps = (len(self.done_times) - 1) / span if span > 0 else 0.0
            await self.websocket.send_json({
                "type": "frame", "seq": seq, "person": frame.person, "result": jpeg is not None,
                "server_ms": round(1000 * (now - arrived), 1), "label_ms": round(frame.label_ms, 1),
                "generate_ms": round(frame.generate_ms, 1), "fps": round(fps, 1),
                "dropped": self.pipeline.frames.dropped + self.held_back})
            self.sent += 1
            if jpeg is not None:
                await self.websocket.send_bytes(jpeg)


def give_memory_back() -> None:
    """Hand the heap's free pages back to the system (glibc's malloc_trim; elsewhere nothing). A session's
    detector, model copy and threads leave the heap fragmented: without it the server's resident memory grew by
    about 15 MB a session opened and closed, with it by about 5, levelling off (benchmarks/RESULTS.md, "Live")."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def encode(frame: LiveFrame) -> bytes | None:
    """A result as the JPEG the page shows (None before anyone was seen)."""
    return None if frame.result is None else encode_jpeg(frame.result)


def live_endpoint(worker: Worker, sessions: LiveSessions, same_origin):
    """The /api/live WebSocket handler."""
    from starlette.websockets import WebSocketDisconnect

    async def live(websocket):
        if not same_origin(websocket):
            await websocket.close(code=1008)  # refused before the handshake: the page gets a 403
            return
        await websocket.accept()
        try:  # at once where no model here can go live; else when the first message names one
            if not any(m.data.task in LIVE_TASKS for m in worker.models.values()):
                check_live_task(worker.served().data.task)
        except ValueError as exc:
            await fail(websocket, str(exc))
            return
        if sessions.limit == 0:
            await fail(websocket, "live mode is off on this server (it was started with --max-live 0)")
            return
        if not sessions.take():
            await fail(websocket, f"the server is busy: {sessions.limit} live session"
                                  f"{'s' if sessions.limit != 1 else ''} at once; try again later", BUSY)
            return
        try:
            await Session(worker, websocket).run()
        except (Closed, WebSocketDisconnect):
            pass
        except BadRequest as exc:
            await fail(websocket, str(exc))
        except (DataError, ValueError, OSError, MissingExtra) as exc:
            await fail(websocket, one_line(exc))
        except Exception:  # a bug of ours: the page gets one line, the server log the traceback
            log.error("live session failed:\n%s", traceback.format_exc())
            await fail(websocket, "the server could not run this live session (an internal error, logged)")
        finally:
            sessions.give_back()

    return live


async def fail(websocket, message: str, code: int = 1008) -> None:
    """Tell the page what went wrong, in one line, and close (the page may have gone already)."""
    try:
        await websocket.send_json({"type": "error", "message": message})
        await websocket.close(code=code)
    except Exception:  # noqa: BLE001 - the socket is gone; nothing left to tell
        pass

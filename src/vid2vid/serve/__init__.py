"""`vid2vid serve`: a local web page to try checkpoints: references and a driving input in, a video out.

The page (vid2vid/web/) talks to a small JSON API; a server may hold several models (the shipped dancer and face
models by default), named in `info` and picked with a `model` field or query parameter (default: the first):

    GET  /api/info?model=NAME   the model, its sizes, the limits, the built-in identities and motions, the models
    POST /api/jobs              a multipart form (see `read_job_form`); answers 202 with the job's id
    GET  /api/jobs/ID           state (queued, running, done, failed, cancelled), queue position, frames done
    POST /api/jobs/ID/cancel    drop a queued job, or stop a running one at its next frame or fine-tuning step
    GET  /api/jobs/ID/FILE      result.mp4, labels.mp4 (the driving labels), reference_N.png
    GET  /api/builtin/N.png     a picture of built-in identity N (?model=NAME: of that model's task)
    WS   /api/live              live mode: camera frames in, results out (vid2vid.serve.live)

One worker thread renders the jobs one after another with the models loaded once (`vid2vid.generate`);
the others wait in a queue whose length is limited. Each job's uploads live in its own folder and are
removed when it ends; its results are kept for the last few jobs. Bad input fails the job with a one-line
message naming the uploaded file; the server goes on to the next job. The rooms: `app` (the routes), `jobs` (the
worker, the jobs and the built-in data), `forms` (reading a job's form), `live` (the live WebSocket).
"""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path

from vid2vid.data.detector import MissingExtra
from vid2vid.serve.app import LOOPBACK_NAMES, make_app
from vid2vid.serve.forms import safe_name
from vid2vid.serve.jobs import BUILTIN, BUILTIN_FRAMES, Builtin, Limits, Worker

__all__ = ["BUILTIN", "BUILTIN_FRAMES", "LOOPBACK_NAMES", "Builtin", "Limits", "Worker", "make_app", "safe_name",
           "serve"]


def serve(checkpoints: str | Path | list[str | Path], host: str = "127.0.0.1", port: int = 8000,
          limits: Limits | None = None, device: str = "auto", precision: str = "auto",
          compile_model: bool = False) -> None:
    """Run the web app until interrupted, with one model or several (the page picks; the first is its default);
    the working folder is removed at the end."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtra("vid2vid serve needs the web extra: pip install 'vid2vid[web]'") from None
    with tempfile.TemporaryDirectory(prefix="vid2vid-serve-", ignore_cleanup_errors=True) as work_dir:
        worker = Worker(checkpoints, Path(work_dir), limits or Limits(), device, precision, compile_model)
        for served in worker.models.values():
            print(f"vid2vid serve: {served.name}: {worker.info(served.name)['model']} ({served.data.task}) from "
                  f"{served.checkpoint}", flush=True)
        print(f"vid2vid serve: on {worker.device}; open http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        # uvicorn shuts down gracefully on SIGTERM, then raises it again for the handler it found; the default
        # one would end the process on the spot and leave the working folder behind.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        try:
            hosts = LOOPBACK_NAMES if host in LOOPBACK_NAMES else None
            # A live page's reference photo comes as one WebSocket message: the socket takes what an upload may be.
            ws_max_size = int(max(worker.limits.max_upload_mb * 2**20, worker.limits.max_live_frame_kb * 1024)) + 1024
            uvicorn.run(make_app(worker, hosts), host=host, port=port, log_level="warning", ws_max_size=ws_max_size)
        finally:
            signal.signal(signal.SIGTERM, previous)
            worker.stop()

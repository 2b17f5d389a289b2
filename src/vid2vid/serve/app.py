"""The web application of `vid2vid serve`: the page, the JSON API and the live WebSocket."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from vid2vid.errors import shown
from vid2vid.serve.forms import read_job_form
from vid2vid.serve.jobs import BadRequest, QueueFull, Worker
from vid2vid.serve.live import LiveSessions, live_endpoint

WEB = Path(__file__).parents[1] / "web"


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def make_app(worker: Worker, allowed_hosts: list[str] | None = None):
    """allowed_hosts: the Host names requests may carry (a page of another site whose name was made to resolve
    to this machine carries its own name); None takes any."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    max_bytes = int(worker.limits.max_upload_mb * 2**20)

    async def index(request):
        return FileResponse(WEB / "index.html")

    async def info(request):
        try:
            return JSONResponse(worker.info(request.query_params.get("model")))
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    def builtin_picture(request):  # synthesizes on first use: a plain function, run in a thread
        index = request.path_params["index"]
        try:
            served = worker.served(request.query_params.get("model"))
            path = served.builtin.picture(index, tuple(served.data.size))
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
        """False for another site's page posting here (or opening a live socket) through the user's browser."""
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
        WebSocketRoute("/api/live", live_endpoint(worker, LiveSessions(worker.limits.max_live), same_origin)),
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

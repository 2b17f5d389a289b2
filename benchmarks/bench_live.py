"""Live mode: frames/s and latency of a camera driving the shipped dancer model, two ways.

1. In process (`vid2vid.live.run_live`): a built-in dancer's video stands in for a 30 frames/s camera; latency is
   from the moment a frame is read to its result. Baseline in the same run: detector then frame step on one
   thread, as before the two-thread pipeline. At 64x64 (the shipped model's size) and 128x128 (the same
   weights run at twice the size: no 128 model ships, so this is the cost, not the quality, of one).
2. End to end through `vid2vid serve` (64x64): a WebSocket client sends the dancer's frames as JPEGs at 30
   frames/s with at most two out at once, as the page does; latency is from sent to result received. Again with a
   slow client that sends every camera frame without waiting and takes 150 ms over each result: the server must
   drop frames, not queue them. The server's resident memory is read at the start and the end of each run
   (--minutes 10 for the flat-memory check), and after each of ten sessions opened and closed.

    python benchmarks/bench_live.py [--seconds 20] [--minutes 0] [--sizes 64 128]
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import machine_name
from PIL import Image

from vid2vid.data.layout import scan
from vid2vid.data.video import VideoWriter, read_image
from vid2vid.data.writer import write_synthetic
from vid2vid.device import cpu_has_native_bf16
from vid2vid.generate import data_config_for, load_for_inference, references_for
from vid2vid.live import LiveRenderer, run_live
from vid2vid.pretrained import shipped_model

CAMERA_FPS = 30
CPU = torch.device("cpu")


def camera_video(folder: Path, seconds: float) -> tuple[Path, list[np.ndarray], Path]:
    """A built-in dancer (320x240, as a laptop camera sends after the page's downscale) looped to `seconds` at
    30 frames/s; its frames; and a reference image of another identity."""
    write_synthetic("dancers", folder / "camera", sequences=1, frames=60, size=(240, 320), first_index=1001,
                    progress=False)
    write_synthetic("dancers", folder / "ref", sequences=1, frames=1, size=(64, 64), first_index=1002,
                    progress=False)
    frames = [read_image(p) for p in scan(folder / "camera", "pose")[0].files["images"]]
    video = folder / "camera.mp4"
    with VideoWriter(video, fps=CAMERA_FPS) as writer:
        for i in range(int(seconds * CAMERA_FPS)):
            writer.write(frames[i % len(frames)])
    return video, frames, scan(folder / "ref", "pose")[0].files["images"][0]


def in_process(video: Path, reference: Path, size: int, precision: str, work: Path) -> dict:
    checkpoint = shipped_model()
    model = load_for_inference(checkpoint, CPU)
    cfg = replace(data_config_for(checkpoint, model, None), size=(size, size))
    refs = references_for([reference], cfg, work)
    amp = torch.bfloat16 if precision == "bf16" else None
    report = run_live(None, str(video), None, renderer=LiveRenderer(model, cfg, refs, CPU, amp))
    return {"captured": report.captured, "rendered": report.rendered, "fps": report.fps,
            "p50": report.latency(50), "p95": report.latency(95), "detector": float(np.median(report.label_ms)),
            "step": float(np.median(report.generate_ms))}


def one_thread(video: Path, reference: Path, size: int, work: Path) -> dict:
    """The baseline: the same renderer, detector then frame step on one thread (what the pipeline replaced),
    fed the newest camera frame."""
    from vid2vid.live import NewestSlot, camera_frames

    checkpoint = shipped_model()
    model = load_for_inference(checkpoint, CPU)
    cfg = replace(data_config_for(checkpoint, model, None), size=(size, size))
    renderer = LiveRenderer(model, cfg, references_for([reference], cfg, work), CPU)
    frames, fps, _ = camera_frames(str(video))
    slot = NewestSlot()

    def camera():
        start = time.perf_counter()
        for index, image in enumerate(frames):
            time.sleep(max(0.0, start + index / fps - time.perf_counter()))
            slot.put((time.perf_counter(), image))
        slot.end()

    threading.Thread(target=camera, daemon=True).start()
    latencies, label_ms, step_ms, start = [], [], [], time.perf_counter()
    while (item := slot.take()) is not None:
        frame = renderer(item[1])
        latencies.append(1000 * (time.perf_counter() - item[0]))
        label_ms.append(frame.label_ms)
        step_ms.append(frame.generate_ms)
    seconds = time.perf_counter() - start
    renderer.close()
    return {"captured": slot.puts, "rendered": len(latencies), "fps": len(latencies) / seconds,
            "p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
            "detector": float(np.median(label_ms)), "step": float(np.median(step_ms))}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (work / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "vid2vid.cli", "serve", "--port", str(port), "--device", "cpu"],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://{url}/api/info", timeout=1).close()
            return process, url
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the server did not start: {(work / 'server.log').read_text()[-2000:]}") from None
            time.sleep(0.3)


def through_server(url: str, pid: int, frames: list[np.ndarray], seconds: float, client_ms: float,
                   in_flight: int | None = 2) -> dict:
    """A live session over the WebSocket: frames at 30/s, at most in_flight out (None: every frame sent), each
    result taking the client client_ms."""
    from websockets.sync.client import connect

    jpegs = []
    for frame in frames:
        out = io.BytesIO()
        Image.fromarray(frame).save(out, format="JPEG", quality=85)
        jpegs.append(out.getvalue())
    sent: dict[int, float] = {}
    latencies, received_at, lock = [], [], threading.Lock()
    rss = []
    with connect(f"ws://{url}/api/live", max_size=2**24) as ws:
        ws.send(json.dumps({"identity": 1000, "k": 1}))
        while json.loads(ws.recv())["type"] != "ready":
            pass
        stop = threading.Event()
        last = {}
        had = [0]  # "frame" messages received: sent with each frame, so that the server holds back

        def receive():
            while not stop.is_set():
                try:
                    message = ws.recv(timeout=1)
                except TimeoutError:
                    continue
                except Exception:  # noqa: BLE001 - closed at the end
                    return
                if isinstance(message, bytes):
                    continue
                meta = json.loads(message)
                now = time.perf_counter()
                with lock:
                    had[0] += 1
                    latencies.append(1000 * (now - sent[meta["seq"]]))
                    received_at.append(now)
                    for seq in [s for s in sent if s <= meta["seq"]]:
                        del sent[seq]
                    last.update(meta)
                if client_ms:
                    time.sleep(client_ms / 1000)  # a slow page: busy with each result

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        start = time.perf_counter()
        seq = 0
        rss.append(rss_mib(pid))
        next_minute = start + 60
        while time.perf_counter() - start < seconds:
            tick = start + seq / CAMERA_FPS
            time.sleep(max(0.0, tick - time.perf_counter()))
            with lock:
                busy = in_flight is not None and len(sent) >= in_flight
                if not busy:
                    sent[seq] = time.perf_counter()
            if not busy:
                ws.send(struct.pack("<II", seq, had[0]) + jpegs[seq % len(jpegs)])
            seq += 1
            if time.perf_counter() >= next_minute:
                rss.append(rss_mib(pid))
                next_minute += 60
        rss.append(rss_mib(pid))
        stop.set()
        receiver.join(5)
    span = received_at[-1] - received_at[0]
    return {"captured": seq, "rendered": len(latencies), "fps": (len(received_at) - 1) / span,
            "p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
            "detector": last.get("label_ms", 0.0), "step": last.get("generate_ms", 0.0),
            "dropped": last.get("dropped", 0), "rss": rss}


def sessions_opened_and_closed(url: str, pid: int, frames: list[np.ndarray], count: int) -> list[float]:
    from websockets.sync.client import connect

    out = io.BytesIO()
    Image.fromarray(frames[0]).save(out, format="JPEG", quality=85)
    rss = []
    for _ in range(count):
        with connect(f"ws://{url}/api/live") as ws:
            ws.send(json.dumps({"identity": 1000, "k": 1}))
            while json.loads(ws.recv())["type"] != "ready":
                pass
            for seq in range(10):
                ws.send(struct.pack("<II", seq, seq) + out.getvalue())
                if json.loads(ws.recv())["result"]:
                    ws.recv()
        time.sleep(0.5)  # the session's end runs on the server after the socket closes
        rss.append(rss_mib(pid))
    return rss


def row(name: str, r: dict) -> str:
    return (f"| {name} | {r['captured']} | {r['rendered']} | {r['fps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | "
            f"{r['detector']:.0f} | {r['step']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--minutes", type=float, default=0.0, help="also one server run this long (memory)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--skip-server", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine_name(CPU)}; native bf16: {cpu_has_native_bf16()}; camera {CAMERA_FPS} frames/s")
    print("| run | camera frames | rendered | frames/s | latency p50 (ms) | p95 (ms) | detector (ms) "
          "| frame step (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video, frames, reference = camera_video(work, args.seconds)
        for size in args.sizes:
            result = one_thread(video, reference, size, work / f"refs{size}one")
            print(row(f"in process, {size}x{size}, fp32, one thread (baseline)", result), flush=True)
            precisions = ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]
            for precision in precisions:
                result = in_process(video, reference, size, precision, work / f"refs{size}{precision}")
                print(row(f"in process, {size}x{size}, {precision}", result), flush=True)
        if args.skip_server:
            return
        process, url = start_server(work)
        try:
            for name, client_ms, in_flight in (("serve, 64x64, page-like client", 0, 2),
                                               ("serve, 64x64, slow client (150 ms, sends every frame)", 150, None)):
                result = through_server(url, process.pid, frames, args.seconds, client_ms, in_flight)
                print(row(name, result) + f" dropped {result['dropped']}; server RSS {result['rss'][0]:.0f} -> "
                      f"{result['rss'][-1]:.0f} MiB", flush=True)
            rss = sessions_opened_and_closed(url, process.pid, frames, 10)
            print("server RSS after each of 10 live sessions opened, run 10 frames and closed (MiB): "
                  + ", ".join(f"{v:.0f}" for v in rss), flush=True)
            if args.minutes:
                result = through_server(url, process.pid, frames, 60 * args.minutes, 0)
                rss = result["rss"]
                print(row(f"serve, 64x64, {args.minutes:g} minutes", result) + " server RSS by minute (MiB): "
                      + ", ".join(f"{v:.0f}" for v in rss) + f"; last / minute 1: {rss[-1] / rss[1]:.3f}", flush=True)
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()

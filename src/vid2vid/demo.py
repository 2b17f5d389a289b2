"""`make demo`: few-shot vid2vid end to end on built-in data, no download.

1. Synthesize dancers: training identities 0..N-1, and identity 1000 (never seen in training) twice: with
   its own motion (where the K = 2 reference images come from) and performing the motion of sequence 1001
   (never seen in training either): the driving poses and the ground truth.
2. Train the small CPU recipe for a bounded time.
3. Render identity 1000 from its references following the unseen motion; write result.mp4 (driving pose |
   result | ground truth), comparison.png and metrics.json (PSNR/SSIM for K = 1 and K = 2, warping error).

    python -m vid2vid.demo [--out demo_out] [--minutes 8]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vid2vid import metrics
from vid2vid.data.datasets import DataConfig
from vid2vid.data.layout import scan
from vid2vid.data.video import VideoWriter, write_image
from vid2vid.data.writer import write_synthetic
from vid2vid.evaluate import frame_strip, render_sequence
from vid2vid.files import atomic_write_bytes
from vid2vid.generate import load_for_inference
from vid2vid.train import load_train_config, train

# Beyond every training index (--identities is capped below it): its motion in the held-out pair is that of
# sequence 1001, also never trained on.
UNSEEN_IDENTITY = 1000


def make_data(out: Path, size: tuple[int, int], identities: int, frames: int) -> tuple[Path, Path, Path]:
    train_root, refs_root, heldout_root = out / "data" / "train", out / "data" / "references", out / "data" / "heldout"
    write_synthetic("dancers", train_root, sequences=identities, frames=frames, size=size, progress=False)
    write_synthetic("dancers", refs_root, sequences=1, frames=frames, size=size, first_index=UNSEEN_IDENTITY,
                    progress=False)
    write_synthetic("dancers", heldout_root, sequences=1, frames=frames, size=size, first_index=UNSEEN_IDENTITY,
                    motion_offset=1, progress=False)
    return train_root, refs_root, heldout_root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--minutes", type=float, default=7.0, help="training time budget")
    # Many short sequences: the model learns to take appearance from the references only when it sees many
    # identities (24 gave a grey average background in the same time).
    parser.add_argument("--identities", type=int, default=200, help="training identities")
    parser.add_argument("--frames", type=int, default=16, help="frames per sequence")
    args = parser.parse_args(argv)
    if not 0 < args.identities < UNSEEN_IDENTITY:
        parser.error(f"--identities must be between 1 and {UNSEEN_IDENTITY - 1}, so that identity "
                     f"{UNSEEN_IDENTITY} stays unseen")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    cfg = load_train_config("train_dancers_cpu")
    print(f"[1/3] synthesizing dancers ({args.identities} training identities, unseen identity "
          f"{UNSEEN_IDENTITY}) into {out / 'data'}")
    train_root, refs_root, heldout_root = make_data(out, tuple(cfg.data.size), args.identities, args.frames)

    print(f"[2/3] training the small few-shot model for up to {args.minutes:g} minutes (CPU recipe "
          "train_dancers_cpu; TensorBoard logs in demo_out/run)")
    cfg.data_root = str(train_root)
    cfg.run.time_limit_minutes = args.minutes
    result = train(cfg, out / "run", overwrite=True)
    model = load_for_inference(result.last_checkpoint, torch.device("cpu"))

    print("[3/3] rendering the unseen dancer (K = 1 and K = 2) following an unseen motion")
    data = DataConfig.from_dict({**cfg.data.to_dict(), "clip_length": 1, "num_references": 0, "augment": False,
                                 "teacher_flow": False})
    device = torch.device("cpu")
    scores = {}
    sequence = scan(heldout_root, "pose")[0]
    for k in (1, 2):
        rendered = render_sequence(model, data, heldout_root, sequence, k, refs_root, device)
        pairs = list(zip(rendered.results, rendered.truths, strict=True))
        scores[f"K={k}"] = {"psnr": float(np.mean([metrics.psnr(r, t) for r, t in pairs])),
                            "ssim": float(np.mean([metrics.ssim(r, t) for r, t in pairs]))}
    results, truths = rendered.results, rendered.truths
    with VideoWriter(out / "result.mp4", fps=15) as writer:
        for frame in zip(rendered.labels, results, truths, strict=True):
            writer.write(np.concatenate(frame, axis=1))
    write_image(out / "comparison.png", frame_strip(rendered))
    report = {
        **scores,
        "warping_error": {"result": metrics.warping_error(results, truths),
                          "ground_truth": metrics.warping_error(truths, truths)},
        "frames": len(results), "size": list(data.size),
        "training": {"iterations": result.iteration, "checkpoint": str(result.last_checkpoint)},
        "minutes": (time.perf_counter() - started) / 60,
        "units": "PSNR in dB, SSIM in [0, 1], warping error in intensity levels of 255 (lower is steadier)",
    }
    atomic_write_bytes(out / "metrics.json", (json.dumps(report, indent=2) + "\n").encode())
    print(json.dumps({k: report[k] for k in ("K=1", "K=2", "warping_error")}, indent=2))
    print(f"wrote {out / 'result.mp4'}, {out / 'comparison.png'} and {out / 'metrics.json'}")
    print(f"try the model in a browser: vid2vid serve --checkpoint {out / 'run'}")


if __name__ == "__main__":
    main()

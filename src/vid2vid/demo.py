"""`make demo`: few-shot vid2vid end to end on built-in data, no download.

1. Synthesize dancers: training identities 0..N-1, and identity 100 (never seen in training) twice: with
   its own motion (where the K = 2 reference images come from) and performing the motion of sequence 101
   (never seen in training either): the driving poses and the ground truth.
2. Train the small CPU recipe for a bounded time.
3. Render identity 100 from its references following the unseen motion; write result.mp4 (driving pose |
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
from vid2vid.checkpoint import load_generator
from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.layout import scan
from vid2vid.data.video import VideoWriter, write_image
from vid2vid.data.writer import write_synthetic
from vid2vid.files import atomic_write_bytes
from vid2vid.generate import generate_frames, label_to_uint8, to_uint8
from vid2vid.step import References
from vid2vid.train import load_train_config, train

UNSEEN_IDENTITY = 100  # its motion in the held-out pair is that of sequence 101


def make_data(out: Path, size: tuple[int, int], identities: int, frames: int) -> tuple[Path, Path, Path]:
    train_root, refs_root, heldout_root = out / "data" / "train", out / "data" / "references", out / "data" / "heldout"
    write_synthetic("dancers", train_root, sequences=identities, frames=frames, size=size, progress=False)
    write_synthetic("dancers", refs_root, sequences=1, frames=frames, size=size, first_index=UNSEEN_IDENTITY,
                    progress=False)
    write_synthetic("dancers", heldout_root, sequences=1, frames=frames, size=size, first_index=UNSEEN_IDENTITY,
                    motion_offset=1, progress=False)
    return train_root, refs_root, heldout_root


def render(model, data: DataConfig, refs_root: Path, heldout_root: Path, k: int):
    """Results, ground truth and driving labels (uint8 frames) of the unseen identity from k references."""
    clips = VideoClips(refs_root, data)
    sequence = scan(refs_root, "pose")[0]
    indices = [round(i * (len(sequence) - 1) / max(1, k)) for i in range(k)] if k > 1 else [0]
    ref_labels, ref_images = clips.references(sequence, indices)
    refs = References(ref_labels[None], ref_images[None])
    driving = VideoClips(heldout_root, data).stream(scan(heldout_root, "pose")[0])
    results, truths, labels = [], [], []
    for result, item in generate_frames(model, driving, refs, torch.device("cpu")):
        results.append(result)
        truths.append(to_uint8(item["image"]))
        labels.append(label_to_uint8(item["label"]))
    return results, truths, labels, [to_uint8(x) for x in ref_images]


def comparison_strip(results, truths, labels, references, columns: int = 6) -> np.ndarray:
    """Columns of (driving pose / result / ground truth) at evenly spaced frames, then the references."""
    picks = np.linspace(0, len(results) - 1, columns).round().astype(int)
    blocks = [np.concatenate([labels[i], results[i], truths[i]], axis=0) for i in picks]
    h = results[0].shape[0]
    gap = np.full((3 * h, 4, 3), 255, np.uint8)
    refs = np.concatenate(references + [np.full((3 * h - len(references) * h, h, 3), 255, np.uint8)], axis=0) \
        if len(references) < 3 else np.concatenate(references[:3], axis=0)
    return np.concatenate([*blocks, gap, refs], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--minutes", type=float, default=7.0, help="training time budget")
    parser.add_argument("--identities", type=int, default=24, help="training identities")
    parser.add_argument("--frames", type=int, default=24, help="frames per sequence")
    args = parser.parse_args(argv)
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
    model = load_generator(result.last_checkpoint)

    print("[3/3] rendering the unseen dancer (K = 1 and K = 2) following an unseen motion")
    data = DataConfig.from_dict({**cfg.data.to_dict(), "clip_length": 1, "num_references": 0, "augment": False,
                                 "teacher_flow": False})
    scores = {}
    for k in (1, 2):
        results, truths, labels, references = render(model, data, refs_root, heldout_root, k)
        scores[f"K={k}"] = {"psnr": float(np.mean([metrics.psnr(r, t) for r, t in zip(results, truths, strict=True)])),
                            "ssim": float(np.mean([metrics.ssim(r, t) for r, t in zip(results, truths, strict=True)]))}
    with VideoWriter(out / "result.mp4", fps=15) as writer:
        for frame in zip(labels, results, truths, strict=True):
            writer.write(np.concatenate(frame, axis=1))
    write_image(out / "comparison.png", comparison_strip(results, truths, labels, references))
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


if __name__ == "__main__":
    main()

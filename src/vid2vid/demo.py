"""`make demo`: few-shot vid2vid on built-in data, no download.

1. Synthesize identity 1000 (never seen in training) twice: with its own motion (where the K reference
   images come from) and performing the motion of sequence 1001 (never seen in training either): the driving
   poses and the ground truth.
2. The model: the shipped `dancers_cpu` (vid2vid.pretrained, rebuilt by `make pretrained`), or with --train
   (`make demo-train`) the small CPU recipe trained here for a bounded time on training identities 0..N-1.
3. Render identity 1000 from K = 1, 2 and 4 of its references following the unseen motion, as the model is and
   after fine-tuning a copy on the references (--finetune steps, 100); write result.mp4 (driving pose | result
   at K = 2, fine-tuned | ground truth), comparison.png and metrics.json (PSNR, SSIM, warping error per run).

    python -m vid2vid.demo [--out demo_out]
    python -m vid2vid.demo --train [--minutes 7] [--out demo_out]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vid2vid import metrics
from vid2vid.checkpoint import CheckpointError, read_model_info
from vid2vid.data.layout import scan
from vid2vid.data.video import VideoWriter, write_image
from vid2vid.data.writer import write_synthetic
from vid2vid.evaluate import frame_strip, render_sequence
from vid2vid.files import atomic_write_bytes
from vid2vid.finetune import finetune_checkpoint_model
from vid2vid.generate import data_config_for, load_for_inference
from vid2vid.pretrained import shipped_model
from vid2vid.train import load_train_config, train

# Beyond every training index (--identities is capped below it): its motion in the held-out pair is that of
# sequence 1001, also never trained on.
UNSEEN_IDENTITY = 1000


KS = (1, 2, 4)
SHOWN_K = 2  # the K of result.mp4 and comparison.png (fine-tuned when the demo fine-tunes)
FINETUNE_STEPS = 100  # imaginaire's dancing inference; +0.2 dB on 4 unseen dancers with the shipped model


def make_unseen(out: Path, size: tuple[int, int], frames: int) -> tuple[Path, Path]:
    """The unseen dancer's own video (references) and its performance of an unseen motion (driving, truth)."""
    refs_root, heldout_root = out / "data" / "references", out / "data" / "heldout"
    write_synthetic("dancers", refs_root, sequences=1, frames=frames, size=size, first_index=UNSEEN_IDENTITY,
                    overwrite=True, progress=False)
    write_synthetic("dancers", heldout_root, sequences=1, frames=frames, size=size, first_index=UNSEEN_IDENTITY,
                    motion_offset=1, overwrite=True, progress=False)
    return refs_root, heldout_root


def train_here(out: Path, minutes: float, identities: int, frames: int):
    """The small CPU recipe trained for a bounded time on identities 0..identities-1: (checkpoint, iterations)."""
    cfg = load_train_config("train_dancers_cpu")
    train_root = out / "data" / "train"
    print(f"      synthesizing {identities} training identities into {train_root}")
    write_synthetic("dancers", train_root, sequences=identities, frames=frames, size=tuple(cfg.data.size),
                    overwrite=True, progress=False)
    print(f"      training for up to {minutes:g} minutes (CPU recipe train_dancers_cpu; TensorBoard logs in "
          f"{out / 'run'})")
    cfg.data_root = str(train_root)
    cfg.run.time_limit_minutes = minutes
    result = train(cfg, out / "run", overwrite=True)
    return result.last_checkpoint, result.iteration


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--train", action="store_true", help="train a model here instead of the shipped one")
    parser.add_argument("--checkpoint", help="render with this checkpoint instead of the shipped model")
    parser.add_argument("--minutes", type=float, default=7.0, help="--train: training time budget")
    # Many short sequences: the model learns to take appearance from the references only when it sees many
    # identities (24 gave a grey average background in the same time).
    parser.add_argument("--identities", type=int, default=200, help="--train: training identities")
    parser.add_argument("--frames", type=int, default=16, help="frames per sequence")
    parser.add_argument("--finetune", type=int, default=FINETUNE_STEPS,
                        help="also render after fine-tuning on the references for this many steps (0: not)")
    args = parser.parse_args(argv)
    if not 0 < args.identities < UNSEEN_IDENTITY:
        parser.error(f"--identities must be between 1 and {UNSEEN_IDENTITY - 1}, so that identity "
                     f"{UNSEEN_IDENTITY} stays unseen")
    if args.train and args.checkpoint:
        parser.error("--train and --checkpoint exclude each other")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    device = torch.device("cpu")

    if args.train:
        print("[1/3] training a small few-shot model here")
        checkpoint, iterations = train_here(out, args.minutes, args.identities, args.frames)
        source = "trained by this demo"
    else:
        try:
            checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_model()
            model_info = read_model_info(checkpoint)
        except CheckpointError as exc:
            sys.exit(f"demo: {exc}")
        iterations = None
        source = "given" if args.checkpoint else "shipped (vid2vid.pretrained, `make pretrained`)"
        print(f"[1/3] the model: {checkpoint} ({source}; model {model_info['model']})")
    model = load_for_inference(checkpoint, device)
    data = data_config_for(checkpoint, model, None)  # as trained, one frame at a time, no augmentation

    print(f"[2/3] synthesizing the unseen dancer (identity {UNSEEN_IDENTITY}) and an unseen motion into "
          f"{out / 'data'}")
    refs_root, heldout_root = make_unseen(out, tuple(data.size), args.frames)

    tunings = [0] + ([args.finetune] if args.finetune > 0 else [])
    print(f"[3/3] rendering the unseen dancer (K = {', '.join(map(str, KS))}"
          + (f"; as given and fine-tuned {args.finetune} steps on its references" if args.finetune else "")
          + ") following the unseen motion")
    scores, shown = {}, None
    sequence = scan(heldout_root, "pose")[0]
    for steps in tunings:
        for k in KS:
            tune = None if not steps else (
                lambda model, refs, steps=steps: finetune_checkpoint_model(checkpoint, model, refs, steps).model)
            rendered = render_sequence(model, data, heldout_root, sequence, k, refs_root, device, tune=tune)
            pairs = list(zip(rendered.results, rendered.truths, strict=True))
            key = f"K={k}" + (f" finetune={steps}" if steps else "")
            scores[key] = {"psnr": float(np.mean([metrics.psnr(r, t) for r, t in pairs])),
                           "ssim": float(np.mean([metrics.ssim(r, t) for r, t in pairs])),
                           "warping_error": metrics.warping_error(rendered.results, rendered.truths)}
            if k == SHOWN_K:
                shown, shown_key = rendered, key
    results, truths = shown.results, shown.truths
    with VideoWriter(out / "result.mp4", fps=15) as writer:
        for frame in zip(shown.labels, results, truths, strict=True):
            writer.write(np.concatenate(frame, axis=1))
    write_image(out / "comparison.png", frame_strip(shown))
    report = {
        **scores,
        "shown": shown_key,
        "warping_error": {"result": scores[shown_key]["warping_error"],
                          "ground_truth": metrics.warping_error(truths, truths)},
        "frames": len(results), "size": list(data.size),
        "model": {"checkpoint": str(checkpoint), "source": source, "iterations": iterations},
        "minutes": (time.perf_counter() - started) / 60,
        "units": "PSNR in dB, SSIM in [0, 1], warping error in intensity levels of 255 (lower is steadier)",
    }
    atomic_write_bytes(out / "metrics.json", (json.dumps(report, indent=2) + "\n").encode())
    print(json.dumps({k: report[k] for k in (*scores, "shown", "warping_error")}, indent=2))
    print(f"wrote {out / 'result.mp4'}, {out / 'comparison.png'} and {out / 'metrics.json'}")
    print(f"try the model in a browser: vid2vid serve --checkpoint {checkpoint}")


if __name__ == "__main__":
    main()

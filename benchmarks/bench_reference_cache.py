"""Reference encoding cached across frames: the few-shot generator streaming at batch 1 with its references
encoded once per sequence (what it does in eval mode) against encoding them again for every frame, per K.

The model is the official dancing architecture with attention switched on (the published one has none, so
takes K = 1 only). With K = 1 the weights are cached as well; with K > 1 the attention, the encoder levels
after it and the weights depend on the target label and are made every frame either way.

    python benchmarks/bench_reference_cache.py [--sizes 512x256] [--ks 1 4 8] [--frames 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine_name, parse_size, sync  # benchmarks/ is on the path when run as a script

from vid2vid.config import load_generator_config
from vid2vid.models.fs_vid2vid import FewShotGenerator
from vid2vid.nn.blocks import fold_spectral_norm
from vid2vid.step import References, new_history, step


def stream(model, labels, refs, encode_every_frame: bool) -> tuple[list[float], torch.Tensor]:
    """Seconds of each frame after the first, and the last frame."""
    model.reset()
    history = new_history(model)
    times, out = [], None
    for label in labels:
        if encode_every_frame:
            model.weight_generator.reset()  # drops the cached encoding; nothing else changes
        sync(label.device)
        start = time.perf_counter()
        with torch.no_grad():
            out = step(model, label, history, refs).fake_images
        sync(label.device)
        times.append(time.perf_counter() - start)
        history.push(label, out)
    return times[1:], out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["512x256"], help="HxW")
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 4, 8], help="numbers of references")
    parser.add_argument("--frames", type=int, default=3, help="timed frames after the first (the best is kept)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cfg = load_generator_config("fs_vid2vid_dancing")
    cfg.attention = True
    model = fold_spectral_norm(FewShotGenerator(cfg).to(device).eval())
    c = model.cfg.label_channels
    print(f"# {machine_name(device)}, torch {torch.__version__}; "
          "few-shot dancing generator with attention, spectral norm folded, fp32")
    print("| size (HxW) | K | encoded every frame (s/frame) | encoded once (s/frame) | ratio | max diff |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        h, w = parse_size(size)
        for k in args.ks:
            gen = torch.Generator().manual_seed(k)
            labels = (torch.rand(1 + args.frames, 1, c, h, w, generator=gen) * 2 - 1).to(device)
            refs = References((torch.rand(1, k, c, h, w, generator=gen) * 2 - 1).to(device),
                              (torch.rand(1, k, 3, h, w, generator=gen) * 2 - 1).to(device))
            stream(model, labels[:2], refs, encode_every_frame=False)  # warm-up: kernels, allocator
            every, out_every = stream(model, labels, refs, encode_every_frame=True)
            once, out_once = stream(model, labels, refs, encode_every_frame=False)
            diff = (out_every - out_once).abs().max().item()
            print(f"| {size} | {k} | {min(every):.3f} | {min(once):.3f} | {min(every) / min(once):.2f} | "
                  f"{diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()

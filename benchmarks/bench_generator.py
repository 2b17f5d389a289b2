"""Frames per second of the full-size few-shot generator (official dancing architecture, K = 1).

First frame: references encoded, weights generated, no previous frame. Later frames: the
previous output fed back (flow + warp of reference and previous frame), generated weights
reused as in eval mode. Plain fp32 eager, and the same with spectral norm folded into the weights.

    python benchmarks/bench_generator.py [--sizes 256x256 512x256] [--frames 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from vid2vid.config import load_generator_config
from vid2vid.models.fs_vid2vid import FewShotGenerator
from vid2vid.nn.blocks import fold_spectral_norm


def time_sequence(model, h, w, frames):
    c = model.cfg.label_channels
    gen = torch.Generator().manual_seed(0)
    labels = torch.rand(frames + 1, 1, c, h, w, generator=gen) * 2 - 1
    refs = dict(ref_labels=torch.rand(1, 1, c, h, w, generator=gen) * 2 - 1,
                ref_images=torch.rand(1, 1, 3, h, w, generator=gen) * 2 - 1)
    model.reset()
    with torch.no_grad():
        start = time.perf_counter()
        out = model(label=labels[0], **refs)
        first = time.perf_counter() - start
        start = time.perf_counter()
        for t in range(1, frames + 1):
            out = model(label=labels[t], **refs, prev_labels=labels[t - 1][:, None],
                        prev_images=out.fake_images[:, None])
        later = (time.perf_counter() - start) / frames
    return first, later


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["256x256", "512x256"], help="HxW")
    parser.add_argument("--frames", type=int, default=3, help="later frames timed per size")
    args = parser.parse_args()

    torch.manual_seed(0)
    eager = FewShotGenerator(load_generator_config("fs_vid2vid_dancing")).eval()
    folded = FewShotGenerator(eager.cfg).eval()
    folded.load_state_dict(eager.state_dict())
    fold_spectral_norm(folded)
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| size (HxW) | variant | first frame (s) | later frames (frames/s) |")
    print("|---|---|---|---|")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        time_sequence(eager, h, w, 1)  # warm-up: allocator and kernel selection
        for name, model in (("fp32 eager", eager), ("fp32, spectral norm folded", folded)):
            first, later = time_sequence(model, h, w, args.frames)
            print(f"| {h}x{w} | {name} | {first:.2f} | {1 / later:.2f} |")


if __name__ == "__main__":
    main()

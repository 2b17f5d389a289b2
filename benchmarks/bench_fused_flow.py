"""Fused input stacking for the few-shot generator's shared flow network: its two calls per frame (warping
the reference and the previous output) as one batch of two, against two calls of batch one.

    python benchmarks/bench_fused_flow.py [--sizes 256x256 512x256] [--repeats 3]
"""

from __future__ import annotations

import argparse

import torch
from common import best_time, machine_name, parse_size  # benchmarks/ is on the path when run as a script

from vid2vid.config import load_generator_config
from vid2vid.models.fs_vid2vid import FewShotGenerator
from vid2vid.nn.blocks import fold_spectral_norm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["256x256", "512x256"], help="HxW")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the best is kept)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_generator_config("fs_vid2vid_dancing")
    flow = fold_spectral_norm(FewShotGenerator(cfg).to(device).eval()).flow_network_ref
    print(f"# {machine_name(device)}, torch {torch.__version__}")
    print("| size (HxW) | two calls, batch 1 (s) | one call, batch 2 (s) | ratio | max diff |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        h, w = parse_size(size)
        gen = torch.Generator().manual_seed(0)
        labels = [torch.randn(1, 2 * cfg.network_label_channels, h, w, generator=gen).to(device) for _ in range(2)]
        images = [torch.randn(1, 3, h, w, generator=gen).to(device) for _ in range(2)]
        with torch.no_grad():
            apart = [flow(labels[i], images[i]) for i in range(2)]  # also the warm-up
            fused = flow(torch.cat(labels), torch.cat(images))
            diff = max((fused[j][i] - apart[i][j][0]).abs().max().item() for i in range(2) for j in range(2))
            two = best_time(lambda ls=labels, ims=images: [flow(ls[i], ims[i]) for i in range(2)], device,
                            args.repeats)
            one = best_time(lambda ls=labels, ims=images: flow(torch.cat(ls), torch.cat(ims)), device, args.repeats)
        print(f"| {size} | {two:.3f} | {one:.3f} | {two / one:.2f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()

"""Training iterations per second and peak memory of the full-size generators.

The official few-shot dancing recipe (K = 1) and imaginaire's Cityscapes vid2vid recipe, each with its
discriminators and the temporal D; one iteration = a clip of T frames through G, one D update, one G update and
the EMA, on random inputs (no data loading). fp32 eager is the baseline; on CUDA bf16 autocast is timed in the
same run.

    python benchmarks/bench_train.py [--models fs_vid2vid vid2vid] [--sizes 256x256 512x256] [--frames 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import (  # benchmarks/ is on the path when run as a script
    default_sizes,
    machine_name,
    parse_size,
    peak_memory_gib,
    sync,
)

from vid2vid.train import (
    Discriminators,
    Nets,
    init_weights,
    load_train_config,
    make_generator,
    pick_precision,
    training_step,
)


def random_batch(cfg, h, w, frames, device):
    gen = torch.Generator().manual_seed(0)
    c = cfg.data.label_channels

    def rand(*shape):
        return (torch.rand(*shape, generator=gen) * 2 - 1).to(device)

    keypoints = torch.zeros(1, frames, 67, 3)
    keypoints[..., [0, 15, 16], :] = torch.tensor([[w / 2, h / 4, 1], [w / 2 - 6, h / 4 - 4, 1],
                                                   [w / 2 + 6, h / 4 - 4, 1]])  # nose and eyes: a face box
    batch = {"labels": rand(1, frames, c, h, w), "images": rand(1, frames, 3, h, w),
             "flow": torch.zeros(1, frames, 2, h, w, device=device),
             "flow_confidence": torch.ones(1, frames, 1, h, w, device=device), "keypoints": keypoints.to(device)}
    if cfg.model == "fs_vid2vid":  # references are what make a batch few-shot
        batch.update(ref_labels=rand(1, 1, c, h, w), ref_images=rand(1, 1, 3, h, w))
    return batch


def measure(cfg, device, amp_dtype, h, w, frames, iterations):
    torch.manual_seed(0)
    G, D = make_generator(cfg).to(device).train(), Discriminators(cfg).to(device).train()
    init_weights(G)
    init_weights(D)
    ema = make_generator(cfg).to(device).eval()
    ema.load_state_dict(G.state_dict())
    nets = Nets(G, D, ema, torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.999)),
                torch.optim.Adam(D.parameters(), lr=4e-4, betas=(0.0, 0.999)),
                torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None, None, device, amp_dtype)
    batch = random_batch(cfg, h, w, frames, device)
    training_step(nets, batch, cfg)  # warm-up: allocator, kernel selection
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iterations):
        training_step(nets, batch, cfg)
    sync(device)
    seconds = time.perf_counter() - start
    return iterations / seconds, peak_memory_gib(device), sum(p.numel() for p in G.parameters())


RECIPES = {"fs_vid2vid": "train_fs_vid2vid_dancing", "vid2vid": "train_vid2vid_street"}


def bench_config(kind: str, h: int, w: int):
    cfg = load_train_config(RECIPES[kind], data_root="unused")
    cfg.data.size = (h, w)
    cfg.discriminator.face.crop_size = h // 32 * 8
    cfg.loss.weights.perceptual = 0  # no VGG weights here; the perceptual loss would add one VGG19 pass
    if kind == "vid2vid":
        cfg.generator["first_frame_size"] = None  # the recipe's 512x1024 first frame would fix every frame's size
    return cfg


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--sizes", nargs="+", help="HxW (default 256x256 512x256, and 1024x512 on CUDA)")
    parser.add_argument("--frames", type=int, default=2, help="frames per clip (T)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast on a CPU (always on CUDA)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = args.sizes or default_sizes(device)
    print(f"# {machine_name(device)}, torch {torch.__version__}; "
          f"T = {args.frames}, batch 1, K = 1")
    print("| model | size (HxW) | variant | iterations/s | ratio to fp32 | peak memory (GiB) | G parameters |")
    print("|---|---|---|---|---|---|---|")
    variants = [("fp32 eager", None)]
    if device.type == "cuda":
        variants.append(("bf16 autocast", pick_precision("auto", device)))
    elif args.bf16:
        variants.append(("bf16 autocast", torch.bfloat16))
    for kind in args.models:
        for size in sizes:
            h, w = parse_size(size)
            cfg = bench_config(kind, h, w)
            baseline = None
            for name, dtype in variants:
                speed, peak, params = measure(cfg, device, dtype, h, w, args.frames, args.iterations)
                baseline = baseline or speed
                print(f"| {kind} | {size} | {name} | {speed:.3f} | {speed / baseline:.2f} | {peak:.2f} | "
                      f"{params:,} |", flush=True)


if __name__ == "__main__":
    main()

"""Training iterations per second and peak memory of the full-size generators, and peak memory against clip length.

The official few-shot dancing recipe (K = 1) and imaginaire's Cityscapes vid2vid recipe, each with its
discriminators and the temporal D; one iteration = a clip of T frames, each generated, then one D update and one
G update on it, and the average updated, on random inputs (no data loading). fp32 eager is the baseline; on CUDA
bf16 autocast is timed in the same run.

    python benchmarks/bench_train.py [--models fs_vid2vid vid2vid] [--sizes 256x256 512x256] [--frames 2]

`--memory` instead measures the peak memory of a training iteration at several clip lengths, each in a fresh
process on a CPU (peak resident set) or from a reset peak on CUDA, with a small recipe:

    python benchmarks/bench_train.py --memory [--recipe train_dancers_cpu] [--sizes 64x64] [--batch 2]
        [--clip-lengths 2 4 8 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from common import (  # benchmarks/ is on the path when run as a script
    default_sizes,
    machine_name,
    parse_size,
    peak_memory_gib,
    sync,
)

from vid2vid.device import pick_precision
from vid2vid.train import train_clip
from vid2vid.training.config import load_train_config
from vid2vid.training.nets import build_nets


def random_batch(cfg, h, w, frames, device, batch_size=1):
    gen = torch.Generator().manual_seed(0)
    c, b, k = cfg.data.label_channels, batch_size, max(1, cfg.data.num_references)

    def rand(*shape):
        return (torch.rand(*shape, generator=gen) * 2 - 1).to(device)

    keypoints = torch.zeros(b, frames, 67, 3)
    keypoints[..., [0, 15, 16], :] = torch.tensor([[w / 2, h / 4, 1], [w / 2 - 6, h / 4 - 4, 1],
                                                   [w / 2 + 6, h / 4 - 4, 1]])  # nose and eyes: a face box
    batch = {"labels": rand(b, frames, c, h, w), "images": rand(b, frames, 3, h, w),
             "flow": torch.zeros(b, frames, 2, h, w, device=device),
             "flow_confidence": torch.ones(b, frames, 1, h, w, device=device), "keypoints": keypoints.to(device)}
    if cfg.model == "fs_vid2vid":  # references are what make a batch few-shot
        batch.update(ref_labels=rand(b, k, c, h, w), ref_images=rand(b, k, 3, h, w),
                     ref_flow=torch.zeros(b, frames, k, 2, h, w, device=device),
                     ref_flow_confidence=torch.ones(b, frames, k, 1, h, w, device=device))
    return batch


def timed_iterations(nets, batch, cfg, device, iterations) -> float:
    """Seconds per training iteration; on CUDA the peak memory counts from here."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iterations):
        train_clip(nets, batch, cfg)
    sync(device)
    return (time.perf_counter() - start) / iterations


def measure(cfg, device, amp_dtype, h, w, frames, iterations):
    torch.manual_seed(0)
    nets = build_nets(cfg, device, amp_dtype)
    batch = random_batch(cfg, h, w, frames, device)
    train_clip(nets, batch, cfg)  # warm-up: allocator, kernel selection
    seconds = timed_iterations(nets, batch, cfg, device, iterations)
    return 1 / seconds, peak_memory_gib(device), sum(p.numel() for p in nets.G.parameters())


def memory_child(recipe: str, h: int, w: int, batch_size: int, frames: int, iterations: int) -> dict:
    """One clip length in this (fresh) process: peak memory of `iterations` iterations, and what setup alone took."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_train_config(recipe, data_root="unused")
    cfg.data.size = (h, w)
    cfg.loss.weights.perceptual = 0
    torch.manual_seed(0)
    nets = build_nets(cfg, device, None)
    batch = random_batch(cfg, h, w, frames, device, batch_size)
    setup = peak_memory_gib(device)
    seconds = timed_iterations(nets, batch, cfg, device, iterations)
    return {"setup_gib": setup, "peak_gib": peak_memory_gib(device), "seconds_per_iteration": seconds}


def memory_table(args) -> None:
    h, w = parse_size((args.sizes or ["64x64"])[0])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"# {machine_name(device)}, torch {torch.__version__}; {args.recipe} at {h}x{w}, batch {args.batch}, "
          f"{args.iterations} iterations, fp32, each clip length in its own process")
    print("| clip length T | peak memory (GiB) | ratio to T = 2 | memory after setup (GiB) | s / iteration |")
    print("|---|---|---|---|---|")
    base = None
    for frames in args.clip_lengths:
        child = [sys.executable, __file__, "--memory-child", args.recipe, str(h), str(w), str(args.batch), str(frames),
                 str(args.iterations)]
        result = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        base = base or result["peak_gib"]
        print(f"| {frames} | {result['peak_gib']:.3f} | {result['peak_gib'] / base:.2f} | {result['setup_gib']:.3f} | "
              f"{result['seconds_per_iteration']:.2f} |", flush=True)


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
    parser.add_argument("--memory", action="store_true", help="peak memory against clip length instead")
    parser.add_argument("--recipe", default="train_dancers_cpu", help="--memory: the training recipe")
    parser.add_argument("--batch", type=int, default=2, help="--memory: clips per batch")
    parser.add_argument("--clip-lengths", type=int, nargs="+", default=[2, 4, 8, 16], help="--memory: values of T")
    parser.add_argument("--memory-child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        recipe, *numbers = args.memory_child
        print(json.dumps(memory_child(recipe, *(int(n) for n in numbers))))
        return
    if args.memory:
        memory_table(args)
        return
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

"""Generator speed: frames/s of the full-size few-shot and vid2vid generators, each variant beside plain fp32.

Models: the official few-shot dancing architecture (K = 1) and imaginaire's Cityscapes vid2vid, both with
spectral norm as training leaves it. Per size and variant: the first frame (references encoded, weights
generated, no previous frame), steady-state frames/s streaming at batch 1 (previous outputs fed back, the
history window full), frames/s at batch 4, peak memory, GFLOPs per frame (torch's flop counter), the achieved
TFLOP/s and, on a GPU whose peak is known, the fraction of its dense peak (bf16 tensor cores for bf16 rows,
TF32 for fp32 rows, since cuDNN runs fp32 convolutions in TF32 by default). Every variant's output is
compared with the fp32 eager output on the same inputs.

Variants: fp32 eager (the baseline), spectral norm folded (what `vid2vid generate` runs), + channels_last,
+ torch.compile (--compile; slow to build), bf16 autocast (CUDA, or --bf16 on CPU) and, on CUDA with
--compile, torch.compile's CUDA graphs (mode "reduce-overhead"). --variants keeps only the named ones
(the baseline always runs).

    python benchmarks/bench_generator.py [--models fs_vid2vid vid2vid] [--sizes 256x256 512x256] [--frames 3]
"""

from __future__ import annotations

import argparse
import math
import time
from contextlib import nullcontext

import torch
from common import (  # benchmarks/ is on the path when run as a script
    default_sizes,
    machine_name,
    parse_size,
    peak_memory_gib,
    sync,
)
from torch.utils.flop_counter import FlopCounterMode

from vid2vid.config import load_generator_config
from vid2vid.models.fs_vid2vid import FewShotGenerator
from vid2vid.models.vid2vid import Vid2VidGenerator
from vid2vid.nn.blocks import fold_spectral_norm
from vid2vid.step import References, is_few_shot, new_history, step

PRESETS = {"fs_vid2vid": ("fs_vid2vid_dancing", FewShotGenerator), "vid2vid": ("vid2vid_cityscapes", Vid2VidGenerator)}


def inputs(model, batch: int, h: int, w: int, frames: int, device):
    """Driving labels (frames, B, C, H, W) and references; vid2vid labels are one-hot like real ones."""
    gen = torch.Generator().manual_seed(0)
    c = model.cfg.label_channels
    if is_few_shot(model):
        labels = torch.rand(frames, batch, c, h, w, generator=gen) * 2 - 1
        refs = References(torch.rand(batch, 1, c, h, w, generator=gen) * 2 - 1,
                          torch.rand(batch, 1, 3, h, w, generator=gen) * 2 - 1)
        return labels.to(device), References(refs.labels.to(device), refs.images.to(device))
    ids = torch.randint(0, c, (frames, batch, h // 16, w // 16), generator=gen)
    ids = ids.repeat_interleave(16, -2).repeat_interleave(16, -1)
    return torch.nn.functional.one_hot(ids, c).permute(0, 1, 4, 2, 3).float().to(device), None


# Dense peak TFLOP/s (bf16, TF32) from NVIDIA's data sheets, by a part of the name torch reports; first match.
GPU_PEAKS = [("H100 PCIe", (756.0, 378.0)), ("H100 NVL", (835.0, 418.0)), ("H100", (989.0, 495.0)),
             ("H200", (989.0, 495.0)), ("A100", (312.0, 156.0)), ("L40S", (362.0, 183.0)), ("L4", (121.0, 60.0))]


def gpu_peak_tflops(name: str, bf16: bool) -> float | None:
    return next((peaks[0 if bf16 else 1] for part, peaks in GPU_PEAKS if part in name), None)


def run_sequence(model, labels, refs, amp_dtype, channels_last: bool, cuda_graphs: bool = False):
    """Stream the labels through the model; (seconds of the first frame, of each later one, last output)."""
    model.reset()
    history = new_history(model)
    times, out = [], None
    autocast = torch.autocast(labels.device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    for label in labels:
        if channels_last:
            label = label.contiguous(memory_format=torch.channels_last)
        sync(labels.device)
        start = time.perf_counter()
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new frame: the last replay's outputs may be reused
        with torch.no_grad(), autocast:
            out = step(model, label, history, refs).fake_images.float()
        if cuda_graphs:
            out = out.clone()  # the next replay writes over the graph's output memory; the history keeps it
        sync(labels.device)
        times.append(time.perf_counter() - start)
        history.push(label, out)
    return times[0], times[1:], out


def flops_per_frame(model, labels, refs) -> float:
    """Steady-state frame: the history filled by the frames before it."""
    history = new_history(model)
    model.reset()
    with torch.no_grad():
        for label in labels[:-1]:
            history.push(label, step(model, label, history, refs).fake_images)
        with FlopCounterMode(display=False) as counter:
            step(model, labels[-1], history, refs)
    return counter.get_total_flops()


def folded_copy(base, device):
    """A new model with base's weights and spectral norm folded (deepcopy does not copy parametrizations)."""
    model = type(base)(base.cfg).to(device).eval()
    model.load_state_dict(base.state_dict())
    return fold_spectral_norm(model)


VARIANTS = ["fp32 eager", "fp32, spectral norm folded", "fp32, folded, channels_last", "fp32, folded, torch.compile",
            "fp32, folded, CUDA graphs", "bf16 autocast, folded", "bf16 autocast, folded, channels_last",
            "bf16 autocast, folded, torch.compile", "bf16 autocast, folded, CUDA graphs"]


def variants(base, device, use_compile: bool, use_bf16: bool, keep: list[str] | None):
    """(name, model factory, amp dtype, channels_last, cuda_graphs); the first is the baseline. Models are built
    when asked for, so variants left out cost nothing."""
    def folded():
        return folded_copy(base, device)

    def channels_last():
        return folded().to(memory_format=torch.channels_last)

    def compiled(mode=None):
        return lambda: torch.compile(folded(), mode=mode)

    cuda = device.type == "cuda"
    table = [("fp32 eager", lambda: base, None, False, False),
             ("fp32, spectral norm folded", folded, None, False, False),
             ("fp32, folded, channels_last", channels_last, None, True, False)]
    if use_compile:
        table.append(("fp32, folded, torch.compile", compiled(), None, False, False))
        if cuda:
            table.append(("fp32, folded, CUDA graphs", compiled("reduce-overhead"), None, False, True))
    if cuda or use_bf16:
        table += [("bf16 autocast, folded", folded, torch.bfloat16, False, False),
                  ("bf16 autocast, folded, channels_last", channels_last, torch.bfloat16, True, False)]
        if use_compile:
            table.append(("bf16 autocast, folded, torch.compile", compiled(), torch.bfloat16, False, False))
            if cuda:
                table.append(("bf16 autocast, folded, CUDA graphs", compiled("reduce-overhead"), torch.bfloat16,
                              False, True))
    return [row for i, row in enumerate(table) if i == 0 or keep is None or row[0] in keep]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--sizes", nargs="+", help="HxW (default 256x256 512x256, and 1024x512 on CUDA)")
    parser.add_argument("--frames", type=int, default=3, help="steady-state frames timed per run")
    parser.add_argument("--batch", type=int, default=4, help="batch size of the batched figure (0: skip)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to build)")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast on CPU")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, metavar="NAME",
                        help=f"only these (quoted) besides the baseline: {'; '.join(VARIANTS)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = args.sizes or default_sizes(device)
    machine = machine_name(device)
    print(f"# {machine}, torch {torch.__version__}")
    batched = f"batch {args.batch}" if args.batch else "batched (off)"
    print("| model | size (HxW) | variant | first frame (s) | frames/s, batch 1 | ratio | frames/s, "
          f"{batched} | GFLOP/frame | TFLOP/s | of peak | peak memory (GiB) | max diff to fp32 eager | "
          "PSNR to it (dB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.models:
        preset, cls = PRESETS[kind]
        torch.manual_seed(0)
        cfg = load_generator_config(preset)
        if kind == "vid2vid":
            cfg.first_frame_size = None  # the preset's 512x1024 first frame would fix the size of every frame
        base = cls(cfg).to(device).eval()
        for size in sizes:
            h, w = parse_size(size)
            warm = 1 + base.cfg.num_prev_frames  # frames until the history window is full
            labels, refs = inputs(base, 1, h, w, warm + args.frames, device)
            gflops = flops_per_frame(base, labels[: warm + 1], refs) / 1e9
            baseline = None
            for name, make, amp, channels_last, graphs in variants(base, device, args.compile, args.bf16,
                                                                   args.variants):
                try:
                    model = make()
                    run_sequence(model, labels[: warm + 1], refs, amp, channels_last, graphs)  # warm-up: kernels
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    first, later, out = run_sequence(model, labels, refs, amp, channels_last, graphs)
                    steady = later[warm - 1:]
                    fps = len(steady) / sum(steady)
                    batched = ""
                    if args.batch:
                        b_labels, b_refs = inputs(base, args.batch, h, w, warm + 1, device)
                        _, b_later, _ = run_sequence(model, b_labels, b_refs, amp, channels_last, graphs)
                        batched = f"{args.batch / b_later[-1]:.2f}"
                except Exception as error:  # an optimisation this torch or device cannot run; the rest can
                    if baseline is None:
                        raise
                    print(f"| {kind} | {h}x{w} | {name} | failed: {type(error).__name__}: "
                          f"{str(error).splitlines()[0][:200]} |", flush=True)
                    continue
                finally:
                    model = None
                baseline = baseline or (fps, out)
                diff = (out - baseline[1]).abs().max().item()
                mse = (out - baseline[1]).pow(2).mean().item()
                psnr = "exact" if mse == 0 else f"{10 * math.log10(4 / mse):.1f}"  # images span [-1, 1]: peak 2
                tflops = gflops * fps / 1e3
                peak = gpu_peak_tflops(machine, amp is not None) if device.type == "cuda" else None
                of_peak = f"{100 * tflops / peak:.1f}%" if peak else ""
                print(f"| {kind} | {h}x{w} | {name} | {first:.2f} | {fps:.2f} | {fps / baseline[0]:.2f} | "
                      f"{batched} | {gflops:.0f} | {tflops:.3f} | {of_peak} | {peak_memory_gib(device):.2f} | "
                      f"{diff:.1e} | {psnr} |", flush=True)

if __name__ == "__main__":
    main()

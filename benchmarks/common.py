"""What the benchmarks share: naming the machine and timing on it."""

from __future__ import annotations

import resource
import time

import torch

from vid2vid.device import cpu_name


def machine_name(device: torch.device) -> str:
    """The GPU's name as torch reports it, or the CPU's with the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(call, device: torch.device, repeats: int) -> float:
    """The shortest of `repeats` timed calls, in seconds."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def default_sizes(device: torch.device) -> list[str]:
    """The issue's sizes: 256x256 and 512x256 everywhere, 1024x512 on a GPU."""
    return ["256x256", "512x256", "1024x512"] if device.type == "cuda" else ["256x256", "512x256"]


def parse_size(text: str) -> tuple[int, int]:
    """"HxW" -> (H, W)."""
    h, w = (int(v) for v in text.split("x"))
    return h, w


def peak_memory_gib(device: torch.device) -> float:
    """The GPU's peak allocation since the last reset, or on a CPU the process's peak resident set so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB

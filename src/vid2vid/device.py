"""Where and in what precision the models run: the choices every command shares (train, generate, evaluate,
serve)."""

from __future__ import annotations

import functools
import platform
import warnings

import torch

# CPU flags (Linux /proc/cpuinfo) of instructions that do bf16 arithmetic natively. Without them torch
# emulates bf16: on an AVX2-only CPU a bf16 3x3 convolution ran at 0.28 GFLOP/s against 107 in fp32.
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512 / AMX; aarch64 "bf16"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("run.device is cuda but no CUDA device is available")
    return torch.device(name)


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags, or None where the system does not list them (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool | None:
    """True or False where the CPU's flags say, None where they cannot be read."""
    flags = cpu_flags()
    return None if flags is None else bool(flags & NATIVE_BF16_FLAGS)


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, None for fp32. bf16 asked for on a CPU without bf16 instructions runs, with a warning:
    there it is hundreds of times slower than fp32."""
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    if dtype == torch.bfloat16 and device.type == "cpu" and cpu_has_native_bf16() is False:
        warnings.warn(f"bf16 on this CPU ({platform.machine()}, no avx512_bf16, amx_bf16 or bf16 instructions) is "
                      "emulated and about 400x slower than fp32 (a 3x3 convolution: 0.28 against 107 GFLOP/s on an "
                      "AVX2-only CPU); use --precision fp32 (or auto)", stacklevel=2)
    return dtype

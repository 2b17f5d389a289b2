"""The averaged generator that checkpoints give to `generate`, as imaginaire's ModelAverage keeps it.

The average is a generator of the same config without spectral norm: each spectrally normalised weight of
the trained generator enters it already divided by its sigma = u . (W v) (the stored u, v; no power
iteration), so what is averaged is the weight the network actually applies, not the raw one whose scale
the normalisation ignores. The first `start` updates copy; later ones blend with `decay`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn.utils import parametrize

from vid2vid.step import unwrap


def normalised_weight(module: nn.Module) -> torch.Tensor:
    """The weight a spectral-norm parametrized module applies in eval mode, computed without touching its u, v."""
    spectral = module.parametrizations.weight[0]
    original = module.parametrizations.weight.original
    matrix = spectral._reshape_weight_to_matrix(original)
    sigma = torch.vdot(spectral._u, torch.mv(matrix, spectral._v))
    return original / sigma


def effective_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with every spectral-norm weight as `<module>.weight`, normalised; u, v dropped."""
    state = {}
    for name, module in model.named_modules(remove_duplicate=False):  # shared modules under each name
        prefix = f"{name}." if name else ""
        if parametrize.is_parametrized(module, "weight"):
            state[f"{prefix}weight"] = normalised_weight(module)
        for key, value in module.named_parameters(recurse=False):
            state[prefix + key] = value
        for key, value in module.named_buffers(recurse=False):
            state[prefix + key] = value
    return state


class ModelAverage:
    """averaged = copy of the trained generator for the first `start` updates, then
    averaged <- decay * averaged + (1 - decay) * trained, every parameter and floating buffer."""

    def __init__(self, model: nn.Module, decay: float, start: int):
        generator = unwrap(model)
        cfg = generator.cfg
        if not hasattr(cfg, "spectral_norm"):
            raise TypeError(f"{type(generator).__name__} has no spectral_norm setting to average without")
        self.averaged = type(generator)(dataclasses.replace(cfg, spectral_norm=False))
        self.averaged.to(next(generator.parameters()).device).eval().requires_grad_(False)
        self.decay, self.start, self.updates = decay, start, 0
        self.blend(model, 0.0)

    def update(self, model: nn.Module) -> None:
        self.updates += 1
        self.blend(model, 0.0 if self.updates <= self.start else self.decay)

    @torch.no_grad()
    def blend(self, model: nn.Module, decay: float) -> None:
        source = effective_state(unwrap(model))
        for name, target in self.averaged.state_dict(keep_vars=True).items():
            value = source[name]
            if decay == 0.0 or not target.is_floating_point():
                target.copy_(value)
            else:
                target.lerp_(value.to(target.dtype), 1 - decay)

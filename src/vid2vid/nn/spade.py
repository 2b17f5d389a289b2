"""SPADE: instance norm modulated by one or more conditioning maps, applied one after another.

y = IN(x); for each conditioning input c_i present: y = y * (1 + gamma_i) + beta_i, where
(gamma_i, beta_i) = conv_i(c_i resized to x). The convolution of an input may be given at run
time (weights generated per sample by the few-shot weight generator) instead of learned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vid2vid.nn.blocks import LEAKY_SLOPE, generated_conv2d, with_spectral_norm

# (weight (B, 2C, C_cond, k, k), bias (B, 2C)) for one generated SPADE projection.
GeneratedWeights = tuple[torch.Tensor, torch.Tensor]


def resize_like(cond: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if cond.shape[-2:] == x.shape[-2:]:
        return cond
    return F.interpolate(cond, size=x.shape[-2:], mode="nearest")


class SPADE(nn.Module):
    """Sequential multi-input SPADE.

    cond_channels: channels of each conditioning input, in the order they are applied.
    generated_first: the first input's projection comes from `generated` at call time.
    """

    def __init__(self, num_features: int, cond_channels: list[int], kernel_size: int = 1,
                 generated_first: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.generated_first = generated_first
        # Keyed by input index so that a generated input simply has no entry.
        self.projections = nn.ModuleDict({
            str(i): nn.Conv2d(c, 2 * num_features, kernel_size, padding=kernel_size // 2)
            for i, c in enumerate(cond_channels) if not (i == 0 and generated_first)
        })

    def forward(self, x: torch.Tensor, conds: list[torch.Tensor | None],
                generated: GeneratedWeights | None = None) -> torch.Tensor:
        y = F.instance_norm(x)
        for i, cond in enumerate(conds):
            if cond is None:
                continue
            cond = resize_like(cond, x)
            if i == 0 and self.generated_first:
                weight, bias = generated
                params = generated_conv2d(cond, weight, bias, padding=self.kernel_size // 2)
            else:
                params = self.projections[str(i)](cond)
            gamma, beta = params.chunk(2, dim=1)
            y = y * (1 + gamma) + beta
        return y


class SPADEResBlock(nn.Module):
    """Pre-activation residual block with SPADE norms (the reference's 'NACNAC' order).

    Hidden width is min(in, out); a 1x1 shortcut (SPADE then conv, no activation) exists when
    the widths differ. Generated SPADE weights come as (conv_0, conv_1, shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: list[int], *,
                 kernel_size: int = 3, spade_kernel_size: int = 1, generated: bool = False,
                 spectral: bool = True):
        super().__init__()
        hidden = min(in_channels, out_channels)
        padding = kernel_size // 2

        def spade(c):
            return SPADE(c, cond_channels, spade_kernel_size, generated_first=generated)

        self.norm_0 = spade(in_channels)
        self.conv_0 = with_spectral_norm(nn.Conv2d(in_channels, hidden, kernel_size, 1, padding), spectral)
        self.norm_1 = spade(hidden)
        self.conv_1 = with_spectral_norm(nn.Conv2d(hidden, out_channels, kernel_size, 1, padding), spectral)
        self.has_shortcut = in_channels != out_channels
        if self.has_shortcut:
            self.norm_s = spade(in_channels)
            self.conv_s = with_spectral_norm(nn.Conv2d(in_channels, out_channels, 1), spectral)

    def forward(self, x: torch.Tensor, conds: list[torch.Tensor | None],
                generated: tuple[GeneratedWeights, ...] | None = None) -> torch.Tensor:
        gen = generated if generated is not None else (None, None, None)
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, conds, gen[0]), LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, conds, gen[1]), LEAKY_SLOPE))
        shortcut = self.conv_s(self.norm_s(x, conds, gen[2])) if self.has_shortcut else x
        return shortcut + dx

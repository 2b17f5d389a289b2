"""Multi-scale embedding of a label map (or of a warped image and its mask) for SPADE."""

from __future__ import annotations

import torch
from torch import nn

from vid2vid.nn.blocks import LEAKY_SLOPE, ConvBlock, channels_per_level, generated_conv2d, upsample2x

# (weight (B, C_out, C_in, k, k), bias (B, C_out)) for a decoder conv whose weights are generated.
GeneratedConv = tuple[torch.Tensor, torch.Tensor]


class LabelEmbedding(nn.Module):
    """Encoder of stride-2 convs, then a decoder of (nearest x2, conv) back to full resolution.

    Returns one feature map per level, finest first: [H, H/2, ..., H/2^n] (the last is the
    encoder bottleneck). With `unet`, each decoder level also takes the encoder features of its
    resolution. The decoder convs of the finest `num_generated` levels take per-sample
    weights given at call time (few-shot vid2vid); they have no learned parameters.
    """

    def __init__(self, in_channels: int, *, num_filters: int = 32, max_filters: int = 1024,
                 num_downsamples: int = 5, kernel_size: int = 3, unet: bool = False,
                 num_generated: int = 0, spectral: bool = True):
        super().__init__()
        ch = channels_per_level(num_filters, max_filters, num_downsamples + 1)
        self.unet = unet
        self.num_downsamples = num_downsamples
        self.num_generated = num_generated
        self.kernel_size = kernel_size
        self.first = ConvBlock(in_channels, ch[0], kernel_size, spectral=spectral)
        self.down = nn.ModuleList([ConvBlock(ch[i], ch[i + 1], kernel_size, 2, spectral=spectral)
                                   for i in range(num_downsamples)])
        self.up = nn.ModuleDict()
        for i in range(num_generated, num_downsamples):
            c_in = ch[i + 1] * (2 if unet and i != num_downsamples - 1 else 1)
            self.up[str(i)] = ConvBlock(c_in, ch[i], kernel_size, spectral=spectral)

    def forward(self, x: torch.Tensor, generated: list[GeneratedConv] | None = None) -> list[torch.Tensor]:
        encoded = [self.first(x)]
        for layer in self.down:
            encoded.append(layer(encoded[-1]))
        decoded = [encoded[-1]]
        for i in reversed(range(self.num_downsamples)):
            y = decoded[0]
            if self.unet and i != self.num_downsamples - 1:
                y = torch.cat([y, encoded[i + 1]], dim=1)
            y = upsample2x(y)
            if i < self.num_generated:
                weight, bias = generated[i]
                y = nn.functional.leaky_relu(
                    generated_conv2d(y, weight, bias, padding=self.kernel_size // 2), LEAKY_SLOPE)
            else:
                y = self.up[str(i)](y)
            decoded.insert(0, y)
        return decoded

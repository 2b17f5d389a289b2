"""Flow + occlusion-mask network: from a target label and a source (labels, image) to a flow
that warps the source onto the target, and a soft mask of where that warp can be trusted."""

from __future__ import annotations

import torch
from torch import nn

from vid2vid.nn.blocks import ConvBlock, PreActResBlock, channels_per_level, upsample2x


class FlowNetwork(nn.Module):
    """Encoder (stride-2 conv blocks) -> residual blocks -> decoder (nearest x2 + conv blocks),
    then a flow head (scaled to pixels by `multiplier`) and a sigmoid mask head.

    in_channels: channels of torch.cat([target_label, source_labels, source_images], 1).
    """

    def __init__(self, in_channels: int, *, num_filters: int = 32, max_filters: int = 1024,
                 num_downsamples: int = 3, num_res_blocks: int = 6, kernel_size: int = 3,
                 multiplier: float = 20.0, spectral: bool = True):
        super().__init__()
        ch = channels_per_level(num_filters, max_filters, num_downsamples + 1)
        self.multiplier = multiplier

        def block(c_in, c_out, stride=1):
            return ConvBlock(c_in, c_out, kernel_size, stride, norm=True, spectral=spectral)

        self.down = nn.Sequential(block(in_channels, ch[0]),
                                  *[block(ch[i], ch[i + 1], 2) for i in range(num_downsamples)])
        self.res = nn.Sequential(*[PreActResBlock(ch[-1], kernel_size, spectral=spectral)
                                   for _ in range(num_res_blocks)])
        self.up = nn.ModuleList([block(ch[i + 1], ch[i]) for i in reversed(range(num_downsamples))])
        self.flow_head = ConvBlock(ch[0], 2, kernel_size, act=None, spectral=False)
        self.mask_head = ConvBlock(ch[0], 1, kernel_size, act="sigmoid", spectral=False)

    def forward(self, target_label: torch.Tensor, source_labels: torch.Tensor,
                source_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns flow (B, 2, H, W) in pixels and occlusion mask (B, 1, H, W) in (0, 1)."""
        x = self.res(self.down(torch.cat([target_label, source_labels, source_images], dim=1)))
        for block in self.up:
            x = block(upsample2x(x))
        return self.flow_head(x) * self.multiplier, self.mask_head(x)

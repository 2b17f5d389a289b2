"""Flow + occlusion-mask network: from the labels of a target and of source frames, and the source
images, to a flow that warps the newest source image onto the target, and a soft mask of where
that warp can be trusted."""

from __future__ import annotations

import torch
from torch import nn

from vid2vid.nn.blocks import ConvBlock, ResBlock, channels_per_level, upsample2x


class FlowNetwork(nn.Module):
    """Encoder (stride-2 conv blocks) -> residual blocks -> decoder (nearest x2 + conv blocks),
    then a flow head (scaled to pixels by `multiplier`) and a sigmoid mask head.

    The few-shot generator encodes labels and images concatenated, with pre-activation residual
    blocks; vid2vid encodes them separately and sums the encodings, with post-activation blocks.
    """

    def __init__(self, label_channels: int, image_channels: int, *, num_filters: int = 32, max_filters: int = 1024,
                 num_downsamples: int = 3, num_res_blocks: int = 6, kernel_size: int = 3, multiplier: float = 20.0,
                 separate_image_encoder: bool = False, pre_activation: bool = True, spectral: bool = True):
        super().__init__()
        ch = channels_per_level(num_filters, max_filters, num_downsamples + 1)
        self.multiplier = multiplier

        def block(c_in, c_out, stride=1):
            return ConvBlock(c_in, c_out, kernel_size, stride, norm=True, spectral=spectral)

        def encoder(in_channels):
            return nn.Sequential(block(in_channels, ch[0]),
                                 *[block(ch[i], ch[i + 1], 2) for i in range(num_downsamples)])

        if separate_image_encoder:
            self.down = encoder(label_channels)
            self.down_image = encoder(image_channels)
        else:
            self.down = encoder(label_channels + image_channels)
            self.down_image = None
        self.res = nn.Sequential(*[ResBlock(ch[-1], kernel_size, pre_activation=pre_activation, spectral=spectral)
                                   for _ in range(num_res_blocks)])
        self.up = nn.ModuleList([block(ch[i + 1], ch[i]) for i in reversed(range(num_downsamples))])
        self.flow_head = ConvBlock(ch[0], 2, kernel_size, act=None, spectral=False)
        self.mask_head = ConvBlock(ch[0], 1, kernel_size, act="sigmoid", spectral=False)

    def features(self, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The trunk: encoder, residual blocks, decoder, at the input's resolution (B, num_filters, H, W)."""
        if self.down_image is None:
            x = self.down(torch.cat([labels, images], dim=1))
        else:
            x = self.down(labels) + self.down_image(images)
        x = self.res(x)
        for block in self.up:
            x = block(upsample2x(x))
        return x

    def forward(self, labels: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """labels: target and source labels stacked on channels; images: source images stacked.
        Returns flow (B, 2, H, W) in pixels and occlusion mask (B, 1, H, W) in (0, 1), in the heads' own dtype:
        fp32 under bf16 autocast, fp64 for a float64 model."""
        x = self.features(labels, images)
        # The heads run outside autocast: a bf16 flow times 20 holds 32-64 px flows only to 1/4 px.
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(next(self.mask_head.parameters()).dtype)
            return self.flow_head(x) * self.multiplier, self.mask_head(x)

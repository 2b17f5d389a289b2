"""Backward warping of an image by a dense flow given in pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample image at (x + flow_x, y + flow_y) for every output pixel.

    image: (B, C, H, W); flow: (B, 2, H, W) in pixels, x then y. Bilinear, border padding,
    corner-aligned: pixel centres of the first and last column map to -1 and 1. The grid is built and
    sampled in fp32 whatever the dtypes (bf16 spacing near +-1 is 2^-8: half a pixel at 512 px wide, and no
    sub-pixel motion at all); the result comes back in the image's dtype.
    """
    b, _, h, w = image.shape
    with torch.autocast(image.device.type, enabled=False):
        flow = flow.float()
        xs = torch.linspace(-1.0, 1.0, w, device=flow.device)
        ys = torch.linspace(-1.0, 1.0, h, device=flow.device)
        grid_x = xs.view(1, 1, w) + flow[:, 0] / ((w - 1.0) / 2.0)
        grid_y = ys.view(1, h, 1) + flow[:, 1] / ((h - 1.0) / 2.0)
        grid = torch.stack([grid_x, grid_y], dim=-1)  # (B, H, W, 2)
        out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(image.dtype)


def blend(warped: torch.Tensor, hallucinated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The papers' x = (1 - m) * warped + m * hallucinated: m, in [0, 1], is the share of the new image."""
    return (1 - mask) * warped + mask * hallucinated

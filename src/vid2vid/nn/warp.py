"""Backward warping of an image by a dense flow given in pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample image at (x + flow_x, y + flow_y) for every output pixel.

    image: (B, C, H, W); flow: (B, 2, H, W) in pixels, x then y. Bilinear, border padding,
    corner-aligned: pixel centres of the first and last column map to -1 and 1.
    """
    b, _, h, w = image.shape
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype)
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype)
    grid_x = xs.view(1, 1, w) + flow[:, 0] / ((w - 1.0) / 2.0)
    grid_y = ys.view(1, h, 1) + flow[:, 1] / ((h - 1.0) / 2.0)
    grid = torch.stack([grid_x, grid_y], dim=-1)  # (B, H, W, 2)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True)

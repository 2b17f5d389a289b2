"""Label maps made into pictures for people to look at (training images, generate's side-by-side)."""

from __future__ import annotations

import torch

from vid2vid.data.render import CITYSCAPES_COLOURS, CITYSCAPES_NUM_CLASSES


def label_picture(labels: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) labels -> (N, 3, H, W) in [-1, 1] for looking at."""
    c = labels.shape[1]
    if c == 6:
        return labels[:, 3:]  # the OpenPose colours
    if c == 1:
        return labels.repeat(1, 3, 1, 1) * 2 - 1
    if c in (CITYSCAPES_NUM_CLASSES, CITYSCAPES_NUM_CLASSES + 1):  # street ids (+ instance edges)
        palette = torch.tensor(CITYSCAPES_COLOURS + ((0, 0, 0),)).to(labels) / 127.5 - 1
        return palette[labels[:, :CITYSCAPES_NUM_CLASSES].argmax(1)].permute(0, 3, 1, 2)
    palette = torch.rand(c, 3, generator=torch.Generator().manual_seed(1)).to(labels) * 2 - 1
    return palette[labels.argmax(1)].permute(0, 3, 1, 2)

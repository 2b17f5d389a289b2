"""Discriminators: multi-scale conditional patch D (image), temporal D over frame windows, region D on crops.

What they compute follows NVIDIA imaginaire's vid2vid / few-shot vid2vid discriminators; the temporal D's
flow conditioning and its frame windows follow the vid2vid paper (Wang et al. 2018). Each network returns,
per spatial scale, the patch logits and the features that feature matching compares. The caller builds
the inputs (see `image_input`, `gather_windows`, `window_flows`, `face_box`, `hand_boxes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vid2vid.nn.blocks import LEAKY_SLOPE, with_spectral_norm
from vid2vid.nn.warp import warp
from vid2vid.settings import Settings


@dataclass
class PatchDiscriminatorConfig(Settings):
    """One multi-scale patch D; defaults are imaginaire's few-shot image D (dancing and face recipes)."""

    num_scales: int = 2      # the input, then halved num_scales - 1 times, each with its own D
    num_layers: int = 4      # blocks after the first stride-2 one; the last of them has stride 1
    num_filters: int = 32
    max_filters: int = 512
    kernel_size: int = 4
    spectral: bool = True
    norm: bool = True        # affine instance norm after every conv but the last


@dataclass
class TemporalDiscriminatorConfig(Settings):
    """The video D: windows of `num_frames` frames, at temporal scales step**0, step**1, ... (the paper's
    values; imaginaire's released recipes leave it out)."""

    enabled: bool = True
    num_frames: int = 3      # num_frames_D
    step: int = 3            # the gap between window frames is step**s at temporal scale s
    num_scales: int = 2      # temporal scales, each with its own multi-scale patch D
    patch: PatchDiscriminatorConfig = field(default_factory=PatchDiscriminatorConfig)

    def __post_init__(self):
        if self.num_frames < 2 or self.step < 1 or self.num_scales < 1:
            raise ValueError(f"temporal D needs num_frames >= 2, step >= 1 and num_scales >= 1, got "
                             f"{self.num_frames}, {self.step} and {self.num_scales}")


@dataclass
class RegionDiscriminatorConfig(Settings):
    """A patch D on square crops around faces or hands (pose data), resized to crop_size."""

    enabled: bool = False
    crop_size: int = 64      # imaginaire resizes face crops to H // 32 * 8 (64 at H = 256, 128 at 512)
    patch: PatchDiscriminatorConfig = field(
        default_factory=lambda: PatchDiscriminatorConfig(num_scales=1, num_layers=3))


@dataclass
class DiscriminatorConfig(Settings):
    """All discriminators of a recipe; defaults are imaginaire's few-shot face recipe plus the temporal D.

    Dancing also sets face.enabled; Cityscapes sets image: {num_filters: 64, num_layers: 3, spectral: false}.
    """

    SECTION = "discriminator"

    image: PatchDiscriminatorConfig = field(default_factory=PatchDiscriminatorConfig)
    temporal: TemporalDiscriminatorConfig = field(default_factory=TemporalDiscriminatorConfig)
    face: RegionDiscriminatorConfig = field(default_factory=RegionDiscriminatorConfig)
    hands: RegionDiscriminatorConfig = field(default_factory=RegionDiscriminatorConfig)


class PatchOutput(NamedTuple):
    """One spatial scale of a patch D."""

    logits: torch.Tensor           # (N, 1, h, w), before any sigmoid
    features: list[torch.Tensor]   # outputs of every block but the last, for feature matching


class PatchDiscriminator(nn.Module):
    """conv(stride 2) -> [num_layers - 1 convs, stride 2] -> conv(stride 1) -> 3x3 conv to one logit map.

    Widths double per block from num_filters up to max_filters; each conv but the last is followed by
    an affine instance norm (when `norm`) and LeakyReLU(0.2). Padding is (kernel_size - 1) // 2, so a
    4x4 stride-2 conv halves an even size and the 4x4 stride-1 conv shrinks it by one, as in imaginaire.
    """

    def __init__(self, in_channels: int, num_layers: int, num_filters: int, max_filters: int,
                 kernel_size: int, spectral: bool, norm: bool):
        super().__init__()
        padding = (kernel_size - 1) // 2
        widths = [min(max_filters, num_filters * 2 ** i) for i in range(num_layers + 1)]
        strides = [2] * num_layers + [1]
        blocks = []
        for c_in, c_out, stride in zip([in_channels] + widths[:-1], widths, strides, strict=True):
            # A bias before instance norm is cancelled by it (imaginaire keeps one; it never matters).
            conv = with_spectral_norm(nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=not norm), spectral)
            layers = [conv, nn.InstanceNorm2d(c_out, affine=True)] if norm else [conv]
            blocks.append(nn.Sequential(*layers, nn.LeakyReLU(LEAKY_SLOPE)))
        self.blocks = nn.ModuleList(blocks)
        self.head = with_spectral_norm(nn.Conv2d(widths[-1], 1, 3, 1, 1), spectral)

    def forward(self, x: torch.Tensor) -> PatchOutput:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return PatchOutput(self.head(x), features)


class MultiScalePatchDiscriminator(nn.Module):
    """num_scales patch Ds; D_i sees the input downsampled i times (bilinear, corner-aligned, x0.5)."""

    def __init__(self, in_channels: int, num_scales: int = 2, num_layers: int = 4, num_filters: int = 32,
                 max_filters: int = 512, kernel_size: int = 4, spectral: bool = True, *, norm: bool = True):
        super().__init__()
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(in_channels, num_layers, num_filters, max_filters, kernel_size, spectral, norm)
            for _ in range(num_scales))

    @classmethod
    def from_config(cls, in_channels: int, cfg: PatchDiscriminatorConfig) -> MultiScalePatchDiscriminator:
        return cls(in_channels, cfg.num_scales, cfg.num_layers, cfg.num_filters, cfg.max_filters,
                   cfg.kernel_size, cfg.spectral, norm=cfg.norm)

    def forward(self, x: torch.Tensor) -> list[PatchOutput]:
        outputs = []
        for i, discriminator in enumerate(self.discriminators):
            if i > 0:
                x = F.interpolate(x, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="bilinear", align_corners=True)
            outputs.append(discriminator(x))
        return outputs


def image_input(label: torch.Tensor, image: torch.Tensor, ref_label: torch.Tensor | None = None,
                ref_image: torch.Tensor | None = None) -> torch.Tensor:
    """The image D's input: label, [reference label, reference image,] image along channels (imaginaire's
    order). Few-shot passes the one reference the generator attended to most (`pick_reference`)."""
    refs = [] if ref_label is None else [ref_label, ref_image]
    return torch.cat([label, *refs, image], dim=1)


def image_input_channels(label_channels: int, image_channels: int = 3, few_shot: bool = False) -> int:
    return (label_channels + image_channels) * (2 if few_shot else 1)


# ---------------------------------------------------------------------------------------------- temporal


def temporal_windows(num_frames: int, frames_per_window: int, step: int, num_scales: int) -> list[list[list[int]]]:
    """Frame indices of every window the temporal D sees in a clip of num_frames frames.

    At scale s the frames of a window are step**s apart; one window ends at every frame that has enough
    frames before it, so each frame is the newest of one window per scale (what imaginaire's per-frame
    loop sees over a clip). Returns, per scale, the windows oldest first; a scale too long for the clip
    has none. Example: 8 frames, 3 per window, step 3 -> [[0,1,2] ... [5,6,7]] and [[0,3,6], [1,4,7]].
    """
    windows = []
    for s in range(num_scales):
        gap = step ** s
        span = gap * (frames_per_window - 1)
        windows.append([list(range(end - span, end + 1, gap)) for end in range(span, num_frames)])
    return windows


def gather_windows(clip: torch.Tensor, windows: list[list[int]]) -> torch.Tensor:
    """clip (B, T, C, H, W) -> (B * N, F, C, H, W): the N windows of F frames, sample-major."""
    index = torch.tensor(windows, device=clip.device)  # (N, F)
    picked = clip[:, index]  # (B, N, F, C, H, W)
    return picked.flatten(0, 1)


def window_flows(flows: torch.Tensor, windows: list[list[int]]) -> torch.Tensor:
    """Backward flow between consecutive frames of each window, chained from one-frame flows.

    flows (B, T, 2, H, W): flows[:, t] takes frame t to frame t-1 in pixels (the dataset's teacher
    flow; frame 0's is unused). A gap of g frames chains g flows: f(t -> t-k-1) = f(t -> t-k) +
    warp(f(t-k -> t-k-1), f(t -> t-k)). Returns (B * N, F - 1, 2, H, W), matching gather_windows.
    """
    index = torch.tensor(windows, device=flows.device)  # (N, F)
    gap = int(index[0, 1] - index[0, 0])
    if not bool((index.diff(dim=1) == gap).all()):
        raise ValueError("window_flows needs windows of one scale (equal gaps)")
    newer = index[:, 1:]  # (N, F - 1): the later frame of each pair
    total = flows[:, newer]  # (B, N, F - 1, 2, H, W)
    shape = total.shape
    for k in range(1, gap):
        older = flows[:, newer - k].reshape(-1, *shape[-3:])
        total = total + warp(older, total.reshape(-1, *shape[-3:])).reshape(shape)
    return total.flatten(0, 1)


# The paper feeds the D flow divided by 20 so that typical motions at 512-1024 px are about unit size.
FLOW_INPUT_SCALE = 1 / 20


class TemporalDiscriminator(nn.Module):
    """D_V: one multi-scale patch D per temporal scale, on F stacked frames and the F - 1 flows between them.

    Real and fake windows are both given the real (teacher) flow, so the D judges whether the frames move
    as the real video does (vid2vid, 2018). Input channels: F * image_channels + 2 * (F - 1).
    """

    def __init__(self, image_channels: int, frames_per_window: int, num_temporal_scales: int,
                 patch: PatchDiscriminatorConfig):
        super().__init__()
        self.frames_per_window = frames_per_window
        in_channels = frames_per_window * image_channels + 2 * (frames_per_window - 1)
        self.scales = nn.ModuleList(
            MultiScalePatchDiscriminator.from_config(in_channels, patch) for _ in range(num_temporal_scales))

    @classmethod
    def from_config(cls, cfg: TemporalDiscriminatorConfig, image_channels: int = 3) -> TemporalDiscriminator:
        return cls(image_channels, cfg.num_frames, cfg.num_scales, cfg.patch)

    def forward(self, frames: torch.Tensor, flows: torch.Tensor, scale: int) -> list[PatchOutput]:
        """frames (N, F, C, H, W) from gather_windows; flows (N, F - 1, 2, H, W) from window_flows."""
        if frames.shape[1] != self.frames_per_window or flows.shape[1] != self.frames_per_window - 1:
            raise ValueError(f"expected windows of {self.frames_per_window} frames, got frames {tuple(frames.shape)} "
                             f"and flows {tuple(flows.shape)}")
        x = torch.cat([frames.flatten(1, 2), flows.flatten(1, 2) * FLOW_INPUT_SCALE], dim=1)
        return self.scales[scale](x)


# ------------------------------------------------------------------------------------------------ regions

# OpenPose BODY_25 indices.
NOSE, RIGHT_ELBOW, RIGHT_WRIST, LEFT_ELBOW, LEFT_WRIST = 0, 3, 4, 6, 7
FACE_POINTS = (0, 15, 16, 17, 18)  # nose, right eye, left eye, right ear, left ear
# The hand centre lies past the wrist, along the forearm, by about this fraction of the forearm.
HAND_REACH = 0.3

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, half-open: columns x0 .. x1 - 1


def _confident(points, indices=None) -> torch.Tensor:
    """(K, 3) keypoints (x, y, confidence), OpenPose's 0 for missing -> (M, 2) points with confidence > 0."""
    points = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 3)
    if indices is not None:
        points = points[list(indices)]
    return points[points[:, 2] > 0, :2]


def _square_box(cx: float, cy: float, side: int, image_size: tuple[int, int]) -> Box:
    """A side x side box centred on (cx, cy), moved inside the image."""
    h, w = image_size
    x0 = min(max(math.floor(cx - side / 2 + 0.5), 0), w - side)
    y0 = min(max(math.floor(cy - side / 2 + 0.5), 0), h - side)
    return x0, y0, x0 + side, y0 + side


def face_box(body, image_size: tuple[int, int], *, scale: float = 2.5, min_size: int = 32) -> Box | None:
    """Square box around a face from BODY_25 keypoints (nose, eyes, ears) in output pixels; None if none seen.

    Centre: the middle of those points' bounding box; side: scale x its larger extent (imaginaire crops
    2.5 face widths), at least min_size and at most the image's shorter side.
    """
    points = _confident(body, FACE_POINTS)
    if len(points) == 0:
        return None
    low, high = points.min(dim=0).values, points.max(dim=0).values
    extent = float((high - low).max())
    side = min(max(math.floor(scale * extent + 0.5), min_size), *image_size)
    centre = (low + high) / 2
    return _square_box(float(centre[0]), float(centre[1]), side, image_size)


def hand_boxes(body, left_hand, right_hand, image_size: tuple[int, int], size: int) -> list[Box]:
    """size x size boxes around the visible hands: the middle of the hand keypoints (OpenPose 21 per hand,
    None if not extracted), or without them the wrist moved HAND_REACH of the forearm outwards.
    Left hand first; a hand with neither is left out."""
    boxes = []
    for hand, wrist, elbow in ((left_hand, LEFT_WRIST, LEFT_ELBOW), (right_hand, RIGHT_WRIST, RIGHT_ELBOW)):
        points = _confident(hand) if hand is not None else torch.zeros(0, 2)
        if len(points):
            centre = (points.min(dim=0).values + points.max(dim=0).values) / 2
        else:
            arm = _confident(body, (wrist,))
            if len(arm) == 0:
                continue
            centre = arm[0]
            forearm = _confident(body, (elbow, wrist))
            if len(forearm) == 2:
                centre = centre + HAND_REACH * (forearm[1] - forearm[0])
        boxes.append(_square_box(float(centre[0]), float(centre[1]), min(size, *image_size), image_size))
    return boxes


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor, size: int) -> torch.Tensor:
    """Crop boxes out of images and resize each to size x size, bilinear, in one batched grid_sample.

    images (B, C, H, W); boxes (N, 4) as (x0, y0, x1, y1), half-open pixel boxes; batch_index (N,) the
    image of each box. The crop's corner pixel centres map to the output's corner pixel centres (as
    imaginaire's interpolate with align_corners=True on the cropped patch); a box of side `size` is
    copied exactly. Differentiable with respect to the images.
    """
    _, _, h, w = images.shape
    with torch.autocast(images.device.type, enabled=False):  # an fp32 grid, as in warp()
        boxes = boxes.to(device=images.device, dtype=torch.float32)
        steps = torch.linspace(0, 1, size, device=images.device)
        xs = boxes[:, 0:1] + steps * (boxes[:, 2:3] - 1 - boxes[:, 0:1])  # (N, size) pixel columns
        ys = boxes[:, 1:2] + steps * (boxes[:, 3:4] - 1 - boxes[:, 1:2])
        gx = xs * (2 / (w - 1)) - 1
        gy = ys * (2 / (h - 1)) - 1
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (N, size, size, 2)
        crops = F.grid_sample(images[batch_index.to(images.device)].float(), grid, mode="bilinear",
                              padding_mode="border", align_corners=True)
    return crops.to(images.dtype)


class RegionDiscriminator(nn.Module):
    """A multi-scale patch D on crops of one kind of region (faces or hands), each resized to crop_size.

    Its input is built at full frame size by the caller and cropped here: the image for vid2vid, the
    image and the chosen reference image along channels for few-shot (imaginaire crops the reference at
    the target's face box).
    """

    def __init__(self, in_channels: int, crop_size: int, patch: PatchDiscriminatorConfig):
        super().__init__()
        self.crop_size = crop_size
        self.patch = MultiScalePatchDiscriminator.from_config(in_channels, patch)

    @classmethod
    def from_config(cls, cfg: RegionDiscriminatorConfig, in_channels: int) -> RegionDiscriminator:
        return cls(in_channels, cfg.crop_size, cfg.patch)

    def forward(self, inputs: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor) -> list[PatchOutput]:
        """inputs (B, C, H, W); boxes (N, 4) with N >= 1 (skip the D when no region is seen)."""
        return self.patch(crop_and_resize(inputs, boxes, batch_index, self.crop_size))

"""vid2vid generator (Wang et al. 2018): label maps -> video, one frame at a time.

Two formulations of frame t from one module family:

* temporal_combine="spade" computes what NVIDIA imaginaire's vid2vid generator computes (the form
  of its published Cityscapes checkpoint). The previous output is encoded by SPADE residual blocks
  conditioned on the previous label, then decoded conditioned on the current label; once enough
  previous frames exist, the previous output is warped by a predicted flow and, with the
  occlusion mask, embedded as a second SPADE input of the finest decoder levels. The first frame
  is generated from the label alone.
* temporal_combine="linear" is the paper's formulation: the decoder hallucinates h_t and
  x_t = (1 - m_t) * warp(x_{t-1}, w_t) + m_t * h_t with the predicted occlusion mask m_t.

With background_classes set (label maps), h_t = (1 - m_B) * h_F + m_B * h_B, where m_B marks
pixels of background classes and h_F, h_B come from separate output heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vid2vid.models.embedding import LabelEmbedding
from vid2vid.models.flow import FlowNetwork
from vid2vid.models.outputs import OutputMapping
from vid2vid.nn.blocks import LEAKY_SLOPE, channels_per_level, upsample2x
from vid2vid.nn.spade import SPADEResBlock
from vid2vid.nn.warp import blend, warp
from vid2vid.settings import Settings


@dataclass
class Vid2VidConfig(Settings):
    """Sizes and switches of the vid2vid generator; defaults are the official Cityscapes model."""

    SECTION = "vid2vid generator"

    label_channels: int = 35          # one-hot classes
    image_channels: int = 3
    num_filters: int = 32
    max_filters: int = 1024
    num_layers: int = 7               # the first frame starts at 1/2^num_layers of the frame size
    num_downsamples_img: int = 4      # the previous frame is encoded down to 1/2^num_downsamples_img
    embed_num_downsamples: int = 5
    kernel_size: int = 3
    spade_kernel_size: int = 1
    num_prev_frames: int = 2          # previous frames the flow network reads (warping starts then); 0: per frame
    num_multi_spade_layers: int = 3   # finest levels that also take the warped previous frame
    flow_num_downsamples: int = 5
    flow_res_blocks: int = 6
    flow_multiplier: float = 40.0
    # The reference sizes the first frame from the configured crop, not from the input.
    first_frame_size: tuple[int, int] | None = None
    temporal_combine: str = "spade"   # "spade" (imaginaire) or "linear" (the paper's blend)
    background_classes: list[int] = field(default_factory=list)  # fg/bg prior when non-empty
    spectral_norm: bool = True

    def __post_init__(self):
        if self.temporal_combine not in ("spade", "linear"):
            raise ValueError(f"temporal_combine must be 'spade' or 'linear', got {self.temporal_combine!r}")
        if self.first_frame_size is not None:
            self.first_frame_size = tuple(self.first_frame_size)
        bad = [c for c in self.background_classes if not 0 <= c < self.label_channels]
        if bad:
            raise ValueError(f"background_classes {bad} are not label channels (0..{self.label_channels - 1})")

    @property
    def channels(self) -> list[int]:
        return channels_per_level(self.num_filters, self.max_filters, self.num_layers + 2)

    def cond_channels(self, level: int) -> list[int]:
        """SPADE inputs of a generator level: the label embedding, plus the warped-frame embedding."""
        d = min(level, self.embed_num_downsamples)
        c = min(self.max_filters, self.num_filters * 2 ** d)
        two = self.temporal_combine == "spade" and d < self.num_multi_spade_layers and self.num_prev_frames > 0
        return [c, c] if two else [c]


@dataclass
class Vid2VidOutput(OutputMapping):
    """One generated frame (names as in the reference's output dict)."""

    fake_images: torch.Tensor                        # (B, 3, H, W) in [-1, 1]
    fake_flow_maps: torch.Tensor | None              # (B, 2, H, W) in pixels, previous -> current
    fake_occlusion_masks: torch.Tensor | None        # (B, 1, H, W) in (0, 1): weight of the new image
    warped_images: torch.Tensor | None               # (B, 3, H, W) previous output warped
    fake_raw_images: torch.Tensor | None             # hallucinated image h_t (linear blend only)


def background_mask(label: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """(B, 1, H, W): 1 where the one-hot label is one of the background classes."""
    return label[:, classes].sum(dim=1, keepdim=True).clamp(0, 1)


class Vid2VidGenerator(nn.Module):
    """generator(label=, prev_labels=, prev_images=) -> Vid2VidOutput.

    label (B, L, H, W) one-hot; prev_labels (B, T, L, H, W) and prev_images (B, T, 3, H, W),
    oldest first, T <= num_prev_frames, or None for the first frame. H and W must be multiples of
    2^max(num_layers, flow_num_downsamples, embed_num_downsamples) for the first frame's path.
    """

    def __init__(self, cfg: Vid2VidConfig):
        super().__init__()
        self.cfg = cfg
        ch, sn, k = cfg.channels, cfg.spectral_norm, cfg.kernel_size

        def res_block(c_in, c_out, level):
            return SPADEResBlock(c_in, c_out, cfg.cond_channels(level), kernel_size=k,
                                 spade_kernel_size=cfg.spade_kernel_size, spectral=sn)

        self.label_embedding = LabelEmbedding(cfg.label_channels, num_filters=cfg.num_filters,
                                              max_filters=cfg.max_filters,
                                              num_downsamples=cfg.embed_num_downsamples, kernel_size=k, spectral=sn)
        self.up = nn.ModuleList([res_block(ch[i + 1], ch[i], i) for i in range(cfg.num_layers + 1)])
        self.to_image = nn.Conv2d(cfg.num_filters, cfg.image_channels, k, padding=k // 2)
        if cfg.background_classes:
            self.to_background_image = nn.Conv2d(cfg.num_filters, cfg.image_channels, k, padding=k // 2)
        # First frame: the label, shrunk to the bottleneck, mapped to features.
        self.first_frame_input = nn.Conv2d(cfg.label_channels, ch[cfg.num_layers + 1], k, padding=k // 2)
        if cfg.num_prev_frames == 0:  # a per-frame generator: no flow, no warping (the papers' baseline)
            return
        # Later frames: the previous output encoded under its label.
        self.prev_image_input = nn.Conv2d(cfg.image_channels, cfg.num_filters, k, padding=k // 2)
        self.down = nn.ModuleList([res_block(ch[i], ch[i + 1], i) for i in range(cfg.num_downsamples_img + 1)])
        num_res = math.ceil((cfg.num_layers - cfg.num_downsamples_img) / 2) * 2
        bottleneck = cfg.num_downsamples_img + 1
        self.res = nn.ModuleList([res_block(ch[bottleneck], ch[bottleneck], bottleneck) for _ in range(num_res)])
        frames = cfg.num_prev_frames + 1
        self.flow_network = FlowNetwork(
            cfg.label_channels * frames, cfg.image_channels * cfg.num_prev_frames, num_filters=cfg.num_filters,
            max_filters=cfg.max_filters, num_downsamples=cfg.flow_num_downsamples,
            num_res_blocks=cfg.flow_res_blocks, kernel_size=k, multiplier=cfg.flow_multiplier,
            separate_image_encoder=True, pre_activation=False, spectral=sn)
        if cfg.temporal_combine == "spade":
            self.prev_image_embedding = LabelEmbedding(
                cfg.image_channels + 1, num_filters=cfg.num_filters, max_filters=cfg.max_filters,
                num_downsamples=cfg.embed_num_downsamples, kernel_size=k, unet=True, spectral=sn)

    def reset(self):
        """Nothing is cached between frames; present so both generators stream the same way."""

    def forward(self, label: torch.Tensor, prev_labels: torch.Tensor | None = None,
                prev_images: torch.Tensor | None = None,
                prev_flow: tuple[torch.Tensor, torch.Tensor] | None = None) -> Vid2VidOutput:
        """prev_flow (flow (B, 2, H, W), weight (B, 1, H, W) in [0, 1]), optional: a flow from this frame to the
        previous one known otherwise (a face's landmarks), taken where its weight is 1 in place of the flow
        network's: w * given + (1 - w) * predicted."""
        cfg = self.cfg
        self.check_inputs(label, prev_labels, prev_images)
        levels_now = self.label_embedding(label)
        ned = cfg.embed_num_downsamples

        if prev_images is None:
            size = cfg.first_frame_size or tuple(label.shape[-2:])
            x = F.interpolate(label, size=(size[0] // 2 ** cfg.num_layers, size[1] // 2 ** cfg.num_layers))
            x = self.first_frame_input(x)
            for i in reversed(range(cfg.num_downsamples_img + 1, cfg.num_layers + 1)):
                x = upsample2x(self.up[i](x, [levels_now[min(ned, i)]]))
        else:
            levels_prev = self.label_embedding(prev_labels[:, -1])
            x = self.prev_image_input(prev_images[:, -1])
            for i, block in enumerate(self.down):
                x = block(x, [levels_prev[min(ned, i)]])
                if i != cfg.num_downsamples_img:
                    # count_include_pad: border averages are divided by 9, as in the reference.
                    x = F.avg_pool2d(x, 3, 2, 1)
            level = min(ned, cfg.num_downsamples_img + 1)
            for r, block in enumerate(self.res):
                # The first half is conditioned on the previous label, the second on the current.
                x = block(x, [(levels_prev if r < len(self.res) // 2 else levels_now)[level]])

        flow = mask = warped = warped_levels = None
        if prev_labels is not None and prev_labels.shape[1] == cfg.num_prev_frames:
            labels = torch.cat([prev_labels.flatten(1, 2), label], dim=1)  # oldest first, current last
            flow, mask = self.flow_network(labels, prev_images.flatten(1, 2))
            if prev_flow is not None:
                given, weight = (x.to(flow.dtype) for x in prev_flow)
                flow = weight * given + (1 - weight) * flow
            warped = warp(prev_images[:, -1], flow)
            if cfg.temporal_combine == "spade":
                warped_levels = self.prev_image_embedding(torch.cat([warped, mask], dim=1))

        for i in reversed(range(cfg.num_downsamples_img + 1)):
            j = min(i, ned)
            conds = [levels_now[j]]
            if warped_levels is not None and i < cfg.num_multi_spade_layers:
                conds.append(warped_levels[j])
            x = self.up[i](x, conds)
            if i:
                x = upsample2x(x)

        x = F.leaky_relu(x, LEAKY_SLOPE)
        hallucinated = torch.tanh(self.to_image(x))
        if cfg.background_classes:
            m_b = background_mask(F.interpolate(label, size=x.shape[-2:]), cfg.background_classes)
            hallucinated = (1 - m_b) * hallucinated + m_b * torch.tanh(self.to_background_image(x))
        if cfg.temporal_combine == "linear" and warped is not None:
            return Vid2VidOutput(blend(warped, hallucinated, mask), flow, mask, warped, hallucinated)
        return Vid2VidOutput(hallucinated, flow, mask, warped, None)

    def check_inputs(self, label, prev_labels, prev_images) -> None:
        cfg = self.cfg
        if label.dim() != 4 or label.shape[1] != cfg.label_channels:
            raise ValueError(f"label must be (B, {cfg.label_channels}, H, W), got {tuple(label.shape)}")
        b, _, h, w = label.shape
        step = 2 ** max(cfg.embed_num_downsamples, cfg.flow_num_downsamples, cfg.num_downsamples_img)
        if h % step or w % step:
            raise ValueError(f"frame size {h}x{w} must be a multiple of {step} in both dimensions")
        if (prev_labels is None) != (prev_images is None):
            raise ValueError("prev_labels and prev_images must be given together")
        if prev_labels is None:
            return
        t = prev_labels.shape[1] if prev_labels.dim() == 5 else 0
        if prev_labels.shape != (b, t, cfg.label_channels, h, w) or not 0 < t <= cfg.num_prev_frames:
            raise ValueError(f"prev_labels must be ({b}, 1..{cfg.num_prev_frames}, {cfg.label_channels}, {h}, {w}), "
                             f"got {tuple(prev_labels.shape)}")
        if prev_images.shape != (b, t, cfg.image_channels, h, w):
            raise ValueError(f"prev_images must be ({b}, {t}, {cfg.image_channels}, {h}, {w}), "
                             f"got {tuple(prev_images.shape)}")

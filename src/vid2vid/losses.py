"""Training losses: GAN, discriminator feature matching, VGG19 perceptual, flow, warp, occlusion mask, L1.

The terms and their weights are those of NVIDIA imaginaire's vid2vid and few-shot vid2vid trainers; each
function's docstring gives its formula. All of them return a float32 scalar-shaped tensor, average over
every element they see, and work under autocast (no float64, nothing in place).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vid2vid.checkpoint import read_torch_file
from vid2vid.nn.warp import warp
from vid2vid.settings import Settings

GAN_MODES = ("hinge", "least_squares", "non_saturating")


@dataclass
class LossWeights(Settings):
    """Weights of the generator's loss terms; defaults are imaginaire's recipes (dancing, face, Cityscapes
    share them) and the vid2vid paper's weight for the temporal D, which those recipes leave out."""

    SECTION = "loss weight"

    gan: float = 1.0
    feature_matching: float = 10.0   # also weighs the temporal and region Ds' feature matching
    perceptual: float = 10.0
    flow: float = 10.0               # imaginaire weighs flow L1, warp and mask terms all by its `flow`
    warp: float = 10.0
    mask: float = 10.0
    temporal_gan: float = 1.0
    region_gan: float = 10.0         # face (and hand) D; imaginaire's dancing face D has loss_weight 10
    l1: float = 0.0
    temporal_l1: float = 0.0         # output vs the previous output warped by the teacher flow; not imaginaire's


# --------------------------------------------------------------------------------------------------- GAN


def gan_loss(logits_list: Sequence[torch.Tensor], target_is_real: bool, for_discriminator: bool,
             mode: str = "hinge") -> torch.Tensor:
    """GAN loss of a multi-scale D: the mean over scales of the mean over each scale's logits x of

        hinge           D: max(0, 1 - x) for real, max(0, 1 + x) for fake;   G: -x
        least_squares   0.5 (x - 1)^2 for real, 0.5 x^2 for fake (G: as real)
        non_saturating  softplus(-x) for real, softplus(x) for fake (G: as real), i.e. BCE on logits

    Scales are averaged after their own means so that the finest scale's many patches do not dominate.
    The generator's loss is asked for with target_is_real=True, for_discriminator=False.
    """
    if mode not in GAN_MODES:
        raise ValueError(f"gan mode must be one of {', '.join(GAN_MODES)}, got {mode!r}")
    if not for_discriminator and not target_is_real:
        raise ValueError("the generator's GAN loss targets real")
    sign = 1.0 if target_is_real else -1.0
    losses = []
    for x in logits_list:
        x = x.float()
        if mode == "hinge":
            loss = F.relu(1 - sign * x).mean() if for_discriminator else -x.mean()
        elif mode == "least_squares":
            loss = 0.5 * (x - (1.0 if target_is_real else 0.0)).square().mean()
        else:
            loss = F.softplus(-sign * x).mean()
        losses.append(loss)
    return torch.stack(losses).mean()


def feature_matching_loss(fake_features: Sequence[Sequence[torch.Tensor]],
                          real_features: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """sum over D scales i and layers j of mean |f_ij - r_ij| / num_scales, the real features detached.

    Arguments are per scale lists of the D's block outputs (PatchOutput.features) for fake and real inputs.
    """
    if len(fake_features) != len(real_features):
        raise ValueError(f"{len(fake_features)} fake and {len(real_features)} real scales")
    total = fake_features[0][0].new_zeros((), dtype=torch.float32)
    for fake_scale, real_scale in zip(fake_features, real_features, strict=True):
        for fake, real in zip(fake_scale, real_scale, strict=True):
            total = total + F.l1_loss(fake.float(), real.detach().float())
    return total / len(fake_features)


# ---------------------------------------------------------------------------------------- pixel losses


def l1(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """mean over all elements of input of weight * |input - target|; weight broadcasts (e.g. (B, 1, H, W)
    over channels). Zero-weight pixels add nothing but still count in the mean (imaginaire's masked L1)."""
    diff = (input.float() - target.float()).abs()
    if weight is not None:
        diff = diff * weight.float()
    return diff.mean()


def flow_loss(pred_flow: torch.Tensor, teacher_flow: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """mean of c * |f - f_teacher| over (B, 2, H, W), c the teacher's confidence (B, 1, H, W) in [0, 1]
    (for pose data with DensePose, times the dilated foreground: see flow_terms)."""
    return l1(pred_flow, teacher_flow, confidence)


def warp_loss(warped: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """mean of w * |warped - target|: an image warped by the predicted flow against the real target frame.

    imaginaire uses no weight (warped previous output and warped reference vs the real frame); the paper
    weighs it by the teacher flow's confidence.
    """
    return l1(warped, target, weight)


def temporal_l1(fake: torch.Tensor, previous_fake: torch.Tensor, teacher_flow: torch.Tensor,
                confidence: torch.Tensor) -> torch.Tensor:
    """mean of c * |y_t - warp(y_{t-1}, f)|: the generated frame against the previous generated frame
    warped onto it by the teacher's backward flow f (frame t -> t - 1) and weighed by its confidence c, the
    flicker the warping error measures. previous_fake is detached: only frame t is pushed."""
    return l1(fake, warp(previous_fake.detach(), teacher_flow), confidence)


def mask_loss(mask: torch.Tensor, warped: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pulls the occlusion mask m (B, 1, H, W), the weight of the newly generated image, to 0 where the
    warped image already matches the real frame and to 1 where it does not:

        c = clamp(1 - sum_channels |warped - target|, 0, 1)
        loss = mean(c * |m - 0|) + mean((1 - c) * |m - 1|)

    As in imaginaire, c is not detached: the term also pushes the warped image (and so the flow).
    """
    confidence = (1 - (warped.float() - target.float()).abs().sum(dim=1, keepdim=True)).clamp(0, 1)
    return l1(mask, torch.zeros_like(mask), confidence) + l1(mask, torch.ones_like(mask), 1 - confidence)


# DensePose part groups of imaginaire's body-part mask terms, by part index I (0 = background).
BODY_PART_GROUPS = ((0,), (1, 2), (3, 4), (5, 6), (7, 8, 9, 10), (11, 12, 13, 14), (15, 16, 17, 18),
                    (19, 20, 21, 22), (23, 24))
FOREGROUND_REACH = 7  # the foreground mask is the body dilated by this many pixels (a 15 x 15 max filter)


def densepose_part_index(label: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) pose label (DensePose channel 2 = I / 12 - 1) -> (B, 1, H, W) part index I in 0..24."""
    return (label[:, 2:3].float() / 2 + 0.5) * 24


def body_part_masks(label: torch.Tensor) -> torch.Tensor:
    """(B, 9, H, W) binary masks of the BODY_PART_GROUPS."""
    part = densepose_part_index(label)
    return torch.cat([sum(((part - j).abs() < 0.1).float() for j in group) for group in BODY_PART_GROUPS], dim=1)


def foreground_mask(label: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): 1 within FOREGROUND_REACH pixels (Chebyshev) of a DensePose body pixel; 1 everywhere for
    a sample whose label has no DensePose at all (OpenPose-only data), so that its flow is still supervised."""
    part = label[:, 2:3].float()
    reach = 2 * FOREGROUND_REACH + 1
    near_body = (F.max_pool2d(part, reach, 1, FOREGROUND_REACH) > -1).float()
    has_densepose = (part > -1).flatten(1).any(dim=1).view(-1, 1, 1, 1)
    return torch.where(has_densepose, near_body, torch.ones_like(near_body))


def blurred_face_mask(label: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): the DensePose face parts (23, 24) through a 15 x 15 box filter, zero padding counted."""
    part = densepose_part_index(label)
    face = (((part - 23).abs() < 0.1) | ((part - 24).abs() < 0.1)).float()
    reach = 2 * FOREGROUND_REACH + 1
    return F.avg_pool2d(face, reach, 1, FOREGROUND_REACH, count_include_pad=True)


@dataclass
class FlowBranch:
    """One warped source of a frame (the reference, or the previous output) and its teacher."""

    flow: torch.Tensor                       # (B, 2, H, W) predicted, in pixels, on the target's grid
    mask: torch.Tensor                       # (B, 1, H, W) occlusion mask: weight of the hallucinated image
    warped: torch.Tensor                     # (B, 3, H, W) the source warped by flow
    teacher_flow: torch.Tensor | None = None        # (B, 2, H, W)
    teacher_confidence: torch.Tensor | None = None  # (B, 1, H, W)


class FlowTerms(NamedTuple):
    flow: torch.Tensor  # flow L1 against the teacher
    warp: torch.Tensor  # warped sources (and, with DensePose, warped reference masks) against the target
    mask: torch.Tensor  # occlusion-mask terms


def flow_terms(image: torch.Tensor, fake: torch.Tensor, reference: FlowBranch | None, previous: FlowBranch | None,
               label: torch.Tensor | None = None, ref_label: torch.Tensor | None = None) -> FlowTerms:
    """imaginaire's FlowLoss for one frame: each term is the SUM over the branches present (not a mean).

    image: the real target (B, 3, H, W); fake: the generated frame. A branch without a teacher has no flow
    term. label and ref_label (pose data, DensePose channels first) switch on the DensePose terms of the
    reference branch: the flow term restricted to the dilated foreground, the reference's body-part and
    foreground masks warped onto the target's, the face rule (mask -> 0 and output ~ warped reference in the
    blurred face) and mask -> 1 where warped parts or foregrounds disagree. A sample without DensePose gets
    a foreground of 1 and no part or face terms (its part masks are all background). Only the teacher is
    outside the graph; every mask made from predictions carries gradient, as in imaginaire.
    """
    zero = image.new_zeros((), dtype=torch.float32)
    flow, warp_term, mask = zero, zero, zero
    densepose = label is not None and ref_label is not None
    fg = foreground_mask(label) if densepose else None
    for branch in (reference, previous):
        if branch is None:
            continue
        if branch.teacher_flow is not None:
            weight = branch.teacher_confidence
            if densepose:
                weight = weight * fg
            flow = flow + flow_loss(branch.flow, branch.teacher_flow, weight)
        warp_term = warp_term + warp_loss(branch.warped, image)
        mask = mask + mask_loss(branch.mask, branch.warped, image)
    if densepose and reference is not None:
        parts = body_part_masks(label)
        warped_ref_parts = warp(body_part_masks(ref_label), reference.flow)
        warp_term = warp_term + l1(warped_ref_parts, parts)
        body_diff = (warped_ref_parts - parts).abs().sum(dim=1, keepdim=True)  # (B, 1, H, W) in [0, 2]
        face = blurred_face_mask(label)
        occlusion = reference.mask
        mask = (mask + l1(occlusion, torch.zeros_like(occlusion), face) + l1(fake, reference.warped, face)
                + l1(occlusion, torch.ones_like(occlusion), body_diff))
        ref_fg = foreground_mask(ref_label)
        warp_term = warp_term + l1(warp(ref_fg, reference.flow), fg)
        mask = mask + l1(occlusion, torch.ones_like(occlusion), (ref_fg - fg > 0).float())
    return FlowTerms(flow, warp_term, mask)


# ------------------------------------------------------------------------------------------ perceptual

# torchvision's vgg19().features: conv widths, "M" a 2x2 max pool. A conv at index i has its ReLU at i + 1.
VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
VGG19_LAYERS = {"relu_1_1": 1, "relu_1_2": 3, "relu_2_1": 6, "relu_2_2": 8,
                "relu_3_1": 11, "relu_3_2": 13, "relu_3_3": 15, "relu_3_4": 17,
                "relu_4_1": 20, "relu_4_2": 22, "relu_4_3": 24, "relu_4_4": 26,
                "relu_5_1": 29, "relu_5_2": 31, "relu_5_3": 33, "relu_5_4": 35}
PERCEPTUAL_LAYERS = ("relu_1_1", "relu_2_1", "relu_3_1", "relu_4_1", "relu_5_1")
PERCEPTUAL_WEIGHTS = (0.03125, 0.0625, 0.125, 0.25, 1.0)
VGG19_HUB_FILE = "vgg19-dcbb9e9d.pth"  # the name torchvision gives its ImageNet VGG19 in the hub cache
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """The convolutional part of VGG19, laid out as torchvision's `vgg19().features` so that its state dict
    keys (features.0.weight ... features.34.bias) load unchanged. ReLUs are not in place."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for item in VGG19_PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of the layers at the given indices of `features`, in that order; stops at the last."""
        wanted = {index: None for index in indices}
        for i, layer in enumerate(self.features[:max(indices) + 1]):
            x = layer(x)
            if i in wanted:
                wanted[i] = x
        return [wanted[index] for index in indices]


VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"


def load_vgg19(path: str | Path | None = None, required: bool = False) -> VGG19Features | None:
    """ImageNet VGG19 features for the perceptual loss, frozen and in eval mode, from a torchvision-format
    state dict at `path`, or when path is None from the torch hub cache (hub_dir/checkpoints/vgg19-dcbb9e9d.pth).

    With no path and nothing cached: `required` (training, where a warning scrolls by unseen on a run of days)
    raises a one-line ValueError saying where to put the weights or how to train without the term; else it
    warns and returns None (a few fine-tuning steps go on without it rather than with random VGG weights). A
    configured path that is missing or unusable raises a one-line ValueError naming the file. Keys outside
    `features.` (torchvision's classifier) are ignored.
    """
    if path is None:
        path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_HUB_FILE
        if not path.is_file() and required:
            raise ValueError(f"no VGG19 weights at {path}, and the config weighs the perceptual loss: download "
                             f"{VGG19_URL} there, or name the file in loss.vgg19_weights, or train with "
                             "--no-perceptual (loss.weights.perceptual: 0)")
        if not path.is_file():
            warnings.warn(f"no VGG19 weights at {path}: going on without the perceptual loss "
                          "(configure a torchvision vgg19 state dict to use it)", stacklevel=2)
            return None
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such VGG19 weights file")
    state = read_torch_file(path, "VGG19 state dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a torchvision vgg19 state dict")
    vgg = VGG19Features()
    expected = vgg.state_dict()
    features = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    missing = sorted(set(expected) - set(features))
    unexpected = sorted(set(features) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: not a torchvision vgg19 state dict (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    for key, value in features.items():
        if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{path}: {key} is {shape}, VGG19 needs {tuple(expected[key].shape)}")
    vgg.load_state_dict(features)
    return vgg.eval().requires_grad_(False)


class PerceptualLoss(nn.Module):
    """sum over scales s and layers l of w_l * mean |phi_l(D^s N(fake)) - phi_l(D^s N(real))|

    phi_l: VGG19 activations; N: [-1, 1] images to ImageNet-normalised ([0, 1], then mean/std per channel);
    D^s: s halvings (bilinear, no corner alignment), s = 0 .. num_scales - 1. Real features are computed
    without gradient. Defaults: imaginaire's recipes (relu_1_1 .. relu_5_1 weighted 1/32 .. 1, 3 scales);
    the smallest scale must stay at least 16 pixels for relu_5_1.
    """

    def __init__(self, vgg: VGG19Features, layers: Sequence[str] = PERCEPTUAL_LAYERS,
                 weights: Sequence[float] = PERCEPTUAL_WEIGHTS, num_scales: int = 3):
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG19 layers {unknown}; known: {', '.join(VGG19_LAYERS)}")
        if len(layers) != len(weights):
            raise ValueError(f"{len(layers)} perceptual layers but {len(weights)} weights")
        self.vgg = vgg.eval().requires_grad_(False)
        self.indices = [VGG19_LAYERS[name] for name in layers]
        self.weights = list(weights)
        self.num_scales = num_scales
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return ((images + 1) / 2 - self.mean) / self.std

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """fake, real: (B, 3, H, W) in [-1, 1]."""
        fake, real = self.normalize(fake), self.normalize(real)
        total = fake.new_zeros((), dtype=torch.float32)
        for scale in range(self.num_scales):
            if scale > 0:
                size = (fake.shape[-2] // 2, fake.shape[-1] // 2)
                fake = F.interpolate(fake, size=size, mode="bilinear", align_corners=False)
                real = F.interpolate(real, size=size, mode="bilinear", align_corners=False)
            with torch.no_grad():
                real_features = self.vgg(real, self.indices)
            for weight, f, r in zip(self.weights, self.vgg(fake, self.indices), real_features, strict=True):
                total = total + weight * F.l1_loss(f.float(), r.float())
        return total

"""What training builds from its config: the generator, the discriminators, their initialisation, the optimizers,
the gradient scaler, the perceptual loss and the averaged generator, held together as `Nets`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from vid2vid import losses
from vid2vid.models.discriminators import (
    MultiScalePatchDiscriminator,
    RegionDiscriminator,
    TemporalDiscriminator,
    image_input_channels,
)
from vid2vid.models.flow import FlowNetwork
from vid2vid.training.average import ModelAverage
from vid2vid.training.config import TrainConfig, make_generator


class Discriminators(torch.nn.Module):
    """The discriminators a config trains. One whose GAN weight is 0 is not built, as imaginaire gates its D on
    the weight: no D update, and no GAN or feature-matching term for G (a zero weight skips the work, not only
    the sum)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        dcfg, few_shot, weights = cfg.discriminator, cfg.few_shot, cfg.loss.weights
        self.image = (MultiScalePatchDiscriminator.from_config(
            image_input_channels(cfg.data.label_channels, few_shot=few_shot), dcfg.image) if weights.gan > 0 else None)
        self.temporal = (TemporalDiscriminator.from_config(dcfg.temporal)
                         if dcfg.temporal.enabled and weights.temporal_gan > 0 else None)
        regions = cfg.data.task == "pose" and weights.region_gan > 0
        # Few-shot region Ds see the crop beside the chosen reference cropped at the same box (imaginaire's face D).
        region_channels = 6 if few_shot else 3
        self.face = (RegionDiscriminator.from_config(dcfg.face, region_channels) if dcfg.face.enabled and regions
                     else None)
        self.hands = (RegionDiscriminator.from_config(dcfg.hands, region_channels) if dcfg.hands.enabled and regions
                      else None)


def init_weights(model: torch.nn.Module, gain: float = 0.02) -> None:
    """imaginaire's initialisation: conv and linear weights xavier-normal with gain 0.02, biases zero. The flow
    and mask heads then start at zero: zero flow and an even blend whatever the gain (at gain 1.0 they gave
    ~19 px of random flow on a 64 px frame; at 0.02 they are near zero anyway)."""
    for module in model.modules():
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            continue
        parametrized = getattr(module, "parametrizations", None)
        weight = parametrized.weight.original if parametrized is not None and "weight" in parametrized else \
            module.weight
        torch.nn.init.xavier_normal_(weight, gain=gain)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, FlowNetwork):
            for head in (module.flow_head, module.mask_head):
                for conv in head.modules():
                    if isinstance(conv, torch.nn.Conv2d):
                        torch.nn.init.zeros_(conv.weight)


@dataclass
class Nets:
    """What one training step reads and updates."""
    G: torch.nn.Module
    D: Discriminators | None  # None: fine-tuning without discriminators
    average: ModelAverage | None  # None: fine-tuning keeps no average
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler | None
    perceptual: losses.PerceptualLoss | None
    device: torch.device
    amp_dtype: torch.dtype | None
    world: int = 1

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def perceptual_loss(cfg: TrainConfig, device: torch.device, required: bool = False) -> losses.PerceptualLoss | None:
    """The config's VGG19 perceptual loss; None when its weight is 0, or (not `required`) when no VGG19 weights
    are at hand."""
    vgg = losses.load_vgg19(cfg.loss.vgg19_weights, required) if cfg.loss.weights.perceptual > 0 else None
    return None if vgg is None else losses.PerceptualLoss(vgg, num_scales=cfg.loss.perceptual_scales).to(device)


def build_nets(cfg: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None, world: int = 1) -> Nets:
    """Fresh, initialised networks and optimizers; the seed is set by the caller."""
    G = make_generator(cfg).to(device).train()
    D = Discriminators(cfg).to(device).train()
    init_weights(G, cfg.optim.init_gain)
    init_weights(D, cfg.optim.init_gain)
    opt = cfg.optim
    opt_G = torch.optim.Adam(G.parameters(), lr=opt.lr_G, betas=opt.betas)
    trains_a_D = next(D.parameters(), None) is not None  # not when every GAN weight is 0: L1, perceptual, flow
    opt_D = torch.optim.Adam(D.parameters(), lr=opt.lr_D, betas=opt.betas) if trains_a_D else None
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    perceptual = perceptual_loss(cfg, device, required=True)
    average = ModelAverage(G, opt.ema_decay, opt.ema_start)
    return Nets(G, D, average, opt_G, opt_D, scaler, perceptual, device, amp_dtype, world)

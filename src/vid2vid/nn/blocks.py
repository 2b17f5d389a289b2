"""Convolution, linear and residual blocks, spectral norm, generated-weight convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

LEAKY_SLOPE = 0.2


def with_spectral_norm(layer: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(layer) if enabled else layer


def fold_spectral_norm(module: nn.Module) -> nn.Module:
    """Replace every spectral-norm parametrization by the plain weight it currently yields.

    In eval mode the parametrization divides by u·(W v) with the stored u, v, so the folded
    weight is exactly what the network used; inference then skips that work on every call.
    """
    was_training = module.training
    module.eval()
    for layer in module.modules():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    module.train(was_training)
    return module


def activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name == "relu":
        return nn.ReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {name!r}")


class ConvBlock(nn.Module):
    """conv -> [affine instance norm] -> [activation], the post-activation block of the reference.

    `padding` defaults to kernel_size // 2; a stride-2 block halves the resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 *, norm: bool = False, act: str | None = "leaky_relu", spectral: bool = True,
                 norm_eps: float = 1e-5):
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
        self.conv = with_spectral_norm(conv, spectral)
        self.norm = nn.InstanceNorm2d(out_channels, affine=True, eps=norm_eps) if norm else None
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x)


class LinearBlock(nn.Module):
    """linear -> [activation], applied to the last dimension."""

    def __init__(self, in_features: int, out_features: int, *, act: str | None = "leaky_relu",
                 spectral: bool = True):
        super().__init__()
        self.linear = with_spectral_norm(nn.Linear(in_features, out_features), spectral)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class ResBlock(nn.Module):
    """Residual block with affine instance norms and an identity shortcut, in one of the two
    orders the reference's flow networks use:
    pre-activation: x + conv(act(norm(conv(act(norm(x))))))   (few-shot vid2vid)
    post-activation: x + norm(conv(act(norm(conv(x)))))       (vid2vid)
    """

    def __init__(self, channels: int, kernel_size: int = 3, *, pre_activation: bool = True, spectral: bool = True):
        super().__init__()
        padding = kernel_size // 2
        self.pre_activation = pre_activation
        self.norm_0 = nn.InstanceNorm2d(channels, affine=True)
        self.conv_0 = with_spectral_norm(nn.Conv2d(channels, channels, kernel_size, 1, padding), spectral)
        self.norm_1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv_1 = with_spectral_norm(nn.Conv2d(channels, channels, kernel_size, 1, padding), spectral)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_activation:
            dx = self.conv_0(F.leaky_relu(self.norm_0(x), LEAKY_SLOPE))
            dx = self.conv_1(F.leaky_relu(self.norm_1(dx), LEAKY_SLOPE))
        else:
            dx = F.leaky_relu(self.norm_0(self.conv_0(x)), LEAKY_SLOPE)
            dx = self.norm_1(self.conv_1(dx))
        return x + dx


def generated_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Convolve each sample with its own weights in one call.

    x: (B, C_in, H, W); weight: (B, C_out, C_in, k, k); bias: (B, C_out) or None.
    """
    b, c_in, h, w = x.shape
    c_out, k = weight.shape[1], weight.shape[-1]
    if k == 1 and stride == 1 and padding == 0:
        # A 1x1 convolution per sample is a batched matrix product, cheaper than a grouped conv.
        flat = x.reshape(b, c_in, h * w)
        if bias is None:
            out = torch.bmm(weight.reshape(b, c_out, c_in), flat)
        else:
            out = torch.baddbmm(bias.unsqueeze(-1), weight.reshape(b, c_out, c_in), flat)
        return out.reshape(b, c_out, h, w)
    out = F.conv2d(x.reshape(1, b * c_in, h, w), weight.reshape(b * c_out, c_in, k, k),
                   None if bias is None else bias.reshape(-1), stride, padding, groups=b)
    return out.reshape(b, c_out, out.shape[-2], out.shape[-1])


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def channels_per_level(num_filters: int, max_filters: int, levels: int) -> list[int]:
    """Feature widths that double with each downsampling, capped at max_filters."""
    return [min(max_filters, num_filters * 2 ** i) for i in range(levels)]

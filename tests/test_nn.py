"""Shared building blocks: warp, generated-weight convolution, SPADE, spectral-norm folding."""

import torch
import torch.nn.functional as F

from vid2vid.nn.blocks import fold_spectral_norm, generated_conv2d
from vid2vid.nn.spade import SPADE
from vid2vid.nn.warp import warp


def test_zero_flow_is_identity():
    image = torch.rand(2, 3, 7, 5)
    assert (warp(image, torch.zeros(2, 2, 7, 5)) - image).abs().max() < 1e-6


def test_integer_flow_shifts_with_border_replication():
    image = torch.arange(20.0).view(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 1.0  # every output pixel samples one pixel to its right
    out = warp(image, flow)
    assert torch.allclose(out[..., :4], image[..., 1:], atol=1e-5)
    assert torch.allclose(out[..., 4], image[..., 4], atol=1e-5)  # border column repeated
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 1] = -0.5  # half a pixel up: the mean of two rows
    out = warp(image, flow)
    assert torch.allclose(out[:, :, 1:], (image[:, :, 1:] + image[:, :, :-1]) / 2, atol=1e-5)


def test_generated_conv_equals_per_sample_conv():
    torch.manual_seed(0)
    for k, stride in ((1, 1), (3, 1), (3, 2)):
        x = torch.randn(3, 4, 8, 8)
        weight, bias = torch.randn(3, 5, 4, k, k), torch.randn(3, 5)
        got = generated_conv2d(x, weight, bias, stride=stride, padding=k // 2)
        want = torch.cat([F.conv2d(x[i:i + 1], weight[i], bias[i], stride, k // 2) for i in range(3)])
        assert torch.allclose(got, want, atol=1e-5)


def test_spade_applies_inputs_in_sequence_and_skips_absent_ones():
    torch.manual_seed(0)
    spade = SPADE(4, [3, 2], kernel_size=1)
    x, c0, c1 = torch.randn(2, 4, 6, 6), torch.randn(2, 3, 3, 3), torch.randn(2, 2, 6, 6)
    y = F.instance_norm(x)
    g0, b0 = spade.projections["0"](F.interpolate(c0, size=(6, 6))).chunk(2, 1)
    g1, b1 = spade.projections["1"](c1).chunk(2, 1)
    assert torch.allclose(spade(x, [c0, c1]), (y * (1 + g0) + b0) * (1 + g1) + b1, atol=1e-5)
    assert torch.allclose(spade(x, [c0, None]), y * (1 + g0) + b0, atol=1e-5)


def test_spade_with_generated_first_input():
    torch.manual_seed(0)
    spade = SPADE(4, [3, 2], kernel_size=1, generated_first=True)
    assert set(spade.projections) == {"1"}
    x, c0 = torch.randn(2, 4, 5, 5), torch.randn(2, 3, 5, 5)
    weight, bias = torch.randn(2, 8, 3, 1, 1), torch.randn(2, 8)
    gamma, beta = generated_conv2d(c0, weight, bias).chunk(2, 1)
    assert torch.allclose(spade(x, [c0, None], (weight, bias)), F.instance_norm(x) * (1 + gamma) + beta, atol=1e-5)


def test_folding_spectral_norm_keeps_eval_outputs():
    from vid2vid.nn.blocks import ConvBlock

    torch.manual_seed(0)
    block = ConvBlock(3, 4, norm=True).eval()
    x = torch.randn(1, 3, 8, 8)
    before = block(x)
    fold_spectral_norm(block)
    assert "weight" in dict(block.conv.named_parameters())
    assert torch.allclose(block(x), before, atol=1e-6)

"""Loss details a mutation test (mutmut over losses.py, with test_losses and the flow parity tests) left
unpinned: the default weights, the default GAN mode, per-sample masks in a batch of two, the previous-frame
branch alone, and the perceptual loss's second scale on a non-square frame. Each test names the mutant it kills."""

import pytest
import torch
import torch.nn.functional as F

from vid2vid.losses import (
    FlowBranch,
    LossWeights,
    PerceptualLoss,
    VGG19Features,
    flow_terms,
    foreground_mask,
    gan_loss,
    mask_loss,
)


def test_the_default_loss_weights_are_imaginaires_recipes_and_the_papers_temporal_weight():
    """Mutants: any default changed (warp 10 -> 11, mask, temporal_gan, l1 0 -> 1, temporal_l1) survived."""
    expected = {"gan": 1.0, "feature_matching": 10.0, "perceptual": 10.0, "flow": 10.0, "warp": 10.0, "mask": 10.0,
                "temporal_gan": 1.0, "region_gan": 10.0, "l1": 0.0, "temporal_l1": 0.0}
    assert LossWeights().to_dict() == expected


def test_the_default_gan_mode_is_hinge():
    """Mutant: mode="XXhingeXX" as the default survived. Hinge for D on real logits: mean(relu(1 - x))."""
    logits = torch.tensor([[-2.0, 0.5, 3.0]])
    assert gan_loss([logits], True, True).item() == torch.relu(1 - logits).mean().item() == pytest.approx(3.5 / 3)


def test_the_mask_loss_confidence_is_per_pixel_of_each_sample_in_a_batch():
    """Mutant: the channel sum without keepdim, (B, H, W) against the mask's (B, 1, H, W), broadcasts to
    (B, B, H, W) and survived with batches of one."""
    torch.manual_seed(0)
    mask = torch.rand(2, 1, 3, 3)
    warped, target = torch.rand(2, 3, 3, 3) * 0.3, torch.rand(2, 3, 3, 3) * 0.3
    c = (1 - (warped - target).abs().sum(1, keepdim=True)).clamp(0, 1)
    by_hand = (c * mask).mean() + ((1 - c) * (1 - mask)).mean()
    torch.testing.assert_close(mask_loss(mask, warped, target), by_hand)


def test_the_foreground_of_a_sample_without_densepose_is_everywhere_and_the_others_only_near_the_body():
    """Mutants: part > -2 or >= -1 (every sample 'has DensePose') and view(+1, ...) (one flag for the batch)."""
    label = torch.full((2, 6, 16, 16), -1.0)
    label[0, :3, 2:4, 2:4] = 0.5  # sample 0: a DensePose body in the top-left corner; sample 1: none
    fg = foreground_mask(label)
    assert fg[1].eq(1).all()
    assert fg[0, 0, 0, 0] == 1 and fg[0, 0, -1, -1] == 0


def test_the_previous_frame_branch_alone_is_scored():
    """Mutant: `continue` -> `break` on a missing reference branch dropped the previous-frame terms."""
    torch.manual_seed(1)
    image = torch.rand(1, 3, 8, 8)
    previous = FlowBranch(flow=torch.zeros(1, 2, 8, 8), mask=torch.rand(1, 1, 8, 8), warped=torch.rand(1, 3, 8, 8),
                          teacher_flow=torch.ones(1, 2, 8, 8), teacher_confidence=torch.ones(1, 1, 8, 8))
    terms = flow_terms(image, image, None, previous)
    torch.testing.assert_close(terms.warp, (previous.warped - image).abs().mean())
    torch.testing.assert_close(terms.flow, torch.tensor(1.0))  # |0 - 1| everywhere, full confidence
    torch.testing.assert_close(terms.mask, mask_loss(previous.mask, previous.warped, image))


def test_densepose_terms_need_both_labels():
    """Mutant: `label is not None or ref_label is not None` switched the DensePose terms on with the target's
    label alone (and then failed on the missing reference label)."""
    torch.manual_seed(2)
    image = torch.rand(1, 3, 8, 8)
    reference = FlowBranch(flow=torch.zeros(1, 2, 8, 8), mask=torch.rand(1, 1, 8, 8), warped=torch.rand(1, 3, 8, 8))
    label = torch.full((1, 6, 8, 8), -1.0)
    label[0, :3, 2:5, 2:5] = 0.3
    assert flow_terms(image, image, reference, None, label=label) == flow_terms(image, image, reference, None)


def test_the_perceptual_loss_halves_both_sides_for_its_second_scale():
    """Mutants: `scale > 1` (no halving before the second scale) and the width halved by the height, on a
    non-square frame. A random VGG stands in for the ImageNet weights (the formula, not the features)."""
    torch.manual_seed(3)
    vgg = VGG19Features()
    loss = PerceptualLoss(vgg, layers=("relu_1_1", "relu_2_1"), weights=(0.5, 2.0), num_scales=2)
    fake, real = torch.rand(1, 3, 32, 48) * 2 - 1, torch.rand(1, 3, 32, 48) * 2 - 1
    f, r = loss.normalize(fake), loss.normalize(real)
    total = torch.zeros(())
    for scale in range(2):
        if scale:
            f, r = (F.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False) for x in (f, r))
        for weight, a, b in zip((0.5, 2.0), vgg(f, [1, 6]), vgg(r, [1, 6]), strict=True):
            total = total + weight * (a - b).abs().mean()
    torch.testing.assert_close(loss(fake, real), total)

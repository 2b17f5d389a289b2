import math
import warnings

import pytest
import torch

from vid2vid.losses import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG19_HUB_FILE,
    LossWeights,
    PerceptualLoss,
    VGG19Features,
    feature_matching_loss,
    flow_loss,
    gan_loss,
    l1,
    load_vgg19,
    mask_loss,
    warp_loss,
)

# Two scales of hand-made logits: (1, 1, 2, 2) and (1, 1, 1, 1).
LOGITS = [torch.tensor([[[[2.0, -0.5], [0.0, 1.0]]]]), torch.tensor([[[[-2.0]]]])]


def softplus(v):
    return math.log1p(math.exp(v))


@pytest.mark.parametrize("mode, real, for_d, want", [
    # per-scale means, then the mean over the two scales
    ("hinge", True, True, (0.625 + 3.0) / 2),                 # max(0, 1 - x)
    ("hinge", False, True, (1.625 + 0.0) / 2),                # max(0, 1 + x)
    ("hinge", True, False, (-0.625 + 2.0) / 2),               # -x
    ("least_squares", True, True, (0.53125 + 4.5) / 2),       # 0.5 (x - 1)^2
    ("least_squares", False, True, (0.65625 + 2.0) / 2),      # 0.5 x^2
    ("least_squares", True, False, (0.53125 + 4.5) / 2),
    ("non_saturating", True, True,
     ((softplus(-2) + softplus(0.5) + softplus(0) + softplus(-1)) / 4 + softplus(2)) / 2),
    ("non_saturating", False, True,
     ((softplus(2) + softplus(-0.5) + softplus(0) + softplus(1)) / 4 + softplus(-2)) / 2),
])
def test_gan_loss_values(mode, real, for_d, want):
    got = gan_loss(LOGITS, real, for_d, mode)
    assert got.dtype == torch.float32 and got.shape == ()
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_gan_loss_refuses_bad_requests():
    with pytest.raises(ValueError, match="targets real"):
        gan_loss(LOGITS, False, False, "hinge")
    with pytest.raises(ValueError, match="gan mode"):
        gan_loss(LOGITS, True, True, "wasserstein")


def test_feature_matching():
    real = [[torch.zeros(1, 2, 3, 3), torch.zeros(1, 4, 2, 2)], [torch.zeros(1, 2, 2, 2)]]
    assert feature_matching_loss(real, real).item() == 0
    fake = [[torch.full((1, 2, 3, 3), -1.0), torch.full((1, 4, 2, 2), 2.0)],
            [torch.full((1, 2, 2, 2), 4.0, requires_grad=True)]]
    real[1][0].requires_grad_()
    loss = feature_matching_loss(fake, real)
    assert loss.item() == pytest.approx((1 + 2) / 2 + 4 / 2)
    loss.backward()
    assert fake[1][0].grad is not None and real[1][0].grad is None


def test_flow_loss_ignores_zero_confidence():
    pred = torch.zeros(1, 2, 2, 2, requires_grad=True)
    teacher = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]])
    confidence = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    loss = flow_loss(pred, teacher, confidence)
    # (1 * (1 + 5) + 0.5 * (3 + 7)) / 8 elements
    assert loss.item() == pytest.approx(11 / 8)
    changed = teacher.clone()
    changed[..., :, 1] = 100.0  # only where the confidence is zero
    assert flow_loss(pred, changed, confidence).item() == pytest.approx(11 / 8)
    loss.backward()
    assert (pred.grad[..., :, 1] == 0).all() and (pred.grad[..., 0, 0] != 0).all()


def test_warp_loss_and_l1():
    warped, real = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert warp_loss(warped, real).item() == pytest.approx(0.5)
    weight = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert warp_loss(warped, real, weight).item() == pytest.approx(0.5 / 4)
    assert l1(warped, real).item() == warp_loss(warped, real).item()


def test_mask_loss():
    mask = torch.full((1, 1, 1, 2), 0.25, requires_grad=True)
    real = torch.zeros(1, 3, 1, 2)
    warped = torch.zeros(1, 3, 1, 2)
    warped[..., 1] = 0.2  # differs by 0.6 over channels at pixel 1 -> confidence 0.4; pixel 0 -> 1
    warped.requires_grad_()
    loss = mask_loss(mask, warped, real)
    # pixel 0: 1 * 0.25; pixel 1: 0.4 * 0.25 + 0.6 * 0.75
    assert loss.item() == pytest.approx((0.25 + 0.55) / 2)
    loss.backward()
    torch.testing.assert_close(mask.grad, torch.tensor([[[[0.5, (0.4 - 0.6) / 2]]]]))
    # As in imaginaire, c keeps its gradient: d loss / d warped = -(2m - 1) / 2 per channel where c < 1.
    want = torch.zeros(1, 3, 1, 2)
    want[..., 1] = -(2 * 0.25 - 1) / 2
    torch.testing.assert_close(warped.grad, want)


def test_loss_weights_defaults():
    w = LossWeights()
    assert (w.gan, w.feature_matching, w.perceptual, w.flow, w.region_gan) == (1, 10, 10, 10, 10)
    assert LossWeights.from_dict({"l1": 5}).l1 == 5
    with pytest.raises(ValueError, match="unknown loss weight settings: vgg"):
        LossWeights.from_dict({"vgg": 1})


# ------------------------------------------------------------------------------------------------- VGG19


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """Random VGG19 weights in torchvision's key format, with a stand-in for its classifier keys."""
    torch.manual_seed(0)
    state = VGG19Features().state_dict()
    state["classifier.6.bias"] = torch.zeros(10)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def vgg(vgg_file):
    return load_vgg19(vgg_file)


def test_vgg_keys_are_torchvision_keys():
    keys = list(VGG19Features().state_dict())
    convs = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert keys == [f"features.{i}.{kind}" for i in convs for kind in ("weight", "bias")]


def test_load_vgg19_from_path(vgg_file):
    vgg = load_vgg19(vgg_file)
    saved = torch.load(vgg_file, weights_only=True)
    torch.testing.assert_close(vgg.features[34].weight, saved["features.34.weight"], rtol=0, atol=0)
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())


def test_load_vgg19_from_hub_cache(vgg_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / VGG19_HUB_FILE).write_bytes(vgg_file.read_bytes())
    assert isinstance(load_vgg19(None), VGG19Features)


def test_load_vgg19_missing_warns_once_and_returns_none(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_vgg19(None) is None
    assert len(caught) == 1
    assert "perceptual loss" in str(caught[0].message) and VGG19_HUB_FILE in str(caught[0].message)


@pytest.mark.parametrize("content", [b"not a checkpoint at all\n" * 3, b"PK\x03\x04broken zip"])
def test_load_vgg19_corrupt_file_one_line_error(tmp_path, content):
    path = tmp_path / "vgg19-broken.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_vgg19(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_load_vgg19_wrong_contents(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(ValueError, match="missing.pth: no such"):
        load_vgg19(missing)
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, partial)
    with pytest.raises(ValueError, match="partial.pth: not a torchvision vgg19 state dict"):
        load_vgg19(partial)
    wrong_shape = tmp_path / "wrong.pth"
    state = VGG19Features().state_dict()
    state["features.2.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, wrong_shape)
    with pytest.raises(ValueError, match=r"wrong.pth: features.2.weight is \(64, 64, 1, 1\)"):
        load_vgg19(wrong_shape)
    listed = tmp_path / "list.pth"
    torch.save([1, 2], listed)
    with pytest.raises(ValueError, match="list.pth: holds a list"):
        load_vgg19(listed)


def images(seed):
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_perceptual_loss(vgg):
    loss = PerceptualLoss(vgg)
    a, b = images(0), images(1).requires_grad_()
    assert loss(a, a).item() == 0
    value = loss(b, a)
    assert value.item() > 0 and value.dtype == torch.float32
    value.backward()
    assert b.grad.abs().sum() > 0
    assert not any(p.requires_grad or p.grad is not None for p in loss.vgg.parameters())


def test_perceptual_loss_weights_layers_and_scales(vgg):
    a, b = images(0), images(1)

    def value(weights, num_scales=2):
        return PerceptualLoss(vgg, ("relu_1_1", "relu_2_1"), weights, num_scales)(a, b).item()

    assert value((1.0, 2.0)) == pytest.approx(value((1.0, 0.0)) + 2 * value((0.0, 1.0)), rel=1e-5)
    assert value((1.0, 0.0), 2) > value((1.0, 0.0), 1) > 0
    with pytest.raises(ValueError, match="unknown VGG19 layers"):
        PerceptualLoss(vgg, ("conv_1_1",), (1.0,))


def test_imagenet_normalisation(vgg):
    loss = PerceptualLoss(vgg)
    out = loss.normalize(torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2))
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(out[0, :, 0, 1], (1 - mean) / std)


def test_losses_under_bf16_autocast(vgg):
    loss = PerceptualLoss(vgg, num_scales=1)
    a, b = images(0), images(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = [loss(a, b), gan_loss([x.bfloat16() for x in LOGITS], True, True, "hinge"),
                  flow_loss(a[:, :2].bfloat16(), b[:, :2], torch.ones(1, 1, 64, 64))]
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in values)

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from vid2vid.models.discriminators import (
    DiscriminatorConfig,
    MultiScalePatchDiscriminator,
    PatchDiscriminatorConfig,
    RegionDiscriminator,
    TemporalDiscriminator,
    crop_and_resize,
    face_box,
    gather_windows,
    hand_boxes,
    image_input,
    image_input_channels,
    temporal_windows,
    window_flows,
)

TINY = PatchDiscriminatorConfig(num_scales=2, num_layers=3, num_filters=4, max_filters=16)


def rand(*shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def shapes(outputs):
    return [(tuple(o.logits.shape), [tuple(f.shape) for f in o.features]) for o in outputs]


def test_image_discriminator_shapes_kernel_4():
    d = MultiScalePatchDiscriminator.from_config(9, TINY)
    out = d(rand(2, 9, 64, 64))
    # 4x4 convs with padding 1: stride 2 halves, the stride-1 conv takes one pixel off.
    assert shapes(out) == [
        ((2, 1, 7, 7), [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8), (2, 16, 7, 7)]),
        ((2, 1, 3, 3), [(2, 4, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4), (2, 16, 3, 3)]),
    ]


def test_image_discriminator_shapes_kernel_3_no_norm():
    d = MultiScalePatchDiscriminator(9, num_scales=2, num_layers=2, num_filters=4, max_filters=6, kernel_size=3,
                                     spectral=False, norm=False)
    out = d(rand(1, 9, 64, 64))
    assert shapes(out) == [((1, 1, 16, 16), [(1, 4, 32, 32), (1, 6, 16, 16), (1, 6, 16, 16)]),
                           ((1, 1, 8, 8), [(1, 4, 16, 16), (1, 6, 8, 8), (1, 6, 8, 8)])]
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in d.modules())


def test_second_scale_sees_the_input_halved():
    d = MultiScalePatchDiscriminator.from_config(3, TINY).eval()
    x = rand(1, 3, 64, 64)
    half = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=True)
    torch.testing.assert_close(d(x)[1].logits, d.discriminators[1](half).logits)


@pytest.mark.parametrize("spectral", [True, False])
def test_spectral_norm_on_every_conv_when_asked(spectral):
    cfg = PatchDiscriminatorConfig(num_scales=2, num_layers=3, num_filters=4, max_filters=16, spectral=spectral)
    d = MultiScalePatchDiscriminator.from_config(3, cfg)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 * (3 + 2)
    assert all(parametrize.is_parametrized(c, "weight") == spectral for c in convs)


def test_temporal_windows_exact():
    windows = temporal_windows(8, 3, 3, 3)
    assert windows == [
        [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6], [5, 6, 7]],
        [[0, 3, 6], [1, 4, 7]],
        [],
    ]
    assert [len(w) for w in windows] == [6, 2, 0]
    assert temporal_windows(4, 2, 2, 2) == [[[0, 1], [1, 2], [2, 3]], [[0, 2], [1, 3]]]


def test_gather_windows_picks_those_frames():
    b, t = 2, 8
    clip = torch.arange(b * t, dtype=torch.float32).view(b, t, 1, 1, 1).expand(b, t, 3, 4, 4)
    picked = gather_windows(clip, [[0, 3, 6], [1, 4, 7]])
    assert picked.shape == (4, 3, 3, 4, 4)
    assert picked[:, :, 0, 0, 0].tolist() == [[0, 3, 6], [1, 4, 7], [8, 11, 14], [9, 12, 15]]


def test_window_flows_chain_one_frame_flows():
    b, t, h, w = 1, 8, 5, 6
    # A uniform flow per frame: chaining translations adds them (border padding keeps them uniform).
    per_frame = torch.stack([torch.tensor([float(i), -0.5 * i]) for i in range(t)])  # (T, 2)
    flows = per_frame.view(1, t, 2, 1, 1).expand(b, t, 2, h, w).contiguous()
    chained = window_flows(flows, [[1, 4, 7]])
    assert chained.shape == (1, 2, 2, h, w)
    torch.testing.assert_close(chained[0, :, :, 2, 3], torch.tensor([[2.0 + 3 + 4, -4.5], [5.0 + 6 + 7, -9.0]]))
    torch.testing.assert_close(window_flows(flows, [[5, 6, 7]]), flows[:, 6:8])
    with pytest.raises(ValueError, match="equal gaps"):
        window_flows(flows, [[0, 1, 3]])


def test_window_flows_follow_the_motion():
    # Frame 2 -> 1 moves by +1 px in x where x >= 3, frame 1 -> 0 by +2 px where x >= 4.
    flows = torch.zeros(1, 3, 2, 4, 8)
    flows[0, 2, 0, :, 3:] = 1
    flows[0, 1, 0, :, 4:] = 2
    chained = window_flows(flows, [[0, 2]])[0, 0, 0, 0]
    # x = 3 lands on x = 4 in frame 1 and moves 2 more; x = 2 stays; x = 4 lands on 5 -> +2.
    torch.testing.assert_close(chained, torch.tensor([0.0, 0, 0, 3, 3, 3, 3, 3]))


def test_temporal_discriminator_shapes():
    d = TemporalDiscriminator(3, frames_per_window=3, num_temporal_scales=2, patch=TINY)
    frames, flows = rand(4, 3, 3, 64, 64), rand(4, 2, 2, 64, 64, seed=1) * 5
    first = d.scales[0].discriminators[0].blocks[0][0]
    assert first.in_channels == 3 * 3 + 2 * 2
    for scale in (0, 1):
        assert [tuple(o.logits.shape) for o in d(frames, flows, scale)] == [(4, 1, 7, 7), (4, 1, 3, 3)]
    with pytest.raises(ValueError, match="windows of 3 frames"):
        d(frames[:, :2], flows, 0)


def test_face_box_exact():
    body = torch.zeros(25, 3)
    body[0] = torch.tensor([100, 60, 0.9])   # nose
    body[15] = torch.tensor([92, 52, 0.8])   # right eye
    body[16] = torch.tensor([108, 52, 0.8])  # left eye
    body[17] = torch.tensor([84, 56, 0.5])   # right ear
    body[18] = torch.tensor([116, 56, 0.5])  # left ear
    body[4] = torch.tensor([10, 10, 0.9])    # a wrist: not part of the face
    # extent 32 (ears) -> side 80, centre (100, 56)
    assert face_box(body, (256, 192)) == (60, 16, 140, 96)
    assert face_box(body, (256, 192), scale=1.0, min_size=40) == (80, 36, 120, 76)
    # moved inside the image near its corner; side at most the shorter image side
    assert face_box(body.numpy() - [80, 50, 0], (256, 192)) == (0, 0, 80, 80)
    assert face_box(body, (64, 192)) == (68, 0, 132, 64)
    body[[0, 15, 16, 17, 18], 2] = 0
    assert face_box(body, (256, 192)) is None


def test_hand_boxes_exact():
    body = torch.zeros(25, 3)
    body[3] = torch.tensor([50, 100, 0.7])   # right elbow
    body[4] = torch.tensor([50, 140, 0.7])   # right wrist
    body[7] = torch.tensor([140, 90, 0.7])   # left wrist
    left = torch.zeros(21, 3)
    left[0] = torch.tensor([150, 120, 0.6])
    left[5] = torch.tensor([160, 130, 0.3])
    left[9] = torch.tensor([156, 110, 0.4])
    left[12] = torch.tensor([0, 0, 0.0])     # not seen
    # left: middle of its points (155, 120); right: no hand points, wrist + 0.3 forearm = (50, 152)
    assert hand_boxes(body, left, None, (256, 192), size=32) == [(139, 104, 171, 136), (34, 136, 66, 168)]
    # without the elbow the wrist itself is the centre; without the wrist that hand is left out
    body[3, 2] = 0
    body[7, 2] = 0
    assert hand_boxes(body, None, torch.zeros(21, 3), (256, 192), size=32) == [(34, 124, 66, 156)]


def test_crop_and_resize():
    images = rand(2, 3, 40, 50)
    boxes = torch.tensor([[10, 5, 26, 21], [0, 8, 32, 40]])
    crops = crop_and_resize(images, boxes, torch.tensor([1, 0]), 16)
    assert crops.shape == (2, 3, 16, 16)
    torch.testing.assert_close(crops[0], images[1, :, 5:21, 10:26], atol=1e-5, rtol=0)
    reference = F.interpolate(images[0:1, :, 8:40, 0:32], size=(16, 16), mode="bilinear", align_corners=True)
    torch.testing.assert_close(crops[1:], reference, atol=1e-5, rtol=0)


def test_region_discriminator_shapes():
    d = RegionDiscriminator(6, 32, PatchDiscriminatorConfig(num_scales=1, num_layers=2, num_filters=4))
    out = d(rand(2, 6, 64, 64), torch.tensor([[0, 0, 32, 32], [10, 20, 50, 60], [5, 5, 21, 21]]),
            torch.tensor([0, 1, 1]))
    assert shapes(out) == [((3, 1, 7, 7), [(3, 4, 16, 16), (3, 8, 8, 8), (3, 16, 7, 7)])]


def assert_every_parameter_gets_gradient(model, outputs):
    loss = sum(o.logits.mean() + sum(f.square().mean() for f in o.features) for o in outputs)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all(), name


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    image_d = MultiScalePatchDiscriminator.from_config(9, TINY)
    assert_every_parameter_gets_gradient(image_d, image_d(rand(2, 9, 64, 64)))

    temporal_d = TemporalDiscriminator(3, 3, 2, TINY)
    frames, flows = rand(2, 3, 3, 64, 64), rand(2, 2, 2, 64, 64)
    assert_every_parameter_gets_gradient(temporal_d, temporal_d(frames, flows, 0) + temporal_d(frames, flows, 1))

    region_d = RegionDiscriminator(3, 32, PatchDiscriminatorConfig(num_scales=1, num_layers=2, num_filters=4))
    images = rand(2, 3, 64, 64).requires_grad_()
    assert_every_parameter_gets_gradient(region_d, region_d(images, torch.tensor([[8, 8, 40, 40]]),
                                                            torch.tensor([1])))
    assert images.grad[1].abs().sum() > 0 and images.grad[0].abs().sum() == 0


def test_bf16_autocast_forward():
    d = MultiScalePatchDiscriminator.from_config(3, TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = d(rand(1, 3, 64, 64))
    assert torch.isfinite(out[0].logits.float()).all()


def test_image_input_order_and_channels():
    label, image, ref_label, ref_image = (torch.full((1, c, 2, 2), float(i)) for i, c in enumerate((6, 3, 6, 3)))
    x = image_input(label, image, ref_label, ref_image)
    assert x.shape[1] == image_input_channels(6, 3, few_shot=True) == 18
    assert x[0, :, 0, 0].tolist() == [0] * 6 + [2] * 6 + [3] * 3 + [1] * 3
    assert image_input(label, image).shape[1] == image_input_channels(6) == 9


def test_config_from_dict():
    cfg = DiscriminatorConfig.from_dict({"image": {"num_filters": 64, "spectral": False},
                                         "temporal": {"enabled": False}, "face": {"enabled": True}})
    assert cfg.image.num_filters == 64 and not cfg.image.spectral and cfg.image.num_layers == 4
    assert not cfg.temporal.enabled and cfg.temporal.num_frames == 3
    assert cfg.face.enabled and cfg.face.patch.num_layers == 3 and cfg.face.patch.num_scales == 1
    assert DiscriminatorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="discriminator.temporal settings: frames"):
        DiscriminatorConfig.from_dict({"temporal": {"frames": 3}})
    with pytest.raises(ValueError, match="num_frames >= 2"):
        DiscriminatorConfig.from_dict({"temporal": {"num_frames": 1}})

"""vid2vid generator behaviour on tiny configs: the paper's blend, the fg/bg prior, frame history."""

import pytest
import torch
import torch.nn.functional as F

from vid2vid import load_generator, save_generator
from vid2vid.config import load_generator_config
from vid2vid.models.vid2vid import Vid2VidConfig, Vid2VidGenerator
from vid2vid.nn.warp import blend

from .conftest import randomize

H, W, CLASSES = 32, 64, 5


def tiny(**overrides) -> Vid2VidGenerator:
    values = dict(label_channels=CLASSES, num_filters=4, max_filters=16, num_layers=5, num_downsamples_img=3,
                  flow_res_blocks=1)
    values.update(overrides)
    torch.manual_seed(0)
    return randomize(Vid2VidGenerator(Vid2VidConfig(**values))).eval()


def labels(t: int, seed=0):
    """(1, t, CLASSES, H, W) one-hot maps; left half class 0 (background in tests), right half random."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(1, CLASSES, (1, t, H, W), generator=gen)
    index[..., : W // 2] = 0
    return F.one_hot(index, CLASSES).movedim(-1, -3).float().contiguous()


def images(t: int, seed=1):
    return torch.rand(1, t, 3, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class FixedFlow(torch.nn.Module):
    """Stands in for the flow network: a chosen flow and occlusion mask everywhere."""

    def __init__(self, flow: float, mask: float):
        super().__init__()
        self.flow, self.mask = flow, mask

    def forward(self, labels, images):
        b, _, h, w = labels.shape
        return torch.full((b, 2, h, w), self.flow), torch.full((b, 1, h, w), self.mask)


@pytest.mark.parametrize("combine", ["spade", "linear"])
def test_history_decides_the_path(combine):
    g = tiny(temporal_combine=combine)
    seq, frames = labels(3), images(2)
    with torch.no_grad():
        first = g(label=seq[:, 0])
        second = g(label=seq[:, 1], prev_labels=seq[:, :1], prev_images=frames[:, :1])
        third = g(label=seq[:, 2], prev_labels=seq[:, :2], prev_images=frames)
    for out in (first, second, third):
        assert out.fake_images.shape == (1, 3, H, W) and out.fake_images.abs().max() <= 1
    assert first.fake_flow_maps is None and second.fake_flow_maps is None  # too few previous frames
    assert third.fake_flow_maps.shape == (1, 2, H, W) and third.warped_images.shape == (1, 3, H, W)
    assert ((third.fake_occlusion_masks > 0) & (third.fake_occlusion_masks < 1)).all()
    assert (third.fake_raw_images is None) == (combine == "spade")


def test_per_frame_generator_has_no_temporal_parts_and_ignores_history():
    """num_prev_frames 0 is the papers' per-frame baseline: every frame is made from its label alone."""
    from vid2vid.step import new_history, step

    g = tiny(num_prev_frames=0)
    assert not any("flow" in name or "prev" in name for name, _ in g.named_parameters())
    seq = labels(3)
    history = new_history(g)
    outputs = []
    for t in range(3):
        with torch.no_grad():
            out = step(g, seq[:, t], history)
        history.push(seq[:, t], out.fake_images)
        outputs.append(out.fake_images)
        assert out.fake_flow_maps is None and out.warped_images is None
    assert history.labels == [] and history.images == []
    with torch.no_grad():
        torch.testing.assert_close(outputs[2], g(label=seq[:, 2]).fake_images)
    g.train()
    g(label=seq[:, 0]).fake_images.mean().backward()
    assert all(p.grad is not None for p in g.parameters())


def test_first_frame_size_comes_from_the_config_when_set():
    g = tiny(first_frame_size=(64, 64))
    with torch.no_grad():
        assert g(label=labels(1)[:, 0]).fake_images.shape == (1, 3, 64, 64)


@pytest.mark.parametrize("mask", [0.0, 1.0])
def test_linear_blend_endpoints(mask):
    g = tiny(temporal_combine="linear")
    g.flow_network = FixedFlow(flow=0.0, mask=mask)
    seq, frames = labels(3), images(2)
    with torch.no_grad():
        out = g(label=seq[:, 2], prev_labels=seq[:, :2], prev_images=frames)
    # Zero flow warps to the identity (up to the rounding of the normalised sampling grid);
    # mask 0 keeps the warped frame exactly, mask 1 the hallucinated one.
    assert (out.warped_images - frames[:, -1]).abs().max() < 2e-5
    expected = out.warped_images if mask == 0 else out.fake_raw_images
    assert torch.equal(out.fake_images, expected)


def test_blend_is_linear_in_the_mask():
    warped, hallucinated = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert torch.allclose(blend(warped, hallucinated, torch.full((1, 1, 2, 2), 0.25)), torch.full((1, 3, 2, 2), 0.25))


def test_background_pixels_come_from_the_background_head_only():
    g = tiny(temporal_combine="linear", background_classes=[0])
    seq = labels(1)
    with torch.no_grad():
        before = g(label=seq[:, 0]).fake_images
        g.to_image.weight.add_(1.0)  # change the foreground head only
        after = g(label=seq[:, 0]).fake_images
        g.to_background_image.bias.add_(0.5)  # now the background head
        after_bg = g(label=seq[:, 0]).fake_images
    background, foreground = (slice(None), slice(None), slice(None), slice(0, W // 2)), \
        (slice(None), slice(None), slice(None), slice(W // 2, None))
    assert torch.equal(before[background], after[background])
    assert (before[foreground] - after[foreground]).abs().max() > 1e-3
    assert (after_bg[background] - after[background]).abs().max() > 1e-3
    assert torch.equal(after_bg[foreground], after[foreground])


def test_gradients_reach_every_parameter_in_the_paper_form():
    g = tiny(temporal_combine="linear", background_classes=[0]).train()
    seq, frames = labels(3), images(2)
    out = g(label=seq[:, 2], prev_labels=seq[:, :2], prev_images=frames)
    first = g(label=seq[:, 0])
    (out.fake_images.square().mean() + first.fake_images.square().mean() + out.fake_flow_maps.abs().mean()).backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:5]


def test_bad_inputs_are_named():
    g = tiny()
    with pytest.raises(ValueError, match="label must be"):
        g(label=torch.zeros(1, 3, H, W))
    with pytest.raises(ValueError, match="multiple of 32"):
        g(label=torch.zeros(1, CLASSES, 48, W))
    with pytest.raises(ValueError, match="prev_labels must be"):
        g(label=labels(1)[:, 0], prev_labels=labels(3), prev_images=images(3))
    with pytest.raises(ValueError, match="background_classes"):
        Vid2VidConfig(label_channels=3, background_classes=[3])


def test_save_load_round_trip(tmp_path):
    g = tiny(temporal_combine="linear", background_classes=[0, 2])
    save_generator(g, tmp_path / "m")
    loaded = load_generator(tmp_path / "m")
    assert loaded.cfg == g.cfg
    seq, frames = labels(3), images(2)
    with torch.no_grad():
        a = g(label=seq[:, 2], prev_labels=seq[:, :2], prev_images=frames).fake_images
        b = loaded(label=seq[:, 2], prev_labels=seq[:, :2], prev_images=frames).fake_images
    assert torch.equal(a, b)


def test_official_cityscapes_parameter_count():
    model = Vid2VidGenerator(load_generator_config("vid2vid_cityscapes"))
    assert sum(p.numel() for p in model.parameters()) == 346_972_262

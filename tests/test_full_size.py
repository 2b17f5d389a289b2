"""The official full-size architectures: exact parameter counts and a CPU forward at 256x256."""

import pytest
import torch

from vid2vid.config import load_generator_config
from vid2vid.models.fs_vid2vid import FewShotGenerator


@pytest.mark.parametrize("preset, params", [("fs_vid2vid_face", 91_145_502), ("fs_vid2vid_dancing", 91_149_982)])
def test_official_config_parameter_count_and_forward(preset, params):
    cfg = load_generator_config(preset)
    torch.manual_seed(0)
    model = FewShotGenerator(cfg).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    c = cfg.label_channels
    inputs = dict(label=torch.rand(1, c, 256, 256) * 2 - 1, ref_labels=torch.rand(1, 1, c, 256, 256) * 2 - 1,
                  ref_images=torch.rand(1, 1, 3, 256, 256) * 2 - 1)
    with torch.no_grad():
        first = model(**inputs)
        second = model(**inputs, prev_labels=inputs["label"][:, None], prev_images=first.fake_images[:, None])
    for out in (first, second):
        assert out.fake_images.shape == (1, 3, 256, 256)
        assert torch.isfinite(out.fake_images).all()
    assert second.fake_flow_maps[1].shape == (1, 2, 256, 256)

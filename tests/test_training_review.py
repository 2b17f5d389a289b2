"""The defects and departures found by the review of training against imaginaire (issue 18, items 1-10).

Each test pins one item to its formula: which frames, which direction of warp, which weight, which dtype.
"""

import pytest
import torch

from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.writer import write_synthetic
from vid2vid.models.discriminators import crop_and_resize
from vid2vid.models.flow import FlowNetwork
from vid2vid.nn.warp import warp

# ------------------------------------------------------------------------------ 1. warping in bf16


@pytest.mark.parametrize("flow_dtype", [torch.bfloat16, torch.float16])
def test_1_zero_flow_in_half_precision_moves_nothing(flow_dtype):
    """A zero flow in bf16 (what autocast hands the warp) must leave a wide image exactly as it is; a bf16
    grid has spacing 2^-8 near +-1, which moved a 64x512 ramp by up to half a pixel."""
    image = torch.linspace(0, 1, 512).expand(1, 3, 64, 512).contiguous()
    out = warp(image, torch.zeros(1, 2, 64, 512, dtype=flow_dtype))
    assert out.dtype == torch.float32
    assert (out - image).abs().max() < 1e-5


def test_1_subpixel_flow_under_bf16_autocast_is_exact():
    """A quarter-pixel flow on a horizontal ramp shifts it by exactly a quarter of a step, under autocast too."""
    w = 512
    ramp = torch.arange(w, dtype=torch.float32).expand(1, 1, 8, w).contiguous()
    flow = torch.zeros(1, 2, 8, w)
    flow[:, 0] = 0.25
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = warp(ramp, flow)
    assert out.dtype == torch.float32
    assert (out[..., :-1] - (ramp[..., :-1] + 0.25)).abs().max() < 1e-3


def test_1_bf16_image_comes_back_in_bf16_sampled_in_fp32():
    image = torch.rand(1, 3, 16, 300)
    out = warp(image.bfloat16(), torch.zeros(1, 2, 16, 300, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    # Identity sampling rounded once to bf16 (a bf16 grid moved random pixels by up to half a pixel).
    assert (out.float() - image.bfloat16().float()).abs().max() <= 2 ** -8


def test_1_face_crop_grid_is_fp32_under_autocast():
    """A crop of the box's own size copies it exactly, also when the frame arrives in bf16."""
    images = torch.rand(1, 3, 64, 512)
    boxes = torch.tensor([[400.0, 0.0, 464.0, 64.0]])  # a 64 x 64 box at the far right
    with torch.autocast("cpu", dtype=torch.bfloat16):
        crop = crop_and_resize(images.bfloat16(), boxes, torch.tensor([0]), 64)
    assert crop.dtype == torch.bfloat16
    assert (crop.float() - images[..., 400:464].bfloat16().float()).abs().max() <= 2 ** -8


def test_1_flow_and_mask_heads_stay_fp32_under_autocast():
    torch.manual_seed(0)
    net = FlowNetwork(4, 3, num_filters=8, max_filters=16, num_downsamples=2, num_res_blocks=1).eval()
    labels, images = torch.rand(1, 4, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        flow, mask = net(labels, images)
    assert flow.dtype == torch.float32 and mask.dtype == torch.float32
    # The heads themselves ran in fp32: their output equals fp32 heads on the (bf16) trunk's features.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = net.features(labels, images)
    assert torch.equal(flow, net.flow_head(features.float()) * net.multiplier)
    assert torch.equal(mask, net.mask_head(features.float()))


# --------------------------------------------------------------- 2. stored flow and resize_smallest_side


def test_2_stored_flow_follows_resize_smallest_side(tmp_path):
    """Built-in street scenes at 128x256 resized to a 64 smallest side: the returned flow, scaled with the
    frame, warps frame t-1 onto frame t better than not warping (it was worse: 0.057 against 0.033)."""
    write_synthetic("street", tmp_path, sequences=1, frames=4, size=(128, 256), progress=False)
    cfg = DataConfig(task="street", size=(64, 128), clip_length=4, resize_smallest_side=64, crop="resize",
                     augment=False)
    clips = VideoClips(tmp_path, cfg)
    sample = clips.load(clips.sequences[0], [0, 1, 2, 3], [], None)
    images, flow, conf = sample["images"], sample["flow"][1:], sample["flow_confidence"][1:]
    warped = warp(images[:-1], flow)
    weight = conf.sum()
    with_flow = float(((warped - images[1:]).abs().mean(1, keepdim=True) * conf).sum() / weight)
    without = float(((images[:-1] - images[1:]).abs().mean(1, keepdim=True) * conf).sum() / weight)
    assert with_flow < 0.5 * without, (with_flow, without)

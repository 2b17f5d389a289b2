"""Parity with imaginaire's vid2vid generator (tier: parity; tolerances in conftest.py)."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vid2vid.compat.imaginaire import load_generator
from vid2vid.nn.warp import warp

from .conftest import PARITY_TOL, assert_parity, parity_dir
from .test_fs_vid2vid_parity import ema_form

pytestmark = pytest.mark.parity

# vid2vid's first frame decodes from a 2x4 bottleneck, whose InstanceNorms over 8 values magnify float32
# rounding: the fixture's first image is 2.8e-4 from our float64 evaluation of the same weights, and our
# float32 run 5e-5 from it on an Intel Xeon (AVX-512, AMX), so 3.0e-4 from the fixture there, while on an
# AMD EPYC (AVX2) it stayed within 1e-4 of the fixture. The first frame gets the two roundings together
# (FIRST_FRAME_F64_TOL bounds the fixture's, pinned below). Formula slips stay far outside it: swapping one
# SPADE layer's gamma and beta moved the first frame by 0.09-0.12, zeroing to_image's bias by 0.10. Later
# frames start from a full-size image and keep PARITY_TOL.
FIRST_FRAME_F64_TOL = 3e-4
FIRST_FRAME_TOL = 2 * FIRST_FRAME_F64_TOL


def one_hot(index: torch.Tensor) -> torch.Tensor:
    # Contiguous: a channels-last view would select other conv kernels and other rounding.
    return F.one_hot(index.long(), 35).movedim(-1, -3).float().contiguous()


def step_inputs(tensors, step):
    prev = tensors.get(f"{step}.in.prev_labels_index")
    return dict(label=one_hot(tensors[f"{step}.in.label_index"]),
                prev_labels=None if prev is None else one_hot(prev), prev_images=tensors.get(f"{step}.in.prev_images"))


@pytest.fixture(scope="module")
def fixture_files():
    root = parity_dir("vid2vid_a")
    return root, load_file(root / "tensors.safetensors")


def check_all_steps(model, tensors):
    checked = 0
    with torch.no_grad():
        for step in "abc":
            out = model(**step_inputs(tensors, step))
            for key, want in tensors.items():
                if not key.startswith(f"{step}.out."):
                    continue
                name = key.split(".")[2].removesuffix("__is_none")
                if key.endswith("__is_none"):
                    assert out[name] is None, key
                else:
                    assert_parity(key, out[name], want, FIRST_FRAME_TOL if step == "a" else None)
                    checked += 1
    assert checked == 6  # a, b: image; c: image, flow, mask, warped image


def test_every_output_of_every_step_matches(fixture_files):
    root, tensors = fixture_files
    model = load_generator(root / "state_dict.pt", root / "config.yaml")
    assert not model.training and model.cfg.first_frame_size == (128, 256)
    assert sum(p.numel() for p in model.parameters()) == 3_322_662
    check_all_steps(model, tensors)


def test_first_frame_in_float64_matches_within_the_fixtures_own_rounding(fixture_files):
    root, tensors = fixture_files
    model = load_generator(root / "state_dict.pt", root / "config.yaml").double()
    with torch.no_grad():
        got = model(label=one_hot(tensors["a.in.label_index"]).double()).fake_images
    assert_parity("a.out.fake_images", got, tensors["a.out.fake_images"], FIRST_FRAME_F64_TOL)


def test_warp_of_fixture_flow_matches(fixture_files):
    _, tensors = fixture_files
    got = warp(tensors["c.in.prev_images"][:, -1], tensors["c.out.fake_flow_maps"])
    assert (got - tensors["c.out.warped_images"]).abs().max() <= PARITY_TOL


def test_ema_checkpoint_matches(fixture_files, tmp_path):
    root, tensors = fixture_files
    state = torch.load(root / "state_dict.pt", weights_only=True)
    torch.save({"net_G": {f"module.averaged_model.{k}": v for k, v in ema_form(state).items()}}, tmp_path / "ema.pt")
    model = load_generator(tmp_path / "ema.pt", root / "config.yaml")
    assert not model.cfg.spectral_norm
    check_all_steps(model, tensors)


def test_other_model_checkpoint_is_refused(fixture_files, tmp_path):
    root, _ = fixture_files
    few_shot = parity_dir("fs_vid2vid_a")
    with pytest.raises(ValueError, match="does not fit the configured generator"):
        load_generator(few_shot / "state_dict.pt", root / "config.yaml")


def test_convert_command_for_vid2vid(fixture_files, tmp_path):
    from vid2vid import load_generator as load_ours
    from vid2vid.cli import main as cli_main

    root, tensors = fixture_files
    out = tmp_path / "street"
    assert cli_main(["convert", "imaginaire", str(root / "state_dict.pt"), "--config", str(root / "config.yaml"),
                     "-o", str(out)]) == 0
    check_all_steps(load_ours(out), tensors)

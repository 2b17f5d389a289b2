"""Parity with imaginaire's fs_vid2vid generator (tier: parity; tolerances in conftest.py)."""

import pytest
import torch
from safetensors.torch import load_file

from vid2vid.checkpoint import load_generator as load_ours
from vid2vid.cli import main as cli_main
from vid2vid.compat.imaginaire import CheckpointError, load_generator
from vid2vid.nn.warp import warp

from .conftest import PARITY_TOL as TOL
from .conftest import assert_parity, parity_dir

pytestmark = pytest.mark.parity


def fixture_inputs(tensors, step):
    names = ["label", "ref_labels", "ref_images", "prev_labels", "prev_images"]
    return {n: None if f"{step}.in.{n}__is_none" in tensors else tensors[f"{step}.in.{n}"] for n in names}


def expected_outputs(tensors, step):
    """(name, list index or None, tensor or None) for every output recorded at a step."""
    prefix = f"{step}.out."
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        is_none = name.endswith("__is_none")
        name = name.removesuffix("__is_none")
        field, _, index = name.partition(".")
        yield field, int(index) if index else None, None if is_none else value


def run_steps(model, tensors):
    model.reset()
    with torch.no_grad():
        return {step: model(**fixture_inputs(tensors, step)) for step in "ab"}


def assert_matches_fixture(outputs, tensors):
    checked = 0
    for step, out in outputs.items():
        for field, index, want in expected_outputs(tensors, step):
            got = out[field] if index is None else out[field][index]
            if want is None:
                assert got is None, f"{step}.{field}.{index} should be None"
                continue
            assert got is not None, f"{step}.{field}.{index} missing"
            assert_parity(f"{step}.{field}.{index}", got, want)
            checked += 1
    assert checked == 15  # every non-None output of steps a and b


@pytest.fixture(scope="module")
def fixture_files():
    root = parity_dir("fs_vid2vid_a")
    return root, load_file(root / "tensors.safetensors")


def test_every_output_of_both_steps_matches(fixture_files):
    root, tensors = fixture_files
    model = load_generator(root / "state_dict.pt", root / "config.yaml")
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 3_401_518
    outputs = run_steps(model, tensors)
    assert_matches_fixture(outputs, tensors)
    assert outputs["a"].ref_idx.tolist() == [1]


def test_warp_of_fixture_flow_matches_warped_images(fixture_files):
    _, tensors = fixture_files
    ref_images = tensors["b.in.ref_images"][:, 1]  # ref_idx is 1 in both steps
    for index, source in ((0, ref_images), (1, tensors["b.in.prev_images"][:, -1])):
        got = warp(source, tensors[f"b.out.fake_flow_maps.{index}"])
        assert (got - tensors[f"b.out.warped_images.{index}"]).abs().max() <= TOL


def test_intermediates_match(fixture_files):
    root, tensors = fixture_files
    taps = load_file(root / "intermediates.safetensors")
    model = load_generator(root / "state_dict.pt", root / "config.yaml")
    model.reset()
    inputs = fixture_inputs(tensors, "a")
    with torch.no_grad():
        label = model.prepare_labels(inputs["label"], is_reference=False)
        x, levels, spade, _, ref_idx = model.weight_generator(inputs["ref_images"], inputs["ref_labels"], label, True)
    assert (x - taps["a.wg.x"]).abs().max() <= TOL
    for i, level in enumerate(levels):
        assert (level - taps[f"a.wg.encoded_label.{i}"]).abs().max() <= TOL
    for i, layer in enumerate(spade):
        for j, (weight, bias) in enumerate(layer):
            assert (weight - taps[f"a.wg.norm_weights.{i}.{j}.0"]).abs().max() <= TOL
            assert (bias - taps[f"a.wg.norm_weights.{i}.{j}.1"]).abs().max() <= TOL


def ema_form(state):
    """What imaginaire's EMA model stores: plain weights with spectral norm divided out."""
    out = {}
    for key, value in state.items():
        if key.endswith("weight_orig"):
            base = key[: -len("_orig")]
            u, v = state[base + "_u"], state[base + "_v"]
            sigma = torch.dot(u, value.reshape(value.shape[0], -1) @ v)
            out[base] = value / sigma
        elif not key.endswith(("weight_u", "weight_v")):
            out[key] = value
    return out


@pytest.mark.parametrize("form", ["bare", "net_G module.module", "net_G module", "ema"])
def test_checkpoint_forms_load_to_the_same_outputs(fixture_files, tmp_path, form):
    root, tensors = fixture_files
    state = torch.load(root / "state_dict.pt", weights_only=True)
    if form == "net_G module.module":
        saved = {"net_G": {f"module.module.{k}": v for k, v in state.items()}, "current_iteration": 3}
    elif form == "net_G module":
        saved = {"net_G": {f"module.{k}": v for k, v in state.items()}}
    elif form == "ema":
        # A training checkpoint holds both; the averaged model must win.
        noisy = {f"module.module.{k}": v + 1 for k, v in state.items()}
        saved = {"net_G": {**noisy, **{f"module.averaged_model.{k}": v for k, v in ema_form(state).items()}}}
    else:
        saved = state
    torch.save(saved, tmp_path / "ckpt.pt")
    model = load_generator(tmp_path / "ckpt.pt", root / "config.yaml")
    assert_matches_fixture(run_steps(model, tensors), tensors)


def test_misfitting_checkpoint_names_the_keys(fixture_files, tmp_path):
    root, _ = fixture_files
    state = torch.load(root / "state_dict.pt", weights_only=True)
    state.pop("conv_img.layers.conv.weight")
    state["up_0.conv_block_0.layers.conv.bias"] = torch.zeros(5)
    state["something.else"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_generator(tmp_path / "bad.pt", root / "config.yaml")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "bad.pt") in message
    assert "missing to_image.weight" in message
    assert "unexpected something.else" in message
    assert "shape up_0.conv_block_0.layers.conv.bias (5,)" in message


def test_pickled_objects_are_refused(fixture_files, tmp_path):
    root, _ = fixture_files

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"net_G": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_generator(tmp_path / "evil.pt", root / "config.yaml")


def test_convert_command_writes_a_loadable_model(fixture_files, tmp_path, capsys):
    root, tensors = fixture_files
    out = tmp_path / "converted"
    args = ["convert", "imaginaire", str(root / "state_dict.pt"), "--config", str(root / "config.yaml"), "-o", str(out)]
    assert cli_main(args) == 0
    assert_matches_fixture(run_steps(load_ours(out), tensors), tensors)
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert cli_main(args) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    assert cli_main(args + ["--overwrite"]) == 0

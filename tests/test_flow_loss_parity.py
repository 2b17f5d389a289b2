"""Parity with imaginaire's few-shot FlowLoss (fixture flowloss_a): the flow, warp and mask terms of a later and
a first frame, for the dancing config (DensePose terms on) and the face config, from the fixture's own inputs,
generator outputs and teacher; values and gradients."""

import json

import pytest
import torch
from safetensors.torch import load_file

from vid2vid.losses import FlowBranch, flow_terms

from .conftest import parity_dir

REL_TOL = 1e-5
TERMS = {"loss_flow_L1": "flow", "loss_flow_warp": "warp", "loss_mask": "mask"}
OUTPUTS = ("fake_images", "fake_flow_maps.0", "fake_flow_maps.1", "fake_occlusion_masks.0",
           "fake_occlusion_masks.1", "warped_images.0", "warped_images.1")


@pytest.fixture(scope="module")
def fixture():
    root = parity_dir("flowloss_a")
    return load_file(str(root / "tensors.safetensors")), json.loads((root / "manifest.json").read_text())


def terms_of(tensors, case, step):
    """Our terms from the fixture's tensors, each generator output its own leaf (as the fixture's were)."""
    get = lambda name: tensors[f"{case}.{name}"]  # noqa: E731
    outputs = {name: get(f"out.{name}").clone().requires_grad_(True) for name in OUTPUTS}
    reference = FlowBranch(outputs["fake_flow_maps.0"], outputs["fake_occlusion_masks.0"], outputs["warped_images.0"],
                           get("teacher.ref.flow"), get("teacher.ref.conf"))
    previous = None
    if step == "later":
        previous = FlowBranch(outputs["fake_flow_maps.1"], outputs["fake_occlusion_masks.1"],
                              outputs["warped_images.1"], get("teacher.prev.flow"), get("teacher.prev.conf"))
    pose = case == "pose"
    terms = flow_terms(get("in.image"), outputs["fake_images"], reference, previous,
                       label=get("in.label") if pose else None,
                       ref_label=get("in.ref_labels")[:, 0] if pose else None)
    return terms, outputs


@pytest.mark.parametrize("case", ["pose", "face"])
@pytest.mark.parametrize("step", ["later", "first"])
def test_flow_terms_match_imaginaire(fixture, case, step):
    tensors, manifest = fixture
    terms, _ = terms_of(tensors, case, step)
    returned = manifest["cases"][case]["steps"][step]["returned"]
    for name, ours in TERMS.items():
        want = tensors[f"{case}.{step}.expected.{name}"]
        assert abs(float(want) - returned[name]) < 1e-7  # the tensor and the manifest agree
        got = getattr(terms, ours).detach()
        assert got.dtype == torch.float32
        assert abs(float(got) - float(want)) <= REL_TOL * abs(float(want)), (case, step, name, float(got), float(want))


@pytest.mark.parametrize("case", ["pose", "face"])
@pytest.mark.parametrize("step", ["later", "first"])
def test_flow_term_gradients_match_imaginaire(fixture, case, step):
    """What is and is not detached: d term / d each output, where the fixture has it (zero elsewhere)."""
    tensors, _ = fixture
    checked = 0
    for name, ours in TERMS.items():
        terms, outputs = terms_of(tensors, case, step)
        getattr(terms, ours).backward()
        for output, leaf in outputs.items():
            key = f"{case}.{step}.grad.{name}.{output}"
            got = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
            if key in tensors:
                want = tensors[key]
                scale = want.abs().max().item()
                assert (got - want).abs().max().item() <= 1e-5 * max(scale, 1e-6), (case, name, output)
                checked += 1
            else:
                assert not got.abs().any(), (case, name, output)
    assert checked >= 3 * 4

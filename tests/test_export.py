"""`vid2vid export --format onnx`: the graphs run in onnxruntime and stream the same frames as PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vid2vid.checkpoint import save_generator
from vid2vid.cli import main
from vid2vid.export import step_inputs
from vid2vid.generate import load_for_inference
from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator
from vid2vid.models.vid2vid import Vid2VidConfig, Vid2VidGenerator
from vid2vid.step import References, is_few_shot, new_history, step

from .conftest import TINY_GENERATOR, randomize

ort = pytest.importorskip("onnxruntime")

MODELS = {
    "fs_vid2vid": lambda: FewShotGenerator(FewShotConfig(**TINY_GENERATOR)),
    "vid2vid": lambda: Vid2VidGenerator(Vid2VidConfig(label_channels=5, num_filters=4, max_filters=16, num_layers=3,
                                                      num_downsamples_img=2, embed_num_downsamples=3,
                                                      flow_num_downsamples=2, flow_res_blocks=1)),
}


@pytest.mark.parametrize("kind", list(MODELS))
def test_onnx_graphs_stream_the_same_frames(kind, tmp_path, capsys):
    torch.manual_seed(0)
    save_generator(randomize(MODELS[kind]()).eval(), tmp_path / "model")
    out = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(tmp_path / "model"), "--format", "onnx", "-o", str(out),
                 "--size", "32x32"]) == 0
    description = json.loads((out / "export.json").read_text())
    model = load_for_inference(tmp_path / "model", torch.device("cpu"))
    assert [g["previous_frames"] for g in description["graphs"]] == list(range(model.cfg.num_prev_frames + 1))
    sessions = [ort.InferenceSession(str(out / g["file"])) for g in description["graphs"]]

    # Stream five frames; each ONNX step gets the same history as PyTorch's (so differences do not compound).
    frames = [step_inputs(model, (32, 32), 1, 0)["label"] * (1 - 0.1 * t) for t in range(5)]
    refs = step_inputs(model, (32, 32), 1, 0)
    references = References(refs["ref_labels"], refs["ref_images"]) if is_few_shot(model) else None
    history, onnx_labels, onnx_images, worst = new_history(model), [], [], []
    model.reset()
    for label in frames:
        with torch.no_grad():
            expected = step(model, label, history, references).fake_images
        history.push(label, expected)
        session = sessions[len(onnx_labels)]
        feed = {"label": label.numpy()}
        if is_few_shot(model):
            feed.update(ref_labels=refs["ref_labels"].numpy(), ref_images=refs["ref_images"].numpy())
        if onnx_labels:
            feed.update(prev_labels=np.stack(onnx_labels, 1), prev_images=np.stack(onnx_images, 1))
        assert {i.name for i in session.get_inputs()} == set(feed)
        got = session.run(None, feed)[0]
        # float32 rounding, magnified by warping through the large flows of random weights (~2e-5 seen).
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
        worst.append(float(np.abs(got - expected.numpy()).max()))
        onnx_labels = (onnx_labels + [label.numpy()])[-model.cfg.num_prev_frames:]
        onnx_images = (onnx_images + [expected.numpy()])[-model.cfg.num_prev_frames:]

    assert len(worst) == 5

    # An existing export is kept without --overwrite.
    before = (out / "export.json").read_bytes()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(tmp_path / "model"), "-o", str(out)]) == 2
    assert "use --overwrite" in capsys.readouterr().err
    assert (out / "export.json").read_bytes() == before

"""`vid2vid export --format onnx`: the generator's frame step as ONNX graphs, for runtimes without PyTorch.

A step's computation depends on how many previous frames it is given (none on the first frame, the full
window once the sequence is under way), so there is one graph per history length, 0..num_prev_frames:
`step_prev{N}.onnx`. A streaming loop runs step_prev0 on the first frame, then the next graph up each frame
until the window is full, and feeds every result back as the newest previous frame. `export.json` lists the
graphs, their inputs and the frame size they were made for. Spectral norm is folded in first.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from vid2vid.checkpoint import model_kind
from vid2vid.files import check_output_folder, refuse_overlap, replace_folder
from vid2vid.generate import data_config_for, load_for_inference
from vid2vid.step import is_few_shot, size_multiple


class FrameStep(torch.nn.Module):
    """The generator with plain tensor inputs and one output, the frame: what ONNX can carry."""

    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, label, *rest):
        if is_few_shot(self.generator):
            ref_labels, ref_images, *prev = rest
            out = self.generator(label, ref_labels, ref_images, *prev)
        else:
            out = self.generator(label, *rest)
        return out.fake_images


def step_inputs(model: torch.nn.Module, size: tuple[int, int], k: int, history: int) -> dict[str, torch.Tensor]:
    """Example inputs (batch 1) of the step with `history` previous frames, by name, in argument order."""
    cfg = model.cfg
    c, (h, w) = cfg.label_channels, size
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(shape, generator=gen) * 2 - 1

    inputs = {"label": rand(1, c, h, w)}
    if is_few_shot(model):
        inputs.update(ref_labels=rand(1, k, c, h, w), ref_images=rand(1, k, 3, h, w))
    if history:
        inputs.update(prev_labels=rand(1, history, c, h, w), prev_images=rand(1, history, 3, h, w))
    return inputs


def export_onnx(checkpoint: str | Path, out: str | Path, size: tuple[int, int] | None = None, k: int = 1,
                overwrite: bool = False) -> dict:
    """Write out/step_prev{N}.onnx for every history length and out/export.json; returns the description."""
    out = Path(out)
    refuse_overlap([("export folder", out)], [("checkpoint", checkpoint)])
    check_output_folder(out, overwrite, "export")
    try:
        import onnxscript  # noqa: F401 - torch's ONNX exporter needs it
    except ImportError:
        raise ValueError('ONNX export needs the export extra: pip install "vid2vid[export]"') from None
    model = load_for_inference(checkpoint, torch.device("cpu"))
    if size is None:
        size = tuple(data_config_for(checkpoint, model, None).size)
    step_size = size_multiple(model)
    if size[0] % step_size or size[1] % step_size:
        raise ValueError(f"size {size[0]}x{size[1]} must be a multiple of {step_size} for this model")
    if is_few_shot(model) and k > 1 and not model.cfg.attention:
        raise ValueError(f"this model takes one reference image (no attention), not K = {k}")

    graphs = []
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for history in range(model.cfg.num_prev_frames + 1):
            inputs = step_inputs(model, size, k, history)
            name = f"step_prev{history}.onnx"
            model.reset()
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the exporter's notes on its own internals
                program = torch.onnx.export(FrameStep(model), tuple(inputs.values()), input_names=list(inputs),
                                            output_names=["image"], dynamo=True, verbose=False)
                program.save(str(tmp / name))
            graphs.append({"file": name, "previous_frames": history,
                           "inputs": {n: list(t.shape) for n, t in inputs.items()}, "output": "image"})
        description = {"model": model_kind(model), "size": list(size), "K": k if is_few_shot(model) else None,
                       "num_prev_frames": model.cfg.num_prev_frames, "graphs": graphs,
                       "value_range": "labels as in training; images in [-1, 1], RGB, (B, 3, H, W)"}
        (tmp / "export.json").write_text(json.dumps(description, indent=2) + "\n")
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return description

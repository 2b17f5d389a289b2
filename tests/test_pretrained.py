"""The shipped model: exported from a run with its log and provenance, found by the demo and `vid2vid serve`, and
rendering an unseen dancer from its references."""

import json

import numpy as np
import pytest
import torch

from vid2vid import metrics, pretrained
from vid2vid.checkpoint import CheckpointError, load_generator
from vid2vid.cli import main

from .conftest import train_on_tiny_dancers


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    train_on_tiny_dancers(root, heldout_sequences=1, heldout_frames=4)
    return root / "run"


def test_export_writes_the_average_its_log_recipe_and_provenance(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "shipped")
    folder = pretrained.export(tiny_run, command="python -m vid2vid.pretrained build --work w")
    assert sorted(p.name for p in folder.iterdir()) == ["PROVENANCE.json", "model.json", "model.safetensors",
                                                        "recipe.yaml", "training_log.jsonl"]
    provenance = json.loads((folder / "PROVENANCE.json").read_text())
    assert provenance["iterations"] == 2 and provenance["command"] == "python -m vid2vid.pretrained build --work w"
    assert provenance["recipe"] == "pretrained_dancers_cpu" and provenance["training_minutes"] >= 0
    assert (folder / "training_log.jsonl").read_text() == (tiny_run / "log.jsonl").read_text()
    # The weights are the run's averaged generator, loadable as any checkpoint.
    shipped, averaged = load_generator(folder), load_generator(tiny_run)
    assert all(torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), averaged.state_dict().values(),
                                                 strict=True))
    assert pretrained.shipped_model.__defaults__ == ("dancers_cpu",)
    assert pretrained.shipped_model() == folder
    assert not list((tmp_path / "shipped").glob(".*"))  # no temporary folder left behind


def test_a_missing_shipped_model_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path)
    with pytest.raises(CheckpointError, match="dancers_cpu.*missing.*make pretrained"):
        pretrained.shipped_model()
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "make pretrained" in err[-1]


def test_serve_without_a_checkpoint_loads_the_shipped_models(monkeypatch, tmp_path, capsys):
    import vid2vid.serve

    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path)
    seen = []
    monkeypatch.setattr(vid2vid.serve, "serve", lambda checkpoints, *args, **kwargs: seen.append(checkpoints))
    (tmp_path / "dancers_cpu").mkdir()
    for name in ("model.json", "model.safetensors"):
        (tmp_path / "dancers_cpu" / name).write_text("{}")
    assert main(["serve", "--port", "1"]) == 2  # one of them missing: a line saying how to rebuild it
    assert capsys.readouterr().err.strip().endswith("the shipped model 'faces_cpu' is missing (rebuild it: make "
                                                    "pretrained-face)")
    (tmp_path / "faces_cpu").mkdir()
    for name in ("model.json", "model.safetensors"):
        (tmp_path / "faces_cpu" / name).write_text("{}")
    assert main(["serve", "--port", "1"]) == 0
    assert seen == [[tmp_path / "dancers_cpu", tmp_path / "faces_cpu"]]
    assert main(["serve", "--port", "1", "--checkpoint", "a", "--checkpoint", "b"]) == 0
    assert seen[-1] == ["a", "b"]


def test_demo_renders_with_a_given_checkpoint(tiny_run, tmp_path):
    from vid2vid.demo import KS
    from vid2vid.demo import main as demo

    demo(["--checkpoint", str(tiny_run), "--out", str(tmp_path / "demo"), "--frames", "6", "--finetune", "2"])
    report = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert all(f"K={k}" in report and f"K={k} finetune=2" in report for k in KS) and report["frames"] == 6
    assert report["shown"] == "K=2 finetune=2"
    assert report["warping_error"]["result"] == report["K=2 finetune=2"]["warping_error"]
    assert report["warping_error"]["ground_truth"] < 5 and report["model"]["source"] == "given"
    for k in [f"K={k}" for k in KS] + [f"K={k} finetune=2" for k in KS]:
        assert 5 < report[k]["psnr"] < 60 and 0 <= report[k]["ssim"] <= 1
    assert (tmp_path / "demo" / "result.mp4").stat().st_size > 0
    assert (tmp_path / "demo" / "comparison.png").stat().st_size > 0
    assert not (tmp_path / "demo" / "data" / "train").exists()  # nothing trained


SHIPPED_MODEL = pretrained.SHIPPED / pretrained.DEFAULT


@pytest.mark.skipif(not (SHIPPED_MODEL / "model.json").is_file(), reason="no shipped model in this checkout")
def test_the_shipped_model_renders_an_unseen_dancer_from_its_references(tmp_path):
    """Identity 1001 (never trained on) with the motion of 1002, from 2 of its own frames: far closer to the truth
    than the references' mean colour would be, and it says where it came from."""
    from vid2vid.data.layout import scan
    from vid2vid.data.writer import write_synthetic
    from vid2vid.evaluate import render_sequence
    from vid2vid.generate import data_config_for, load_for_inference

    provenance = json.loads((SHIPPED_MODEL / "PROVENANCE.json").read_text())
    assert provenance["recipe"] == "pretrained_dancers_cpu" and provenance["iterations"] > 0
    assert (SHIPPED_MODEL / "model.safetensors").stat().st_size < 20 * 2 ** 20
    model = load_for_inference(SHIPPED_MODEL, torch.device("cpu"))
    data = data_config_for(SHIPPED_MODEL, model, None)
    write_synthetic("dancers", tmp_path / "refs", sequences=1, frames=8, size=data.size, first_index=1001,
                    progress=False)
    write_synthetic("dancers", tmp_path / "heldout", sequences=1, frames=4, size=data.size, first_index=1001,
                    motion_offset=1, progress=False)
    sequence = scan(tmp_path / "heldout", "pose")[0]
    rendered = render_sequence(model, data, tmp_path / "heldout", sequence, 2, tmp_path / "refs",
                               torch.device("cpu"))
    psnr = np.mean([metrics.psnr(r, t) for r, t in zip(rendered.results, rendered.truths, strict=True)])
    flat = np.mean([metrics.psnr(np.broadcast_to(t.mean(axis=(0, 1), keepdims=True), t.shape).astype(np.uint8), t)
                    for t in rendered.truths])
    assert psnr > 20 and psnr > flat + 5, (psnr, flat)


def test_build_synthesizes_trains_and_exports(tmp_path, monkeypatch):
    """`make pretrained`'s steps end to end, on a tiny recipe: data written once, a run, the exported folder."""
    from .conftest import tiny_train_config

    recipe = tiny_train_config("unused", schedule={"iterations": 2}, run={"checkpoint_every": 2})
    (tmp_path / "tiny.yaml").write_text(json.dumps(recipe.to_dict()))
    monkeypatch.setattr(pretrained, "MODELS", {"dancers_cpu": pretrained.ShippedModel(
        str(tmp_path / "tiny.yaml"), "dancers", sequences=2, frames=8, size=(32, 32), held_out="none",
        rebuild="make pretrained")})
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "shipped")
    folder = pretrained.build(tmp_path / "work")
    assert (tmp_path / "work" / "data" / ".complete").is_file()
    assert json.loads((folder / "PROVENANCE.json").read_text())["iterations"] == 2
    assert load_generator(folder) is not None


def test_a_model_trained_in_stages_ships_every_stages_recipe_and_log(tiny_run, tmp_path, monkeypatch):
    """A model whose recipe has later stages: export takes one run per stage, ships the last one's average, each
    stage's recipe and log, and sums the iterations and minutes; the wrong number of runs is one line."""
    import dataclasses

    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "shipped")
    staged = dataclasses.replace(pretrained.MODELS["dancers_cpu"], stages=("pretrained_faces_cpu",))
    monkeypatch.setitem(pretrained.MODELS, "dancers_cpu", staged)
    with pytest.raises(ValueError, match="2 stage.*give 2 run folder"):
        pretrained.export(tiny_run)
    folder = pretrained.export([tiny_run, tiny_run])
    assert sorted(p.name for p in folder.iterdir()) == [
        "PROVENANCE.json", "model.json", "model.safetensors", "recipe.yaml", "recipe_stage2.yaml",
        "training_log.jsonl", "training_log_stage2.jsonl"]
    assert "face edge maps" in (folder / "recipe_stage2.yaml").read_text()
    provenance = json.loads((folder / "PROVENANCE.json").read_text())
    assert provenance["iterations"] == 4
    assert [s["recipe"] for s in provenance["stages"]] == ["pretrained_dancers_cpu", "pretrained_faces_cpu"]


def test_build_trains_each_stage_from_the_last_ones_checkpoint(tmp_path, monkeypatch):
    """pretrained.build on a two-stage model: stage 2 starts from stage 1's last checkpoint (its run's config says
    so) on the data kind it names, and the shipped folder holds stage 2's average with both logs and recipes."""
    import dataclasses

    import yaml

    from .conftest import tiny_train_config

    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "shipped")
    recipes = []
    for stage, clip in ((1, 2), (2, 3)):
        values = tiny_train_config(tmp_path / "unused", data={"clip_length": clip},
                                   schedule={"iterations": 2, "batch_size": 1}).to_dict()
        recipes.append(tmp_path / f"stage{stage}.yaml")
        recipes[-1].write_text(yaml.safe_dump(values))
    spec = dataclasses.replace(pretrained.MODELS["dancers_cpu"], recipe=str(recipes[0]), stages=(str(recipes[1]),),
                               stage_kinds=("turning",), sequences=2, frames=8, size=(32, 32))
    monkeypatch.setitem(pretrained.MODELS, "dancers_cpu", spec)
    folder = pretrained.build(tmp_path / "work")
    stage2 = yaml.safe_load((tmp_path / "work" / "run_stage2" / "config.yaml").read_text())
    assert stage2["run"]["init_from"] == str(tmp_path / "work" / "run" / "checkpoints" / "00000002")
    assert stage2["data"]["clip_length"] == 3
    # Stage 2 trains on data of its own kind, written beside stage 1's.
    assert stage2["data_root"] == str(tmp_path / "work" / "data_turning")
    assert json.loads((tmp_path / "work" / "data_turning" / "vid2vid-data.json").read_text())["kind"] == "turning"
    provenance = json.loads((folder / "PROVENANCE.json").read_text())
    assert [s["iterations"] for s in provenance["stages"]] == [2, 2] and provenance["iterations"] == 4
    shipped = load_generator(folder)
    last = load_generator(tmp_path / "work" / "run_stage2")
    assert all(torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), last.state_dict().values(),
                                                 strict=True))

"""Bad input, command by command: one clear line naming the file, a non-zero exit, nothing written, nothing lost.

Every case builds its inputs in its own folder, runs the command line in-process and then checks the
promises of the project: exit code 2, exactly one line on stderr that starts with `error:`, names the file
(or folder) at fault and the problem, no traceback, and the folder exactly as it was before (no partial
output, no temporary file, existing files byte for byte the same).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vid2vid.checkpoint import save_generator
from vid2vid.cli import main
from vid2vid.data.video import VideoWriter, write_image
from vid2vid.data.writer import write_synthetic
from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator
from vid2vid.models.vid2vid import Vid2VidConfig, Vid2VidGenerator
from vid2vid.training.config import find_config

from .conftest import TINY_GENERATOR, parity_dir, tiny_train_config

SIZE = (32, 32)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Good inputs every case starts from: a pose dataset, a video, a few-shot and a vid2vid checkpoint."""
    root = tmp_path_factory.mktemp("assets")
    write_synthetic("dancers", root / "dancers", sequences=2, frames=6, size=SIZE, progress=False)
    write_synthetic("street", root / "street", sequences=1, frames=4, size=(32, 64), progress=False)
    with VideoWriter(root / "clip.mp4", fps=10) as writer:
        for i in range(12):
            writer.write(np.full((32, 32, 3), 20 * i, np.uint8))
    torch.manual_seed(0)
    few_shot = FewShotGenerator(FewShotConfig(**TINY_GENERATOR)).eval()
    save_generator(few_shot, root / "fs_model", data={"task": "pose", "size": list(SIZE)})
    street = Vid2VidGenerator(Vid2VidConfig(label_channels=35, num_filters=4, max_filters=16, num_layers=3,
                                            num_downsamples_img=2, embed_num_downsamples=3,
                                            flow_num_downsamples=2, flow_res_blocks=1)).eval()
    save_generator(street, root / "street_model", data={"task": "street", "size": [32, 64], "crop": "resize"})
    cfg = tiny_train_config(root / "dancers", schedule={"iterations": 1})
    (root / "train.yaml").write_text(json.dumps(cfg.to_dict()))  # JSON is YAML
    return root


@dataclass
class Case:
    args: list[str]
    names: str  # the file or folder the error line must name
    problem: str  # what the line must say about it


CASES: dict[str, Callable[[Path, Path], Case]] = {}


def case(name: str):
    def register(build):
        CASES[name] = build
        return build
    return register


def copy(assets: Path, name: str, here: Path) -> Path:
    source = assets / name
    target = here / name
    (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    return target


def first_frame(root: Path, modality: str = "images") -> Path:
    return sorted((root / modality).rglob("*.*"))[0]


def generate_args(model: Path, driving: Path, out: Path, *refs: Path) -> list[str]:
    args = ["generate", "--checkpoint", str(model), "--driving", str(driving), "-o", str(out), "--quiet"]
    return args + (["--reference", *map(str, refs)] if refs else [])


def edit_poses(data: Path, edit: Callable[[dict], None]) -> Path:
    """Apply edit to the OpenPose JSON of every frame (data is read lazily: any clip must meet the damage)."""
    for path in sorted((data / "poses-openpose").rglob("*.json")):
        values = json.loads(path.read_text())
        edit(values)
        path.write_text(json.dumps(values))
    return data


def train_args(here: Path, assets: Path, data: Path | None = None) -> list[str]:
    data = data or copy(assets, "dancers", here)
    return ["train", "--config", str(assets / "train.yaml"), "--data", str(data), "--run-dir", str(here / "run"),
            "--quiet"]


# ----------------------------------------------------------------------------------------------- prepare


@case("prepare: zero-byte video")
def _(here, assets):
    (here / "empty.mp4").write_bytes(b"")
    return Case(["prepare", str(here / "empty.mp4"), str(here / "out"), "--task", "street", "--quiet"],
                "empty.mp4", "empty file")


@case("prepare: truncated video")
def _(here, assets):
    data = (assets / "clip.mp4").read_bytes()
    (here / "cut.mp4").write_bytes(data[: len(data) // 3])
    return Case(["prepare", str(here / "cut.mp4"), str(here / "out"), "--task", "street", "--quiet"],
                "cut.mp4", "video")


@case("prepare: corrupt video")
def _(here, assets):
    (here / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    return Case(["prepare", str(here / "noise.mp4"), str(here / "out"), "--task", "street", "--quiet"],
                "noise.mp4", "not a readable video")


@case("prepare: folder with no frames")
def _(here, assets):
    (here / "frames").mkdir()
    (here / "frames" / "notes.txt").write_text("no pictures here")
    return Case(["prepare", str(here / "frames"), str(here / "out"), "--task", "street", "--quiet"],
                "frames", "no images")


@case("prepare: missing input")
def _(here, assets):
    return Case(["prepare", str(here / "nothing.mp4"), str(here / "out"), "--task", "street", "--quiet"],
                "nothing.mp4", "no such file")


@case("prepare: output is a file")
def _(here, assets):
    video = copy(assets, "clip.mp4", here)
    (here / "out").write_text("keep me")
    return Case(["prepare", str(video), str(here / "out"), "--task", "street", "--no-labels", "--quiet"],
                "out", "exists and is not a folder")


@case("prepare: frames of different sizes")
def _(here, assets):
    (here / "frames").mkdir()
    write_image(here / "frames" / "00000.png", np.zeros((32, 32, 3), np.uint8))
    write_image(here / "frames" / "00001.png", np.zeros((32, 48, 3), np.uint8))
    return Case(["prepare", str(here / "frames"), str(here / "out"), "--task", "street", "--no-labels", "--quiet"],
                "00001.png", "differs")


@case("prepare: zero-byte frame in a folder")
def _(here, assets):
    (here / "frames").mkdir()
    write_image(here / "frames" / "00000.png", np.zeros((32, 32, 3), np.uint8))
    (here / "frames" / "00001.png").write_bytes(b"")
    return Case(["prepare", str(here / "frames"), str(here / "out"), "--task", "street", "--no-labels", "--quiet"],
                "00001.png", "not a readable image")


@case("prepare: absurd --every")
def _(here, assets):
    video = copy(assets, "clip.mp4", here)
    return Case(["prepare", str(video), str(here / "out"), "--task", "street", "--every", "0", "--quiet"],
                "--every", "at least 1")


# ------------------------------------------------------------------------------------------------- synth


@case("synth: absurd size")
def _(here, assets):
    return Case(["synth", "dancers", str(here / "out"), "--size", "100000x100000", "--quiet"],
                "--size", "from 8 to 8192")


@case("synth: size that is not a size")
def _(here, assets):
    return Case(["synth", "dancers", str(here / "out"), "--size", "big", "--quiet"], "--size", "HxW")


@case("synth: no sequences")
def _(here, assets):
    return Case(["synth", "dancers", str(here / "out"), "--sequences", "0", "--quiet"], "--sequences",
                "at least 1")


@case("synth: negative frames")
def _(here, assets):
    return Case(["synth", "dancers", str(here / "out"), "--frames", "-3", "--quiet"], "--frames", "at least 1")


@case("synth: output holds other data")
def _(here, assets):
    (here / "out").mkdir()
    (here / "out" / "thesis.tex").write_text("precious")
    return Case(["synth", "dancers", str(here / "out"), "--sequences", "1", "--frames", "2", "--size", "32x32",
                 "--quiet"], "out", "holds other data")


# ------------------------------------------------------------------------------------------------- train


@case("train: missing config")
def _(here, assets):
    return Case(["train", "--config", str(here / "nope.yaml"), "--run-dir", str(here / "run"), "--quiet"],
                "nope.yaml", "no such")


@case("train: config that is not YAML")
def _(here, assets):
    (here / "bad.yaml").write_text("model: [unclosed\n")
    return Case(["train", "--config", str(here / "bad.yaml"), "--run-dir", str(here / "run"), "--quiet"],
                "bad.yaml", "YAML")


@case("train: config with an unknown setting")
def _(here, assets):
    values = json.loads((assets / "train.yaml").read_text())
    values["schedule"]["iterationz"] = 3
    (here / "typo.yaml").write_text(json.dumps(values))
    return Case(["train", "--config", str(here / "typo.yaml"), "--run-dir", str(here / "run"), "--quiet"],
                "typo.yaml", "iterationz")


@case("train: data folder with no frames")
def _(here, assets):
    (here / "data" / "images" / "seq").mkdir(parents=True)
    return Case(train_args(here, assets, here / "data"), "seq", "no frames")


@case("train: labels without images")
def _(here, assets):
    data = copy(assets, "dancers", here)
    first_frame(data).unlink()
    return Case(train_args(here, assets, data), "00000.json", "without an image")


@case("train: images without labels")
def _(here, assets):
    data = copy(assets, "dancers", here)
    first_frame(data, "poses-openpose").unlink()
    return Case(train_args(here, assets, data), "00000.png", "no OpenPose")


@case("train: JSON that is not OpenPose")
def _(here, assets):
    def rename(values):
        values["humans"] = values.pop("people")

    data = edit_poses(copy(assets, "dancers", here), rename)
    return Case(train_args(here, assets, data), ".json", "not OpenPose JSON")


@case("train: NaN keypoints")
def _(here, assets):
    def spoil(values):
        values["people"][0]["pose_keypoints_2d"][0] = float("nan")

    data = edit_poses(copy(assets, "dancers", here), spoil)
    return Case(train_args(here, assets, data), ".json", "NaN")


@case("train: keypoints far out of the frame")
def _(here, assets):
    def move(values):
        values["people"][0]["pose_keypoints_2d"][3:6] = [5000.0, 20.0, 0.9]

    data = edit_poses(copy(assets, "dancers", here), move)
    return Case(train_args(here, assets, data), ".json", "outside the 32x32 image")


@case("train: negative keypoints")
def _(here, assets):
    def move(values):
        values["people"][0]["pose_keypoints_2d"][3:6] = [-400.0, -300.0, 0.9]

    data = edit_poses(copy(assets, "dancers", here), move)
    return Case(train_args(here, assets, data), ".json", "outside the 32x32 image")


@case("train: colour segmentation map")
def _(here, assets):
    data = copy(assets, "street", here)
    colours = np.random.default_rng(0).integers(0, 30, (32, 64, 3), np.uint8)
    for path in (data / "seg_maps").rglob("*.png"):
        write_image(path, colours)
    # The recipe's 6-frame clips are longer than these 4-frame sequences: the same recipe with clips of 3.
    recipe = yaml.safe_load(find_config("train_street_cpu").read_text())
    recipe["data"]["clip_length"] = 3
    (here / "street.yaml").write_text(yaml.safe_dump(recipe))
    return Case(["train", "--config", str(here / "street.yaml"), "--data", str(data), "--run-dir",
                 str(here / "run"), "--quiet"], ".png", "one channel")


@case("train: resume a folder that is not a run")
def _(here, assets):
    (here / "run").mkdir()
    return Case(["train", "--resume", str(here / "run"), "--quiet"], "run", "not a training run folder")


@case("train: run folder is a file")
def _(here, assets):
    (here / "run").write_text("keep me")
    return Case(train_args(here, assets), "run", "not a folder")


# ---------------------------------------------------------------------------------------------- generate


@case("generate: missing checkpoint")
def _(here, assets):
    data = copy(assets, "dancers", here)
    return Case(generate_args(here / "nomodel", data, here / "out.mp4", first_frame(data)), "nomodel",
                "no such checkpoint")


@case("generate: truncated checkpoint")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    weights = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    return Case(generate_args(model, data, here / "out.mp4", first_frame(data)), "model.safetensors",
                "does not hold this model's weights")


@case("generate: model description that is not JSON")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    (model / "model.json").write_text("{truncated")
    return Case(generate_args(model, data, here / "out.mp4", first_frame(data)), "model.json",
                "not a vid2vid model description")


@case("generate: weights of the other model")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    shutil.copy(assets / "street_model" / "model.safetensors", model / "model.safetensors")
    return Case(generate_args(model, data, here / "out.mp4", first_frame(data)), "model.safetensors",
                "does not hold this model's weights")


@case("generate: wrong label channels for the checkpoint")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    info = json.loads((model / "model.json").read_text())
    info["config"]["label_channels"] = 3
    (model / "model.json").write_text(json.dumps(info))
    return Case(generate_args(model, data, here / "out.mp4", first_frame(data)), "model.safetensors",
                "does not hold this model's weights")


@case("generate: pose data for a street model")
def _(here, assets):
    model, data = copy(assets, "street_model", here), copy(assets, "dancers", here)
    return Case(generate_args(model, data, here / "out.mp4"), "seg_maps", "missing")


@case("generate: few-shot model without references")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    return Case(generate_args(model, data, here / "out.mp4"), "--reference", "needs --reference")


@case("generate: existing output")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    (here / "out.mp4").write_bytes(b"precious")
    return Case(generate_args(model, data, here / "out.mp4", first_frame(data)), "out.mp4", "--overwrite")


@case("generate: output is a folder")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    (here / "out.mp4").mkdir()
    return Case(generate_args(model, data, here / "out.mp4", first_frame(data)) + ["--overwrite"], "out.mp4",
                "is a folder")


@case("generate: output folder missing")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    return Case(generate_args(model, data, here / "no" / "out.mp4", first_frame(data)), "no", "no such folder")


@case("generate: zero-byte reference image")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    reference = sorted((data / "images").rglob("*.png"))[-1]
    reference.write_bytes(b"")
    return Case(generate_args(model, data, here / "out.mp4", reference), reference.name, "not a readable image")


@case("generate: corrupt driving video")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    (here / "drive.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    return Case(generate_args(model, here / "drive.mp4", here / "out.mp4", first_frame(data)), "drive.mp4",
                "video")


@case("generate: size the model cannot take")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    return Case(generate_args(model, data, here / "out.mp4", first_frame(data)) + ["--size", "36x36"], "36x36",
                "multiple of 8")


@case("generate: frames per second of zero")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    return Case(generate_args(model, data, here / "out.mp4", first_frame(data)) + ["--fps", "0"], "--fps",
                "positive number")


# ---------------------------------------------------------------------------------------------- evaluate


@case("evaluate: data folder that is no dataset")
def _(here, assets):
    model = copy(assets, "fs_model", here)
    (here / "data").mkdir()
    return Case(["evaluate", "--checkpoint", str(model), "--data", str(here / "data"), "-o", str(here / "report"),
                 "--quiet"], "data", "no images/ folder")


@case("evaluate: K of 0")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    return Case(["evaluate", "--checkpoint", str(model), "--data", str(data), "-o", str(here / "report"),
                 "--K", "0", "--quiet"], "--K", "at least 1")


@case("evaluate: report path is a file")
def _(here, assets):
    model, data = copy(assets, "fs_model", here), copy(assets, "dancers", here)
    (here / "report").write_text("keep me")
    return Case(["evaluate", "--checkpoint", str(model), "--data", str(data), "-o", str(here / "report"),
                 "--quiet"], "report", "not a folder")


# ------------------------------------------------------------------------------------------------ export


@case("export: truncated checkpoint")
def _(here, assets):
    model = copy(assets, "fs_model", here)
    weights = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(weights[:100])
    return Case(["export", "--checkpoint", str(model), "-o", str(here / "onnx")], "model.safetensors",
                "does not hold this model's weights")


@case("export: output is a file")
def _(here, assets):
    model = copy(assets, "fs_model", here)
    (here / "onnx").write_text("keep me")
    return Case(["export", "--checkpoint", str(model), "-o", str(here / "onnx")], "onnx", "not a folder")


# ----------------------------------------------------------------------------------------------- convert


class Payload:
    """Unpickling this would create the file named: proof that code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@case("convert: malicious pickle")
def _(here, assets):
    torch.save({"net_G": Payload(here.parent / f"{here.name}-pwned")}, here / "evil.pt")
    return Case(["convert", "imaginaire", str(here / "evil.pt"), "--config",
                 str(parity_dir("fs_vid2vid_a") / "config.yaml"), "-o", str(here / "out")], "evil.pt",
                "not a readable PyTorch checkpoint")


@case("convert: truncated checkpoint")
def _(here, assets):
    data = (parity_dir("fs_vid2vid_a") / "state_dict.pt").read_bytes()
    (here / "cut.pt").write_bytes(data[: len(data) // 2])
    return Case(["convert", "imaginaire", str(here / "cut.pt"), "--config",
                 str(parity_dir("fs_vid2vid_a") / "config.yaml"), "-o", str(here / "out")], "cut.pt",
                "not a readable PyTorch checkpoint")


@case("convert: checkpoint of the other model")
def _(here, assets):
    return Case(["convert", "imaginaire", str(parity_dir("vid2vid_a") / "state_dict.pt"), "--config",
                 str(parity_dir("fs_vid2vid_a") / "config.yaml"), "-o", str(here / "out")], "state_dict.pt",
                "does not fit the configured generator")


@case("convert: config that is not imaginaire's")
def _(here, assets):
    (here / "config.yaml").write_text("model: fs_vid2vid\n")
    return Case(["convert", "imaginaire", str(parity_dir("fs_vid2vid_a") / "state_dict.pt"), "--config",
                 str(here / "config.yaml"), "-o", str(here / "out")], "config.yaml", "not an imaginaire config")


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line_and_changes_nothing(name, assets, tmp_path, capsys):
    here = tmp_path / "case"
    here.mkdir()
    spec = CASES[name](here, assets)
    before = snapshot(here)
    capsys.readouterr()
    code = main(spec.args)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (name, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert spec.names in lines[0] and spec.problem in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert snapshot(here) == before, f"{name}: the folder changed"
    assert not (tmp_path / "case-pwned").exists()


def test_the_matrix_is_large():
    assert len(CASES) >= 30


def test_debug_shows_the_traceback(assets, tmp_path, capsys):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert main(["--debug", "prepare", str(tmp_path / "empty.mp4"), str(tmp_path / "out"), "--task", "street"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


# -------------------------------------------------------------------- read-only folders and a full disk


def deny_writes_under(folder: Path, monkeypatch) -> None:
    """A read-only folder. chmod stops other users; root (as in CI containers) writes anyway, so for root
    the refusal the kernel would give is raised where files are created."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return
    import tempfile

    real_mkstemp, real_mkdtemp, real_mkdir = tempfile.mkstemp, tempfile.mkdtemp, Path.mkdir

    def inside(path) -> bool:
        return Path(path).resolve().is_relative_to(folder.resolve())

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if dir is not None and inside(dir):
            refuse(dir)
        return real_mkstemp(suffix, prefix, dir, text)

    def mkdtemp(suffix=None, prefix=None, dir=None):
        if dir is not None and inside(dir):
            refuse(dir)
        return real_mkdtemp(suffix, prefix, dir)

    def mkdir(self, *args, **kwargs):
        if inside(self.parent) and not self.exists():
            refuse(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)


@pytest.mark.parametrize("command", ["generate", "synth", "prepare", "train", "evaluate"])
def test_read_only_output_folder(command, assets, tmp_path, monkeypatch, capsys):
    model, data = copy(assets, "fs_model", tmp_path), copy(assets, "dancers", tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    args = {
        "generate": generate_args(model, data, locked / "out.mp4", first_frame(data)),
        "synth": ["synth", "dancers", str(locked / "out"), "--sequences", "1", "--frames", "2", "--size", "32x32",
                  "--quiet"],
        "prepare": ["prepare", str(assets / "clip.mp4"), str(locked / "out"), "--task", "street", "--no-labels",
                    "--quiet"],
        "train": train_args(tmp_path, assets, data)[:-3] + ["--run-dir", str(locked / "run"), "--quiet"],
        "evaluate": ["evaluate", "--checkpoint", str(model), "--data", str(data), "-o", str(locked / "report"),
                     "--no-pose-error", "--quiet"],
    }[command]
    deny_writes_under(locked, monkeypatch)
    try:
        assert main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "locked" in lines[0] and "Permission denied" in lines[0], lines
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_full_disk_while_writing_the_video(assets, tmp_path, monkeypatch, capsys):
    """The disk fills up after two frames: one line, no partial mp4, the old output kept."""
    model, data = copy(assets, "fs_model", tmp_path), copy(assets, "dancers", tmp_path)
    (tmp_path / "out.mp4").write_bytes(b"the old result")
    real_write = VideoWriter.write

    def write(self, frame):
        if self.frames == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.tmp)
        real_write(self, frame)

    monkeypatch.setattr(VideoWriter, "write", write)
    args = generate_args(model, data, tmp_path / "out.mp4", first_frame(data)) + ["--overwrite"]
    before = snapshot(tmp_path)
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "out.mp4" in lines[0], lines
    assert snapshot(tmp_path) == before


def test_full_disk_while_writing_a_checkpoint(assets, tmp_path, monkeypatch, capsys):
    """The disk fills up during the second checkpoint: the first stays `latest` and complete, nothing
    half-written is left, and the run resumes from it."""
    import vid2vid.training.checkpoints as training

    data = copy(assets, "dancers", tmp_path)
    cfg = tiny_train_config(data, schedule={"iterations": 4}, run={"checkpoint_every": 2})
    (tmp_path / "train.yaml").write_text(json.dumps(cfg.to_dict()))
    real_save = training.save_model
    calls = []

    def save_model(model, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 4:  # the second checkpoint's discriminators (G then D in each checkpoint)
            Path(path).write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(training, "save_model", save_model)
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--run-dir", str(run), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], lines
    assert (run / "latest").read_text().strip() == "00000002"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["00000002"]
    monkeypatch.setattr(training, "save_model", real_save)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert (run / "latest").read_text().strip() == "00000004"


def test_resume_with_a_changed_config_keeps_the_runs_data(assets, tmp_path):
    """`train --resume RUN --config NEW.yaml`: the new config's settings, the run's data (its data_root may be a
    placeholder, as in the shipped recipes)."""
    from vid2vid.train import load_train_config

    data = copy(assets, "dancers", tmp_path)
    cfg = tiny_train_config(data, schedule={"iterations": 2}, run={"checkpoint_every": 2})
    (tmp_path / "train.yaml").write_text(json.dumps(cfg.to_dict()))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--run-dir", str(run), "--quiet"]) == 0
    longer = {**cfg.to_dict(), "data_root": "data/nowhere", "schedule": {**cfg.schedule.to_dict(), "iterations": 4}}
    (tmp_path / "longer.yaml").write_text(json.dumps(longer))
    assert main(["train", "--resume", str(run), "--config", str(tmp_path / "longer.yaml"), "--quiet"]) == 0
    assert (run / "latest").read_text().strip() == "00000004"
    assert load_train_config(run / "config.yaml").data_root == str(data)

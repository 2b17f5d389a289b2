"""Crash safety: training killed with SIGKILL at chosen points resumes to exactly the weights of a run that
was never interrupted; a checkpoint that would run code when loaded is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vid2vid.cli import main
from vid2vid.data.writer import write_synthetic

from .conftest import tiny_train_config

# Runs `vid2vid train` in a child process that kills itself (SIGKILL: no cleanup, no finally) at one point:
#   step        iteration 3, after the first frame's discriminator update and before its generator update
#   checkpoint  the checkpoint of iteration 4, after its trained generator is written and before the rest
#   latest      after checkpoint 4 is in place, before `latest` names it
#   none        never
TRAIN_AND_DIE = """
import os, signal, sys
import torch
torch.set_num_threads(1)
import vid2vid.train as training
import vid2vid.training.checkpoints as checkpoints
import vid2vid.training.frame_step as frame_step
from vid2vid.cli import main

point = sys.argv[1]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
real_step, real_save, real_write = frame_step.optimizer_step, checkpoints.save_model, checkpoints.atomic_write_bytes
state = {"iteration": 0, "updates": 0}
real_train_clip = training.train_clip

def train_clip(nets, batch, cfg, iteration, *args, **kwargs):
    state["iteration"], state["updates"] = iteration + 1, 0
    return real_train_clip(nets, batch, cfg, iteration, *args, **kwargs)

def optimizer_step(optimizer, scaler):
    state["updates"] += 1
    if point == "step" and state["iteration"] == 3 and state["updates"] == 2:
        die()
    real_step(optimizer, scaler)

def save_model(model, path, *args, **kwargs):
    real_save(model, path, *args, **kwargs)
    if point == "checkpoint" and ".00000004.tmp" in str(path):
        die()

def atomic_write_bytes(path, data):
    if point == "latest" and data.strip() == b"00000004":
        die()
    real_write(path, data)

training.train_clip, frame_step.optimizer_step = train_clip, optimizer_step
checkpoints.save_model, checkpoints.atomic_write_bytes = save_model, atomic_write_bytes
sys.exit(main(sys.argv[2:]))
"""


def run_train(point: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", TRAIN_AND_DIE, point, *args, "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300)


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("model.safetensors", "generator.safetensors", "discriminators.safetensors"):
        out.update({f"{name}/{k}": v for k, v in load_file(checkpoint / name).items()})
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A dataset, a config (4 iterations, checkpoints at 2 and 4) and the uninterrupted run's final weights."""
    root = tmp_path_factory.mktemp("crash")
    write_synthetic("dancers", root / "data", sequences=2, frames=6, size=(32, 32), progress=False)
    cfg = tiny_train_config(root / "data", schedule={"iterations": 4, "batch_size": 2},
                            run={"checkpoint_every": 2, "log_every": 1, "image_every": 100})
    (root / "train.yaml").write_text(json.dumps(cfg.to_dict()))
    done = run_train("none", "train", "--config", str(root / "train.yaml"), "--run-dir", str(root / "straight"))
    assert done.returncode == 0, done.stderr
    return root, weights(root / "straight" / "checkpoints" / "00000004")


@pytest.mark.parametrize("point", ["step", "checkpoint", "latest"])
def test_killed_training_resumes_to_the_same_weights(setup, tmp_path, point):
    root, expected = setup
    run = tmp_path / "run"
    killed = run_train(point, "train", "--config", str(root / "train.yaml"), "--run-dir", str(run))
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    # What the kill left: `latest` names a whole checkpoint, whatever was being written.
    assert (run / "latest").read_text().strip() == "00000002"
    latest = run / "checkpoints" / "00000002"
    assert sorted(p.name for p in latest.iterdir()) == ["discriminators.safetensors", "generator.safetensors",
                                                        "model.json", "model.safetensors", "training_state.pt"]
    resumed = run_train("none", "train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "latest").read_text().strip() == "00000004"
    got = weights(run / "checkpoints" / "00000004")
    assert got.keys() == expected.keys()
    different = [k for k in got if not torch.equal(got[k], expected[k])]
    assert not different, different[:5]
    assert not any(p.name.startswith(".") for p in (run / "checkpoints").iterdir())


class Payload:
    """Unpickling this creates the file: proof that code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_training_state_that_runs_code_is_refused(setup, tmp_path, capsys):
    root, _ = setup
    cfg = tiny_train_config(root / "data", schedule={"iterations": 2}, run={"checkpoint_every": 1})
    (tmp_path / "train.yaml").write_text(json.dumps(cfg.to_dict()))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "train.yaml"), "--run-dir", str(run), "--quiet"]) == 0
    state_file = run / "checkpoints" / "00000002" / "training_state.pt"
    torch.save({"iteration": 2, "optimizer_G": Payload(tmp_path / "pwned")}, state_file)
    cfg.schedule.iterations = 3
    (run / "config.yaml").write_text(json.dumps(cfg.to_dict()))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "00000002: cannot resume from this checkpoint" in lines[0], lines
    assert not (tmp_path / "pwned").exists()
    assert (run / "latest").read_text().strip() == "00000002"

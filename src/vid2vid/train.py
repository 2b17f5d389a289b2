"""Training both generators: one function, read top to bottom (setup, resume, loop, checkpoint).

An iteration takes a batch of clips, runs the generator over the T frames of each (previous outputs fed
back), then updates the discriminators (image, temporal, face/hand regions) once and the generator once on
the whole clip. Randomness is a function of (seed, iteration, rank) and data item i is a function of
(seed, i), so a resumed run is the same computation as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_model, save_model
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from vid2vid import losses
from vid2vid.checkpoint import CheckpointError, first_line, read_torch_file, save_generator
from vid2vid.config import GENERATOR_CONFIGS, find_config, read_yaml_mapping
from vid2vid.data.datasets import DataConfig, VideoClips
from vid2vid.data.render import CITYSCAPES_COLOURS, CITYSCAPES_NUM_CLASSES
from vid2vid.files import atomic_write_bytes
from vid2vid.models.discriminators import (
    DiscriminatorConfig,
    MultiScalePatchDiscriminator,
    RegionDiscriminator,
    TemporalDiscriminator,
    face_box,
    gather_windows,
    hand_boxes,
    image_input,
    image_input_channels,
    temporal_windows,
    window_flows,
)
from vid2vid.models.fs_vid2vid import FewShotGenerator, pick_reference
from vid2vid.models.vid2vid import Vid2VidGenerator
from vid2vid.settings import Settings
from vid2vid.step import References, is_few_shot, new_history, step

MODELS = {"fs_vid2vid": FewShotGenerator, "vid2vid": Vid2VidGenerator}


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, or a run folder that does not fit); the message says what to do."""


@dataclass
class LossConfig(Settings):
    SECTION = "loss"

    weights: losses.LossWeights = field(default_factory=losses.LossWeights)
    gan_mode: str = "hinge"
    vgg19_weights: str | None = None  # torchvision-format VGG19; None: the torch hub cache, else no perceptual loss
    perceptual_scales: int = 3


@dataclass
class OptimConfig(Settings):
    """Adam for G and D; defaults are imaginaire's few-shot recipes."""

    SECTION = "optim"

    lr_G: float = 1e-4
    lr_D: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.999)
    ema_decay: float = 0.999  # 0 turns the averaged generator off (it is then the trained one)
    decay_start: int | None = None  # learning rates fall linearly to 0 from this iteration to the last
    # Xavier-normal gain of the initial conv and linear weights. imaginaire's 0.02 suits its large models and
    # long runs; small models in short runs learn to copy the references far faster from 1.0.
    init_gain: float = 0.02

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)


@dataclass
class ScheduleConfig(Settings):
    """How long, in what batches, and the spatio-temporal progression (pure functions of the iteration)."""

    SECTION = "schedule"

    iterations: int = 1000
    batch_size: int = 1
    max_clip_length: int | None = None  # the clip length doubles from data.clip_length up to this
    double_clip_every: int = 0  # iterations between doublings (0: never)
    size_stages: list = field(default_factory=list)  # [[first_iteration, height, width], ...]: growing resolution
    backprop_frames: int = 0  # fed-back frames that carry gradient (0: every fed-back frame is detached)


@dataclass
class RunConfig(Settings):
    SECTION = "run"

    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp16 + scaler where bf16 is missing, fp32 on CPU), fp32, bf16, fp16
    num_workers: int = 0
    log_every: int = 10
    image_every: int = 100
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    time_limit_minutes: float | None = None  # stop (with a checkpoint) once this much time has passed


@dataclass
class TrainConfig(Settings):
    SECTION = "training"

    model: str
    data_root: str
    data: DataConfig
    generator: dict = field(default_factory=dict)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_dict(cls, values: dict, where: str | None = None) -> TrainConfig:
        values = dict(values)
        if values.get("model") not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {values.get('model')!r}")
        if not isinstance(values.get("data"), dict) or "task" not in values["data"]:
            raise ValueError("data: needs at least 'task' (pose, face or street)")
        data = DataConfig.from_dict(values.pop("data"))
        cfg = cls(model=values.pop("model"), data_root=str(values.pop("data_root", "")), data=data)
        cfg = cfg.updated(values)
        cfg.generator_config()  # fail now on bad generator settings
        return cfg

    def generator_config(self):
        gen = GENERATOR_CONFIGS[self.model].from_dict({"label_channels": self.data.label_channels,
                                                       **self.generator})
        if gen.label_channels != self.data.label_channels:
            raise ValueError(f"generator.label_channels is {gen.label_channels} but {self.data.task} data "
                             f"gives {self.data.label_channels} channels")
        return gen


def load_train_config(path: str | Path, data_root: str | None = None) -> TrainConfig:
    """A training config from a YAML file or a recipe name in vid2vid/configs (train_dancers_cpu, ...)."""
    path = find_config(path)
    values = read_yaml_mapping(path)
    if data_root is not None:
        values["data_root"] = data_root
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {str(exc).splitlines()[0]}") from None


# ---------------------------------------------------------------------------------------------- schedules


def clip_length_at(iteration: int, data: DataConfig, schedule: ScheduleConfig) -> int:
    if not schedule.double_clip_every or not schedule.max_clip_length:
        return data.clip_length
    doublings = iteration // schedule.double_clip_every
    return min(schedule.max_clip_length, data.clip_length * 2 ** doublings)


def size_at(iteration: int, data: DataConfig, schedule: ScheduleConfig) -> tuple[int, int]:
    size = tuple(data.size)
    for start, height, width in sorted(schedule.size_stages):
        if iteration >= start:
            size = (height, width)
    return size


def lr_factor(iteration: int, optim: OptimConfig, schedule: ScheduleConfig) -> float:
    if optim.decay_start is None or iteration < optim.decay_start:
        return 1.0
    return max(0.0, 1 - (iteration - optim.decay_start) / max(1, schedule.iterations - optim.decay_start))


# ------------------------------------------------------------------------------------------------ helpers


class ClipIndices(Sampler):
    """Dataset indices for batches first_batch, first_batch + 1, ... on this rank, without end."""

    def __init__(self, first_batch: int, batch_size: int, rank: int, world: int):
        self.first_batch, self.batch_size, self.rank, self.world = first_batch, batch_size, rank, world

    def __iter__(self):
        batch = self.first_batch
        while True:
            start = (batch * self.world + self.rank) * self.batch_size
            yield from range(start, start + self.batch_size)
            batch += 1


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """torchrun sets WORLD_SIZE; NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), world)


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients of a model in one flat buffer (parameters unused this step count as zero)."""
    if world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_parameters(model: torch.nn.Module) -> None:
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("run.device is cuda but no CUDA device is available")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, None for fp32."""
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def seed_iteration(seed: int, iteration: int, rank: int) -> None:
    torch.manual_seed(int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0]))


def make_generator(cfg: TrainConfig) -> torch.nn.Module:
    return MODELS[cfg.model](cfg.generator_config())


class Discriminators(torch.nn.Module):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        dcfg, few_shot = cfg.discriminator, cfg.model == "fs_vid2vid"
        self.image = MultiScalePatchDiscriminator.from_config(
            image_input_channels(cfg.data.label_channels, few_shot=few_shot), dcfg.image)
        self.temporal = TemporalDiscriminator.from_config(dcfg.temporal) if dcfg.temporal.enabled else None
        pose = cfg.data.task == "pose"
        self.face = RegionDiscriminator.from_config(dcfg.face, 3) if dcfg.face.enabled and pose else None
        self.hands = RegionDiscriminator.from_config(dcfg.hands, 3) if dcfg.hands.enabled and pose else None


def init_weights(model: torch.nn.Module, gain: float = 0.02) -> None:
    """imaginaire's initialisation: conv and linear weights xavier-normal with gain 0.02, biases zero; the
    flow and mask heads then start near zero flow and an even blend."""
    for module in model.modules():
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            continue
        parametrized = getattr(module, "parametrizations", None)
        weight = parametrized.weight.original if parametrized is not None and "weight" in parametrized else \
            module.weight
        torch.nn.init.xavier_normal_(weight, gain=gain)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers(), strict=True):
            e.copy_(b)


def is_finite(value: torch.Tensor) -> bool:
    return bool(torch.isfinite(value).all())


# ---------------------------------------------------------------------------------------------- the clip


@dataclass
class ClipOutputs:
    fake: torch.Tensor  # (B, T, 3, H, W)
    prev: list  # per frame: (flow, mask, warped) of the previous-frame branch, or None
    ref: list  # per frame (few-shot): (flow, mask, warped) of the reference branch, or None
    ref_idx: torch.Tensor | None


def run_generator(G: torch.nn.Module, batch: dict, backprop_frames: int) -> ClipOutputs:
    """The generator over the clip, previous outputs fed back; frames carry gradient within chunks of
    backprop_frames + 1 frames and are detached at chunk starts."""
    labels = batch["labels"]
    refs = References(batch["ref_labels"], batch["ref_images"]) if is_few_shot(G) else None
    history = new_history(G)
    fakes, prev, ref = [], [], []
    ref_idx = None
    for t in range(labels.shape[1]):
        out = step(G, labels[:, t], history, refs)
        fakes.append(out.fake_images)
        if is_few_shot(G):
            prev.append(_branch(out, 1))
            ref.append(_branch(out, 0))
            ref_idx = out.ref_idx
        else:
            prev.append(None if out.fake_flow_maps is None else
                        (out.fake_flow_maps, out.fake_occlusion_masks, out.warped_images))
        keep_gradient = backprop_frames > 0 and (t + 1) % (backprop_frames + 1) != 0
        history.push(labels[:, t], out.fake_images if keep_gradient else out.fake_images.detach())
    return ClipOutputs(torch.stack(fakes, 1), prev, ref, ref_idx)


def _branch(out, index: int):
    if out.fake_flow_maps[index] is None:
        return None
    return out.fake_flow_maps[index], out.fake_occlusion_masks[index], out.warped_images[index]


def image_d_input(batch: dict, images: torch.Tensor, ref_idx: torch.Tensor | None) -> torch.Tensor:
    """(B * T, C, H, W) inputs of the image D for every frame of the clip."""
    b, t = images.shape[:2]
    labels = batch["labels"].flatten(0, 1)
    if "ref_labels" not in batch:
        return image_input(labels, images.flatten(0, 1))
    ref_label = pick_reference(batch["ref_labels"], ref_idx)
    ref_image = pick_reference(batch["ref_images"], ref_idx)

    def repeat(x):  # one reference per clip -> one per frame
        return x[:, None].expand(b, t, *x.shape[1:]).flatten(0, 1)
    return image_input(labels, images.flatten(0, 1), repeat(ref_label), repeat(ref_image))


def region_boxes(keypoints: torch.Tensor, size: tuple[int, int], kind: str, crop_size: int):
    """Boxes (N, 4) and their frame index in B * T for faces or hands, from (B, T, 67, 3) keypoints."""
    boxes, index = [], []
    for i, points in enumerate(keypoints.flatten(0, 1).cpu()):
        body, left, right = points[:25], points[25:46], points[46:]
        found = [face_box(body, size)] if kind == "face" else hand_boxes(body, left, right, size, crop_size)
        for box in found:
            if box is not None:
                boxes.append(box)
                index.append(i)
    if not boxes:
        return None, None
    return torch.tensor(boxes, dtype=torch.float32), torch.tensor(index)


def discriminator_terms(D: Discriminators, batch: dict, fake: torch.Tensor, ref_idx, cfg: TrainConfig,
                        for_discriminator: bool) -> dict[str, torch.Tensor]:
    """GAN (and, for G, feature-matching) terms of every D; fake (B, T, 3, H, W) is detached by the caller
    for the D step. Real features for matching are computed without gradient."""
    mode, real = cfg.loss.gan_mode, batch["images"]
    terms = {}

    def judge(name, d_fake, d_real):
        """d_fake / d_real: callables returning the D's outputs on fake / real input."""
        fake_out = d_fake()
        if for_discriminator:
            real_out = d_real()
            terms[f"D_{name}/real"] = losses.gan_loss([o.logits for o in real_out], True, True, mode)
            terms[f"D_{name}/fake"] = losses.gan_loss([o.logits for o in fake_out], False, True, mode)
        else:
            with torch.no_grad():
                real_out = d_real()
            terms[f"G/gan_{name}"] = losses.gan_loss([o.logits for o in fake_out], True, False, mode)
            terms[f"G/fm_{name}"] = losses.feature_matching_loss([o.features for o in fake_out],
                                                                 [o.features for o in real_out])

    judge("image", lambda: D.image(image_d_input(batch, fake, ref_idx)),
          lambda: D.image(image_d_input(batch, real, ref_idx)))
    if D.temporal is not None:
        tcfg = cfg.discriminator.temporal
        for scale, windows in enumerate(temporal_windows(fake.shape[1], tcfg.num_frames, tcfg.step, tcfg.num_scales)):
            if not windows:
                continue
            flows = window_flows(batch["flow"], windows)
            judge(f"temporal{scale}", lambda w=windows, f=flows, s=scale: D.temporal(gather_windows(fake, w), f, s),
                  lambda w=windows, f=flows, s=scale: D.temporal(gather_windows(real, w), f, s))
    for name, region in (("face", D.face), ("hands", D.hands)):
        if region is None:
            continue
        boxes, index = region_boxes(batch["keypoints"], fake.shape[-2:], name, region.crop_size)
        if boxes is not None:
            boxes, index = boxes.to(fake.device), index.to(fake.device)
            judge(name, lambda r=region, b=boxes, i=index: r(fake.flatten(0, 1), b, i),
                  lambda r=region, b=boxes, i=index: r(real.flatten(0, 1), b, i))
    return terms


def generator_terms(out: ClipOutputs, batch: dict, perceptual: losses.PerceptualLoss | None) -> dict:
    """The non-adversarial terms: perceptual, L1, flow, warp and mask, averaged over frames."""
    real, fake = batch["images"], out.fake
    terms = {"G/l1": losses.l1(fake, real)}
    if perceptual is not None:
        terms["G/perceptual"] = perceptual(fake.flatten(0, 1), real.flatten(0, 1))
    flow, warp, mask = [], [], []
    for t, branch in enumerate(out.prev):
        if branch is not None:
            pred_flow, occlusion, warped = branch
            flow.append(losses.flow_loss(pred_flow, batch["flow"][:, t], batch["flow_confidence"][:, t]))
            warp.append(losses.warp_loss(warped, real[:, t]))
            mask.append(losses.mask_loss(occlusion, warped, real[:, t]))
    for t, branch in enumerate(out.ref):
        if branch is not None:
            _, occlusion, warped = branch
            warp.append(losses.warp_loss(warped, real[:, t]))
            mask.append(losses.mask_loss(occlusion, warped, real[:, t]))
    for name, values in (("flow", flow), ("warp", warp), ("mask", mask)):
        if values:
            terms[f"G/{name}"] = torch.stack(values).mean()
    return terms


def weighted_total(terms: dict[str, torch.Tensor], weights: losses.LossWeights) -> torch.Tensor:
    def weight(name: str) -> float:
        kind = name.split("/", 1)[1]
        if kind.startswith("gan_temporal"):
            return weights.temporal_gan
        if kind in ("gan_face", "gan_hands"):
            return weights.region_gan
        if kind.startswith("gan_"):
            return weights.gan
        if kind.startswith("fm_"):
            return weights.feature_matching
        return getattr(weights, kind)
    return sum(weight(name) * value for name, value in terms.items())


# ---------------------------------------------------------------------------------------------- files


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


def save_checkpoint(run_dir: Path, iteration: int, G, ema, D, opt_G, opt_D, scaler, keep: int,
                    data: DataConfig | None = None) -> Path:
    """Everything to continue, in a folder that appears complete or not at all; `latest` moves last."""
    folder = checkpoint_dir(run_dir) / f"{iteration:08d}"
    tmp = checkpoint_dir(run_dir) / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        # model.safetensors + model.json: what `vid2vid generate` loads, with how its labels were made
        save_generator(ema, tmp, data=None if data is None else data.to_dict())
        save_model(G, str(tmp / "generator.safetensors"))
        save_model(D, str(tmp / "discriminators.safetensors"))
        state = {"iteration": iteration, "optimizer_G": opt_G.state_dict(), "optimizer_D": opt_D.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else {}, "rng_torch": torch.get_rng_state()}
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


def load_checkpoint(folder: Path, G, ema, D, opt_G, opt_D, scaler) -> int:
    try:
        load_model(G, str(folder / "generator.safetensors"))
        load_model(ema, str(folder / "model.safetensors"))
        load_model(D, str(folder / "discriminators.safetensors"))
        state = read_torch_file(folder / "training_state.pt", "training state")
        opt_G.load_state_dict(state["optimizer_G"])
        opt_D.load_state_dict(state["optimizer_D"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{folder}: cannot resume from this checkpoint ({first_line(exc)})") from None
    return int(state["iteration"])


class Log:
    """log.jsonl always; TensorBoard scalars and images when it is installed; images also as PNG."""

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


def label_picture(labels: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) labels -> (N, 3, H, W) in [-1, 1] for looking at."""
    c = labels.shape[1]
    if c == 6:
        return labels[:, 3:]  # the OpenPose colours
    if c == 1:
        return labels.repeat(1, 3, 1, 1) * 2 - 1
    if c in (CITYSCAPES_NUM_CLASSES, CITYSCAPES_NUM_CLASSES + 1):  # street ids (+ instance edges)
        palette = torch.tensor(CITYSCAPES_COLOURS + ((0, 0, 0),)).to(labels) / 127.5 - 1
        return palette[labels[:, :CITYSCAPES_NUM_CLASSES].argmax(1)].permute(0, 3, 1, 2)
    palette = torch.rand(c, 3, generator=torch.Generator().manual_seed(1)).to(labels) * 2 - 1
    return palette[labels.argmax(1)].permute(0, 3, 1, 2)


def picture_grid(batch: dict, out: ClipOutputs) -> torch.Tensor:
    """Rows of the first clip's frames: label | generated | real | warped previous | occlusion mask."""
    fake, real = out.fake[0].detach(), batch["images"][0]
    blank = torch.zeros_like(real[0])
    warped = [blank if b is None else b[2][0].detach() for b in out.prev]
    mask = [blank if b is None else b[1][0].detach().expand(3, -1, -1) * 2 - 1 for b in out.prev]
    rows = [torch.cat([label_picture(batch["labels"][0, t:t + 1])[0], fake[t], real[t], warped[t], mask[t]], 2)
            for t in range(fake.shape[0])]
    return torch.cat(rows, 1)


# ---------------------------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    last_checkpoint: Path | None
    history: list = field(default_factory=list)  # logged scalars (main process)
    generator: torch.nn.Module | None = None  # the trained generator (not the average) of this process


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


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> TrainResult:
    """Train (or resume) the run in run_dir. A run this call starts that fails before its first iteration
    (a config, data or disk problem found in setup) leaves no folder behind."""
    run_dir = Path(run_dir)
    device = pick_device(cfg.run.device)
    ranks = init_distributed(device)
    started = ranks.main and prepare_run_dir(run_dir, cfg, resume, overwrite)
    result = TrainResult(run_dir, 0, None)
    try:
        return _train(cfg, run_dir, resume, progress, device, ranks, result)
    except BaseException:
        if started and result.iteration == 0:  # a fresh run counts its iterations from 0
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool, device: torch.device,
           ranks: Distributed, result: TrainResult) -> TrainResult:
    # ------------------------------------------------------------------ setup
    if ranks.world > 1:
        dist.barrier()
    amp_dtype = pick_precision(cfg.run.precision, device)
    torch.manual_seed(cfg.run.seed)
    G = make_generator(cfg).to(device).train()
    D = Discriminators(cfg).to(device).train()
    init_weights(G, cfg.optim.init_gain)
    init_weights(D, cfg.optim.init_gain)
    ema = make_generator(cfg).to(device).eval()
    ema.load_state_dict(G.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = cfg.optim
    opt_G = torch.optim.Adam(G.parameters(), lr=opt.lr_G, betas=opt.betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=opt.lr_D, betas=opt.betas)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    vgg = losses.load_vgg19(cfg.loss.vgg19_weights) if cfg.loss.weights.perceptual > 0 else None
    perceptual = None if vgg is None else losses.PerceptualLoss(vgg, num_scales=cfg.loss.perceptual_scales).to(device)
    dataset = VideoClips(cfg.data_root, cfg.data, seed=cfg.run.seed)
    nets = Nets(G, D, ema, opt_G, opt_D, scaler, perceptual, device, amp_dtype, ranks.world)

    # ------------------------------------------------------------------ resume
    start, last_checkpoint = 0, None
    if resume:
        last_checkpoint = latest_checkpoint(run_dir)
        if last_checkpoint is not None:
            start = load_checkpoint(last_checkpoint, G, ema, D, opt_G, opt_D, scaler)
    if ranks.world > 1:
        broadcast_parameters(G)
        broadcast_parameters(D)
        broadcast_parameters(ema)

    # ------------------------------------------------------------------ loop
    log = Log(run_dir, ranks.main)
    result.iteration, result.last_checkpoint, result.generator = start, last_checkpoint, G
    stage, batches = None, None
    bar = tqdm(total=cfg.schedule.iterations, initial=start, desc="train", unit="it",
               disable=not (progress and ranks.main))
    started = tick = time.perf_counter()
    tick_iteration = start
    try:
        for iteration in range(start, cfg.schedule.iterations):
            now = (clip_length_at(iteration, cfg.data, cfg.schedule), size_at(iteration, cfg.data, cfg.schedule))
            if now != stage:
                stage = now
                dataset.set_clip_length(now[0])
                dataset.cfg.size = now[1]
                sampler = ClipIndices(iteration, cfg.schedule.batch_size, ranks.rank, ranks.world)
                batches = iter(DataLoader(dataset, batch_size=cfg.schedule.batch_size, sampler=sampler,
                                          num_workers=cfg.run.num_workers))
            seed_iteration(cfg.run.seed, iteration, ranks.rank)
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(batches).items()}
            factor = lr_factor(iteration, opt, cfg.schedule)
            for group in opt_G.param_groups:
                group["lr"] = opt.lr_G * factor
            for group in opt_D.param_groups:
                group["lr"] = opt.lr_D * factor

            out, d_terms, g_terms = training_step(nets, batch, cfg, iteration, last_checkpoint)
            bar.update(1)

            done = iteration + 1
            out_of_time = (cfg.run.time_limit_minutes is not None
                           and time.perf_counter() - started > 60 * cfg.run.time_limit_minutes)
            if ranks.world > 1:  # every process stops at the same iteration
                flag = torch.tensor([float(out_of_time)], device=device)
                dist.all_reduce(flag)
                out_of_time = bool(flag.item() > 0)
            last = done == cfg.schedule.iterations or out_of_time
            if done % cfg.run.log_every == 0 or last:
                seconds = time.perf_counter() - tick
                values = {f"loss/{name}": float(v.detach()) for name, v in {**d_terms, **g_terms}.items()}
                values.update({"clip_length": stage[0], "height": stage[1][0], "width": stage[1][1],
                               "lr_G": opt.lr_G * factor, "iterations_per_s": (done - tick_iteration) / seconds})
                log.scalars(done, values)
                result.history.append({"iteration": done, **values})
                bar.set_postfix(G=f"{values['loss/G/total']:.3f}", D=f"{values['loss/D/total']:.3f}", T=stage[0],
                                size=f"{stage[1][0]}x{stage[1][1]}")
                tick, tick_iteration = time.perf_counter(), done
            if done % cfg.run.image_every == 0:
                log.image(done, picture_grid(batch, out))
            if ranks.main and (done % cfg.run.checkpoint_every == 0 or last):
                last_checkpoint = save_checkpoint(run_dir, done, G, ema, D, opt_G, opt_D, scaler,
                                                  cfg.run.keep_checkpoints, dataset.cfg)
                result.last_checkpoint = last_checkpoint
            result.iteration = done
            if out_of_time:
                break
    finally:
        bar.close()
        log.close()
    return result


@dataclass
class Nets:
    """What one training step reads and updates."""
    G: torch.nn.Module
    D: Discriminators
    ema: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    perceptual: losses.PerceptualLoss | None
    device: torch.device
    amp_dtype: torch.dtype | None
    world: int = 1


def training_step(nets: Nets, batch: dict, cfg: TrainConfig, iteration: int = 0,
                  last_checkpoint: Path | None = None) -> tuple[ClipOutputs, dict, dict]:
    """One iteration on a batch of clips: generator over the clip, one D update, one G update, EMA.
    Returns the clip outputs and the D and G terms (with their totals under D/total and G/total)."""
    G, D, scaler = nets.G, nets.D, nets.scaler
    autocast = torch.autocast(nets.device.type, dtype=nets.amp_dtype or torch.float32,
                              enabled=nets.amp_dtype is not None)
    with autocast:
        out = run_generator(G, batch, cfg.schedule.backprop_frames)
        # D step: the clip's frames against the real ones, every discriminator once.
        d_terms = discriminator_terms(D, batch, out.fake.detach(), out.ref_idx, cfg, for_discriminator=True)
        d_terms["D/total"] = sum(d_terms.values())
    _check_finite(d_terms, iteration, last_checkpoint)
    nets.opt_D.zero_grad(set_to_none=True)
    _backward(d_terms["D/total"], scaler)
    average_gradients(list(D.parameters()), nets.world)
    _step(nets.opt_D, scaler)

    # G step: D frozen, gradients reach G through the fake frames only.
    D.requires_grad_(False)
    with autocast:
        g_terms = discriminator_terms(D, batch, out.fake, out.ref_idx, cfg, for_discriminator=False)
        g_terms.update(generator_terms(out, batch, nets.perceptual))
        g_terms["G/total"] = weighted_total(g_terms, cfg.loss.weights)
    D.requires_grad_(True)
    _check_finite(g_terms, iteration, last_checkpoint)
    nets.opt_G.zero_grad(set_to_none=True)
    _backward(g_terms["G/total"], scaler)
    average_gradients(list(G.parameters()), nets.world)
    _step(nets.opt_G, scaler)
    if scaler is not None:
        scaler.update()
    update_ema(nets.ema, G, cfg.optim.ema_decay)
    return out, d_terms, g_terms


def _check_finite(terms: dict, iteration: int, last_checkpoint: Path | None) -> None:
    for name, value in terms.items():
        if not is_finite(value):
            where = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint yet"
            raise TrainingError(f"training stopped at iteration {iteration}: loss {name} is "
                                f"{float(value.detach())}; {where}")


def _backward(total: torch.Tensor, scaler) -> None:
    (scaler.scale(total) if scaler is not None else total).backward()


def _step(optimizer, scaler) -> None:
    if scaler is not None:
        scaler.step(optimizer)
    else:
        optimizer.step()

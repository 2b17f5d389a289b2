"""Training configs (typed, with imaginaire's recipe values as defaults) and the schedules, which are pure
functions of the iteration: clip length, frame size, learning-rate factor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vid2vid import losses
from vid2vid.config import GENERATOR_CONFIGS, find_config, read_yaml_mapping
from vid2vid.data.datasets import DataConfig
from vid2vid.models.discriminators import DiscriminatorConfig
from vid2vid.models.fs_vid2vid import FewShotGenerator
from vid2vid.models.vid2vid import Vid2VidGenerator
from vid2vid.settings import Settings

MODELS = {"fs_vid2vid": FewShotGenerator, "vid2vid": Vid2VidGenerator}


@dataclass
class LossConfig(Settings):
    SECTION = "loss"

    weights: losses.LossWeights = field(default_factory=losses.LossWeights)
    gan_mode: str = "hinge"
    vgg19_weights: str | None = None  # torchvision-format VGG19; None: the torch hub cache, else no perceptual loss
    perceptual_scales: int = 3
    # Train the raw (hallucinated) image on its own, as NVIDIA vid2vid trains its h_t and imaginaire its
    # generate_raw_output image: the image D's GAN and feature-matching terms, perceptual and L1, at the final
    # image's weights, on the foreground (pose data: the dilated DensePose body); the image D learns from it too.
    # Off: the raw image learns only through the occlusion mask's share of the final image.
    raw_output: bool = False


@dataclass
class OptimConfig(Settings):
    """Adam for G and D; defaults are imaginaire's few-shot recipes."""

    SECTION = "optim"

    lr_G: float = 1e-4
    lr_D: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.999)
    # The averaged generator (what checkpoints give `generate`): a copy of the trained one's weights, spectral
    # norm divided out, for the first ema_start updates (one per frame), then averaged with this decay.
    ema_decay: float = 0.999  # 0 turns averaging off: the checkpoint holds the trained generator's weights
    ema_start: int = 500
    # Learning-rate decay: none by default; `lr_step_every` multiplies both rates by lr_gamma every that many
    # iterations (imaginaire's step policy); `decay_start` falls linearly to 0 from there to the last iteration.
    lr_step_every: int = 0
    lr_gamma: float = 0.1
    decay_start: int | None = None
    # Xavier-normal gain of the initial conv and linear weights. imaginaire's 0.02 suits its large models and
    # long runs; small models in short runs learn to copy the references far faster from 1.0.
    init_gain: float = 0.02

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if self.lr_step_every < 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError(f"optim.lr_step_every must be >= 0 and lr_gamma in (0, 1], got {self.lr_step_every} "
                             f"and {self.lr_gamma}")
        if self.lr_step_every and self.decay_start is not None:
            raise ValueError("optim: choose one learning-rate decay, lr_step_every (step) or decay_start (linear)")
        if not 0 <= self.ema_decay < 1 or self.ema_start < 0:
            raise ValueError(f"optim.ema_decay must be in [0, 1) and ema_start >= 0, got {self.ema_decay} and "
                             f"{self.ema_start}")


@dataclass
class ScheduleConfig(Settings):
    """How long, in what batches, and the spatio-temporal progression (pure functions of the iteration)."""

    SECTION = "schedule"

    iterations: int = 1000
    batch_size: int = 1
    max_clip_length: int | None = None  # the clip length doubles from data.clip_length up to this
    double_clip_every: int = 0  # iterations between doublings (0: never)
    size_stages: list = field(default_factory=list)  # [[first_iteration, height, width], ...]: growing resolution
    # Each frame fed back as the previous output is blurred by a Gaussian of sigma drawn per sample from
    # [0, feedback_blur] pixels (0: as generated). Rendering a long video warps its own output again and again,
    # and every bilinear warp blurs; clips of a few frames never show that, so a model learns to copy the warped
    # previous frame (its occlusion mask near 0) and melts a real face within a second. A blurred previous
    # frame makes it take detail from the warped reference instead. The temporal D still sees the frames as made.
    feedback_blur: float = 0.0


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
    # A training checkpoint folder (run/checkpoints/N) whose generator, average and discriminators start this run
    # at iteration 0 with fresh optimizers: a second stage of a recipe (a resumed run's own checkpoint wins).
    init_from: str | None = None


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
        gen = cfg.generator_config()  # fail now on bad generator settings
        if cfg.loss.raw_output and gen.temporal_combine != "linear" and not getattr(gen, "generate_raw_output", False):
            raise ValueError("loss.raw_output needs a generator that makes a raw image: generator.temporal_combine "
                             "linear, or (fs_vid2vid) generator.generate_raw_output true")
        return cfg

    def generator_config(self):
        gen = GENERATOR_CONFIGS[self.model].from_dict({"label_channels": self.data.label_channels,
                                                       **self.generator})
        if gen.label_channels != self.data.label_channels:
            raise ValueError(f"generator.label_channels is {gen.label_channels} but {self.data.task} data "
                             f"gives {self.data.label_channels} channels")
        return gen

    @property
    def few_shot(self) -> bool:
        return self.model == "fs_vid2vid"


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


def make_generator(cfg: TrainConfig):
    return MODELS[cfg.model](cfg.generator_config())


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
    """The factor on both learning rates at an iteration: step (x lr_gamma every lr_step_every), linear (from 1 at
    decay_start to 0 at the last iteration) or 1."""
    if optim.lr_step_every:
        return optim.lr_gamma ** (iteration // optim.lr_step_every)
    if optim.decay_start is None or iteration < optim.decay_start:
        return 1.0
    return max(0.0, 1 - (iteration - optim.decay_start) / max(1, schedule.iterations - optim.decay_start))

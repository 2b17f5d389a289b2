"""Test-time fine-tuning of a few-shot generator on its references, as few-shot vid2vid's `--finetune` and
imaginaire's `finetune` (its dancing inference config: 100 iterations) do it.

Each step takes one reference as the target (its own label as the input), rolls and flips the target pair at
random, and makes one full training update on that single frame with all K references as the few-shot set, as
imaginaire does: so the path tuned is the one inference takes (at K = 2, attention over two references, not the
one-reference path that leaving the target out would tune). The roll and flip keep the target from being a copy of
its reference. The update: with `adversarial` (imaginaire's way, when the checkpoint has discriminators) the
discriminators, then the generator, with the recipe's losses and weights; by default the generator alone, L1 in
place of the adversarial terms: on our CPU models the discriminators of a short run gained nothing (-0.03 dB at
K = 4; -0.15 at 3e-5) where L1 gained 0.3-0.9 (docs/RESULTS.md, study 4 on turning dancers). The face and hand
Ds, where the recipe has them, judge the boxes found on the target's keypoints (the references' own, moved with the
roll, flip and zoom), as training judges its frames'. Only the layers
imaginaire fine-tunes move: the weight generator's MLP heads (imaginaire's `weight_generator.fc*`), the image
decoder (`up*`) and the output conv (`conv_img`); in our names `weight_generator.heads.*`, `decoder.*` and
`to_image.*`. The loaded model is never changed: a copy is tuned.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from tqdm import tqdm

from vid2vid import losses
from vid2vid.checkpoint import CheckpointError, first_line, model_folder, read_model_info
from vid2vid.config import read_yaml_mapping
from vid2vid.data.datasets import DataConfig
from vid2vid.data.teacher_flow import reference_flows
from vid2vid.files import atomic_write, atomic_write_bytes
from vid2vid.nn.blocks import fold_spectral_norm
from vid2vid.step import References, is_few_shot, new_history, step, unwrap
from vid2vid.training.config import TrainConfig
from vid2vid.training.frame_step import update_discriminators, update_generator
from vid2vid.training.nets import Discriminators, Nets, perceptual_loss

TRAINED_PREFIXES = ("weight_generator.heads.", "decoder.", "to_image.")
DEFAULT_STEPS = 100  # imaginaire's finetune_iter for dancing
# The generator's learning rate. imaginaire tunes at its training rate (1e-4); on our CPU dancer models (trained at
# 3e-4) 100 steps at 1e-4 or 3e-4 lost 3 dB on unseen dancers, at 1e-5 they gained 0.4 dB (studies/study4_finetune.py).
DEFAULT_LR = 1e-5
TRAINING_CONFIG = "training.yaml"  # beside a converted checkpoint: the losses and discriminators it was trained with


@dataclass
class FinetuneResult:
    model: torch.nn.Module  # the tuned copy, in eval mode
    steps: int
    seconds: float
    adversarial: bool  # False: no discriminators were at hand, only the non-adversarial terms were used
    history: list[dict] = field(default_factory=list)  # per step: the G (and D) totals


def trained_parameters(model: torch.nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters() if name.startswith(TRAINED_PREFIXES)]


def default_config(model: torch.nn.Module, data: dict | None = None) -> TrainConfig:
    """A training config with imaginaire's loss weights for a model that came without its recipe; data is the
    data config saved with the model, if any (else the task its label channels say)."""
    data = dict(data) if data else {"task": DataConfig.task_for_label_channels(model.cfg.label_channels)}
    return TrainConfig.from_dict({"model": "fs_vid2vid", "data": data, "generator": unwrap(model).cfg.to_dict()})


def training_setup(checkpoint: str | Path, model: torch.nn.Module, device: torch.device,
                   discriminators: bool = True) -> tuple[TrainConfig, Discriminators | None]:
    """The recipe a checkpoint was trained with and (unless discriminators is False) its discriminators, when the
    folder has them: a training run's checkpoint (the run's config.yaml, discriminators.safetensors) or a converted
    imaginaire checkpoint (training.yaml beside it). Otherwise default weights and no discriminators."""
    folder = model_folder(checkpoint)
    run_config = folder.parent.parent / "config.yaml"
    config_file = folder / TRAINING_CONFIG if (folder / TRAINING_CONFIG).is_file() else run_config
    if config_file.is_file():
        try:
            cfg = TrainConfig.from_dict(read_yaml_mapping(config_file))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{config_file}: {first_line(exc)}") from None
    else:
        cfg = default_config(model, read_model_info(folder).get("data"))
    weights = folder / "discriminators.safetensors"
    if not discriminators or not weights.is_file() or not config_file.is_file():
        return cfg, None
    D = Discriminators(cfg)
    try:
        load_model(D, str(weights), device=str(device))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{weights}: does not hold the discriminators of {config_file} "
                              f"({first_line(exc)})") from None
    return cfg, D.to(device)


def save_discriminators(folder: str | Path, training: dict, discriminators: Discriminators) -> None:
    """Discriminators and the training config they belong to, beside a (converted) checkpoint in folder."""
    folder = Path(folder)
    atomic_write(folder / "discriminators.safetensors", lambda tmp: save_model(discriminators, tmp))
    atomic_write_bytes(folder / TRAINING_CONFIG, yaml.safe_dump(training, sort_keys=False).encode())


def roll_and_flip(label: torch.Tensor, image: torch.Tensor, rng: torch.Generator,
                  points: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The same random shift (up to 1/16 of the height and width, either way, wrapping round) and, half the time,
    horizontal flip of a (B, C, H, W) label and image: imaginaire's random_roll. points (B, N, 3), keypoints
    (x, y, confidence) in pixels of the image, move with its pixels (None stays None; unseen points stay 0)."""
    h, w = label.shape[-2:]
    dy = int(torch.randint(-(h // 16), h // 16 + 1, (), generator=rng))
    dx = int(torch.randint(-(w // 16), w // 16 + 1, (), generator=rng))
    flip = bool(torch.rand((), generator=rng) < 0.5)

    def move(x):
        x = x.roll((dy, dx), dims=(-2, -1))
        return x.flip(-1) if flip else x

    def move_points(p):
        x, y = (p[..., 0] + dx) % w, (p[..., 1] + dy) % h
        x = w - 1 - x if flip else x
        return _only_seen(torch.stack([x, y, p[..., 2]], dim=-1), p)
    return move(label), move(image), None if points is None else move_points(points)


def _only_seen(moved: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return torch.where(points[..., 2:] > 0, moved, torch.zeros_like(moved))


AUGMENTATIONS = ("roll", "photo")


def rescale(label: torch.Tensor, image: torch.Tensor, rng: torch.Generator, amount: float = 0.15,
            points: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The same random zoom about the centre (by 1 - amount .. 1 + amount) of a (B, C, H, W) label (nearest
    samples, so a pose map keeps its colours) and image (bilinear), edges repeated: a crop jitter of the photo, so
    that a target is not its reference at the same scale. points (B, N, 3) move with the pixels; a point zoomed
    out of the frame is no longer seen (0)."""
    h, w = label.shape[-2:]
    zoom = 1 + amount * (2 * float(torch.rand((), generator=rng)) - 1)
    theta = torch.tensor([[1 / zoom, 0, 0], [0, 1 / zoom, 0]], dtype=torch.float32, device=label.device)
    grid = torch.nn.functional.affine_grid(theta[None].expand(label.shape[0], 2, 3), list(label.shape),
                                           align_corners=False)

    def sample(x, mode):
        return torch.nn.functional.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode="border",
                                               align_corners=False)

    def move_points(p):
        # Output pixel j samples the input at u / zoom, u = (2j + 1) / size - 1 (align_corners False): a point at
        # input u appears at zoom * u.
        x = (zoom * ((2 * p[..., 0] + 1) / w - 1) + 1) * w / 2 - 0.5
        y = (zoom * ((2 * p[..., 1] + 1) / h - 1) + 1) * h / 2 - 0.5
        inside = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
        return _only_seen(torch.stack([x, y, p[..., 2]], dim=-1), p * inside[..., None])
    return sample(label, "nearest"), sample(image, "bilinear"), None if points is None else move_points(points)


def recolour(images: list[torch.Tensor], rng: torch.Generator) -> list[torch.Tensor]:
    """The same random colour change of images in [-1, 1] (the target and its references alike): a gain per channel
    (0.85-1.15), a brightness shift (+-0.1) and a saturation change (0.7-1.3), so that the tuned model copies the
    references' colours rather than learning these ones by heart."""
    u = torch.rand(5, generator=rng)
    gain = (0.85 + 0.3 * u[:3]).view(1, 3, 1, 1)
    shift, saturation = 0.2 * float(u[3]) - 0.1, 0.7 + 0.6 * float(u[4])

    def change(x):
        shape = x.shape
        x = x.reshape(-1, *shape[-3:])
        x = (x + 1) * gain.to(x) - 1 + shift
        grey = x.mean(1, keepdim=True)
        return (grey + (x - grey) * saturation).clamp(-1, 1).reshape(shape)
    return [change(x) for x in images]


def finetune(model: torch.nn.Module, references: References, steps: int = DEFAULT_STEPS, *,
             cfg: TrainConfig | None = None, discriminators: Discriminators | None = None,
             lr: float | None = None, amp_dtype: torch.dtype | None = None, seed: int = 0,
             perceptual: losses.PerceptualLoss | None = None, progress: bool = False, augment: str = "roll",
             on_step: Callable[[int, dict], None] | None = None) -> FinetuneResult:
    """A copy of a few-shot model tuned for `steps` updates on references (labels (1, K, C, H, W), images
    (1, K, 3, H, W)); the model and discriminators given are left as they were.

    cfg gives the loss weights and the task (default: imaginaire's weights); lr the generator's learning rate
    (default DEFAULT_LR; the discriminators take the recipe's lr_D). augment: "roll" (imaginaire's roll and flip of
    the target) or "photo" (also a zoom of the target and one colour change of the target and the references, for
    a real photo: see rescale and recolour). Deterministic for a seed. on_step(i, terms) is called after every step
    (for a progress display)."""
    if not is_few_shot(model):
        raise ValueError("fine-tuning is for few-shot models; this is a vid2vid model")
    if steps < 0:
        raise ValueError(f"fine-tuning steps must be 0 or more, got {steps}")
    if references.labels.shape[0] != 1:
        raise ValueError("fine-tune on one set of references at a time (batch 1)")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"fine-tuning augmentation must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
    for j, label in enumerate(references.labels[0]):
        if not bool(label.amax() > label.amin()):  # nothing drawn: no person or face was found in it
            raise ValueError(f"reference {j + 1} has an empty label (no person or face found in it); fine-tuning "
                             "needs references with labels")
    cfg = cfg or default_config(model)
    device = references.images.device
    G = fold_spectral_norm(copy.deepcopy(unwrap(model))).train()
    G.reset()
    names = set(trained_parameters(G))
    for name, p in G.named_parameters():
        p.requires_grad_(name in names)
    D = copy.deepcopy(discriminators).train() if discriminators is not None else None
    opt = cfg.optim
    opt_G = torch.optim.Adam([p for n, p in G.named_parameters() if n in names], lr=lr or DEFAULT_LR,
                             betas=opt.betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=opt.lr_D, betas=opt.betas) if D is not None else None
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    nets = Nets(G, D, None, opt_G, opt_D, scaler, perceptual, device, amp_dtype)

    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    k = references.labels.shape[1]
    history = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="fine-tune", unit="step", disable=not progress)
    for i in bar:
        target = int(torch.randint(k, (), generator=rng))
        points = None if references.keypoints is None else references.keypoints[:, target]
        label, image, points = roll_and_flip(references.labels[:, target], references.images[:, target], rng, points)
        ref_labels, ref_images = references.labels, references.images
        if augment == "photo":
            label, image, points = rescale(label, image, rng, points=points)
            image, ref_images = recolour([image, ref_images], rng)
        ref_flow, ref_confidence = reference_flows(label, image, ref_labels[0], ref_images[0], cfg.data.task)
        batch = {"labels": label[:, None], "images": image[:, None], "ref_labels": ref_labels,
                 "ref_images": ref_images, "ref_flow": ref_flow[None], "ref_flow_confidence": ref_confidence[None]}
        if points is not None:  # the face (and hand) Ds judge the target's boxes, found as training finds them
            batch["keypoints"] = points[:, None]
        with nets.autocast():
            out = step(G, label, new_history(G), References(ref_labels, ref_images))
        where = f"fine-tuning step {i}"
        terms = update_discriminators(nets, batch, 0, out, [], cfg, where, None) if D is not None else {}
        terms.update(update_generator(nets, batch, 0, out, [], cfg, where, None))
        totals = {name: float(terms[name].detach()) for name in ("G/total", "D/total") if name in terms}
        history.append(totals)
        bar.set_postfix({name.split("/")[0]: f"{value:.3f}" for name, value in totals.items()})
        if on_step is not None:
            on_step(i, totals)
    G.requires_grad_(True)
    G.eval()
    G.reset()
    return FinetuneResult(G, steps, time.perf_counter() - start, D is not None, history)


def finetune_checkpoint_model(checkpoint: str | Path, model: torch.nn.Module, references: References, steps: int,
                              *, lr: float | None = None, amp_dtype: torch.dtype | None = None, seed: int = 0,
                              adversarial: bool = False, progress: bool = False, augment: str = "roll",
                              on_step: Callable[[int, dict], None] | None = None,
                              notice: Callable[[str], None] | None = None) -> FinetuneResult:
    """finetune() with what the checkpoint folder offers: its recipe's weights, the recipe's VGG19 weights for the
    perceptual term and, with adversarial, its discriminators. Without them it tunes with L1 (weighted as feature
    matching, if the recipe has none), perceptual and flow terms; notice() says which."""
    if not is_few_shot(model):
        raise ValueError("--finetune is for few-shot models; this checkpoint is a vid2vid model")
    cfg, discriminators = training_setup(checkpoint, model, references.images.device, discriminators=adversarial)
    if discriminators is None:
        weights = cfg.loss.weights
        weights.l1 = weights.l1 or weights.feature_matching
        if notice is not None:
            why = "no discriminators here" if adversarial else "without the discriminators (--finetune-adversarial)"
            notice(f"{model_folder(checkpoint)}: {why}; fine-tuning with L1 (weight {weights.l1:g}), "
                   "perceptual (with VGG19 weights) and flow terms only")
    return finetune(model, references, steps, cfg=cfg, discriminators=discriminators, lr=lr, amp_dtype=amp_dtype,
                    seed=seed, perceptual=perceptual_loss(cfg, references.images.device), progress=progress,
                    augment=augment, on_step=on_step)

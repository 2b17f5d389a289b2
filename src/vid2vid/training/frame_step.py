"""One frame of a training clip, as imaginaire trains it: the discriminators' update on the generated frame
(detached), then the generator's update against the just-updated discriminators. Each phase's terms have
fixed names (`D_image/real`, `G/gan_temporal0`, `G/flow`, ...) and the totals `D/total` and `G/total`.

The temporal D sees a window of the clip's earlier generated frames, stored detached, and the current one:
only the newest frame of a window is pushed by the generator (imaginaire's choice; gradient into frames
whose updates are already taken could not be applied anyway).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vid2vid import losses
from vid2vid.models.discriminators import (
    face_box,
    gather_windows,
    hand_boxes,
    image_input,
    temporal_windows,
    window_flows,
)
from vid2vid.models.fs_vid2vid import pick_reference
from vid2vid.step import warp_branches
from vid2vid.training import TrainingError
from vid2vid.training.config import TrainConfig
from vid2vid.training.distributed import average_gradients, first_rank_where, from_rank
from vid2vid.training.nets import Discriminators, Nets


def frame_windows(t: int, cfg: TrainConfig) -> list[list[int]]:
    """Per temporal scale, the window of clip frames that ends at frame t (empty where t is too early)."""
    tcfg = cfg.discriminator.temporal
    windows = []
    for scale in temporal_windows(t + 1, tcfg.num_frames, tcfg.step, tcfg.num_scales):
        windows.append(scale[-1] if scale and scale[-1][-1] == t else [])
    return windows


def region_boxes(keypoints: torch.Tensor, size: tuple[int, int], kind: str, crop_size: int):
    """Boxes (N, 4) and their sample index for faces or hands, from (B, 67, 3) keypoints of one frame."""
    boxes, index = [], []
    for i, points in enumerate(keypoints.cpu()):
        body, left, right = points[:25], points[25:46], points[46:]
        found = [face_box(body, size)] if kind == "face" else hand_boxes(body, left, right, size, crop_size)
        for box in found:
            if box is not None:
                boxes.append(box)
                index.append(i)
    if not boxes:
        return None, None
    return torch.tensor(boxes, dtype=torch.float32), torch.tensor(index)


def raw_image(out, cfg: TrainConfig) -> torch.Tensor | None:
    """The frame's raw (hallucinated) image when loss.raw_output trains it, else None; None also where the
    raw image is the final one (no warped input on this frame), which the final image's terms already train."""
    raw = getattr(out, "fake_raw_images", None)
    if not cfg.loss.raw_output or raw is None or raw is out.fake_images:
        return None
    return raw


def raw_region(batch: dict, t: int, cfg: TrainConfig) -> torch.Tensor | float:
    """Where the raw image is judged: pose data's dilated DensePose body (1 for a sample without DensePose),
    as imaginaire's get_fg_mask; every pixel for other data."""
    return losses.foreground_mask(batch["labels"][:, t]) if cfg.data.task == "pose" else 1.0


def discriminator_terms(D: Discriminators, batch: dict, t: int, fake: torch.Tensor, past: list[torch.Tensor],
                        ref_idx: torch.Tensor | None, cfg: TrainConfig, for_discriminator: bool,
                        raw: torch.Tensor | None = None) -> dict:
    """GAN (and, for G, feature-matching) terms of every D at frame t of the clip.

    fake (B, 3, H, W) is frame t as generated (detached by the caller for the D step); past holds the clip's
    earlier generated frames, detached. The reference beside the image (few-shot) is the one the generator
    picked for this frame. Real features for matching are computed without gradient. raw (B, 3, H, W), the
    frame's raw image (detached for the D step), is judged by the image D too, real and raw both cut to
    raw_region (terms `*_raw`)."""
    mode, real = cfg.loss.gan_mode, batch["images"][:, t]
    terms = {}

    def judge(name, d_fake, d_real):
        """d_fake / d_real: callables returning the D's outputs on fake / real input."""
        fake_out = d_fake()
        if for_discriminator:
            real_out = d_real()
            terms[f"D_{name}/real"] = losses.gan_loss([o.logits for o in real_out], True, True, mode)
            terms[f"D_{name}/fake"] = losses.gan_loss([o.logits for o in fake_out], False, True, mode)
            return
        terms[f"G/gan_{name}"] = losses.gan_loss([o.logits for o in fake_out], True, False, mode)
        if cfg.loss.weights.feature_matching > 0:  # the real frame goes through the D for this term only
            with torch.no_grad():
                real_out = d_real()
            terms[f"G/fm_{name}"] = losses.feature_matching_loss([o.features for o in fake_out],
                                                                 [o.features for o in real_out])

    label = batch["labels"][:, t]
    refs = ()
    if "ref_labels" in batch:
        refs = (pick_reference(batch["ref_labels"], ref_idx), pick_reference(batch["ref_images"], ref_idx))
    if D.image is not None:
        judge("image", lambda: D.image(image_input(label, fake, *refs)),
              lambda: D.image(image_input(label, real, *refs)))
        if raw is not None:
            region = raw_region(batch, t, cfg)
            judge("raw", lambda: D.image(image_input(label, raw * region, *refs)),
                  lambda: D.image(image_input(label, real * region, *refs)))

    if D.temporal is not None:
        for scale, window in enumerate(frame_windows(t, cfg)):
            if not window:
                continue
            flows = window_flows(batch["flow"], [window])
            fake_window = torch.stack([past[i].detach() for i in window[:-1]] + [fake], dim=1)  # (B, F, 3, H, W)
            real_window = gather_windows(batch["images"], [window])
            judge(f"temporal{scale}", lambda w=fake_window, f=flows, s=scale: D.temporal(w, f, s),
                  lambda w=real_window, f=flows, s=scale: D.temporal(w, f, s))

    for name, region in (("face", D.face), ("hands", D.hands)):
        if region is None or "keypoints" not in batch:  # fine-tuning on loose references has no keypoints
            continue
        boxes, index = region_boxes(batch["keypoints"][:, t], fake.shape[-2:], name, region.crop_size)
        if boxes is None:
            continue
        boxes, index = boxes.to(fake.device), index.to(fake.device)
        ref_image = refs[1:]  # few-shot: the reference cropped at the target's box, beside the crop

        def region_input(image, ref=ref_image):
            return torch.cat([image, *ref], dim=1)
        judge(name, lambda r=region, b=boxes, i=index: r(region_input(fake), b, i),
              lambda r=region, b=boxes, i=index: r(region_input(real), b, i))
    return terms


def flow_branches(out, batch: dict, t: int) -> tuple[losses.FlowBranch | None, losses.FlowBranch | None]:
    """The reference and previous-frame branches of a generated frame, each with its teacher flow."""
    flows, masks, warped = warp_branches(out)
    reference = previous = None
    if flows[0] is not None:
        teacher = confidence = None
        if "ref_flow" in batch:
            teacher = pick_reference(batch["ref_flow"][:, t], out.ref_idx)
            confidence = pick_reference(batch["ref_flow_confidence"][:, t], out.ref_idx)
        reference = losses.FlowBranch(flows[0], masks[0], warped[0], teacher, confidence)
    if flows[1] is not None:
        has_teacher = "flow" in batch and t > 0
        previous = losses.FlowBranch(flows[1], masks[1], warped[1], batch["flow"][:, t] if has_teacher else None,
                                     batch["flow_confidence"][:, t] if has_teacher else None)
    return reference, previous


def generator_terms(out, batch: dict, t: int, cfg: TrainConfig, perceptual: losses.PerceptualLoss | None,
                    previous_fake: torch.Tensor | None = None) -> dict:
    """The non-adversarial terms of frame t: L1, perceptual, and imaginaire's flow, warp and mask terms (each
    summed over the reference and previous branches; DensePose terms for pose data with references); with a
    temporal_l1 weight, the output against previous_fake (frame t - 1 as generated) warped by the teacher."""
    real, fake = batch["images"][:, t], out.fake_images
    terms = {"G/l1": losses.l1(fake, real)}
    if cfg.loss.weights.temporal_l1 > 0 and previous_fake is not None and t > 0 and "flow" in batch:
        terms["G/temporal_l1"] = losses.temporal_l1(fake, previous_fake, batch["flow"][:, t],
                                                    batch["flow_confidence"][:, t])
    if perceptual is not None:
        terms["G/perceptual"] = perceptual(fake, real)
    raw = raw_image(out, cfg)
    if raw is not None:
        region = raw_region(batch, t, cfg)
        terms["G/l1_raw"] = losses.l1(raw * region, real * region)
        if perceptual is not None:
            terms["G/perceptual_raw"] = perceptual(raw * region, real * region)
    weights = cfg.loss.weights
    reference, previous = flow_branches(out, batch, t)
    if (reference is not None or previous is not None) and max(weights.flow, weights.warp, weights.mask) > 0:
        pose = cfg.data.task == "pose" and reference is not None
        flow = losses.flow_terms(real, fake, reference, previous,
                                 label=batch["labels"][:, t] if pose else None,
                                 ref_label=pick_reference(batch["ref_labels"], out.ref_idx) if pose else None)
        terms.update({"G/flow": flow.flow, "G/warp": flow.warp, "G/mask": flow.mask})
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
        return getattr(weights, kind.removesuffix("_raw"))  # the raw image's terms weigh as the final image's
    return sum(weight(name) * value for name, value in terms.items())


def update_discriminators(nets: Nets, batch: dict, t: int, out, past: list[torch.Tensor], cfg: TrainConfig,
                          where: str, last_checkpoint: Path | None) -> dict:
    """One D update on frame t generated as `out` (detached); returns its terms (none when no D judged it)."""
    if nets.opt_D is None:
        return {}
    with nets.autocast():
        raw = raw_image(out, cfg)
        terms = discriminator_terms(nets.D, batch, t, out.fake_images.detach(), past, reference_index(out), cfg,
                                    for_discriminator=True, raw=None if raw is None else raw.detach())
    # No terms: the only Ds are temporal ones with no window yet, or region ones that found no region here. With
    # data parallel this rank still joins the others' all-reduces, with no gradient of its own.
    if not terms and nets.world == 1:
        return {}
    terms["D/total"] = sum(terms.values()) if terms else torch.zeros((), device=nets.device)
    check_finite(terms, "D/total", where, last_checkpoint, nets.world)
    nets.opt_D.zero_grad(set_to_none=True)
    if terms["D/total"].requires_grad:
        backward(terms["D/total"], nets.scaler)
    average_gradients(list(nets.D.parameters()), nets.world)
    if any(p.grad is not None for p in nets.D.parameters()):
        optimizer_step(nets.opt_D, nets.scaler)
    return terms


def update_generator(nets: Nets, batch: dict, t: int, out, past: list[torch.Tensor], cfg: TrainConfig,
                     where: str, last_checkpoint: Path | None) -> dict:
    """One G update on frame t, D frozen: gradients reach G through this frame only. Without discriminators
    (nets.D None: fine-tuning a model that came without them) only the non-adversarial terms. Returns its terms."""
    terms = {}
    with nets.autocast():
        if nets.D is not None:
            nets.D.requires_grad_(False)
            terms = discriminator_terms(nets.D, batch, t, out.fake_images, past, reference_index(out), cfg,
                                        for_discriminator=False, raw=raw_image(out, cfg))
            nets.D.requires_grad_(True)
        terms.update(generator_terms(out, batch, t, cfg, nets.perceptual, past[-1] if past else None))
        terms["G/total"] = weighted_total(terms, cfg.loss.weights)
    check_finite(terms, "G/total", where, last_checkpoint, nets.world)
    nets.opt_G.zero_grad(set_to_none=True)
    backward(terms["G/total"], nets.scaler)
    average_gradients(list(nets.G.parameters()), nets.world)
    optimizer_step(nets.opt_G, nets.scaler)
    if nets.scaler is not None:
        nets.scaler.update()
    return terms


def reference_index(out) -> torch.Tensor | None:
    """The reference the few-shot generator picked for each sample of this frame (None: the first; vid2vid)."""
    return getattr(out, "ref_idx", None)


def check_finite(terms: dict, total: str, where: str, last_checkpoint: Path | None, world: int = 1) -> None:
    """Stop every rank at once when the total is not finite on any: one host sync an update (the total is
    finite when every term is), and with data parallel one small all-reduce, so that a NaN on one rank does not
    leave the others waiting in the gradients' all-reduce until the process group times out. Every rank raises
    the same line, naming the term and the rank where it went wrong."""
    value = terms[total]
    bad_rank = first_rank_where(not bool(torch.isfinite(value).all()), value.device, world)
    if bad_rank is None:
        return
    name = next((n for n, v in terms.items() if not bool(torch.isfinite(v).all())), total)
    found = from_rank(f"loss {name} is {float(terms[name].detach().float().sum())}", bad_rank, world)
    on_rank = f" on rank {bad_rank}" if world > 1 else ""
    saved = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint yet"
    raise TrainingError(f"training stopped at {where}: {found}{on_rank}; {saved}")


def backward(total: torch.Tensor, scaler) -> None:
    (scaler.scale(total) if scaler is not None else total).backward()


def optimizer_step(optimizer, scaler) -> None:
    if scaler is not None:
        scaler.step(optimizer)
    else:
        optimizer.step()

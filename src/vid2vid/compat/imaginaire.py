"""NVIDIA imaginaire configs and checkpoints -> our generators.

The translation of parameter names is one explicit table of rules (imaginaire module path ->
ours); every parameter of our model must be filled exactly once and every checkpoint entry
used, otherwise loading fails with one error that names what did not fit.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import yaml

from vid2vid.checkpoint import CheckpointError, read_torch_file
from vid2vid.models.fs_vid2vid import FewShotConfig, FewShotGenerator
from vid2vid.models.vid2vid import Vid2VidConfig, Vid2VidGenerator


def _get(node: dict | None, path: str, default=None):
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _channels_of(data_cfg: dict, names: list[str]) -> int:
    total = 0
    one_hot = data_cfg.get("one_hot_num_classes") or {}
    for entry in data_cfg.get("input_types", []):
        for name, spec in entry.items():
            if name not in names:
                continue
            if name in one_hot:
                total += one_hot[name] + (1 if data_cfg.get("use_dont_care", False) else 0)
            else:
                total += spec["num_channels"]
    return total


def check_uniform_widths(gen: dict) -> None:
    """Our generators use one num_filters and one max_num_filters for all their parts."""
    for key, default in (("num_filters", 32), ("max_num_filters", 1024)):
        wanted = gen.get(key, default)
        for part in ("embed", "flow", "flow.multi_spade_combine.embed"):
            if _get(gen, f"{part}.{key}", default) != wanted:
                raise ValueError(f"gen.{part}.{key} must equal gen.{key} ({wanted})")


def few_shot_config(cfg: dict) -> FewShotConfig:
    """Translate an imaginaire fs_vid2vid YAML (as a dict) into our generator config."""
    gen, data = cfg["gen"], cfg["data"]
    flow = gen.get("flow", {})
    hyper = gen.get("hyper", {})
    multi = flow.get("multi_spade_combine", {})
    num_filters = gen.get("num_filters", 32)
    num_down = gen.get("num_downsamples", 5)
    check_uniform_widths(gen)
    for path, wanted in (("hyper.is_hyper_spade", True), ("hyper.is_hyper_embed", True),
                         ("hyper.is_hyper_conv", False)):
        if bool(_get(gen, path, wanted)) != wanted:
            raise ValueError(f"gen.{path}: only {wanted} is supported")
    num_hyper = hyper.get("num_hyper_layers", 4)
    pose_cfg = data.get("for_pose_dataset")
    label_channels = _channels_of(data, data.get("input_labels", [])) or data.get("label_channels", 1)
    return FewShotConfig(
        label_channels=label_channels,
        image_channels=_channels_of(data, data.get("input_image", ["images"])) or 3,
        num_filters=num_filters,
        max_filters=gen.get("max_num_filters", 1024),
        num_downsamples=num_down,
        kernel_size=gen.get("kernel_size", 3),
        spade_kernel_size=_get(gen, "activation_norm_params.kernel_size", 1),
        # The reference builds its reference encoders with the SPADE kernel size.
        reference_kernel_size=_get(gen, "activation_norm_params.kernel_size", 1),
        num_generated_layers=num_down if num_hyper == -1 else num_hyper,
        num_fc_layers=hyper.get("num_fc_layers", 2),
        reference_label_mode="mul" if "mul" in hyper.get("method_to_use_ref_labels", "mul") else "concat",
        attention=data.get("initial_few_shot_K", 1) > 1,
        attention_downsamples=_get(hyper, "attention.num_downsamples", 2),
        num_multi_spade_layers=multi.get("num_layers", 3),
        warp_reference=flow.get("warp_ref", True),
        num_prev_frames=data.get("num_frames_G", 2) - 1,
        separate_prev_flow=flow.get("sep_prev_flow", False),
        separate_prev_embedding=_get(multi, "embed.sep_warp_embed", False),
        flow_num_downsamples=flow.get("num_downsamples", 3),
        flow_res_blocks=flow.get("num_blocks", 6),  # the reference ignores 'num_res_blocks'
        flow_multiplier=float(flow.get("flow_output_multiplier", 20)),
        pose_type=None if pose_cfg is None else pose_cfg.get("pose_type", "both"),
        remove_face_labels=bool(pose_cfg and pose_cfg.get("remove_face_labels", False)),
        generate_raw_output=flow.get("generate_raw_output", False),
    )


def _crop_size(data: dict) -> tuple[int, int] | None:
    augment = _get(data, "val.augmentations", {}) or {}
    value = augment.get("center_crop_h_w") or augment.get("resize_h_w")
    if value is None:
        return None
    h, w = (int(v) for v in str(value).split(","))
    return h, w


def vid2vid_config(cfg: dict) -> Vid2VidConfig:
    """Translate an imaginaire vid2vid YAML (as a dict) into our generator config."""
    gen, data = cfg["gen"], cfg["data"]
    flow = gen.get("flow", {})
    if not gen.get("use_segmap_as_input", False):
        raise ValueError("gen.use_segmap_as_input: only True is supported (the other path needs a style code)")
    max_filters = gen.get("max_num_filters", 1024)
    check_uniform_widths(gen)
    crop = _crop_size(data)
    if crop is None:
        raise ValueError("data.val.augmentations needs center_crop_h_w or resize_h_w (the first-frame size)")
    return Vid2VidConfig(
        label_channels=_channels_of(data, data.get("input_labels", [])),
        image_channels=_channels_of(data, data.get("input_image", ["images"])) or 3,
        num_filters=gen.get("num_filters", 32),
        max_filters=max_filters,
        num_layers=gen.get("num_layers", 7),
        num_downsamples_img=gen.get("num_downsamples_img", 4),
        embed_num_downsamples=_get(gen, "embed.num_downsamples", 5),
        kernel_size=gen.get("kernel_size", 3),
        spade_kernel_size=_get(gen, "activation_norm_params.kernel_size", 1),
        num_prev_frames=data.get("num_frames_G", 3) - 1,
        num_multi_spade_layers=_get(flow, "multi_spade_combine.num_layers", 3),
        flow_num_downsamples=flow.get("num_downsamples", 5),
        flow_res_blocks=flow.get("num_res_blocks", 6),
        flow_multiplier=float(flow.get("flow_output_multiplier", 20)),
        first_frame_size=crop,
    )


def _flow(m: re.Match) -> str:
    return {"ref": "flow_network_ref", "temp": "flow_network_prev"}[m.group(1)]


_HEADS = {"0": "conv_0", "1": "conv_1", "s": "shortcut", "e": "embed"}

# (imaginaire module path, ours), applied in order, first match wins.
FEW_SHOT_RULES: list[tuple[str, object]] = [
    (r"^weight_generator\.ref_img_first\.layers\.", "weight_generator.image_encoder.first."),
    (r"^weight_generator\.ref_img_(down|up)_(\d+)\.layers\.", r"weight_generator.image_encoder.\1.\2."),
    (r"^weight_generator\.ref_label_first\.layers\.", "weight_generator.label_encoder.first."),
    (r"^weight_generator\.ref_label_(down|up)_(\d+)\.layers\.", r"weight_generator.label_encoder.\1.\2."),
    (r"^weight_generator\.attention_module\.atn_(query|key)_first\.layers\.", r"weight_generator.attention.\1.0."),
    (r"^weight_generator\.attention_module\.atn_(query|key)_(\d+)\.layers\.",
     lambda m: f"weight_generator.attention.{m.group(1)}.{int(m.group(2)) + 1}."),
    (r"^weight_generator\.fc_spade_(0|1|s|e)_(\d+)\.(\d+)\.layers\.conv\.",
     lambda m: f"weight_generator.heads.{m.group(2)}.{_HEADS[m.group(1)]}.{m.group(3)}.linear."),
    (r"^(weight_generator\.label_embedding|ref_image_embedding|prev_image_embedding)\.conv_first\.layers\.",
     r"\1.first."),
    (r"^(weight_generator\.label_embedding|ref_image_embedding|prev_image_embedding)\.(down|up)_(\d+)\.layers\.",
     r"\1.\2.\3."),
    (r"^up_(\d+)\.conv_block_(0|1|s)\.layers\.conv\.", r"decoder.\1.conv_\2."),
    (r"^up_(\d+)\.conv_block_(0|1|s)\.layers\.norm\.mlps\.(\d+)\.0\.layers\.conv\.",
     r"decoder.\1.norm_\2.projections.\3."),
    (r"^conv_img\.layers\.conv\.", "to_image."),
    (r"^flow_network_(ref|temp)\.down_flow\.(\d+)\.layers\.", lambda m: f"{_flow(m)}.down.{m.group(2)}."),
    (r"^flow_network_(ref|temp)\.res_flow\.(\d+)\.conv_block_(0|1)\.layers\.(conv|norm)\.",
     lambda m: f"{_flow(m)}.res.{m.group(2)}.{m.group(4)}_{m.group(3)}."),
    # imaginaire interleaves Upsample modules: its up_flow.1, .3, .5 are our up.0, .1, .2
    (r"^flow_network_(ref|temp)\.up_flow\.(\d+)\.layers\.",
     lambda m: f"{_flow(m)}.up.{(int(m.group(2)) - 1) // 2}."),
    (r"^flow_network_(ref|temp)\.conv_flow\.0\.layers\.", lambda m: f"{_flow(m)}.flow_head."),
    (r"^flow_network_(ref|temp)\.conv_mask\.0\.layers\.", lambda m: f"{_flow(m)}.mask_head."),
]

_EMBEDDING_RULES = [
    (r"^(label_embedding|img_prev_embedding)\.conv_first\.layers\.", lambda m: f"{_embedding(m)}.first."),
    (r"^(label_embedding|img_prev_embedding)\.(down|up)_(\d+)\.layers\.",
     lambda m: f"{_embedding(m)}.{m.group(2)}.{m.group(3)}."),
]

VID2VID_RULES: list[tuple[str, object]] = [
    *_EMBEDDING_RULES,
    (r"^(up|down|res)_(\d+)\.conv_block_(0|1|s)\.layers\.conv\.", r"\1.\2.conv_\3."),
    (r"^(up|down|res)_(\d+)\.conv_block_(0|1|s)\.layers\.norm\.mlps\.(\d+)\.0\.layers\.conv\.",
     r"\1.\2.norm_\3.projections.\4."),
    (r"^conv_img\.layers\.conv\.", "to_image."),
    (r"^fc\.layers\.conv\.", "first_frame_input."),
    (r"^down_first\.layers\.conv\.", "prev_image_input."),
    (r"^flow_network_temp\.down_lbl\.(\d+)\.layers\.", r"flow_network.down.\1."),
    (r"^flow_network_temp\.down_img\.(\d+)\.layers\.", r"flow_network.down_image.\1."),
    (r"^flow_network_temp\.res_flow\.(\d+)\.conv_block_(0|1)\.layers\.(conv|norm)\.",
     r"flow_network.res.\1.\3_\2."),
    (r"^flow_network_temp\.up_flow\.(\d+)\.layers\.", lambda m: f"flow_network.up.{(int(m.group(1)) - 1) // 2}."),
    (r"^flow_network_temp\.conv_flow\.0\.layers\.", "flow_network.flow_head."),
    (r"^flow_network_temp\.conv_mask\.0\.layers\.", "flow_network.mask_head."),
]


def _embedding(m: re.Match) -> str:
    return {"label_embedding": "label_embedding", "img_prev_embedding": "prev_image_embedding"}[m.group(1)]


_LEAVES = {
    "weight_orig": "parametrizations.weight.original",
    "weight_u": "parametrizations.weight.0._u",
    "weight_v": "parametrizations.weight.0._v",
}


def translate_key(key: str, rules) -> str | None:
    """imaginaire parameter name -> ours, or None where no rule applies."""
    module, _, leaf = key.rpartition(".")
    module += "."
    for pattern, replacement in rules:
        new, n = re.subn(pattern, replacement, module)
        if n:
            return new + _LEAVES.get(leaf, leaf)
    return None


_PREFIXES = ("module.averaged_model.", "module.module.", "module.")


def read_checkpoint(path: str | Path) -> dict:
    """The dict an imaginaire checkpoint file holds (weights only: nothing in it runs)."""
    raw = read_torch_file(path, "PyTorch checkpoint")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(raw).__name__}")
    return raw


def read_state_dict(path: str | Path, use_ema: bool = True, raw: dict | None = None) -> dict[str, torch.Tensor]:
    """A generator state dict from an imaginaire checkpoint (full, `net_G`, or bare); raw: the file's contents
    when already read (read_checkpoint).

    Prefers the EMA generator (`module.averaged_model.*`) where present and use_ema is set.
    """
    path = Path(path)
    raw = read_checkpoint(path) if raw is None else raw
    state = raw.get("net_G", raw)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'net_G' is not a state dict")
    order = _PREFIXES if use_ema else _PREFIXES[1:]
    for prefix in order:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def convert_state_dict(source: dict[str, torch.Tensor], model: torch.nn.Module, rules,
                       origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map every source entry onto the model's names; raise CheckpointError naming what did not fit."""
    target = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in source.items():
        ours = translate_key(key, rules)
        if ours is None or ours not in target:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(target[ours].shape):
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target[ours].shape)}")
        elif ours in converted and not torch.equal(converted[ours], value):
            mismatched.append(f"{key} differs from the module it shares ({ours})")
        else:
            converted[ours] = value
    missing = [k for k in target if k not in converted]
    problems = [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected] + \
               [f"shape {k}" for k in mismatched]
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CheckpointError(f"{origin}: does not fit the configured generator: {shown}{more}")
    return converted


def load_config(config_path: str | Path) -> dict:
    config_path = Path(config_path)
    try:
        cfg = yaml.safe_load(config_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{config_path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{config_path}: is a folder, not an imaginaire YAML config") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{config_path}: not a text file (an imaginaire config is YAML)") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise CheckpointError(f"{config_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or "gen" not in cfg or "data" not in cfg:
        raise CheckpointError(f"{config_path}: not an imaginaire config (needs 'gen' and 'data')")
    return cfg


def load_generator(ckpt_path: str | Path, config_path: str | Path, use_ema: bool = True,
                   raw: dict | None = None) -> torch.nn.Module:
    """Our generator (few-shot vid2vid or vid2vid, as the config says), in eval mode, with the
    weights of an imaginaire checkpoint (raw: its contents when already read)."""
    cfg = load_config(config_path)
    gen_type = str(_get(cfg, "gen.type", ""))
    if gen_type.endswith("fs_vid2vid"):
        make_config, model_cls, rules = few_shot_config, FewShotGenerator, FEW_SHOT_RULES
    elif gen_type.endswith("vid2vid"):
        make_config, model_cls, rules = vid2vid_config, Vid2VidGenerator, VID2VID_RULES
    else:
        raise CheckpointError(f"{config_path}: unsupported generator type {gen_type!r}")
    try:
        model_cfg = make_config(cfg)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None
    source = read_state_dict(ckpt_path, use_ema=use_ema, raw=raw)
    # EMA checkpoints store weights with spectral norm already divided out.
    model_cfg.spectral_norm = any(k.endswith("weight_orig") for k in source)
    model = model_cls(model_cfg)
    model.load_state_dict(convert_state_dict(source, model, rules, origin=str(ckpt_path)))
    return model.eval()


# ------------------------------------------------------------------------------------------ discriminators

# imaginaire's fs_vid2vid Discriminator: net_D (image) and net_D_<name> (additional region Ds) are each a
# MultiPatchDiscriminator of scales discriminator_<s>, layers layer<i>.0.layers.{conv,norm}; the last layer is
# the 1-channel head. Ours: image.discriminators.<s>, face.patch.discriminators.<s>, blocks.<i>.{0 conv,1 norm}.
_D_KEY = re.compile(r"^(net_D|net_D_face)\.discriminator_(\d+)\.layer(\d+)\.0\.layers\.(conv|norm)\.(\w+)$")
_D_PARTS = {"net_D": "image.discriminators", "net_D_face": "face.patch.discriminators"}


def read_discriminator_state(raw: dict) -> dict[str, torch.Tensor] | None:
    """net_D of a full imaginaire checkpoint's contents (its `module.` wrapper prefix removed), or None."""
    state = raw.get("net_D")
    if not isinstance(state, dict):
        return None
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def translate_discriminator_key(key: str, discriminators: torch.nn.Module) -> str | None:
    """imaginaire discriminator key -> ours; "" for a conv bias that the following instance norm cancels
    (ours have none); None where nothing fits."""
    m = _D_KEY.match(key)
    if m is None:
        return None
    part, scale, layer, kind, leaf = m.groups()
    prefix = f"{_D_PARTS[part]}.{scale}"
    try:
        blocks = len(discriminators.get_submodule(f"{prefix}.blocks"))
    except AttributeError:
        return None
    layer = int(layer)
    if layer == blocks:  # the head: conv only
        return f"{prefix}.head.{_LEAVES.get(leaf, leaf)}" if kind == "conv" else None
    block = discriminators.get_submodule(f"{prefix}.blocks.{layer}")
    has_norm = len(block) == 3
    if kind == "norm":
        return f"{prefix}.blocks.{layer}.1.{leaf}" if has_norm else None
    if leaf == "bias" and has_norm:
        return ""
    return f"{prefix}.blocks.{layer}.0.{_LEAVES.get(leaf, leaf)}"


def convert_discriminators(source: dict[str, torch.Tensor], discriminators: torch.nn.Module,
                           origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Every target parameter matched once, every source key used or (conv biases before instance norm) named
    as ignored; CheckpointError naming what did not fit."""
    target = discriminators.state_dict()
    converted, unexpected, mismatched = {}, [], []
    for key, value in source.items():
        ours = translate_discriminator_key(key, discriminators)
        if ours == "":
            continue
        if ours is None or ours not in target:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(target[ours].shape):
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target[ours].shape)}")
        else:
            converted[ours] = value
    problems = ([f"missing {k}" for k in target if k not in converted] + [f"unexpected {k}" for k in unexpected]
                + [f"shape {k}" for k in mismatched])
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CheckpointError(f"{origin}: net_D does not fit the configured discriminators: "
                              f"{'; '.join(problems[:10])}{more}")
    return converted


def training_config(cfg: dict, model: torch.nn.Module) -> dict:
    """Our training config (as a dict) for the discriminators and losses of an imaginaire fs_vid2vid YAML: what
    fine-tuning a converted checkpoint needs. Its temporal D is off (imaginaire's released recipes have none)."""
    image = _get(cfg, "dis.image", {}) or {}
    face = _get(cfg, "dis.additional_discriminators.face")
    crop = _crop_size(cfg["data"])
    height = crop[0] if crop else 512

    def patch(node, num_layers):
        return {"num_filters": node.get("num_filters", 64), "max_filters": node.get("max_num_filters", 512),
                "num_scales": node.get("num_discriminators", 1), "num_layers": node.get("num_layers", num_layers),
                "kernel_size": node.get("kernel_size", 4), "spectral": node.get("weight_norm_type") == "spectral",
                "norm": node.get("activation_norm_type", "none") == "instance"}

    from vid2vid.data.datasets import DataConfig

    task = DataConfig.task_for_label_channels(model.cfg.label_channels)
    discriminator = {"image": patch(image, 4), "temporal": {"enabled": False}}
    if face is not None:
        # imaginaire resizes face crops to H // 32 * 8 (128 at 512).
        discriminator["face"] = {"enabled": True, "crop_size": height // 32 * 8, "patch": patch(face, 3)}
    weights = _get(cfg, "trainer.loss_weight", {}) or {}
    loss = {key: float(weights[name]) for key, name in (("gan", "gan"), ("feature_matching", "feature_matching"),
                                                        ("perceptual", "perceptual"), ("flow", "flow"))
            if name in weights}
    if "flow" in loss:  # imaginaire weighs its flow, warp and mask terms all by `flow`
        loss.update(warp=loss["flow"], mask=loss["flow"])
    if face is not None and "loss_weight" in face:
        loss["region_gan"] = float(face["loss_weight"])
    optim = {"lr_G": float(_get(cfg, "gen_opt.lr", 1e-4)), "lr_D": float(_get(cfg, "dis_opt.lr", 4e-4))}
    return {"model": "fs_vid2vid", "data": {"task": task}, "generator": model.cfg.to_dict(),
            "discriminator": discriminator, "loss": {"weights": loss}, "optim": optim}


def load_discriminators(ckpt_path: str | Path, config_path: str | Path, model: torch.nn.Module,
                        raw: dict | None = None):
    """(training config dict, our Discriminators with its net_D weights) for a few-shot checkpoint that holds
    net_D; None for one without (released generator-only files, vid2vid). raw: its contents when already read."""
    from vid2vid.training.config import TrainConfig
    from vid2vid.training.nets import Discriminators

    if not isinstance(model, FewShotGenerator):
        return None
    source = read_discriminator_state(read_checkpoint(ckpt_path) if raw is None else raw)
    if source is None:
        return None
    values = training_config(load_config(config_path), model)
    try:
        discriminators = Discriminators(TrainConfig.from_dict(values))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: dis: {exc}") from None
    discriminators.load_state_dict(convert_discriminators(source, discriminators, str(ckpt_path)))
    return values, discriminators

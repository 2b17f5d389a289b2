"""Model presets and their YAML files: typed dataclasses filled from plain YAML values."""

from __future__ import annotations

from pathlib import Path

import yaml

from vid2vid.models.fs_vid2vid import FewShotConfig
from vid2vid.models.vid2vid import Vid2VidConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
GENERATOR_CONFIGS = {"fs_vid2vid": FewShotConfig, "vid2vid": Vid2VidConfig}


def load_generator_config(path: str | Path):
    """Read a generator preset: YAML with `model: fs_vid2vid|vid2vid` and a `generator:` mapping."""
    path = Path(path)
    if not path.exists() and (CONFIG_DIR / f"{path.name}.yaml").exists():
        path = CONFIG_DIR / f"{path.name}.yaml"
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict) or values.get("model") not in GENERATOR_CONFIGS:
        raise ValueError(f"{path}: needs 'model: one of {', '.join(GENERATOR_CONFIGS)}'")
    try:
        return GENERATOR_CONFIGS[values["model"]].from_dict(values.get("generator") or {})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None

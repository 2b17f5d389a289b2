"""Model presets and their YAML files: typed dataclasses filled from plain YAML values."""

from __future__ import annotations

from pathlib import Path

import yaml

from vid2vid.models.fs_vid2vid import FewShotConfig
from vid2vid.models.vid2vid import Vid2VidConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
GENERATOR_CONFIGS = {"fs_vid2vid": FewShotConfig, "vid2vid": Vid2VidConfig}


def find_config(path: str | Path) -> Path:
    """A YAML file, or the name of one shipped in vid2vid/configs (fs_vid2vid_face, train_dancers_cpu, ...)."""
    path = Path(path)
    if not path.exists() and (CONFIG_DIR / f"{path.name}.yaml").is_file():
        return CONFIG_DIR / f"{path.name}.yaml"
    return path


def read_yaml_mapping(path: Path) -> dict:
    """The settings of a YAML file; a missing, unreadable or non-mapping file is a ValueError naming it."""
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: not a mapping of settings")
    return values


def load_generator_config(path: str | Path):
    """Read a generator preset: YAML with `model: fs_vid2vid|vid2vid` and a `generator:` mapping."""
    path = find_config(path)
    values = read_yaml_mapping(path)
    if values.get("model") not in GENERATOR_CONFIGS:
        raise ValueError(f"{path}: needs 'model: one of {', '.join(GENERATOR_CONFIGS)}'")
    try:
        return GENERATOR_CONFIGS[values["model"]].from_dict(values.get("generator") or {})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None

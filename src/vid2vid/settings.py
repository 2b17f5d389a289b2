"""The one way our config dataclasses meet plain values (YAML, JSON in checkpoints)."""

from __future__ import annotations

from dataclasses import asdict, fields, replace


class Settings:
    """Mixin for config dataclasses: to_dict(), and from_dict() that refuses unknown names and fills nested
    configs from mappings, starting from their defaults. SECTION names the config in error messages."""

    SECTION = "config"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str | None = None):
        where = where or cls.SECTION
        _check_names(cls, values, where)
        plain = {name: value for name, value in values.items() if not isinstance(value, dict)}
        nested = {name: value for name, value in values.items() if isinstance(value, dict)}
        return cls(**plain).updated(nested, where)

    def updated(self, values: dict, where: str | None = None):
        """A copy with values put in; a mapping for a nested config updates that config."""
        where = where or self.SECTION
        _check_names(type(self), values, where)
        changes = {}
        for name, value in values.items():
            current = getattr(self, name)
            if isinstance(current, Settings):
                if not isinstance(value, dict):
                    raise ValueError(f"{where}.{name} must be a mapping, got {value!r}")
                value = current.updated(value, f"{where}.{name}")
            changes[name] = value
        return replace(self, **changes)


def _check_names(cls, values, where: str) -> None:
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {values!r}")
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {where} settings: {', '.join(unknown)}")

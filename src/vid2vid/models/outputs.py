"""Typed step outputs that also read like the reference's output dicts (out["fake_images"])."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields


class OutputMapping(Mapping):
    """Mixin for output dataclasses: field access by name, iteration over field names."""

    def __getitem__(self, key):
        return getattr(self, key)

    def __iter__(self):
        return (f.name for f in fields(self))

    def __len__(self):
        return len(fields(self))

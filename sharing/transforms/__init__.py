"""Field transforms a scenario can require, each a small module registered here.

A transform module has ``NAME``, ``ROLES`` (the field roles it applies to, see
:mod:`sharing.datasets`), a pydantic ``Params`` model and
``apply(df, field, params, ctx) -> df`` (a polars DataFrame in, the same columns out).
Add one by writing the module and listing it in :data:`_MODULES`.  Aggregation in space
and time is dataset-wide: :mod:`sharing.transforms.aggregate`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType

_MODULES = ("pseudonymise", "round_coords", "suppress_small")


@dataclass
class Context:
    """What transforms may use: the recipient and its pseudonym key, a per-export cache."""

    recipient: str
    pseudonym_key: bytes
    cache: dict = field(default_factory=dict)


def _load() -> MappingProxyType:
    mods: dict[str, ModuleType] = {}
    for name in _MODULES:
        mod = importlib.import_module(f"{__name__}.{name}")
        mods[mod.NAME] = mod
    return MappingProxyType(mods)


REGISTRY: MappingProxyType = _load()

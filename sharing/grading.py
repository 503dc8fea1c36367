"""Grades (core / important / general) of every shareable field, and the negative list.

In: the built-in ``sharing/grading.yaml`` and ``negative_list.yaml``, optionally overridden
by the files named in settings.  Out: :func:`load_grades` -> ``{dataset: {field: grade}}``
for every dataset of :data:`sharing.datasets.DATASETS`; :func:`load_negative_list` ->
:class:`NegativeList`.  Bad files raise :class:`PolicyError` naming file and line.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from citypulse.catalogue import KINDS
from sharing.datasets import DATASETS
from sharing.yamlfile import fail, from_validation, load

HERE = Path(__file__).resolve().parent
GRADING_FILE = HERE / "grading.yaml"
NEGATIVE_FILE = HERE / "negative_list.yaml"
GRADES = ("core", "important", "general")
Grade = Literal["core", "important", "general"]


class _Readings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: dict[str, Grade] = {}
    placement: dict[str, dict[str, Grade]] = {}
    kinds: dict[str, dict[str, Grade]] = {}


class _GradingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: Grade | None = None
    readings: _Readings = _Readings()
    datasets: dict[str, dict[str, Grade]] = {}


def _check_fields(path, lines, loc, names, fields) -> None:
    for f in fields:
        if f not in names:
            raise fail(path, lines, (*loc, f),
                       f"no field {f!r} here; fields: {', '.join(names)}")


def _apply(grades: dict[str, dict[str, str]], path: Path) -> None:
    doc, lines = load(path)
    try:
        g = _GradingFile.model_validate(doc or {})
    except ValidationError as exc:
        raise from_validation(path, lines, exc) from None
    if g.default:
        for fields in grades.values():
            fields.update(dict.fromkeys(fields, g.default))
    placements = {k.placement for k in KINDS.values()}
    for p in g.readings.placement:
        if p not in placements:
            raise fail(path, lines, ("readings", "placement", p),
                       f"unknown placement; the catalogue has {', '.join(sorted(placements))}")
    for k in g.readings.kinds:
        if k not in KINDS:
            raise fail(path, lines, ("readings", "kinds", k),
                       f"unknown kind; the catalogue has {', '.join(KINDS)}")
    every = sorted({f for ds in DATASETS.values() if ds.kind for f in ds.field_names})
    _check_fields(path, lines, ("readings", "fields"), every, g.readings.fields)
    for name, ds in DATASETS.items():
        if ds.kind is None:
            continue
        for layer in (g.readings.fields, g.readings.placement.get(ds.placement, {}),
                      g.readings.kinds.get(ds.kind, {})):
            # a readings-wide entry applies where the kind has that field
            grades[name].update({f: v for f, v in layer.items() if f in grades[name]})
    for name, layer in g.datasets.items():
        if name not in DATASETS:
            raise fail(path, lines, ("datasets", name),
                       f"unknown dataset; known: {', '.join(DATASETS)}")
        _check_fields(path, lines, ("datasets", name), DATASETS[name].field_names, layer)
        grades[name].update(layer)


def load_grades(override: Path | None = None) -> dict[str, dict[str, str]]:
    """Grade of every field of every dataset: built-in file, then ``override`` on top."""
    grades = {name: dict.fromkeys(ds.field_names, "general") for name, ds in DATASETS.items()}
    _apply(grades, GRADING_FILE)
    if override is not None:
        _apply(grades, Path(override))
    return grades


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    fields: list[str]
    reason: str
    route: Literal["security_assessment", "standard_contract", "certification"]


class _NegativeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[_Entry]


@dataclass(frozen=True)
class NegativeList:
    """Dataset/field globs that need the formal route to cross a border."""

    entries: tuple[_Entry, ...]

    def match(self, dataset: str, field: str) -> _Entry | None:
        """The first entry covering ``dataset.field``, or None."""
        for e in self.entries:
            if fnmatch.fnmatchcase(dataset, e.dataset) and any(
                    fnmatch.fnmatchcase(field, p) for p in e.fields):
                return e
        return None


def load_negative_list(path: Path | None = None) -> NegativeList:
    """The negative list from ``path`` (default: the built-in file)."""
    path = Path(path) if path else NEGATIVE_FILE
    doc, lines = load(path)
    try:
        neg = _NegativeFile.model_validate(doc or {})
    except ValidationError as exc:
        raise from_validation(path, lines, exc) from None
    for i, e in enumerate(neg.entries):
        if not any(fnmatch.fnmatchcase(d, e.dataset) for d in DATASETS):
            raise fail(path, lines, ("entries", i, "dataset"),
                       f"{e.dataset!r} matches no dataset; known: {', '.join(DATASETS)}")
    return NegativeList(tuple(neg.entries))

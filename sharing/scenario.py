"""Scenario files (``sharing/scenarios/*.yaml``): who gets which fields, for what, where to.

In: a YAML file.  Out: :class:`Scenario` (validated: recipients, purpose, destination,
datasets with their allowed fields and the transforms each must go through).  Any problem
raises :class:`PolicyError` naming the file and line.  A scenario's name is its file name.

    title: Open-data portal
    purpose: publish traffic and crowd statistics
    recipients: [{name: open-data-portal, organisation: Lingang open data}]
    destination: domestic              # or a country/region: cross-border
    rate_limit_per_min: 30             # optional, per recipient key
    datasets:
      twin.zone_density:
        aggregate: {time: hour}        # space: zone|segment|grid (grid_m), time: 5min|hour
        fields:
          time:                        # no transform
          zone_id:
          people: {suppress_small: {k: 10}}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sharing.datasets import CONTRIBUTORS, DATASETS
from sharing.transforms import REGISTRY
from sharing.transforms import aggregate as agg_mod
from sharing.yamlfile import fail, from_validation, load

_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class Recipient(BaseModel):
    """A recipient; its name is the name of its API key (``citypulse keys create``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=_NAME)
    organisation: str = ""
    contact: str = ""


class DatasetRule(BaseModel):
    """What of one dataset may go: aggregation, and each allowed field's transforms."""

    model_config = ConfigDict(extra="forbid")
    aggregate: agg_mod.Params | None = None
    fields: dict[str, dict[str, dict[str, Any] | None] | None] = Field(min_length=1)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    purpose: str = Field(min_length=3)
    recipients: list[Recipient] = Field(min_length=1)
    destination: str = Field(min_length=2)
    rate_limit_per_min: int | None = Field(None, ge=1)
    datasets: dict[str, DatasetRule] = Field(min_length=1)


@dataclass(frozen=True)
class Step:
    """One transform a field goes through."""

    name: str
    params: BaseModel


@dataclass(frozen=True)
class Scenario:
    """A validated scenario."""

    name: str
    path: Path
    title: str
    purpose: str
    recipients: tuple[Recipient, ...]
    destination: str
    rate_limit_per_min: int | None
    datasets: dict[str, DatasetRule]
    steps: dict[tuple[str, str], tuple[Step, ...]]  # (dataset, field) -> transforms

    @property
    def cross_border(self) -> bool:
        """Whether data leaves the country."""
        return self.destination.strip().lower() != "domestic"

    def recipient_names(self) -> list[str]:
        """The recipients' names."""
        return [r.name for r in self.recipients]

    def summary(self) -> dict:
        """A JSON-able description (file contents, normalised)."""
        return {"name": self.name, "title": self.title, "purpose": self.purpose,
                "recipients": [r.model_dump() for r in self.recipients],
                "destination": self.destination, "cross_border": self.cross_border,
                "rate_limit_per_min": self.rate_limit_per_min,
                "datasets": {d: r.model_dump(mode="json") for d, r in self.datasets.items()}}


def _role(ds, field: str) -> str:
    return "count" if field == CONTRIBUTORS else ds.field(field).role


def load_scenario(path: Path) -> Scenario:
    """Load and validate one scenario file; PolicyError names the file, line and fix."""
    path = Path(path)
    doc, lines = load(path)
    if not isinstance(doc, dict):
        raise fail(path, lines, (), "a scenario is a mapping (title, purpose, recipients, "
                                    "destination, datasets)")
    try:
        f = _File.model_validate(doc)
    except ValidationError as exc:
        raise from_validation(path, lines, exc) from None
    steps: dict[tuple[str, str], tuple[Step, ...]] = {}
    for dname, rule in f.datasets.items():
        loc = ("datasets", dname)
        ds = DATASETS.get(dname)
        if ds is None:
            raise fail(path, lines, loc, f"unknown dataset; known: {', '.join(DATASETS)}")
        agg = rule.aggregate
        if agg is not None:
            if agg.time and not ds.time_expr:
                raise fail(path, lines, (*loc, "aggregate", "time"),
                           f"{dname} has no time to aggregate; remove 'time'")
            if agg.space and agg.space not in ds.spaces:
                raise fail(path, lines, (*loc, "aggregate", "space"),
                           f"{dname} cannot be aggregated by {agg.space}; "
                           f"it supports: {', '.join(ds.spaces) or 'time only'}")
        for fname, transforms in rule.fields.items():
            floc = (*loc, "fields", fname)
            if fname not in ds.field_names:
                raise fail(path, lines, floc, f"{dname} has no field {fname!r}; its fields: "
                                              f"{', '.join(ds.field_names)}")
            role = _role(ds, fname)
            if fname == CONTRIBUTORS and agg is None:
                raise fail(path, lines, floc, f"{CONTRIBUTORS} exists only with 'aggregate'")
            if agg is not None and role == "id":
                raise fail(path, lines, floc, "an identifier cannot survive aggregation; "
                                              "remove it or the aggregate")
            if agg is not None and agg.space and role == "space" and fname not in \
                    agg_mod.space_key(ds, agg):
                raise fail(path, lines, floc, f"aggregated by {agg.space}, {fname} has no "
                                              "single value; remove it")
            chain = []
            for tname, params in (transforms or {}).items():
                mod = REGISTRY.get(tname)
                if mod is None:
                    raise fail(path, lines, (*floc, tname),
                               f"unknown transform; known: {', '.join(REGISTRY)}")
                if role not in mod.ROLES:
                    raise fail(path, lines, (*floc, tname),
                               f"{tname} applies to {'/'.join(mod.ROLES)} fields, "
                               f"{fname} is {role}")
                try:
                    chain.append(Step(tname, mod.Params.model_validate(params or {})))
                except ValidationError as exc:
                    raise from_validation(path, lines, _prefixed(exc, (*floc, tname))) \
                        from None
            steps[(dname, fname)] = tuple(chain)
    return Scenario(path.stem, path, f.title, f.purpose, tuple(f.recipients), f.destination,
                    f.rate_limit_per_min, f.datasets, steps)


def _prefixed(exc: ValidationError, prefix: tuple):
    """A stand-in exposing ``errors()`` with ``prefix`` before every location."""

    class _E:
        def errors(self):
            return [{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors()]

    return _E()

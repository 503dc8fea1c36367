"""The sharing policy and its one decision function.

In: settings (which grading override, negative list and scenarios folder to use).
Out: :func:`load_policy` -> :class:`Policy` (grades, negative list, scenarios, and the
SHA-256 of its canonical form, the *policy version*); :meth:`Policy.decide` gives each
field of a dataset one outcome for a scenario:

- ``allowed``: on the scenario's list (and, if on the negative list for a cross-border
  scenario, an approval reference is recorded for it);
- ``needs_approval``: on the negative list, cross-border, no approval recorded: blocked;
- ``forbidden``: graded core, or not on the scenario's list: never leaves.

The negative list always wins over a scenario; core always wins over everything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from citypulse.settings import Settings
from sharing.datasets import CONTRIBUTORS, DATASETS
from sharing.grading import NegativeList, load_grades, load_negative_list
from sharing.scenario import Scenario, load_scenario
from sharing.yamlfile import PolicyError

HERE = Path(__file__).resolve().parent
SCENARIOS_DIR = HERE / "scenarios"
ALLOWED, NEEDS_APPROVAL, FORBIDDEN = "allowed", "needs_approval", "forbidden"


@dataclass(frozen=True)
class FieldDecision:
    """The outcome for one field, why, and the transforms it goes through if delivered."""

    field: str
    grade: str
    outcome: str
    reason: str
    transforms: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-able form."""
        return {"field": self.field, "grade": self.grade, "outcome": self.outcome,
                "reason": self.reason, "transforms": list(self.transforms)}


@dataclass(frozen=True)
class Decision:
    """Every field of one dataset under one scenario (with or without an approval)."""

    scenario: str
    dataset: str
    approval_ref: str | None
    fields: tuple[FieldDecision, ...]

    @property
    def delivered(self) -> list[str]:
        """Fields that leave, in dataset order."""
        return [f.field for f in self.fields if f.outcome == ALLOWED]

    @property
    def withheld(self) -> list[dict]:
        """Fields that do not leave, each with its reason."""
        return [{"field": f.field, "outcome": f.outcome, "reason": f.reason}
                for f in self.fields if f.outcome != ALLOWED]

    @property
    def uses_approval(self) -> bool:
        """Whether a delivered field needed the recorded approval."""
        return any(f.outcome == ALLOWED and f.reason.startswith("negative list")
                   for f in self.fields)


@dataclass(frozen=True)
class Policy:
    """Grades, negative list and scenarios, with the hash of their canonical form."""

    grades: dict[str, dict[str, str]]
    negative: NegativeList
    scenarios: dict[str, Scenario]
    canonical: str
    hash: str

    def scenario(self, name: str) -> Scenario:
        """The scenario called ``name``; KeyError naming the known ones."""
        try:
            return self.scenarios[name]
        except KeyError:
            raise KeyError(f"no scenario {name!r}; known: {', '.join(self.scenarios)}") from None

    def decide(self, scenario: str, dataset: str, approval_ref: str | None) -> Decision:
        """The outcome of every field of ``dataset`` for ``scenario``: THE policy function.

        ``approval_ref``: the approval recorded for the scenario (None when there is none).
        Raises KeyError for an unknown scenario, or a dataset the scenario does not list.
        """
        sc = self.scenario(scenario)
        rule = sc.datasets.get(dataset)
        if rule is None:
            raise KeyError(f"scenario {scenario!r} shares no dataset {dataset!r}; it shares: "
                           f"{', '.join(sc.datasets)}")
        out = []
        for name in DATASETS[dataset].field_names:
            if name == CONTRIBUTORS and rule.aggregate is None:
                continue  # exists only in aggregated output
            grade = self.grades[dataset][name]
            steps = tuple(s.name for s in sc.steps.get((dataset, name), ()))
            neg = self.negative.match(dataset, name)
            if grade == "core":
                out.append(FieldDecision(name, grade, FORBIDDEN, "core: graded core, never leaves"))
            elif name not in rule.fields:
                out.append(FieldDecision(name, grade, FORBIDDEN,
                                         "unlisted: not on the scenario's data list"))
            elif neg is not None and sc.cross_border and not approval_ref:
                out.append(FieldDecision(
                    name, grade, NEEDS_APPROVAL,
                    f"negative list ({neg.reason}): crossing to {sc.destination} needs an "
                    f"approval reference ({neg.route}); none recorded"))
            elif neg is not None and sc.cross_border:
                out.append(FieldDecision(name, grade, ALLOWED,
                                         f"negative list: approved, {approval_ref}", steps))
            else:
                out.append(FieldDecision(name, grade, ALLOWED, f"on the list ({grade})", steps))
        return Decision(scenario, dataset, approval_ref, tuple(out))

    def needs_approval(self, scenario: str) -> list[str]:
        """``dataset.field`` of the scenario's list blocked until an approval is recorded."""
        sc = self.scenario(scenario)
        return [f"{d}.{f.field}" for d in sc.datasets
                for f in self.decide(scenario, d, None).fields if f.outcome == NEEDS_APPROVAL]


def _scenario_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_"))


def load_policy(settings: Settings) -> Policy:
    """The policy in force for ``settings``; PolicyError naming file and line if broken."""
    grades = load_grades(settings.share_grading_file)
    negative = load_negative_list(settings.share_negative_list_file)
    folder = Path(settings.share_scenarios_dir or SCENARIOS_DIR)
    if not folder.is_dir():
        raise PolicyError(f"{folder}: no such scenarios folder "
                          "(set CITYPULSE_SHARE_SCENARIOS_DIR)")
    scenarios = {}
    for p in _scenario_files(folder):
        sc = load_scenario(p)
        scenarios[sc.name] = sc
    canonical = json.dumps({
        "grades": grades,
        "negative_list": [e.model_dump() for e in negative.entries],
        "scenarios": {n: s.summary() for n, s in scenarios.items()},
    }, indent=1, sort_keys=True)
    return Policy(grades, negative, scenarios, canonical,
                  hashlib.sha256(canonical.encode()).hexdigest())

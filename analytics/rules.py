"""Alert rules: the typed model of ``rules.yaml`` and its loader.

In: a YAML file (default: the documented ``analytics/rules.yaml`` shipped with the package,
or ``CITYPULSE_RULES_FILE``).  Out: a frozen :class:`RuleSet`.  A bad file raises
:class:`RulesError` whose message names the file, the line and the problem, e.g.
``rules.yaml line 12 (rules.2.severity): Input should be 'info', 'warning' or 'critical'``.

The rule types (``type:``) and their fields are described in :mod:`analytics.rule_types`;
this module holds the file as a whole (suggested actions, ``supersedes`` checks) and the
loader that turns a pydantic error into file, line and problem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analytics.rule_types import Rule


class RulesError(ValueError):
    """The rules file is invalid; the message names the line and the problem."""


class SuggestedAction(BaseModel):
    """A command /emergency offers for an alert of a rule: a fleet command to its scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str = ""

    @model_validator(mode="after")
    def _check(self) -> SuggestedAction:
        from citypulse.actuators import method

        try:
            m = method(self.kind, self.method)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        m.validate(self.params)  # ParamsError (a ValueError) names the field
        return self


class RuleSet(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    escalate_after_s: float = Field(300.0, gt=0,
                                    description="open critical alert unacknowledged this long")
    update_every_s: float = Field(30.0, gt=0, description="refresh an open alert's evidence")
    rules: list[Rule]
    actions: dict[str, list[SuggestedAction]] = Field(
        default_factory=dict, description="rule id -> commands offered for its alerts")

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"duplicate rule id {r.id!r}")
            seen.add(r.id)
        for rid in self.actions:
            if rid not in seen:
                raise ValueError(f"actions.{rid}: unknown rule id {rid!r}")
        problem = supersede_problem(self.rules)
        if problem:
            raise ValueError(problem)
        return self

    def active(self) -> list[Any]:
        """Enabled rules."""
        return [r for r in self.rules if r.enabled]

    def by_id(self, rule_id: str) -> Any:
        """The rule called ``rule_id`` (KeyError if none)."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def of_type(self, *types: str) -> list[Any]:
        """Enabled rules of the given types."""
        return [r for r in self.active() if r.type in types]


def supersede_problem(rules: list[Any]) -> str | None:
    """The first problem of the rules' ``supersedes`` lists, or None.

    Unknown ids and cycles (a rule superseding itself, directly or through others) are
    problems.  The message starts with the location (``rules.3.supersedes: ...``).
    """
    index = {r.id: i for i, r in enumerate(rules)}
    for i, r in enumerate(rules):
        for low in r.supersedes:
            if low not in index:
                return f"rules.{i}.supersedes: unknown rule id {low!r} (rule {r.id!r})"
    edges = {r.id: list(r.supersedes) for r in rules}
    for r in rules:
        path = _cycle_from(r.id, edges, [r.id])
        if path:
            return (f"rules.{index[r.id]}.supersedes: supersedes cycle "
                    f"{' -> '.join(path)}")
    return None


def _cycle_from(start: str, edges: dict[str, list[str]], path: list[str]) -> list[str] | None:
    """A path from ``path[-1]`` back to ``start`` along ``edges`` (depth first), or None."""
    for nxt in edges.get(path[-1], ()):
        if nxt == start:
            return [*path, nxt]
        if nxt not in path:
            found = _cycle_from(start, edges, [*path, nxt])
            if found:
                return found
    return None


_LOC_PREFIX_RE = re.compile(r"^([a-z_]+(?:\.(?:[a-z_]+|\d+))*): (.*)$", re.S)


def _node_line(root: yaml.Node | None, loc: tuple) -> int | None:
    """Line (1-based) of the YAML node at pydantic location ``loc`` (deepest match)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                nxt = node.value[part]
        if nxt is None:
            continue  # e.g. the discriminator tag pydantic adds to the location
        node = nxt
        line = node.start_mark.line + 1
    return line


def parse_rules(text: str, source: str = "rules.yaml") -> RuleSet:
    """Parse and validate rules YAML text; raises :class:`RulesError` naming line and problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError(f"{source}{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{source} line 1: expected a mapping with a 'rules:' list")
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "type")  # point at the rule's `type:` line
            msg = err["msg"].removeprefix("Value error, ")
            m = _LOC_PREFIX_RE.match(msg) if not loc else None
            if m:  # a whole-file check naming where: "rules.3.supersedes: ..."
                loc = tuple(int(p) if p.isdigit() else p for p in m.group(1).split("."))
                msg = m.group(2)
            line = _node_line(root, loc)
            path = ".".join(str(p) for p in loc) or "(top)"
            lines.append(f"{source} line {line} ({path}): {msg}")
        raise RulesError("\n".join(lines)) from None


def default_rules_text() -> str:
    """The documented default rules file shipped with the package."""
    return (Path(__file__).parent / "rules.yaml").read_text()


def load_rules(path: Path | str | None = None) -> RuleSet:
    """Load rules from ``path`` (default: the shipped ``rules.yaml``)."""
    if path is None:
        return parse_rules(default_rules_text(), "analytics/rules.yaml")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise RulesError(f"{p}: cannot read rules file: {exc.strerror}") from None
    return parse_rules(text, str(p))

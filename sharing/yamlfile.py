"""YAML policy files whose errors name the file, the line and the fix.

In: a path.  Out: :func:`load` returns the parsed document and a map from a key path
(tuple of keys/indexes) to its 1-based line; :func:`fail` raises :class:`PolicyError`
for the deepest known part of a path.  Used by the grading, negative-list and scenario
loaders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class PolicyError(ValueError):
    """A sharing policy file is wrong; the message names the file, line and problem."""


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            lines[path + (key,)] = k.start_mark.line + 1
            _walk(v, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            lines[path + (i,)] = v.start_mark.line + 1
            _walk(v, path + (i,), lines)


def load(path: Path) -> tuple[Any, dict[tuple, int]]:
    """The document in ``path`` and the line of every key path; PolicyError on bad YAML."""
    text = Path(path).read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else "?"
        raise PolicyError(f"{path} line {line}: not valid YAML: {exc.problem}") from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return doc, lines


def line_of(lines: dict[tuple, int], loc: Sequence) -> int:
    """The line of the deepest part of ``loc`` present in the file (1 when unknown)."""
    loc = tuple(loc)
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def fail(path: Path, lines: dict[tuple, int], loc: Sequence, msg: str) -> PolicyError:
    """A PolicyError for ``loc`` in ``path`` (raise it)."""
    where = ".".join(str(p) for p in loc) or "(top level)"
    return PolicyError(f"{path} line {line_of(lines, loc)} ({where}): {msg}")


def from_validation(path: Path, lines: dict[tuple, int], exc: ValidationError | Any
                    ) -> PolicyError:
    """A PolicyError naming the line of the first problem pydantic found."""
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    hint = ""
    if err["type"] == "extra_forbidden":
        hint = "; remove it or check its spelling"
    elif err["type"] == "missing":
        hint = "; add it"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return fail(path, lines, loc, f"{err['msg']}{hint}{more}")

"""The README and docs/ state only what exists: commands, settings, the layout."""

import re
from pathlib import Path

import typer.main

from citypulse.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_COMMAND = re.compile(r"(?<![\w./$\"-])citypulse((?: +[a-z][a-z-]*)+)")


def _commands(text: str):
    for span in _CODE.findall(text):
        for line in span.splitlines():
            for m in _COMMAND.finditer(line):
                yield m.group(1).split()


def _resolves(words: list[str]) -> bool:
    from citypulse.cli import app

    cmd = typer.main.get_command(app)
    for w in words:
        sub = getattr(cmd, "commands", None)
        if sub is None:  # a leaf: the rest are its arguments
            return True
        if w not in sub:
            return False
        cmd = sub[w]
    return True


def test_every_command_shown_exists():
    shown = {(p.name, " ".join(w)) for p in DOCS for w in _commands(p.read_text())}
    assert len(shown) > 20  # the docs do show commands
    missing = sorted(s for s in shown if not _resolves(s[1].split()))
    assert not missing, missing


def test_every_setting_named_is_a_settings_field():
    fields = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    named = {(p.name, n) for p in DOCS
             for n in re.findall(r"CITYPULSE_[A-Z0-9_]*[A-Z0-9]", p.read_text())}
    assert named
    unknown = sorted(x for x in named if x[1] not in fields)
    assert not unknown, unknown


def _layout_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, re.M)


def test_readme_layout_table_matches_the_tree():
    rows = _layout_rows()
    assert rows
    for path in rows:
        assert (ROOT / path).exists(), f"README lists {path}, which is not in the tree"
    packages = {p.parent.name + "/" for p in ROOT.glob("*/__init__.py")} - {"tests/"}
    assert packages <= set(rows), f"not in the README layout: {sorted(packages - set(rows))}"

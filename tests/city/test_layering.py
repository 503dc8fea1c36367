"""The city model is a foundation: it and the simulator import no downstream stage."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "twin", "analytics", "dashboards")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_city_model_and_simulator_import_no_downstream_stage():
    bad = []
    for pkg in ("citypulse/city", "device_sim"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            hit = _imports(path) & set(STAGES)
            if hit:
                bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert not bad, bad

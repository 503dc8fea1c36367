"""Print the import graph between citypulse's packages (stages and foundations).

In: the source tree (the packages below, found next to this script's parent folder).
Out: one line per arrow ``importer -> imported  (module, ...)``, then the arrows that go
against the data flow, if any.  ``python scripts/import_graph.py`` from the project root.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bottom to top: an arrow may only point to a package earlier in this list
LAYERS = ("citypulse", "device_sim", "ingest", "twin", "analytics", "control", "sharing", "standards",
          "dashboards", "bench")  # control, sharing, standards: served by the web app
# the program's entry assembles every stage's commands: not a foundation's arrow
ENTRY_MODULES = {"citypulse.cli"}


def package_imports(pkg: str) -> dict[str, set[str]]:
    """Map each package this one imports to the importing modules."""
    out: dict[str, set[str]] = defaultdict(set)
    base = ROOT / pkg
    for path in sorted(base.rglob("*.py")):
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if mod in ENTRY_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != pkg:
                    out[top].add(mod)
    return out


def graph() -> dict[tuple[str, str], set[str]]:
    """Every arrow (importer, imported) between the packages with its importing modules."""
    edges: dict[tuple[str, str], set[str]] = {}
    for pkg in LAYERS:
        if (ROOT / pkg).is_dir():
            for dst, mods in package_imports(pkg).items():
                edges[(pkg, dst)] = mods
    return edges


def back_arrows(edges: dict[tuple[str, str], set[str]]) -> list[tuple[str, str]]:
    """Arrows that point up the layer list (against the data flow)."""
    rank = {p: i for i, p in enumerate(LAYERS)}
    return sorted(e for e in edges if rank[e[1]] > rank[e[0]])


def main() -> int:
    """Print the graph; exit 1 when an arrow goes against the data flow."""
    edges = graph()
    print(f"(entry, left out: {', '.join(sorted(ENTRY_MODULES))} imports every stage's cli)")
    for (src, dst), mods in sorted(edges.items()):
        print(f"{src:>10} -> {dst:<10} ({', '.join(sorted(mods))})")
    bad = back_arrows(edges)
    for src, dst in bad:
        print(f"AGAINST THE FLOW: {src} -> {dst}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

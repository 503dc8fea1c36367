"""Abuse, statically: no HTML injection paths in the dashboards, no string-built SQL anywhere.

Dash renders strings as text (React escapes them); the ways around that are
``dangerously_allow_html``, ``dangerouslySetInnerHTML``, iframes fed ``srcDoc`` and deck.gl
``{html: ...}`` tooltips or ``innerHTML`` in our own scripts.  None may appear.  SQL is
parameterised or composed with psycopg.sql: ruff's S608 (string-built SQL) finds nothing.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("citypulse", "ingest", "device_sim", "twin", "analytics", "dashboards")


def _own_files(pattern: str) -> list[Path]:
    out = []
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob(pattern):
            if "node_modules" in p.parts or ".min." in p.name or "vendor" in p.parts:
                continue
            out.append(p)
    return out


def test_dashboards_have_no_raw_html_sinks():
    bad = []
    for p in _own_files("*.py"):
        text = p.read_text()
        for needle in ("dangerously_allow_html=True", "dangerouslySetInnerHTML", "srcDoc="):
            if needle in text:
                bad.append(f"{p.relative_to(ROOT)}: {needle}")
    for p in _own_files("*.js"):
        text = p.read_text()
        # innerHTML may only ever be cleared; tooltips must be plain text, not {html: ...}
        for m in re.finditer(r"\.(?:inner|outer)HTML\s*[+]?=\s*([^;\n]*)", text):
            if m.group(1).strip() not in ('""', "''"):
                bad.append(f"{p.relative_to(ROOT)}: innerHTML = {m.group(1)[:60]}")
        if re.search(r"\bhtml\s*:", text) or "insertAdjacentHTML" in text or "document.write" in text:
            bad.append(f"{p.relative_to(ROOT)}: HTML built from data")
    assert bad == []


def test_no_string_built_sql():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "S608",
                        "--output-format", "concise", *[p for p in PACKAGES
                                                        if (ROOT / p).exists()]],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
    execs = []
    for p in _own_files("*.py"):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"\.(?:execute|executemany|copy)\(\s*f[\"']", line):
                execs.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()[:80]}")
    assert execs == []

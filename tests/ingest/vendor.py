"""A separate virtualenv with the vendor SDKs of tests/vendor-requirements.txt (see there why)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).parent.parent / "vendor-requirements.txt"
VENV = Path(sys.prefix) / "vendor"


def vendor_python() -> Path:
    """The vendor virtualenv's python, built (once per requirements file) if missing."""
    py = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    want = REQUIREMENTS.read_text()
    if not (stamp.exists() and stamp.read_text() == want):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "-r",
                        str(REQUIREMENTS)], check=True)
        stamp.write_text(want)
    return py


if __name__ == "__main__":
    print(vendor_python())

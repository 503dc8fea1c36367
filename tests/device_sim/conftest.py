from __future__ import annotations

import pytest

from device_sim.behaviour import Fleet
from device_sim.city import load_city
from device_sim.deploy import deploy

SEED = 5
N = 3000


@pytest.fixture(scope="session")
def city():
    return load_city()


@pytest.fixture(scope="session")
def deployment(city):
    return deploy(N, SEED, city)


@pytest.fixture(scope="session")
def fleet(deployment, city):
    return Fleet.build(deployment, SEED, city=city)

"""Incident types, one class per module, registered by name (see :mod:`.base`).

:data:`INCIDENTS` maps a scenario file's ``type`` to its class; :data:`AnyIncident` is the
validated union the scenario model uses.  A new type is one module here, imported below.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from device_sim.incidents import crowd, fire, flood, gas, gateway, traffic  # noqa: F401 - register
from device_sim.incidents.base import INCIDENTS, Bound, Incident, ScenarioError, parse_duration

AnyIncident = Annotated[Union[tuple(INCIDENTS.values())],  # noqa: UP007 - built at run time
                        Field(discriminator="type")]

__all__ = ["INCIDENTS", "AnyIncident", "Bound", "Incident", "ScenarioError", "parse_duration"]

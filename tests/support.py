"""Helpers shared by the tests: wait on a condition with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, every: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy or ``timeout`` passes.

    Returns the last value (so ``assert wait_for(...)`` fails with it when time ran out).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)

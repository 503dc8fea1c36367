"""Helpers shared by the tests: wait on a condition with a deadline, never a fixed sleep.

- :func:`wait_for` / :func:`wait_until`: poll a condition until it holds or a deadline
  passes (``wait_until`` fails the test, naming what it waited for).
- :func:`stays_false`: the one bounded wait for "nothing arrives within X": polls a
  condition for the whole window and returns as soon as it turns true (fail fast).
- :func:`hold`: the one fixed wait, for where the duration itself is under test (a fault
  kept in place for N seconds) and no condition can end it sooner; the reason is an argument
  so every use says why.
"""

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


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
               every: float = 0.05) -> T:
    """:func:`wait_for`, failing with ``timed out waiting for <what>`` when time runs out."""
    value = wait_for(predicate, timeout, every)
    if not value:
        raise AssertionError(f"timed out waiting for {what} ({timeout:g} s)")
    return value


def stays_false(predicate: Callable[[], object], within: float, every: float = 0.05) -> bool:
    """True when ``predicate`` stayed falsy for ``within`` seconds; False as soon as it is not.

    For "nothing arrives within X" where nothing observable marks the end of the window.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return False
        time.sleep(every)
    return not predicate()


def hold(seconds: float, why: str) -> None:
    """Let ``seconds`` pass: only where that duration is what the test exercises.

    ``why`` is documentation at the call site (e.g. "the database outage lasts 30 s").
    """
    assert why, "say why a fixed wait is the thing under test"
    time.sleep(seconds)

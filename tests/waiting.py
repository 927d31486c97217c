"""Waiting on events instead of sleeping: the one polling helper of the test suite.

A test that sleeps for "long enough" measures the machine: on a loaded or slow host the event
comes later and the test fails for no fault of the code. Tests wait for the event itself (a
socket listens, a counter moves, a link changes state) with a deadline generous enough that only
a real failure reaches it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

GENEROUS_S = 30.0  # far beyond any healthy wait; reached only when the event never happens


def wait_until(predicate: Callable[[], T], timeout: float = GENEROUS_S, what: str = "the condition",
               interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy and return that value.

    Raises AssertionError naming ``what`` (and the last value seen) when ``timeout`` seconds pass
    first. Exceptions from the predicate propagate: a predicate that may fail while the event is
    pending should catch them itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last seen: {value!r}")
        time.sleep(interval)


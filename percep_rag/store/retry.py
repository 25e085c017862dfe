"""Exponential backoff for calls to a remote store.

Example::

    >>> policy = RetryPolicy(attempts=3, initial_backoff=0.1, jitter=0.0)
    >>> [policy.delay(a) for a in (1, 2)]
    [0.1, 0.2]
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("blip")
    ...     return "ok"
    >>> call_with_retries(flaky, policy, lambda e: isinstance(e, ConnectionError), sleep=lambda s: None)
    'ok'
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """``attempts`` tries in all; the wait before try ``a + 1`` is
    ``min(max_backoff, initial_backoff * multiplier ** (a - 1))``, +/- ``jitter`` of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(4, ge=1)
    initial_backoff: float = Field(0.25, ge=0.0)
    max_backoff: float = Field(8.0, ge=0.0)
    multiplier: float = Field(2.0, ge=1.0)
    jitter: float = Field(0.1, ge=0.0, le=1.0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        if self.jitter:
            # Jitter spreads the retries of many clients hit by the same outage.
            base *= 1.0 + random.uniform(-self.jitter, self.jitter)
        return base


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    *,
    retry_after: Callable[[BaseException], float | None] = lambda exc: None,
    sleep: Callable[[float], None] = time.sleep,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn`` until it succeeds, fails permanently, runs out of attempts or of ``budget`` seconds.

    A transient failure (``is_transient``) is retried after the policy's delay, or after
    ``retry_after(exc)`` seconds when that is known (HTTP ``Retry-After``), unless the retry
    would start after ``budget`` seconds from the first call (so a server that accepts
    connections but never answers costs about one time-out, not one per attempt). The last
    exception is re-raised unchanged; callers decide what it means.

    >>> now = iter([0.0, 5.0])
    >>> policy = RetryPolicy(attempts=5, initial_backoff=0.1, jitter=0.0)
    >>> call_with_retries(lambda: 1 / 0, policy, lambda e: True, sleep=lambda s: None, budget=4.0,
    ...                   clock=lambda: next(now))
    Traceback (most recent call last):
    ...
    ZeroDivisionError: division by zero
    """
    started = clock()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= policy.attempts or not is_transient(exc):
                raise
            hint = retry_after(exc)
            wait = hint if hint is not None else policy.delay(attempt)
            if budget is not None and clock() + wait - started >= budget:
                raise
            sleep(wait)
            attempt += 1

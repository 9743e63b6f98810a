"""Exponential backoff with jitter for transient failures, on tenacity (docs/design.md §6).

The sleep and the random source are injectable so tests record delays instead of waiting.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from eventstore.numbers import whole_number

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenacity import RetryCallState

T = TypeVar("T")

MAX_RETRIES = 10
DEFAULT_RETRIES = 3


def parse_retries(value: object, *, name: str = "--flush-retries") -> int:
    """Accept an int (or its decimal text) from 0 to 10; refuse anything else by name."""
    return whole_number(value, name=name, low=0, high=MAX_RETRIES)


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` retries after the first attempt: retries + 1 attempts in all."""

    retries: int = DEFAULT_RETRIES
    base_s: float = 0.1
    factor: float = 2.0
    cap_s: float = 2.0
    jitter: float = 0.1
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def delay_s(self, failed_attempt: int) -> float:
        """Delay after the `failed_attempt`-th failure: 0.1, 0.2, 0.4 ... capped, ±jitter."""
        raw = min(self.cap_s, self.base_s * self.factor ** (failed_attempt - 1))
        return raw * (1.0 + self.uniform(-self.jitter, self.jitter))

    def call(
        self,
        fn: Callable[[], T],
        *,
        retryable: Callable[[BaseException], bool],
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> T:
        """Run `fn`, retrying what `retryable` accepts; the last error is re-raised as is."""
        try:
            return fn()
        except Exception as exc:
            if self.retries == 0 or not retryable(exc):
                raise
            first_failure = exc
        # Only now load tenacity: nearly every call succeeds at once, and its import
        # would otherwise be a visible share of a one-shot `evstore append`.
        from tenacity import Retrying, retry_if_exception, stop_after_attempt  # noqa: PLC0415

        def wait(state: RetryCallState) -> float:
            return self.delay_s(state.attempt_number + 1)

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None and state.next_action:
                exc = state.outcome.exception()
                assert exc is not None  # noqa: S101 - tenacity only sleeps after a failure
                on_retry(state.attempt_number + 1, state.next_action.sleep, exc)

        delay = self.delay_s(1)
        if on_retry is not None:
            on_retry(1, delay, first_failure)
        self.sleep(delay)
        retrying = Retrying(
            stop=stop_after_attempt(self.retries),
            wait=wait,
            retry=retry_if_exception(retryable),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)

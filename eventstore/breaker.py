"""A circuit breaker per export directory (docs/design.md §10).

closed ──5 consecutive failed exports──▶ open ──30 s──▶ half-open ──a trial succeeds──▶ closed
                                          ▲                │
                                          └─a trial fails──┘

While open, no export is attempted: a broken disk is not hammered, and the journal (and
so every append by any process) is untouched by it. Half-open admits up to 3 trial
exports; the first outcome decides: a success closes the breaker, a failure reopens it
for another 30 s.

Every transition is logged (warning when it opens, info otherwise) and handed to
`record` as an `ErrorRecorded` event (component "breaker", operation "open",
"half_open" or "closed") carrying the classification of the last failure. Recording is
best effort: a failure to record is logged and never stops the caller.

The clock is injectable (monotonic seconds), so tests drive it without waiting.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from eventstore.classify import classify
from eventstore.events import ErrorRecorded
from eventstore.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

log = get_logger("evstore.breaker")

State = Literal["closed", "open", "half_open"]

COMPONENT = "breaker"
FAILURE_THRESHOLD = 5
OPEN_SECONDS = 30.0
HALF_OPEN_TRIALS = 3
RECOVERY_STRATEGY = "circuit_breaker"


class CircuitBreaker:
    """Guards the exports into one directory. Ask `allow()` before each export, then
    report its outcome with `success()` or `failure(exc)`.

    >>> breaker = CircuitBreaker("/srv/plan/001", clock=lambda: 0.0)
    >>> breaker.allow(), breaker.state
    (True, 'closed')
    """

    def __init__(  # noqa: PLR0913 - keyword-only knobs with defaults
        self,
        export_dir: str,
        *,
        threshold: int = FAILURE_THRESHOLD,
        open_s: float = OPEN_SECONDS,
        trials: int = HALF_OPEN_TRIALS,
        clock: Callable[[], float] = time.monotonic,
        record: Callable[[ErrorRecorded], object] | None = None,
    ) -> None:
        if threshold < 1 or trials < 1 or open_s < 0:
            raise ValueError("threshold and trials must be at least 1, open_s not negative")
        self.export_dir = str(export_dir)
        self.threshold = threshold
        self.open_s = open_s
        self.trials = trials
        self._clock = clock
        self._record = record
        self._state: State = "closed"
        self.failures = 0  # consecutive failed exports (reset by a success)
        self.last_error: BaseException | None = None
        self.opened_at: float | None = None
        self._trials_started = 0
        self._episode_started: float | None = None  # when it last opened from closed

    # --- questions ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The state as last moved; an open breaker whose time is up becomes half-open
        at the next `allow()` (so the transition is logged when it matters)."""
        return self._state

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a trial through (0 unless open)."""
        if self._state != "open" or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.open_s - self._clock())

    # --- the protocol -------------------------------------------------------------------

    def allow(self) -> bool:
        """May an export be attempted now? Half-open: True for up to `trials` exports
        whose outcome is not reported yet."""
        if self._state == "open":
            if self.retry_in_s() > 0:
                return False
            self._trials_started = 0
            self._move("half_open")
        if self._state == "half_open":
            if self._trials_started >= self.trials:
                return False
            self._trials_started += 1
        return True

    def success(self) -> None:
        if self._state == "half_open":
            self._move("closed")  # recorded with the episode's failures and last error
            self.opened_at = self._episode_started = None
            self.last_error = None
        self.failures = 0

    def failure(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = exc
        tripped = self._state == "closed" and self.failures >= self.threshold
        if self._state == "half_open" or tripped:
            previous = self._state
            self.opened_at = self._clock()
            if previous == "closed":
                self._episode_started = self.opened_at
            self._trials_started = 0
            self._move("open", reopened=previous == "half_open")

    # --- transitions --------------------------------------------------------------------

    def _move(self, state: State, *, reopened: bool = False) -> None:
        previous, self._state = self._state, state
        code = classify(self.last_error).code if self.last_error is not None else None
        message = self.message(state, reopened=reopened, errno=code)
        fields = {
            "export_dir": self.export_dir,
            "state": state,
            "previous": previous,
            "failures": self.failures,
            "errno": code,
            "error": str(self.last_error) if self.last_error is not None else None,
        }
        if state == "open":
            log.warning("breaker_open", retry_in_s=self.open_s, **fields)
        elif state == "half_open":
            log.info("breaker_half_open", trials=self.trials, **fields)
        else:
            log.info("breaker_closed", **fields)
        self._emit(state, message)

    def message(self, state: State, *, reopened: bool = False, errno: str | None = None) -> str:
        """`<export_dir>: breaker <state words> ...`: the export dir always comes first,
        before the last `": breaker "`, so a reader can take it back out."""
        cause = f" ({errno})" if errno else ""
        wait = f"next trial in {self.open_s:g}s"
        if state == "open" and reopened:
            text = f"breaker open again after a failed trial export{cause}; {wait}"
        elif state == "open":
            text = f"breaker open after {self.failures} consecutive failures{cause}; {wait}"
        elif state == "half_open":
            last = f" (last failure {errno})" if errno else ""
            text = (f"breaker half-open after {self.open_s:g}s:"
                    f" up to {self.trials} trial exports{last}")
        else:
            last = f", last {errno}" if errno else ""
            text = (f"breaker closed: a trial export succeeded after {self.failures}"
                    f" failed exports{last}")
        return f"{self.export_dir}: {text}"

    def _resolution_ms(self) -> float | None:
        if self._episode_started is None:
            return None
        return round((self._clock() - self._episode_started) * 1000, 1)

    def _emit(self, state: State, message: str) -> None:
        if self._record is None:
            return
        # Best effort, like every ErrorRecorded: the journal may sit on the very disk
        # that is failing, and the breaker must keep working without it.
        try:
            if self.last_error is not None:
                classification = classify(self.last_error).fields()
            else:  # pragma: no cover - every transition follows a failure
                classification = {"errno": None, "error_type": "resource", "severity": "low",
                                  "recoverability": "recoverable", "category": "transient",
                                  "retryable": True}
            event = ErrorRecorded(
                component=COMPONENT,
                operation=state,
                message=message,
                retry_count=self.failures,
                recovery_strategy=RECOVERY_STRATEGY,
                recovery_success=state == "closed",
                resolution_time_ms=self._resolution_ms() if state == "closed" else None,
                path=self.export_dir,
                **classification,
            )
            self._record(event)
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("error_not_recorded", component=COMPONENT, operation=state,
                        export_dir=self.export_dir, error=str(exc))

"""Restart policy shared by the manager (lifecycle restarts) and the process supervisor."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential backoff: initial, initial*factor, ... capped at maximum."""

    initial_s: float = 0.5
    maximum_s: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """Delay before restart number `attempt` (1-based)."""
        if attempt <= 0:
            return 0.0
        return min(self.maximum_s, self.initial_s * self.factor ** (attempt - 1))


@dataclass
class RestartTracker:
    """Counts recent failures of one stage and decides when to retry or give up.

    A failure older than `window_s` is forgotten; more than `max_restarts` failures inside
    the window is a restart loop: the tracker gives up (reported by the manager) and, if
    `cooldown_s` > 0, allows a fresh series after that long.
    """

    backoff: Backoff = field(default_factory=Backoff)
    max_restarts: int = 5
    window_s: float = 120.0
    cooldown_s: float = 300.0
    failures: deque = field(default_factory=deque)
    total: int = 0
    gave_up_at: float | None = None

    def record_failure(self, now: float) -> float | None:
        """Register a failure; return the delay before the next attempt, or None = give up."""
        self.total += 1
        self.failures.append(now)
        self._forget(now)
        if len(self.failures) > self.max_restarts:
            self.gave_up_at = now
            return None
        return self.backoff.delay(len(self.failures))

    def _forget(self, now: float) -> None:
        while self.failures and now - self.failures[0] > self.window_s:
            self.failures.popleft()

    def recent(self, now: float) -> int:
        self._forget(now)
        return len(self.failures)

    def may_retry(self, now: float) -> bool:
        """After giving up: True once the cool-down has passed (a new series starts)."""
        if self.gave_up_at is None:
            return True
        if self.cooldown_s > 0 and now - self.gave_up_at >= self.cooldown_s:
            self.gave_up_at = None
            self.failures.clear()
            return True
        return False

    @property
    def given_up(self) -> bool:
        return self.gave_up_at is not None

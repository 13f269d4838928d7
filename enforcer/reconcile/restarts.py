"""Restart tracking with exponential backoff (after Nomad's `restarts.go`).

The first restart after a stable run is immediate; each further crash doubles the delay from
`initial` up to `maximum`. A container that stayed up for `reset_after` starts over.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 1.0
    maximum: float = 300.0
    reset_after: float = 600.0
    jitter: float = 0.1  # +-10% so that many crashing containers do not restart in lockstep

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before restart number `attempt` (1-based) of a crash streak."""
        if attempt <= 1:
            return 0.0
        base = float(min(self.initial * (2.0 ** (attempt - 2)), self.maximum))
        if self.jitter and rng is not None:
            base *= 1 + self.jitter * (2 * rng.random() - 1)
        return min(base, self.maximum)


@dataclass(frozen=True)
class RestartState:
    restarts: int = 0  # total restarts done by the enforcer (shown by ps)
    streak: int = 0  # crashes since the container last stayed up for reset_after
    last_exit_code: int | None = None
    next_retry: float | None = None  # monotonic-free unix time of the next attempt


def on_exit(
    state: RestartState,
    policy: BackoffPolicy,
    *,
    now: float,
    ran_for: float,
    exit_code: int | None,
    rng: random.Random | None = None,
) -> RestartState:
    """Record that the container exited after running `ran_for` seconds; plan the retry."""
    streak = 1 if ran_for >= policy.reset_after else state.streak + 1
    return replace(
        state,
        streak=streak,
        last_exit_code=exit_code,
        next_retry=now + policy.delay(streak, rng),
    )


def on_restarted(state: RestartState) -> RestartState:
    return replace(state, restarts=state.restarts + 1, next_retry=None)

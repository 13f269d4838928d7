"""Retry pacing for the control link: capped exponential backoff with full jitter, Retry-After.

The cap is short (`BACKOFF_CAP`): an edge site's outages of control are mostly brief, and a site
should be back in sync within seconds of control's return. Full jitter spreads thousands of
sites over the whole interval, and control sheds load with ``Retry-After``, which a site
honours as a floor.
"""

from __future__ import annotations

import email.utils
import random
import time

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "Backoff", "parse_retry_after"]

BACKOFF_BASE = 0.5  # seconds: the ceiling of the first retry's delay
BACKOFF_CAP = 5.0  # seconds: no retry waits longer unless control asks for it (Retry-After)


class Backoff:
    """Exponential backoff with full jitter: attempt n sleeps U(0, min(cap, base * 2**n))."""

    def __init__(
        self,
        base: float = BACKOFF_BASE,
        cap: float = BACKOFF_CAP,
        rng: random.Random | None = None,
    ) -> None:
        self.base, self.cap = base, cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 62))
        self.attempt += 1
        return self._rng.uniform(0.0, ceiling)

    def after_retry_after(self, seconds: float) -> float:
        """The delay when control asked for `seconds`: at least that, spread by up to half."""
        self.attempt += 1
        return seconds * self._rng.uniform(1.0, 1.5)

    def reset(self) -> None:
        self.attempt = 0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

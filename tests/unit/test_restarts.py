"""The restart tracker: exponential backoff, its cap, its jitter, and its reset."""

from __future__ import annotations

import random

import pytest

from enforcer.reconcile.restarts import BackoffPolicy, RestartState, on_exit, on_restarted

POLICY = BackoffPolicy(initial=1.0, maximum=30.0, reset_after=600.0, jitter=0.0)

DELAYS = {  # attempt in a crash streak -> delay before it
    1: 0.0,  # the first restart after a stable run is immediate
    2: 1.0,
    3: 2.0,
    4: 4.0,
    5: 8.0,
    6: 16.0,
    7: 30.0,  # 32 capped
    8: 30.0,
    50: 30.0,
}


@pytest.mark.parametrize(("attempt", "delay"), DELAYS.items())
def test_the_delay_doubles_up_to_the_cap(attempt: int, delay: float) -> None:
    assert POLICY.delay(attempt) == delay


@pytest.mark.parametrize("attempt", [2, 3, 4, 5, 6, 7, 20])
def test_jitter_stays_within_its_bounds_and_under_the_cap(attempt: int) -> None:
    policy = BackoffPolicy(initial=1.0, maximum=30.0, jitter=0.1)
    base = POLICY.delay(attempt)
    rng = random.Random(attempt)
    delays = [policy.delay(attempt, rng) for _ in range(200)]
    assert all(base * 0.9 <= d <= min(base * 1.1, 30.0) for d in delays), (base, delays[:5])
    assert len(set(delays)) > 1  # it does vary: crash loops do not restart in lockstep
    assert policy.delay(1, rng) == 0.0  # the first restart stays immediate


RanFor = float
STREAKS = {  # how long each run lasted -> streak after the last exit, delay of the retry
    "one crash: immediate": ([0.5], 1, 0.0),
    "crash loop: growing": ([0.5, 0.5, 0.5, 0.5], 4, 4.0),
    "long crash loop: capped": ([0.5] * 12, 12, 30.0),
    "stable run resets the streak": ([0.5] * 6 + [600.0], 1, 0.0),
    "crash right after a reset grows again": ([0.5] * 6 + [600.0, 0.5], 2, 1.0),
    "just under reset-after: no reset": ([0.5] * 3 + [599.9], 4, 4.0),
}


@pytest.mark.parametrize("case", STREAKS.values(), ids=list(STREAKS))
def test_the_streak_grows_with_crashes_and_resets_after_a_stable_run(
    case: tuple[list[RanFor], int, float],
) -> None:
    runs, streak, delay = case
    now = 1000.0
    # the state after the last exit, before its restart
    last = on_exit(_replay(runs[:-1]), POLICY, now=now, ran_for=runs[-1], exit_code=3)
    assert last.streak == streak
    assert last.next_retry == pytest.approx(now + delay)
    assert last.last_exit_code == 3


def _replay(runs: list[RanFor]) -> RestartState:
    st = RestartState()
    for ran_for in runs:
        st = on_restarted(on_exit(st, POLICY, now=0.0, ran_for=ran_for, exit_code=3))
    return st


def test_restarts_are_counted_and_the_retry_cleared_when_restarted() -> None:
    st = on_exit(RestartState(), POLICY, now=10.0, ran_for=0.1, exit_code=1)
    st = on_exit(on_restarted(st), POLICY, now=11.0, ran_for=0.1, exit_code=2)
    assert (st.restarts, st.streak, st.next_retry) == (1, 2, 12.0)
    st = on_restarted(st)
    assert (st.restarts, st.streak, st.next_retry, st.last_exit_code) == (2, 2, None, 2)

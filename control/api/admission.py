"""When control takes on more work: pure decisions for the listener and the shedding routes.

A storm of sites reconnecting after an outage of control is mostly TLS handshakes (about
1.5 ms of CPU each, against well under 1 ms to answer a long-poll). Control therefore

- hands out handshake slots (`handshake_slots`, as many as its event loop keeps up with) in
  the order connections arrived: every handshake in progress finishes quickly, instead of
  thousands interleaved finishing late together (and past the sites' connect timeout, all that
  work lost); the rest wait, accepted and unread;
- closes a new connection at once when its open connections reach `connection_budget`, so that
  it never runs out of files (an ``accept`` failing with EMFILE stops all accepting for a second).

(A ``Retry-After`` drawn over the time control's backlog needs, up to 30 s, instead of 1-5 s
was tried: not better in the one storm measured, 5,000 sites p50 22 s, max 64 s, so not kept.)
"""

from __future__ import annotations

# TLS handshakes in progress at once; the other new connections wait their turn. A handshake
# spends most of its time waiting for the site (its certificate, its signature), during which
# it costs control nothing, so the number follows control's event loop (`handshake_slots`):
# more while the loop keeps up, a quarter fewer when it lags. A fixed 64 left control idle
# behind 4,800 slow sites (sync p50 111 s, control's CPU at 21 %); halving at 250 ms of lag
# (on a machine shared with other work) left 1,654 of 5,000 sites waiting past 30 s.
HANDSHAKES = 512  # to start with
MIN_HANDSHAKES = 256
MAX_HANDSHAKES = 8192
LAG_LOW = 0.25  # seconds late for a 100 ms timer: control keeps up, start more at once
LAG_HIGH = 1.0  # seconds late: control is behind (its p99 goal is 5 s), start fewer
RESERVED_FILES = 256  # files kept for control itself: its database, logs, operators' calls


def connection_budget(open_files: int, backlog: int) -> int:
    """How many client connections control keeps open with `open_files` files allowed.

    Besides its own files, it keeps back `backlog`: asyncio accepts up to that many
    connections at once before any of them is counted (10,000 sites, kept to 5 % below the
    limit, still ran out of files)."""
    return max(1, open_files - max(RESERVED_FILES, open_files // 20) - backlog)


def handshake_slots(slots: int, lag: float, low: int, high: int) -> int:
    """How many handshakes may run at once, `slots` so far, after a timer of the event loop
    ran `lag` seconds late: 64 more while the loop keeps up, a quarter fewer when it lags
    (within `low`..`high`)."""
    if lag > LAG_HIGH:
        return max(low, slots * 3 // 4)
    if lag < LAG_LOW:
        return min(high, slots + 64)
    return min(high, max(low, slots))


def admit_connection(open_connections: int, budget: int) -> bool:
    """Whether a newly accepted connection is kept (False: closed at once, before its handshake)."""
    return open_connections < budget

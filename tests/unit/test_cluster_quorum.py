"""Telling a lost quorum from a host cut off from its site store (pure reading of a probe)."""

from __future__ import annotations

from enforcer.site.cluster.quorum import MemberStates


def test_only_a_majority_of_leaderless_or_stopped_members_means_the_quorum_is_lost() -> None:
    assert MemberStates(3, leaderless=1, down=2).quorum_lost  # two of three stopped
    assert MemberStates(3, leaderless=3).quorum_lost
    assert MemberStates(1, down=1).quorum_lost
    # a member follows a leader: a quorum exists; members that do not answer: cut off, maybe
    assert not MemberStates(3, following=1, down=2).quorum_lost
    assert not MemberStates(3, silent=2, leaderless=1).quorum_lost
    assert not MemberStates(3, silent=3).quorum_lost
    assert not MemberStates(5, leaderless=1, down=1, silent=3).quorum_lost

"""Control's admission decisions (`control.api.admission`): connections and handshakes."""

from __future__ import annotations

from control.api.admission import admit_connection, connection_budget, handshake_slots


def test_control_keeps_files_for_itself_below_its_open_file_limit() -> None:
    assert connection_budget(20_000, 4096) == 14_904  # 5 % kept back, and a backlog's worth
    assert connection_budget(1024, 0) == 768  # at least 256 kept back
    assert connection_budget(100, 128) == 1  # never nothing at all
    assert admit_connection(18_999, 19_000)
    assert not admit_connection(19_000, 19_000)


def test_handshakes_grow_while_the_event_loop_keeps_up_and_shrink_when_it_lags() -> None:
    slots = 512
    for _ in range(10):
        slots = handshake_slots(slots, 0.002, 256, 8192)  # the loop is on time
    assert slots == 512 + 640
    assert handshake_slots(slots, 0.5, 256, 8192) == slots  # half a second late: as it is
    assert handshake_slots(slots, 1.5, 256, 8192) == slots * 3 // 4  # behind: a quarter fewer
    assert handshake_slots(300, 2.0, 256, 8192) == 256  # never below the least
    assert handshake_slots(8190, 0.0, 256, 8192) == 8192  # nor above the most

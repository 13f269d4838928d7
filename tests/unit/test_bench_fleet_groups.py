"""The fleet bench's arithmetic: how many HAProxy processes a fleet needs under an open-files
limit, and the CPU figures per control process (PostgreSQL and HAProxy apart)."""

from __future__ import annotations

import pytest

from bench.bench_fleet import per_process
from bench.fleet_groups import haproxies_for, haproxy_maxconn
from bench.fleet_sites import control_cpu, cpu_shares
from tests.support.haproxy import configuration


def test_one_haproxy_holds_two_files_per_connection_within_its_open_files() -> None:
    assert haproxy_maxconn(20_000) == 9_980
    assert 2 * haproxy_maxconn(20_000) + 19 <= 20_000  # HAProxy 2.6 asks for 2 x maxconn + 19


def test_a_fleet_that_fits_one_haproxy_gets_one() -> None:
    assert haproxies_for(1, 20_000) == 1
    assert haproxies_for(9_880, 20_000) == 1


def test_ten_thousand_sites_under_twenty_thousand_open_files_need_two_haproxies() -> None:
    assert haproxies_for(9_881, 20_000) == 2
    assert haproxies_for(10_000, 20_000) == 2
    assert haproxies_for(10_000, 262_144) == 1


def test_an_open_files_limit_with_no_room_for_connections_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="100 open files leave HAProxy no room"):
        haproxies_for(10, 100)


def test_haproxys_configuration_takes_the_benchs_connection_limit() -> None:
    text = configuration(7443, [8001, 8002], maxconn=9_980)
    assert "maxconn 9980" in text and "maxconn 4000" not in text
    assert "server control-1 127.0.0.1:8002" in text
    assert "maxconn 4000" in configuration(7443, [8001])  # the suite's default


def test_cpu_shares_are_per_process_and_control_cpu_leaves_postgresql_and_haproxy_out() -> None:
    before = {"0": 10.0, "1": 4.0, "postgresql": 2.0, "haproxy": 1.0}
    after = {"0": 15.0, "1": 6.0, "postgresql": 7.0, "haproxy": 1.5}
    shares = cpu_shares(before, after, 10.0)
    assert shares == {"0": 0.5, "1": 0.2, "postgresql": 0.5, "haproxy": 0.05}
    assert control_cpu(shares) == pytest.approx(0.7)


def test_a_process_killed_between_two_readings_has_no_share() -> None:
    shares = cpu_shares({"0": 1.0, "1": 1.0}, {"0": 2.0}, 1.0)
    assert shares == {"0": 1.0}


def test_per_process_figures_come_in_process_order_without_the_helpers() -> None:
    shares = {str(n): n / 100 for n in range(12)} | {"postgresql": 0.9}
    assert per_process(shares, "{:.0%}") == " / ".join(f"{n}%" for n in range(12))

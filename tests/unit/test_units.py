"""Durations and sizes as written in specs (DESIGN.md: 500ms, 10s, 5m, 1h; Ki, Mi, Gi, bytes)."""

from __future__ import annotations

import random

import pytest

from enforcer.shared.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("0s", 0.0),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("2h45m10s500ms", 9910.5),
        ("1ms", 0.001),
        (" 10s ", 10.0),
    ],
)
def test_durations_with_units_are_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10x", '"10x" is not a duration'),
        ("10", 'add a unit, e.g. "10s"'),
        ("1.5", 'add a unit, e.g. "1.5s"'),
        ("", '"" is not a duration'),
        ("s", '"s" is not a duration'),
        ("-1s", '"-1s" is not a duration'),
        ("10 s", '"10 s" is not a duration'),
        ("1.s", '"1.s" is not a duration'),
        ("10S", '"10S" is not a duration'),
        ("1s1m", "largest first"),
        ("1s1s", "largest first"),
        ("1d", '"1d" is not a duration'),
    ],
)
def test_text_that_is_not_a_duration_is_refused_with_a_clear_message(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError, match="is not a duration") as caught:
        parse_duration(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.5, "500ms"),
        (0.001, "1ms"),
        (10.0, "10s"),
        (10.25, "10.25s"),
        (90.0, "1m30s"),
        (300.0, "5m"),
        (3600.0, "1h"),
        (5400.0, "1h30m"),
        (3661.5, "1h1m1.5s"),
        (0.0001, "0.0001s"),
        (1e-07, "0.0000001s"),
    ],
)
def test_durations_are_formatted_in_their_shortest_common_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_formatted_durations_read_back_to_exactly_the_same_seconds() -> None:
    rng = random.Random(1234)
    values = [rng.uniform(0, 10) for _ in range(500)]
    values += [rng.uniform(0, 1e6) for _ in range(500)]
    values += [rng.randrange(0, 10**8) / 1000 for _ in range(500)]
    values += [1 / 3, 2 / 3, 0.1, 0.2, 0.3, 1e-9, 59.9999, 86400.0 * 365]
    for seconds in values:
        assert parse_duration(format_duration(seconds)) == seconds, seconds


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_negative_or_infinite_durations_cannot_be_formatted(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (1024, 1024),
        ("1048576", 1048576),
        ("512Ki", 512 * 1024),
        ("256Mi", 256 * 1024**2),
        ("1Gi", 1024**3),
        ("1.5Gi", 1536 * 1024**2),
        ("0.5Ki", 512),
    ],
)
def test_sizes_in_bytes_or_binary_units_are_read_as_bytes(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("256M", 'e.g. "256Mi"'),
        ("1K", "is not a size"),
        ("1G", "is not a size"),
        ("1Ti", "is not a size"),
        ("1KiB", "is not a size"),
        ("-1", "is not a size"),
        (-1, "negative"),
        ("0.1Ki", "whole number of bytes"),
        ("1.5", "whole number of bytes"),
        ("", "is not a size"),
        (True, "is not a size"),
        (1.5, "is not a size"),
    ],
)
def test_values_that_are_not_sizes_are_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0"), (1000, "1000"), (1024, "1Ki"), (1536, "1536"), (256 * 1024**2, "256Mi")],
)
def test_sizes_are_formatted_in_the_largest_exact_unit(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


def test_formatted_sizes_read_back_to_the_same_bytes() -> None:
    rng = random.Random(99)
    for _ in range(1000):
        size = rng.choice([rng.randrange(0, 10**12), rng.randrange(0, 4096) * 1024**2])
        assert parse_size(format_size(size)) == size

"""control.toml's metrics-public key."""

from __future__ import annotations

import pytest

from control.config import ConfigError, parse_config


def test_metrics_public_defaults_to_false_and_takes_true() -> None:
    assert parse_config("").metrics_public is False
    assert parse_config("metrics-public = true\n").metrics_public is True


def test_metrics_public_must_be_true_or_false_naming_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"^c\.toml:2: metrics-public must be true or false$"):
        parse_config('listen = "127.0.0.1:1"\nmetrics-public = "yes"\n', "c.toml")

"""`[logs] forward-errors` and `error-rate` in enforcer.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from enforcer.config.load import load_config
from enforcer.config.model import ConfigError


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "enforcer.toml"
    path.write_text(f'state-dir = "{tmp_path / "state"}"\n' + text)
    return path


def test_errors_are_forwarded_at_ten_a_minute_by_default(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, ""))
    assert config.logs.forward_errors is True
    assert config.logs.error_rate == "10/min"


def test_forwarding_can_be_turned_off_and_the_rate_set(tmp_path: Path) -> None:
    text = '[logs]\nforward-errors = false\nerror-rate = "30/hour"\n'
    config = load_config(config_file(tmp_path, text))
    assert config.logs.forward_errors is False
    assert config.logs.error_rate == "30/hour"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[logs]\nforward-errors = 'yes'\n", ":3: logs.forward-errors: expected a boolean"),
        ("[logs]\nerror-rate = '10'\n", ':3: logs.error-rate: "10" is not a rate'),
        ("[logs]\nerror-rate = '0/min'\n", ":3: logs.error-rate: "),
        ("[logs]\nerror-rate = 10\n", ":3: logs.error-rate: expected a string"),
    ],
)
def test_a_bad_forwarding_key_names_the_file_line_and_what_is_wrong(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_file(tmp_path, text))
    assert expected in str(info.value)

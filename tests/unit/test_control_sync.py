"""Control's configuration (the site side of sync: tests/unit/test_sync_link.py)."""

from __future__ import annotations

import pytest

from control.config import ConfigError, parse_config


def test_control_toml_defaults_and_unknown_keys_name_the_line() -> None:
    config = parse_config("")
    assert config.listen == "0.0.0.0:7443" and config.url == "https://127.0.0.1:7443"
    config = parse_config('public-url = "https://control.example"\nlisten = "[::]:8443"\n')
    assert config.url == "https://control.example" and config.listen_port == 8443
    with pytest.raises(ConfigError, match=r"^/etc/c.toml:3: unknown key 'colour'"):
        parse_config('listen = "127.0.0.1:1"\n\ncolour = "red"\n', "/etc/c.toml")
    with pytest.raises(ConfigError, match=r"c.toml:2: unknown key 'extra'"):
        parse_config('database = ""\n[extra]\nx = 1\n', "c.toml")
    with pytest.raises(ConfigError, match=r"c.toml:1: listen"):
        parse_config('listen = "nowhere"\n', "c.toml")
    with pytest.raises(ConfigError, match=r"c.toml:1: public-url must be an https"):
        parse_config('public-url = "http://x"\n', "c.toml")

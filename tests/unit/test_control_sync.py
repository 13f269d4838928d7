"""The site side of sync: bundles, backoff, Retry-After and the persistent event queue."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from control.config import ConfigError, parse_config
from enforcer.link.enrollment import Bundle, EnrollmentError, encode_bundle, parse_bundle
from enforcer.link.sync import Backoff, EventQueue, parse_retry_after

FINGERPRINT = "ab" * 32


def test_a_bundle_round_trips_as_one_line() -> None:
    bundle = Bundle("https://control.example:7443", FINGERPRINT, "s3cret", "store-042")
    text = encode_bundle(bundle)
    assert "\n" not in text and "=" not in text
    assert parse_bundle(f"  {text}\n") == bundle


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("not base64 !!", "garbled"),
        (base64.urlsafe_b64encode(b"[1]").decode(), "not a JSON object"),
        (
            base64.urlsafe_b64encode(json.dumps({"url": "https://x"}).encode()).decode(),
            "lacks ca_fingerprint, secret, site",
        ),
        (encode_bundle(Bundle("http://x", FINGERPRINT, "s", "a")), "not https"),
        (encode_bundle(Bundle("https://x", "abc", "s", "a")), "SHA-256"),
        (encode_bundle(Bundle("https://x", FINGERPRINT, "s", "Bad Name")), "not a site name"),
    ],
)
def test_a_bad_bundle_is_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(EnrollmentError, match=message):
        parse_bundle(text)


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    for attempt, delay in enumerate(delays):
        assert 0.0 <= delay <= min(30.0, 2.0**attempt)
    assert max(delays[6:]) > 8  # it does grow
    backoff.reset()
    assert backoff.next() <= 1.0


def test_retry_after_is_honoured_as_a_floor() -> None:
    backoff = Backoff(rng=random.Random(2))
    assert all(5.0 <= backoff.after_retry_after(5.0) <= 7.5 for _ in range(50))
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Sat, 21 Nov 2026 18:00:10 GMT", now=1795284000.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_queued_events_survive_a_restart_and_a_batch_keeps_its_seq(tmp_path: Path) -> None:
    path = tmp_path / "sync.db"
    queue = EventQueue(path)
    for n in range(3):
        queue.push({"n": n})
    batch = queue.batch(limit=2)
    assert (batch.seq, [e["n"] for e in batch.events]) == (1, [0, 1])
    queue.push({"n": 3})
    queue.close()
    queue = EventQueue(path)  # the enforcer restarted before control answered
    again = queue.batch(limit=2)
    assert again == batch
    queue.acknowledge(again)
    following = queue.batch()
    assert (following.seq, [e["n"] for e in following.events]) == (2, [2, 3])
    queue.acknowledge(following)
    assert not queue.pending() and len(queue) == 0
    queue.revision = 7
    queue.close()
    assert EventQueue(path).revision == 7


def test_renumbering_moves_the_batch_in_flight(tmp_path: Path) -> None:
    queue = EventQueue(tmp_path / "sync.db")
    queue.push({"n": 1})
    first = queue.batch()
    queue.renumber(12)
    moved = queue.batch()
    assert moved.seq == 12 and moved.events == first.events
    queue.acknowledge(moved)
    assert queue.batch().seq == 13


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

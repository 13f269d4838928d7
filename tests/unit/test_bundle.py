"""The enrollment bundle: one line that control prints and the enforcer reads."""

from __future__ import annotations

import base64
import json

import pytest

from enforcer.shared.bundle import Bundle, BundleError, encode_bundle, parse_bundle

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
    with pytest.raises(BundleError, match=message):
        parse_bundle(text)

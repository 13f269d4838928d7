"""Join bundles, the invitations kept for them and the checks a controller makes (pure)."""

from __future__ import annotations

import re

import pytest

from enforcer.shared.bundle import encode_document
from enforcer.site.cluster.joining import (
    JOINS,
    Invitation,
    JoinBundle,
    JoinError,
    controller_count_warning,
    encode_join_bundle,
    invitation_key,
    leave_refusal,
    parse_join_bundle,
    parse_join_request,
    refusal,
    stale_invitations,
)

BUNDLE = JoinBundle(
    site="plant-7",
    url="https://10.0.0.11:7722",
    endpoints=("https://10.0.0.11:7720",),
    ca_fingerprint="ab" * 32,
    secret="s3cret",
    role="worker",
    expires=1_800_000_000.0,
)


def test_a_join_bundle_is_one_line_that_reads_back_as_it_was() -> None:
    text = encode_join_bundle(BUNDLE)
    assert "\n" not in text and "=" not in text
    assert parse_join_bundle(f"  {text}\n") == BUNDLE


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("", "the join bundle is empty"),
        ("not a bundle!", "the join bundle is garbled: it is not the one line that"),
        (encode_document({"site": "x"}), "it lacks url, ca_fingerprint, secret, role, endpoints"),
        (
            encode_join_bundle(BUNDLE).replace("x", "y")[:20],
            "the join bundle is garbled",
        ),
    ],
)
def test_a_garbled_bundle_says_what_is_wrong(text: str, wanted: str) -> None:
    with pytest.raises(JoinError) as caught:
        parse_join_bundle(text)
    assert wanted in str(caught.value)


def test_a_bundle_with_a_bad_field_names_it() -> None:
    doc = {
        "site": "s", "url": "http://10.0.0.11:7722", "endpoints": ["https://a:1"],
        "ca_fingerprint": "ab" * 32, "secret": "x", "role": "worker", "expires": 1,
    }  # fmt: skip
    with pytest.raises(
        JoinError, match=re.escape("'http://10.0.0.11:7722' is not an https:// URL")
    ):
        parse_join_bundle(encode_document(doc))
    doc |= {"url": "https://10.0.0.11:7722", "ca_fingerprint": "xyz"}
    with pytest.raises(JoinError, match="its CA fingerprint is not a SHA-256 in hex"):
        parse_join_bundle(encode_document(doc))
    doc |= {"ca_fingerprint": "AB:" * 31 + "AB", "role": "boss"}
    with pytest.raises(JoinError, match="role 'boss' is neither"):
        parse_join_bundle(encode_document(doc))


def test_the_store_keeps_a_hash_of_the_secret_not_the_secret() -> None:
    key = invitation_key("s3cret")
    assert key.startswith(JOINS) and "s3cret" not in key and len(key) == len(JOINS) + 64
    assert invitation_key("s3cret") == key != invitation_key("other")


def test_an_invitation_is_refused_when_unknown_used_expired_or_for_another_role() -> None:
    fresh = Invitation("worker", expires=100.0, created_by="host-1")
    assert refusal(fresh, "worker", now=99.0) is None
    assert "secret is not known to this site" in str(refusal(None, "worker", 0.0))
    used = fresh.redeemed_by("host-4")
    assert "was used already (by host host-4)" in str(refusal(used, "worker", 0.0))
    assert "this join bundle expired at 1970-01-01 00:01:40 UTC" in str(
        refusal(fresh, "worker", now=100.0)
    )
    assert "is for a worker, not a controller" in str(refusal(fresh, "controller", 0.0))
    assert Invitation.from_json(used.to_json()) == used
    with pytest.raises(JoinError, match="unreadable"):
        Invitation.from_json(b"{}")


def test_a_join_request_names_what_it_lacks() -> None:
    good = {"secret": "s", "host": "host-2", "address": "10.0.0.12", "role": "controller",
            "csr": "PEM", "peer-port": 7721}  # fmt: skip
    assert parse_join_request(good).peer_port == 7721
    with pytest.raises(JoinError, match="lacks secret, peer-port"):
        parse_join_request(good | {"secret": "", "peer-port": 0})
    with pytest.raises(JoinError, match="host id 'a b' is not"):
        parse_join_request(good | {"host": "a b"})
    with pytest.raises(JoinError, match="not a JSON object"):
        parse_join_request([good])


@pytest.mark.parametrize(
    ("count", "wanted"),
    [
        (1, None),
        (2, "the site has 2 controllers: an even count tolerates no more failures than 1"),
        (3, None),
        (4, "the site has 4 controllers: an even count tolerates no more failures than 3"),
        (5, None),
        (7, "the site has 7 controllers: use 1, 3 or 5"),
    ],
)
def test_an_even_controller_count_is_warned_about(count: int, wanted: str | None) -> None:
    warning = controller_count_warning(count)
    assert warning == wanted if wanted is None else wanted in str(warning)


def test_invitations_go_a_day_after_they_expire_used_or_not() -> None:
    day = 86400.0
    invitations = {
        JOINS + "fresh": Invitation("worker", 1000.0, "h1"),
        JOINS + "used": Invitation("worker", 1000.0, "h1", used_by="h4"),
        JOINS + "older": Invitation("controller", 500.0, "h2"),
    }
    assert stale_invitations(invitations, 1000.0 + day - 1) == [JOINS + "older"]
    assert stale_invitations(invitations, 1000.0 + day) == sorted(invitations)


def test_leaving_is_refused_to_the_last_controller_and_when_quorum_would_be_at_risk() -> None:
    assert leave_refusal("h4", "worker", ["h1"], {"h1", "h4"}) is None
    assert leave_refusal("h2", "controller", ["h1", "h2"], {"h1", "h2"}) is None
    assert leave_refusal("h1", "controller", [], {"h1"}) is None  # given etcd: no member
    last = leave_refusal("h1", "controller", ["h1"], {"h1", "h3"})
    assert last == (
        "host h1 is the site's last controller: the site's store would go with it (join "
        "another controller first)"
    )
    # three controllers, h3 down: without h1, one of the two left answers, quorum needs two
    risk = leave_refusal("h1", "controller", ["h1", "h2", "h3"], {"h1", "h2"})
    assert risk == (
        "removing host h1's member would put the site's store at risk: of the 2 that would "
        "remain, only 1 answer (h3 down) and quorum needs 2; bring them back first"
    )
    assert leave_refusal("h1", "controller", ["h1", "h2", "h3", "h4"], {"h1", "h2", "h3"}) is None

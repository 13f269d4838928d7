"""Names on the site network: what a name resolves to for whom, and the DNS messages."""

from __future__ import annotations

import struct

import pytest

from enforcer.network.names import (
    NXDOMAIN,
    NameRecord,
    NameTable,
    answer,
    parse_query,
    records_from_json,
    records_to_json,
)


def query(name: str, qtype: int = 1, qid: int = 7) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!2H", qtype, 1)


def addresses_in(reply: bytes) -> tuple[int, list[str]]:
    """(rcode, the A records' addresses): each record is 12 bytes and 4 of address, last."""
    flags, _, count = struct.unpack("!3H", reply[2:8])
    records = reply[len(reply) - 16 * count :]
    out = [".".join(str(b) for b in records[i + 12 : i + 16]) for i in range(0, 16 * count, 16)]
    return flags & 0xF, out


TABLE = NameTable(
    {
        "host-1": [NameRecord("t1", "shop", "server", "0", "10.213.0.2", True)],
        "host-2": [
            NameRecord("t1", "shop", "server", "1", "10.213.4.2", True),
            NameRecord("t1", "shop", "server", "2", "10.213.4.3", False),
            NameRecord("t1", "other", "server", "0", "10.213.4.9", True),
            NameRecord("t2", "shop", "server", "0", "10.213.4.10", True),
        ],
    }
)


def test_a_service_name_gives_its_ready_instances_on_every_host() -> None:
    assert TABLE.resolve("t1", "shop", "server") == ["10.213.0.2", "10.213.4.2"]
    assert TABLE.resolve("t1", "shop", "SERVER.") == ["10.213.0.2", "10.213.4.2"]
    assert TABLE.resolve("t1", "shop", "1.server") == ["10.213.4.2"]


def test_an_instance_that_is_not_ready_is_not_returned() -> None:
    assert TABLE.resolve("t1", "shop", "2.server") is None


def test_another_applications_or_tenants_names_are_unknown() -> None:
    assert TABLE.resolve("t1", "other", "server") == ["10.213.4.9"]
    assert TABLE.resolve("t2", "shop", "server") == ["10.213.4.10"]
    assert TABLE.resolve("t3", "shop", "server") is None
    assert TABLE.resolve("t1", "nope", "server") is None


def test_records_go_through_the_store_and_a_bad_one_is_named() -> None:
    records = [NameRecord("t", "a", "s", "0", "10.0.0.1", True)]
    assert records_from_json(records_to_json(records)) == records
    with pytest.raises(ValueError, match="not a list of name records"):
        records_from_json(b'[["t", "a", "s", "0", "not-an-address", true]]')


def test_an_a_query_is_answered_with_every_address() -> None:
    q = parse_query(query("server"))
    assert (q.id, q.name, q.qtype) == (7, "server", 1)
    reply = answer(q, ["10.213.0.2", "10.213.4.2"])
    assert reply[:2] == b"\0\x07"
    assert addresses_in(reply) == (0, ["10.213.0.2", "10.213.4.2"])


def test_an_unknown_name_is_nxdomain_and_another_type_gets_no_addresses() -> None:
    assert addresses_in(answer(parse_query(query("nope")), None)) == (NXDOMAIN, [])
    assert addresses_in(answer(parse_query(query("server", qtype=28)), ["10.0.0.1"])) == (0, [])


@pytest.mark.parametrize(
    "data",
    [b"", b"\0" * 11, query("x")[:-2], struct.pack("!6H", 1, 0x8000, 1, 0, 0, 0) + b"\0" * 5],
)
def test_what_is_not_a_query_is_refused_as_such(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_query(data)

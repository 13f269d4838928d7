"""Names on the site network (pure): which addresses a name has for an application, and the
DNS messages that carry the answer.

Every host publishes its instances (`NAMES`<host>, under its lease: a dead host's go with it):
tenant, application, service, instance number, address, ready. On every host the table of all
of them answers, for a client of application A of tenant T, `<service>` with the addresses of
A's ready instances of that service on any host, and `<n>.<service>` with instance n's; an
instance that is not ready is not returned, and another application's or tenant's names are
not known. The DNS part reads a query (one question) and writes an answer (A records); only
what this needs of RFC 1035.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "NAMES",
    "NameRecord",
    "NameTable",
    "Query",
    "answer",
    "parse_query",
    "records_from_json",
    "records_to_json",
]

NAMES = "/site/network/names/"  # <host id> -> its instances' names, under its lease
TTL = 2  # seconds: instances move; resolvers ask again soon
TYPE_A, CLASS_IN = 1, 1
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5


@dataclass(frozen=True, order=True)
class NameRecord:
    tenant: str
    app: str
    service: str
    instance: str  # the instance's number ("0" of web.main.0), or its id's last part
    address: str
    ready: bool


def records_to_json(records: Iterable[NameRecord]) -> bytes:
    body = [[r.tenant, r.app, r.service, r.instance, r.address, r.ready] for r in sorted(records)]
    return json.dumps(body).encode()


def records_from_json(data: bytes) -> list[NameRecord]:
    """The records; ValueError naming what is wrong."""
    try:
        raw = json.loads(data)
        out = []
        for t, a, s, i, addr, ready in raw:
            ipaddress.IPv4Address(addr)
            out.append(NameRecord(str(t), str(a), str(s), str(i), str(addr), ready is True))
        return out
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a list of name records ({exc})") from None


class NameTable:
    """All hosts' records, to answer names (see the module documentation)."""

    def __init__(self, by_host: Mapping[str, Iterable[NameRecord]] = {}) -> None:
        self._names: dict[tuple[str, str, str], list[str]] = {}
        for records in by_host.values():
            for r in records:
                if not r.ready:
                    continue
                for name in (r.service, f"{r.instance}.{r.service}"):
                    self._names.setdefault((r.tenant, r.app, name.lower()), []).append(r.address)
        for addresses in self._names.values():
            addresses.sort(key=lambda a: ipaddress.IPv4Address(a))

    def resolve(self, tenant: str, app: str, name: str) -> list[str] | None:
        """The addresses of `name` for a client of (tenant, app); None: a name it lacks."""
        found = self._names.get((tenant, app, name.rstrip(".").lower()))
        return list(found) if found is not None else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameTable) and other._names == self._names

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    name: str  # dotted, without the final dot
    qtype: int
    qclass: int
    question: bytes  # the question section as received


def parse_query(data: bytes) -> Query:
    """One DNS query; ValueError when it is not one."""
    if len(data) < 12:
        raise ValueError("shorter than a DNS header")
    qid, flags, qd, _an, _ns, _ar = struct.unpack("!6H", data[:12])
    if flags & 0x8000 or qd != 1:
        raise ValueError("not a query with one question")
    labels, pos = [], 12
    while True:
        if pos >= len(data):
            raise ValueError("the name runs past the message")
        n = data[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0 or pos + n > len(data):
            raise ValueError("a label that is compressed or too long")
        labels.append(data[pos : pos + n].decode("ascii", errors="replace"))
        pos += n
    if pos + 4 > len(data):
        raise ValueError("no type and class")
    qtype, qclass = struct.unpack("!2H", data[pos : pos + 4])
    return Query(qid, flags, ".".join(labels), qtype, qclass, data[12 : pos + 4])


def answer(query: Query, addresses: list[str] | None, rcode: int = NOERROR) -> bytes:
    """The response to `query`: A records for `addresses` (when it asked for A); a name with
    no answer of another type is NOERROR with none; None is NXDOMAIN."""
    if addresses is None and rcode == NOERROR:
        rcode = NXDOMAIN
    records = b""
    count = 0
    if addresses and query.qtype == TYPE_A and query.qclass == CLASS_IN:
        for a in addresses:
            records += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4)
            records += ipaddress.IPv4Address(a).packed
            count += 1
    flags = 0x8000 | 0x0400 | (query.flags & 0x0100) | 0x0080 | rcode  # QR AA RD RA
    header = struct.pack("!6H", query.id, flags, 1, count, 0, 0)
    return header + query.question + records

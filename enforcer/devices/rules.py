"""Device rules (DESIGN.md, "Devices"): the ``[[devices.rule]]`` tables of enforcer.toml and
`classify`, which gives a device's labels from its udev properties (pure).

A rule labels every device whose udev properties match all its shell-style globs; the built-in
``camera`` label goes to every video4linux capture device.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["BUILTIN_LABELS", "CAMERA", "DeviceRule", "classify", "parse_rules"]

CAMERA = "camera"
BUILTIN_LABELS = frozenset({CAMERA})

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_RULE_KEYS = ("label", "match")


@dataclass(frozen=True)
class DeviceRule:
    """One ``[[devices.rule]]``: every property in `match` must match its shell-style glob."""

    label: str
    match: tuple[tuple[str, str], ...]  # sorted (udev property, glob) pairs, at least one
    index: int = 0  # position in the config, for messages

    def matches(self, properties: Mapping[str, str]) -> bool:
        for key, pattern in self.match:
            value = properties.get(key)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True


def parse_rules(raw: Sequence[Mapping[str, Any]]) -> list[DeviceRule]:
    """The ``devices.rule`` array of enforcer.toml; raises ValueError naming the rule index."""
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise ValueError("devices.rule: must be an array of tables ([[devices.rule]])")
    rules: list[DeviceRule] = []
    for index, entry in enumerate(raw):
        where = f"devices.rule[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be a table with label and match")
        unknown = sorted(str(k) for k in entry if k not in _RULE_KEYS)
        if unknown:
            raise ValueError(
                f"{where}: unknown key {', '.join(repr(k) for k in unknown)} "
                "(a rule has only label and match)"
            )
        label = entry.get("label")
        if not isinstance(label, str) or not label:
            raise ValueError(f'{where}.label: missing; give the device label, e.g. "camera"')
        if _LABEL.fullmatch(label) is None:
            raise ValueError(
                f'{where}.label: "{label}" is not a label: use letters, digits and . _ / -, '
                "starting with a letter or digit"
            )
        match = entry.get("match")
        if not isinstance(match, Mapping):
            raise ValueError(
                f"{where}.match: missing; give udev properties to match, "
                'e.g. match = { SUBSYSTEM = "tty" }'
            )
        if not match:
            raise ValueError(
                f"{where}.match: is empty and would match every device; "
                "name at least one udev property"
            )
        pairs: list[tuple[str, str]] = []
        for key, pattern in match.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"{where}.match: property names must be non-empty text")
            if not isinstance(pattern, str):
                raise ValueError(
                    f'{where}.match.{key}: {pattern!r} is not text; quote it: "{pattern}"'
                )
            pairs.append((key, pattern))
        rules.append(DeviceRule(label=label, match=tuple(sorted(pairs)), index=index))
    return rules


def classify(properties: Mapping[str, str], rules: Sequence[DeviceRule]) -> frozenset[str]:
    """The labels of one device: every matching rule's label, plus the built-in ``camera``."""
    labels = {rule.label for rule in rules if rule.matches(properties)}
    if (
        properties.get("SUBSYSTEM") == "video4linux"
        and ":capture:" in properties.get("ID_V4L_CAPABILITIES", "")
        and properties.get("DEVNAME")
    ):
        labels.add(CAMERA)
    return frozenset(labels)

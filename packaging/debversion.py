#!/usr/bin/python3
"""Print the Debian version for pyproject.toml's PEP 440 version (used by build-debs.sh).

Pre-releases sort before their release in Debian only with "~": 1.2.0rc1 -> 1.2.0~rc1,
1.2.0.dev3 -> 1.2.0~~dev3 (before 1.2.0~a1); post-releases and local versions sort after
it: 1.2.0.post1 -> 1.2.0+post1, 1.2.0+g1234 -> 1.2.0+g1234.

    python3 packaging/debversion.py [pyproject.toml]
"""

from __future__ import annotations

import re
import sys
import tomllib

_PEP440 = re.compile(
    r"v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|b|rc|alpha|beta|c|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?P<post>post|rev|r)[-_.]?(?P<post_n>\d*))?"
    r"(?:[-_.]?(?P<dev>dev)[-_.]?(?P<dev_n>\d*))?"
    r"(?:\+(?P<local>[a-z0-9.]+))?"
)
_PRE = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}


def debian_version(pep440: str) -> str:
    """The Debian version for a PEP 440 version; raises ValueError for anything else."""
    m = _PEP440.fullmatch(pep440.strip().lower())
    if m is None:
        raise ValueError(f"{pep440!r} is not a PEP 440 version")
    out = m["release"]
    if m["pre"]:
        out += f"~{_PRE.get(m['pre'], m['pre'])}{m['pre_n'] or 0}"
    if m["post"]:
        out += f"+post{m['post_n'] or 0}"
    if m["dev"]:  # 1.2.0.dev3 sorts before 1.2.0a1 too: "~~"
        out += ("~" if m["pre"] or m["post"] else "~~") + f"dev{m['dev_n'] or 0}"
    if m["local"]:
        out += f"+{m['local']}"
    return out


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"
    with open(path, "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    try:
        print(debian_version(version))
    except ValueError as exc:
        sys.exit(f"debversion.py: {path}: {exc}")


if __name__ == "__main__":
    main()

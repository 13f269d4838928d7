"""How far the error forwarder has read each container's log, kept across enforcer restarts.

One small JSON file (container id -> Docker timestamp of the last line read), replaced whole
(write, then rename), so that after a restart the forwarder goes on from that line: errors a
container wrote while the enforcer was down or restarting are forwarded, none twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["ReadMarks"]

log = logging.getLogger(__name__)


class ReadMarks:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        """The marks saved last; none when the file is missing or unreadable (said once)."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s unreadable (%s): containers running now are followed from now on",
                        self.path, exc)  # fmt: skip
            return {}
        if not isinstance(doc, dict):
            return {}
        return {str(k): v for k, v in doc.items() if isinstance(v, str) and v}

    def save(self, marks: dict[str, str]) -> None:
        """Replace the file with `marks`; a failure (a full disk) is logged, the last file stays."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(marks, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot save how far container logs were read to %s: %s", self.path, exc)

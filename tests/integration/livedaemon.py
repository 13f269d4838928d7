"""Moved to tests.support.livedaemon; re-exported until the imports are rewritten."""

from tests.support.livedaemon import SITE, LiveDaemon

__all__ = ["SITE", "LiveDaemon"]

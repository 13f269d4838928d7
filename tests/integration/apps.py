"""Moved to tests.support.apps; re-exported until the imports are rewritten."""

from tests.support.apps import app, container, service, sleeper, web

__all__ = ["app", "container", "service", "sleeper", "web"]

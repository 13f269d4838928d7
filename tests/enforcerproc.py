"""Moved to tests.support.enforcer; re-exported until the imports are rewritten."""

from tests.support.enforcer import EnforcerProc

__all__ = ["EnforcerProc"]

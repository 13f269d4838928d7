"""The enforcer daemon: wires config, store, devices, scheduler, reconciler, API and control link.

`Daemon` (`core`) implements `enforcer.facade.Enforcer` by handing each call to the part that
does it; its streams (`streams`) and its part in a multi-host site (`cluster`) are parts of it;
`run_daemon` (`main`) serves it. Stopping the daemon never stops containers: the next start
re-adopts them by their labels and config hashes.
"""

from enforcer.daemon.core import Daemon
from enforcer.daemon.main import run_daemon

__all__ = ["Daemon", "run_daemon"]

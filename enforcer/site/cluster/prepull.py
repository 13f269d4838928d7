"""Which images a host of a multi-host site pulls ahead of time (pure).

Every host that could run an instance keeps its images, so that a move after a host died
needs no registry (the uplink is often down then too). A host could run a service when it
passes the service's static checks: its labels match, it has the devices, the GPUs, the CPUs
and memory in total (`enforcer.schedule.feasibility.static_reason`); load is left out, since
it changes.
"""

from __future__ import annotations

from collections.abc import Mapping

from enforcer.schedule.feasibility import label_expression, static_reason
from enforcer.schedule.hosts import HostState
from enforcer.shared.labels import LabelSyntaxError
from enforcer.shared.spec.model import Application

__all__ = ["images_for"]


def images_for(host: HostState, apps: Mapping[str, Application]) -> frozenset[str]:
    """The image references of every service of `apps` that `host` could run."""
    out: set[str] = set()
    for app in apps.values():
        for service in app.services:
            text = service.placement.match_host_labels
            expr = label_expression(text)
            if isinstance(expr, LabelSyntaxError):
                continue
            reason = static_reason(
                host, host.label_map, expr, text, service.placement, service.resources
            )
            if reason is None:
                out.update(c.image for c in service.containers)
    return frozenset(out)

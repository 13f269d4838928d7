"""Demands: the instances that applications ask for, and what no host could ever give them.

A replicated service expands into ``<app>.<service>.<n>``; a one-per-matching-host service into
``<app>.<service>.<host-id>`` for each host that qualifies (its labels match, it has the devices
and enough GPUs in total). `warnings` tells what no host of the site can meet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from enforcer.devices.rules import BUILTIN_LABELS
from enforcer.schedule.feasibility import (
    describe_cpus,
    describe_gpus,
    describe_memory,
    invalid_request,
    label_expression,
    milli,
)
from enforcer.schedule.hosts import HostState
from enforcer.shared.labels import Expr, LabelSyntaxError
from enforcer.shared.spec.model import Application, Mode, Placement, Priority, Resources, Service

__all__ = ["InstanceDemand", "demands", "warnings"]


@dataclass(frozen=True)
class InstanceDemand:
    instance_id: str
    app: str
    service: str
    tenant: str
    priority: Priority
    placement: Placement
    resources: Resources
    host: str | None = None  # one-per-matching-host: the only host it may run on
    ordinal: int = 0  # n of a replicated instance
    host_ports: tuple[str, ...] = ()  # ingress "port/protocol" it publishes on its host

    @property
    def order(self) -> tuple[int, str, str, int, str]:
        """Scheduling order: higher priority first, then by name (replica numbers as numbers)."""
        return (-int(self.priority), self.app, self.service, self.ordinal, self.host or "")


def _matcher(service: Service) -> Expr | LabelSyntaxError:
    return label_expression(service.placement.match_host_labels)


def _qualifies(host: HostState, service: Service, expr: Expr) -> bool:
    """Whether a one-per-matching-host service gets an instance on `host`."""
    placement = service.placement
    if not expr.matches(host.label_map):
        return False
    if invalid_request(placement, service.resources) is not None:
        return True  # an instance that shows why it cannot run
    return placement.gpus <= host.gpus and all(d in host.device_labels for d in placement.devices)


def demands(
    applications: Sequence[Application], hosts: Sequence[HostState]
) -> list[InstanceDemand]:
    """Every instance the applications ask for, in scheduling order."""
    out: list[InstanceDemand] = []
    for app in applications:
        for service in app.services:
            base = InstanceDemand(
                "", app.name, service.name, app.tenant, service.priority,
                service.placement, service.resources,
                host_ports=tuple(f"{i.host_port}/{i.protocol}" for i in service.network.ingress),
            )  # fmt: skip
            prefix = f"{app.name}.{service.name}."
            if service.mode is Mode.ONE_PER_MATCHING_HOST:
                expr = _matcher(service)
                if isinstance(expr, LabelSyntaxError):
                    continue
                for host in hosts:
                    if _qualifies(host, service, expr):
                        out.append(replace(base, instance_id=prefix + host.id, host=host.id))
            else:
                for n in range(max(service.replicas, 0)):
                    out.append(replace(base, instance_id=f"{prefix}{n}", ordinal=n))
    out.sort(key=lambda d: d.order)
    return out


def warnings(applications: Sequence[Application], hosts: Sequence[HostState]) -> list[str]:
    out: list[str] = []
    known = set(BUILTIN_LABELS)
    for host in hosts:
        known |= host.defined_device_labels | host.device_labels
    rules_known = any(host.defined_device_labels for host in hosts)  # else: hand-made hosts
    most_gpus = max((h.gpus for h in hosts), default=0)
    most_cpus = max((milli(h.cpus) for h in hosts), default=0)
    most_memory = max((h.memory for h in hosts), default=0)
    for app in applications:
        for service in app.services:
            name = f"{app.name}.{service.name}"
            placement, resources = service.placement, service.resources
            expr = _matcher(service)
            if isinstance(expr, LabelSyntaxError):
                text = placement.match_host_labels
                out.append(f'{name}: match-host-labels "{text}" does not parse: {expr}')
                continue
            invalid = invalid_request(placement, resources)
            if invalid is not None:
                out.append(f"{name}: {invalid}")
                continue
            if not hosts:
                continue
            for label in placement.devices:
                if rules_known and label not in known:
                    out.append(f'{name}: no device rule on any host defines the label "{label}"')
            if placement.gpus > most_gpus:
                needs = describe_gpus(placement.gpus)
                out.append(f"{name}: needs {needs}, more than any host has")
            if milli(resources.cpus) > most_cpus:
                needs = describe_cpus(milli(resources.cpus))
                out.append(f"{name}: needs {needs}, more than any host has")
            if resources.memory > most_memory:
                needs = describe_memory(resources.memory)
                out.append(f"{name}: needs {needs} memory, more than any host has")
            if service.mode is Mode.ONE_PER_MATCHING_HOST and not any(
                _qualifies(h, service, expr) for h in hosts
            ):
                out.append(f"{name}: no host qualifies for one-per-matching-host")
    return sorted(set(out))

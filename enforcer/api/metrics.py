"""Prometheus text exposition (format 0.0.4) of the enforcer's state.

Every family has ``# HELP`` and ``# TYPE``; label values are escaped as the format says. The
reconcile-duration histogram is fed by the reconciler (one observation per instance pass).
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Sequence

from enforcer.facade import InstanceState, InstanceStatus

__all__ = ["CONTENT_TYPE", "RECONCILE_BUCKETS", "Histogram", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    """A cumulative histogram of durations in seconds."""

    def __init__(self, buckets: Sequence[float] = RECONCILE_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)  # per bucket, not cumulative
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self.buckets, seconds)
        if i < len(self.counts):
            self.counts[i] += 1
        self.count += 1
        self.sum += seconds

    def lines(self, name: str) -> list[str]:
        out, total = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            total += n
            out.append(f'{name}_bucket{{le="{_float(bound)}"}} {total}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {_float(self.sum)}")
        out.append(f"{name}_count {self.count}")
        return out


def _float(value: float) -> str:
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def render_metrics(
    instances: Sequence[InstanceStatus],
    runtime_up: bool,
    started: float,
    reconcile: Histogram | None = None,
) -> str:
    by_state = Counter(i.state for i in instances)
    lines = _family("edgeward_instances", "gauge", "Service instances on this host by state.")
    for state in InstanceState:
        lines.append(f"edgeward_instances{_labels(state=state.value)} {by_state.get(state, 0)}")
    lines += _family("edgeward_instances_ready", "gauge", "Instances that are running and ready.")
    lines.append(f"edgeward_instances_ready {sum(1 for i in instances if i.ready)}")
    lines += _family(
        "edgeward_instance_restarts_total",
        "counter",
        "Restarts of an instance's containers done by the enforcer, per instance.",
    )
    for i in instances:
        labels = _labels(tenant=i.tenant, app=i.app, service=i.service, instance=i.id)
        lines.append(f"edgeward_instance_restarts_total{labels} {i.restarts}")
    lines += _family(
        "edgeward_container_restarts_total",
        "counter",
        "Container restarts done by the enforcer, per container.",
    )
    for i in instances:
        for c in i.containers:
            labels = _labels(app=i.app, instance=i.id, container=c.name)
            lines.append(f"edgeward_container_restarts_total{labels} {c.restarts}")
    lines += _family(
        "edgeward_reconcile_duration_seconds",
        "histogram",
        "Seconds one pass of an instance's reconcile took (compare with Docker, then act).",
    )
    lines += (reconcile or Histogram()).lines("edgeward_reconcile_duration_seconds")
    lines += _family("edgeward_runtime_up", "gauge", "Whether the Docker engine is reachable.")
    lines.append(f"edgeward_runtime_up {int(runtime_up)}")
    lines += _family("edgeward_uptime_seconds", "gauge", "Seconds since the enforcer started.")
    lines.append(f"edgeward_uptime_seconds {time.time() - started:.0f}")
    return "\n".join(lines) + "\n"

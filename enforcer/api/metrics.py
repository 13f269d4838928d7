"""Prometheus text exposition of the enforcer's state."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from enforcer.facade import InstanceState, InstanceStatus


def render_metrics(instances: Sequence[InstanceStatus], runtime_up: bool, started: float) -> str:
    by_state = Counter(i.state for i in instances)
    lines = [
        "# HELP edgeward_instances Service instances on this host by state.",
        "# TYPE edgeward_instances gauge",
    ]
    for state in InstanceState:
        lines.append(f'edgeward_instances{{state="{state.value}"}} {by_state.get(state, 0)}')
    lines += [
        "# HELP edgeward_instances_ready Instances that are running and ready.",
        "# TYPE edgeward_instances_ready gauge",
        f"edgeward_instances_ready {sum(1 for i in instances if i.ready)}",
        "# HELP edgeward_container_restarts_total Container restarts done by the enforcer.",
        "# TYPE edgeward_container_restarts_total counter",
    ]
    for i in instances:
        lines.append(
            f'edgeward_container_restarts_total{{app="{i.app}",instance="{i.id}"}} {i.restarts}'
        )
    lines += [
        "# HELP edgeward_runtime_up Whether the Docker engine is reachable.",
        "# TYPE edgeward_runtime_up gauge",
        f"edgeward_runtime_up {int(runtime_up)}",
        "# HELP edgeward_uptime_seconds Seconds since the enforcer started.",
        "# TYPE edgeward_uptime_seconds gauge",
        f"edgeward_uptime_seconds {time.time() - started:.0f}",
    ]
    return "\n".join(lines) + "\n"

"""How `edge-enforcer` shows the API's records on a terminal: plain functions of the records."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

__all__ = ["describe", "event_line", "host_text", "instance_table", "labels_text", "table"]


def instance_table(instances: Sequence[dict[str, Any]], now: float) -> str:
    """`ps`: one row per instance, with its state and why."""
    rows = [
        [
            str(i.get("id", "")),
            str(i.get("app", "")),
            str(i.get("service", "")),
            str(i.get("host", "")),
            str(i.get("state", "")),
            "yes" if i.get("ready") else "no",
            str(i.get("restarts", 0)),
            instance_reason(i, now),
        ]
        for i in instances
    ]
    headers = ["INSTANCE", "APP", "SERVICE", "HOST", "STATE", "READY", "RESTARTS", "REASON"]
    return table(headers, rows)


def instance_reason(instance: dict[str, Any], now: float) -> str:
    reason = str(instance.get("reason") or "")
    parts = [reason] if reason else []
    code = instance.get("last_exit_code")
    if code is not None and "exit code" not in reason:
        parts.append(f"exit code {code}")
    next_retry = instance.get("next_retry")
    if instance.get("state") == "backoff" and isinstance(next_retry, int | float):
        wait = next_retry - now
        parts.append(f"next retry in {duration(wait)}" if wait >= 0.5 else "retrying now")
    return "; ".join(parts)


def event_line(event: dict[str, Any]) -> str:
    when = event.get("time")
    stamp = (
        datetime.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(when, int | float)
        else "-"
    )
    subject = event.get("instance") or event.get("app") or "-"
    return f"{stamp}  {event.get('kind', '')}  {subject}  {event.get('message', '')}"


def host_text(host: dict[str, Any]) -> str:
    """`devices`: the host's labels, devices, GPUs and capacity."""
    lines: list[str] = []
    inventory = host.get("devices")
    if isinstance(inventory, dict):
        device_list, gpus = inventory.get("devices") or [], inventory.get("gpus") or []
    else:
        device_list, gpus = inventory or [], host.get("gpus") or []
    labels = host.get("labels") or {}
    lines.append(
        f"host {host.get('id', '?')}  " + (labels_text(labels) if labels else "(no labels)")
    )
    lines.append("")
    if device_list:
        rows = [
            [
                str(d.get("node") or d.get("path") or "-"),
                str(d.get("subsystem", "")),
                ",".join(str(label) for label in d.get("labels") or []) or "-",
            ]
            for d in device_list
            if isinstance(d, dict)
        ]
        lines.append(table(["DEVICE", "SUBSYSTEM", "LABELS"], rows))
    else:
        lines.append("no labelled devices")
    lines.append("")
    if gpus:
        rows = [
            [
                str(g.get("index", "")),
                str(g.get("vendor", "")),
                str(g.get("model", "")),
                size(g.get("memory")),
                ",".join(str(n) for n in g.get("nodes") or []),
            ]
            for g in gpus
            if isinstance(g, dict)
        ]
        lines.append(table(["GPU", "VENDOR", "MODEL", "MEMORY", "NODES"], rows))
    else:
        lines.append("no GPUs")
    capacity = host.get("capacity")
    if not isinstance(capacity, dict):
        capacity = {"cpus": host.get("cpus"), "memory": host.get("memory")}
    lines.append("")
    lines.append(
        f"capacity: {capacity.get('cpus', '?')} cpus, {size(capacity.get('memory'))} memory, "
        f"{len(gpus)} GPUs"
    )
    return "\n".join(lines)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def labels_text(labels: Any) -> str:
    if not isinstance(labels, dict):
        return str(labels)
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def describe(value: Any) -> str:
    """A status value in one line: text as is, a mapping as ``state (k=v, ...)``."""
    if isinstance(value, dict):
        head = value.get("state") or value.get("status")
        rest = ", ".join(
            f"{k}={v}"
            for k, v in value.items()
            if k not in ("state", "status") and v not in (None, "")  # nothing to say: left out
        )
        if head is None:
            return rest or "-"
        return f"{head} ({rest})" if rest else str(head)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def duration(seconds: float) -> str:
    """4s, 2m5s, 1h3m, 2d3h."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m" if s % 3600 >= 60 else f"{s // 3600}h"
    return f"{s // 86400}d{s % 86400 // 3600}h" if s % 86400 >= 3600 else f"{s // 86400}d"


def size(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return "?"
    for unit, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if value >= factor:
            amount = value / factor
            return f"{amount:.0f}{unit}" if amount >= 10 else f"{amount:.1f}{unit}"
    return f"{value}B"

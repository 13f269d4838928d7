"""The fleet as Prometheus families: each site's link, and counts over the fleet (sites by
state, instances by state as the sites last reported them, deployments by rollout phase), so
that a scrape of control shows the fleet, not only control itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from control.fleet.rollout import Phase
from control.fleet.state import Fleet

SITE_STATES = ("enrolled", "pending", "revoked")
NO_ROLLOUT = "waiting"  # a deployment whose application has no version yet


def escape(value: str) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def family(
    name: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    metric = f"edgeward_control_{name}"
    lines = [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
    for labels, value in samples:
        text = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
        number = float(value)
        lines.append(f"{metric}{{{text}}} {int(number) if number.is_integer() else number!r}")
    return lines


def fleet_families(fleet: Fleet) -> list[str]:
    sites = sorted(fleet.sites.values(), key=lambda s: s.name)
    polling = fleet.desired.polling
    states = Counter(s.state for s in sites)
    instances: Counter[str] = Counter()
    for site in sites:
        for instance in (site.status or {}).get("instances", []):
            if isinstance(instance, dict) and isinstance(instance.get("state"), str):
                instances[instance["state"]] += 1
    phases = Counter(
        d.rollout.phase.value if d.rollout else NO_ROLLOUT for d in fleet.deployments.values()
    )
    all_phases = sorted({p.value for p in Phase} | {NO_ROLLOUT})
    return [
        *family("site_connected", "1 while the site long-polls control, 0 otherwise.",
                (({"site": s.name}, int(s.name in polling)) for s in sites)),
        *family("site_in_sync", "1 when the site runs the desired state control has for it.",
                (({"site": s.name}, int(s.in_sync)) for s in sites)),
        *family("site_last_contact_timestamp_seconds",
                "When the site last reached control (unix time); absent before its first contact.",
                (({"site": s.name}, s.last_contact) for s in sites if s.last_contact is not None)),
        *family("sites_by_state", "Sites by state: enrolled, pending (not enrolled), revoked.",
                (({"state": st}, states.get(st, 0)) for st in SITE_STATES)),
        *family("instances_by_state", "Instances at the sites by state, as last reported.",
                (({"state": st}, n) for st, n in sorted(instances.items()))),
        *family("deployments_by_phase", "Deployments by the phase of their rollout.",
                (({"phase": p}, phases.get(p, 0)) for p in all_phases)),
    ]  # fmt: skip

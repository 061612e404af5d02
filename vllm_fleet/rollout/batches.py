"""Which hosts a rollout moves, and in which batches: the canary batch first, then batches of a
number or a percentage of the hosts, a cluster's members together as one unit."""

from __future__ import annotations

import fnmatch
import math
import re

from vllm_fleet.rollout.plans import PlannedHost


def parse_batch(text: str) -> tuple[int, bool]:
    """'3' (hosts) or '25%' (of the hosts rolled out); returns (number, is_percent)."""
    match = re.fullmatch(r"([1-9][0-9]*)(%?)", text.strip())
    if not match or (match[2] and int(match[1]) > 100):
        raise ValueError(f"--batch {text!r}: a number of hosts such as 2, or a percentage from 1% to 100%")
    return int(match[1]), bool(match[2])


def split_batches(
    hosts: list[str], canary: int, batch: tuple[int, bool], units: list[list[str]] | None = None
) -> list[list[str]]:
    """The canary batch (the first `canary` hosts), then batches of the rest. units: the hosts that
    move together (a cluster's members, cluster.units): counted as one host each, never split."""
    units = units if units is not None else [[name] for name in hosts]
    number, percent = batch
    size = max(1, math.ceil(len(units) * number / 100)) if percent else number
    first, rest = units[:canary], units[canary:]
    grouped = ([first] if first else []) + [rest[i : i + size] for i in range(0, len(rest), size)]
    return [[name for unit in group for name in unit] for group in grouped]


def units_of(hosts: list[str], plans: dict[str, PlannedHost]) -> list[list[str]]:
    """The hosts as the rollout moves them: a cluster's members together (all of them, whichever
    --limit named), every other host alone."""
    units: list[list[str]] = []
    for name in hosts:
        planned_cluster = plans[name].cluster
        members = (planned_cluster.members if planned_cluster else []) or [name]
        if members not in units:
            units.append(list(members))
    return units


def select(names: list[str], limits: list[str]) -> list[str]:
    """Hosts matching any --limit (a name or a glob), in inventory order; all with no --limit."""
    if not limits:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in limits)]

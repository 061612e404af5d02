"""Releases of the vLLM service on a host: what the deploy compares, and how a new one is named.

A release is a directory under paths.RELEASES_DIR holding the rendered unit, the env file
and release.conf (what tells that it serves). templates/vllm-activate.sh.j2 tries it and
switches the `current` link to it once it serves; this module only reads the probe and names
new releases.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields

from vllm_fleet.facts.probe import Probe, release_key

# The activation command prints this, then the outcome's JSON, as the last line of its output.
OUTCOME_MARK = "vllm-fleet-outcome"
SERVING, ROLLED_BACK, FAILED = "serving", "rolled_back", "failed"


@dataclass(frozen=True)
class Outcome:
    """What one activation did (paths.ACTIVATE_OUTCOME, written by templates/vllm-activate.sh.j2)."""

    host: str
    outcome: str  # SERVING, ROLLED_BACK or FAILED
    release: str
    fallback: str
    message: str


def outcomes_in(log: str) -> dict[str, Outcome]:
    """Each host's activation outcome among the lines of a deploy's output (the last one per host)."""
    found = {}
    for line in log.splitlines():
        _, mark, text = line.partition(OUTCOME_MARK + " ")
        if not mark:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue  # no outcome written: the activation did not get that far
        if isinstance(data, dict) and data.get("outcome") in (SERVING, ROLLED_BACK, FAILED):
            outcome = Outcome(**{f.name: str(data.get(f.name) or "") for f in fields(Outcome)})
            found[outcome.host] = outcome
    return found


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_current(probe: Probe, contents: Mapping[str, str]) -> bool:
    """Whether the current release holds exactly these files and systemd runs its unit."""
    if not probe.release_current:
        return False
    same = all(probe.release_sha.get(release_key(name)) == sha256(text) for name, text in contents.items())
    return same and probe.release_unit_sha == sha256(contents["vllm.service"])


def new_release_id() -> str:
    """Sortable by time, and unique even for two deploys in the same second."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)

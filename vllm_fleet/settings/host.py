"""The knobs of every host, and which host it is."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vllm_fleet.settings.types import LAX, PREFLIGHT_CHECKS, Bounded, InventoryName, Knobs, PreflightCheck, Role, knob


class Identity(Knobs):
    """Which host the settings are of, and what it does: parse sets both, no inventory key does."""

    host: InventoryName = Field(description="The host's inventory name.")
    role: Role = Field("vllm", description="gateway or monitoring for a host of the group of that name, else vllm.")


class Host(Knobs):
    """Every host, whatever it serves: its package manager and its pre-flight checks."""

    package_lock_timeout: Annotated[int, Bounded(0, 7200)] = knob(
        900,
        "Seconds apt and dnf wait for another package manager (unattended-upgrades on a fresh host) to release "
        "its lock before the host fails, naming the process that holds it.",
    )
    preflight_warn_only: Annotated[tuple[PreflightCheck, ...], *LAX] = knob(
        (),
        "Pre-flight checks whose failure only warns (they still run): names from vllm_fleet/checks.py.",
        "a list of pre-flight check names from " + ", ".join(PREFLIGHT_CHECKS),
    )

"""The knobs of every host, and which host it is."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vllm_fleet.settings.types import (
    LAX,
    PREFLIGHT_CHECKS,
    Bounded,
    InventoryName,
    Knobs,
    Port,
    PreflightCheck,
    Role,
    knob,
    or_none,
)

SSH_USER = "a user name of letters, digits and . _ - (up to 32 characters, not starting with - or .)"
SSH_KEY = "the path of a key file on the machine running pyinfra, of letters, digits and . _ - + @ / ~"
# What pyinfra's connection keys may hold: the verify suite hands them to testinfra, which reads
# its host spec as a URL (a user with @ or ? would be read as another host or as options).
SshUser = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")]
SshKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.+@/~][A-Za-z0-9_.+@/~-]*$")]


class Identity(Knobs):
    """Which host the settings are of, and what it does: parse sets both, no inventory key does."""

    host: InventoryName = Field(description="The host's inventory name.")
    role: Role = Field("vllm", description="gateway or monitoring for a host of the group of that name, else vllm.")
    # pyinfra's connection keys, checked as the firewall and the verify suite use them.
    ssh_port: Port = knob(22, "The port pyinfra reaches the host's SSH server at (pyinfra's ssh_port).")
    ssh_user: SshUser | None = knob(None, "The user pyinfra logs in as (pyinfra's ssh_user).", or_none(SSH_USER))
    ssh_key: SshKey | None = knob(None, "The key pyinfra logs in with (pyinfra's ssh_key).", or_none(SSH_KEY))


class Host(Knobs):
    """Every host, whatever it serves: its package manager and its pre-flight checks."""

    package_lock_timeout: Annotated[int, Bounded(0, 7200)] = knob(
        900,
        "Seconds apt and dnf wait for another package manager (unattended-upgrades on a fresh host) to release "
        "its lock before the host fails, naming the process that holds it.",
    )
    preflight_warn_only: Annotated[tuple[PreflightCheck, ...], *LAX] = knob(
        (),
        "Pre-flight checks whose failure only warns (they still run): names from vllm_fleet/checks/.",
        "a list of pre-flight check names from " + ", ".join(PREFLIGHT_CHECKS),
    )

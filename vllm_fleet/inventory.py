"""An inventory validated as one fleet, for every command: `plan` shows each refused host and
plans the others, the deploy (and `hosts`, which the verify suite reads) refuses the whole run.

The one module of ours that imports pyinfra's CLI (tests/unit/test_repo_hygiene.py): importing
pyinfra_cli patches the process with gevent, which the verify suite's pytest-xdist workers and
the unit tier's do not survive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra.api import Inventory, State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state

from vllm_fleet.rules import check_fleet, validate
from vllm_fleet.settings import KNOBS, Settings, SettingsError
from vllm_fleet.settings.parsing import is_secret

# How public_values shows a secret that is set.
SHOWN_SET = "<set>"
# What such a secret is read back as: it satisfies the secret rule, so the settings validate,
# and says only that the host holds a value (the verify suite reads the API key on the host).
SET_ON_THE_HOST = "<set-on-the-host>"  # noqa: S105 (a marker, not a secret)


def load_inventory(path: str, repo: Path) -> Inventory:
    """An inventory file loaded as the pyinfra CLI would, group_data included."""
    # Imported here, not at the top: the deploy's tasks (under pyinfra's CLI already) and the
    # verify suite's workers (for public_settings) import this module without loading a file.
    from pyinfra_cli.inventory import make_inventory

    from vllm_fleet.ansible_inventory import pyinfra_inventory

    with ctx_state.use(State()):
        return make_inventory(pyinfra_inventory(path), cwd=str(repo))


def connection(host) -> dict:
    """How pyinfra reaches a host, as `hosts` prints it for the verify suite."""
    data = host.data
    keys = ("ssh_hostname", "ssh_port", "ssh_user", "ssh_key", "_sudo")
    return {key: data.get(key) for key in keys if data.get(key) is not None}


def sources(host) -> dict[str, str]:
    """Where each setting of a host comes from: host data, a group's data, or the default."""
    inventory = host.inventory
    own = inventory.get_host_data(host.name)
    result = {}
    for name in KNOBS:
        if name in own:
            result[name] = "host"
            continue
        groups = [g for g in host.groups if name in inventory.get_group_data(g)]
        if groups:
            result[name] = f"group {groups[-1]}"
        elif name in inventory.get_data():
            result[name] = "group all"
    return result


@dataclass(frozen=True)
class Validation:
    """Every host of an inventory checked, not only those a --limit or --host selects: an
    inventory with a bad host is a broken inventory."""

    # Each host whose own data is valid, in inventory order: the fleet the rules across hosts
    # check each host against, and `plan` plans the hosts it does not refuse with.
    settings: dict[str, Settings]
    # Each refused host's reason: those refused by their own data first, then by a rule across hosts.
    refusals: dict[str, SettingsError]

    def fleet(self) -> dict[str, Settings]:
        """Every host's settings, or PyinfraError naming each refused host: the deploy's all or nothing."""
        if self.refusals:
            lines = "\n  ".join(str(exc) for exc in self.refusals.values())
            raise PyinfraError(f"invalid settings, nothing was changed on any host:\n  {lines}")
        return self.settings


def validate_inventory(inventory: Inventory) -> Validation:
    settings: dict[str, Settings] = {}
    refusals: dict[str, SettingsError] = {}
    for host in inventory:
        try:
            settings[host.name] = validate(host.name, host.data.dict(), host.groups)
        except SettingsError as exc:
            refusals[host.name] = exc
    for name, valid in settings.items():
        try:
            check_fleet(valid, settings)
        except SettingsError as exc:
            refusals[name] = exc
    return Validation(settings, refusals)


_validated: dict[int, Validation] = {}


def fleet_settings(host) -> dict[str, Settings]:
    """Every host's settings in this host's inventory (validated once per inventory, the first
    host's turn), or PyinfraError: one bad host and the deploy touches none."""
    key = id(host.inventory)
    if key not in _validated:
        _validated[key] = validate_inventory(host.inventory)
    return _validated[key].fleet()


def settings_for(host) -> Settings:
    """This host's settings, validating the whole inventory on first use."""
    return fleet_settings(host)[host.name]


def public_settings(name: str, role: str, values: Mapping[str, Any]) -> Settings:
    """A host's settings read back, validated, from public_values (what `hosts` prints): each
    secret that is set as SET_ON_THE_HOST."""
    knobs = {key: SET_ON_THE_HOST if is_secret(key) and value == SHOWN_SET else value for key, value in values.items()}
    return Settings.model_validate({**knobs, "host": name, "role": role})

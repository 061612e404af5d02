"""Validating a whole pyinfra inventory against the settings schema."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import Inventory, State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state

from vllm_fleet.rules import check_fleet, validate
from vllm_fleet.settings import KNOBS, Settings, SettingsError


def load_inventory(path: str, repo: Path) -> Inventory:
    """An inventory file loaded as the pyinfra CLI would, group_data included."""
    # Imported here: pyinfra_cli patches the process with gevent on import, which the verify
    # suite's workers (which import this module through the tasks' helpers) do not survive.
    from pyinfra_cli.inventory import make_inventory

    from vllm_fleet.ansible_inventory import pyinfra_inventory

    with ctx_state.use(State()):
        return make_inventory(pyinfra_inventory(path), cwd=str(repo))


def host_data(host) -> dict:
    return host.data.dict()


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


def validate_inventory(inventory: Inventory) -> dict[str, Settings]:
    """Settings for every host, or PyinfraError naming the first bad host.

    Every host is checked, not only those a --limit selects: an inventory with a
    bad host is a broken inventory, and it is refused before anything runs.
    """
    result = {}
    errors = []
    for host in inventory:
        try:
            result[host.name] = validate(host.name, host_data(host), host.groups)
        except SettingsError as exc:
            errors.append(str(exc))
    for settings in result.values():
        try:
            check_fleet(settings, result)
        except SettingsError as exc:
            errors.append(str(exc))
    if errors:
        raise PyinfraError("invalid settings, nothing was changed on any host:\n  " + "\n  ".join(errors))
    return result


_cache: dict[int, dict[str, Settings]] = {}


def fleet_settings(host) -> dict[str, Settings]:
    """Every host's settings in this host's inventory, validated once per inventory."""
    inventory = host.inventory
    key = id(inventory)
    if key not in _cache:
        _cache[key] = validate_inventory(inventory)
    return _cache[key]


def settings_for(host) -> Settings:
    """This host's settings, validating the whole inventory on first use."""
    return fleet_settings(host)[host.name]

"""An inventory validated as one fleet, for every command: `plan` shows each refused host and
plans the others; the deploy, `hosts`, the rollout and the verify suite refuse the whole run.

The one module of ours that imports pyinfra's CLI (tests/unit/test_repo_hygiene.py), for its
inventory loader only, without the package's first act: `pyinfra_cli/__init__.py` patches the
whole process with gevent, which the verify suite's pytest-xdist workers and the unit tier's do
not survive.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api import Inventory, State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.context import ctx_state

from vllm_fleet.machines import check_destinations
from vllm_fleet.pyinfra_log import redact
from vllm_fleet.rules import check_fleet, validate
from vllm_fleet.settings import KNOBS, Settings, SettingsError
from vllm_fleet.settings.parsing import is_secret
from vllm_fleet.settings.secrets import Redaction, redaction_of


def _pyinfra_cli_package() -> None:
    """Make `pyinfra_cli`'s modules importable without running its `__init__` (gevent's
    monkey.patch_all): an empty package of the same path stands in for it. Under pyinfra's own
    CLI (the deploy) the real package is loaded already and is used as it is."""
    if "pyinfra_cli" in sys.modules:
        return
    spec = importlib.util.find_spec("pyinfra_cli")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("pyinfra's CLI package is not installed")
    package = types.ModuleType("pyinfra_cli")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["pyinfra_cli"] = package


class InventoryError(ValueError):
    """The inventory file cannot be read as one; the message is one line, naming the file."""


def load_inventory(path: str, repo: Path) -> Inventory:
    """An inventory file loaded as the pyinfra CLI would, group_data included, or InventoryError:
    a file that fails to load (its error in one line: pyinfra's own would print a traceback, and a
    syntax error's line may hold a secret), or a host listed twice in one group (pyinfra keeps the
    last silently)."""
    _pyinfra_cli_package()
    from pyinfra_cli.exceptions import UnexpectedExternalError
    from pyinfra_cli.inventory import _get_groups_from_filename, make_inventory

    from vllm_fleet.ansible_inventory import pyinfra_inventory

    argument = pyinfra_inventory(path)
    try:
        with ctx_state.use(State()):
            if Path(argument).is_file():
                _listed_once(path, _get_groups_from_filename(argument))
            return make_inventory(argument, cwd=str(repo))
    except InventoryError:
        raise
    except Exception as exc:  # an inventory file is Python: whatever it raises, one line
        cause = exc.exception if isinstance(exc, UnexpectedExternalError) else exc
        raise InventoryError(_one_line(path, cause)) from None


def _one_line(path: str, exc: BaseException) -> str:
    from vllm_fleet.ansible_inventory import AnsibleInventoryError

    if isinstance(exc, AnsibleInventoryError):
        return str(exc)  # it names the file and the place
    if isinstance(exc, SyntaxError):
        return f"cannot load {path}: {type(exc).__name__} at line {exc.lineno}: {exc.msg}"
    said = redact(str(exc)).splitlines()[0][:300] if str(exc).strip() else ""
    return f"cannot load {path}: {type(exc).__name__}" + (f": {said}" if said else "")


def _listed_once(path: str, groups: dict) -> None:
    for group, members in groups.items():
        hosts = members[0] if isinstance(members, tuple) else members
        names = [host[0] if isinstance(host, tuple) else host for host in hosts]
        twice = sorted({str(n) for n in names if names.count(n) > 1})
        if twice:
            raise InventoryError(f"{path}: group {group} lists host {twice[0]} twice: pyinfra would keep one of them")


def connection(host) -> dict:
    """How pyinfra reaches a host: what `hosts` prints and the verify suite connects with."""
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
    # Every secret of the inventory, valid or not, to hide from whatever a command prints.
    redaction: Redaction

    def fleet(self) -> dict[str, Settings]:
        """Every host's settings, or PyinfraError naming each refused host: the deploy's all or nothing."""
        if self.refusals:
            lines = self.redaction.hide("\n  ".join(str(exc) for exc in self.refusals.values()))
            raise PyinfraError(f"invalid settings, nothing was changed on any host:\n  {lines}")
        return self.settings


def validate_inventory(inventory: Inventory) -> Validation:
    settings: dict[str, Settings] = {}
    refusals: dict[str, SettingsError] = {}
    # Every secret-named key's value, as written: the validated settings' secrets come from these.
    secrets: list = []
    for host in inventory:
        data = host.data.dict()
        secrets += [value for key, value in data.items() if is_secret(key)]
        try:
            settings[host.name] = validate(host.name, data, host.groups)
        except SettingsError as exc:
            refusals[host.name] = exc
    for name, valid in settings.items():
        try:
            check_fleet(valid, settings)
        except SettingsError as exc:
            refusals[name] = exc
    for name, refused in check_destinations((host.name, host.data.dict()) for host in inventory).items():
        refusals.setdefault(name, refused)
    return Validation(settings, refusals, redaction_of(secrets))


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

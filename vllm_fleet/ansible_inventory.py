"""Ansible's YAML inventory (hosts, children, vars), read as pyinfra groups.

Teams coming from NVIDIA's Ansible roles keep the inventory they have. Each host's variables
are merged the way Ansible merges them (the all group, then parent groups before their
children, then the host itself, later winning) and become the host's data; a group's hosts
are its own and its children's. Ansible's connection variables become pyinfra's
(ansible_host -> ssh_hostname, ...); other ansible_* variables mean nothing here and are
dropped. The settings are then validated like any other inventory's.

    pyinfra inventories/ansible.py deploy.py   # VLLM_FLEET_ANSIBLE_INVENTORY names the YAML file
    vllm-fleet plan inventories/hosts.yml       # every vllm-fleet command takes the YAML file itself
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vllm_fleet.repository import ANSIBLE_SHIM

# The pyinfra inventory that reads the YAML file named by this variable.
SHIM = ANSIBLE_SHIM
PATH_VARIABLE = "VLLM_FLEET_ANSIBLE_INVENTORY"
SUFFIXES = (".yml", ".yaml")

CONNECTION = {
    "ansible_host": "ssh_hostname",
    "ansible_ssh_host": "ssh_hostname",
    "ansible_port": "ssh_port",
    "ansible_ssh_port": "ssh_port",
    "ansible_user": "ssh_user",
    "ansible_ssh_user": "ssh_user",
    "ansible_ssh_private_key_file": "ssh_key",
    "ansible_become": "_sudo",
    "ansible_become_user": "_sudo_user",
}
SECTION_KEYS = {"hosts", "children", "vars"}


class AnsibleInventoryError(ValueError):
    """The YAML is not an Ansible inventory; the message names the file and where."""


def is_ansible(path: str) -> bool:
    return path.endswith(SUFFIXES)


def pyinfra_inventory(path: str) -> str:
    """The inventory argument pyinfra takes for `path` (the shim for a YAML file), with the
    environment variable the shim reads set in this process (so children inherit it)."""
    if not is_ansible(path):
        return path
    os.environ[PATH_VARIABLE] = str(Path(path).resolve())
    return str(SHIM)


class _StrictLoader(yaml.SafeLoader):
    """YAML as an inventory should be written: a key once per mapping (PyYAML keeps the last one
    silently), no anchors or aliases (an alias can expand without bound, or contain itself)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not read in an inventory: write the value out", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {str(key)[:60]!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_error(path: str, exc: yaml.YAMLError) -> str:
    """A YAML error in one line, by its place and problem only: PyYAML's own message quotes the
    line, which may hold a secret."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"{path}: cannot read it as YAML: {where}{problem}"


def load(path: str) -> dict[str, tuple[list, dict]]:
    """Group name -> (hosts as (name, data), {}) for a pyinfra inventory file's module scope."""
    try:
        document = yaml.load(Path(path).read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except OSError as exc:
        raise AnsibleInventoryError(f"{path}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise AnsibleInventoryError(_yaml_error(path, exc)) from None
    except RecursionError:
        raise AnsibleInventoryError(f"{path}: cannot read it as YAML: nested too deep") from None
    if not isinstance(document, Mapping) or not document:
        raise AnsibleInventoryError(f"{path}: an Ansible inventory is a mapping of group names (all: ...)")
    reader = _Reader(path)
    top = document["all"] if set(document) == {"all"} else {"children": dict(document)}
    reader.group("all", top, [])
    groups: dict[str, tuple[list, dict]] = {}
    for name, members in reader.members.items():
        if name == "all":
            continue
        groups[name] = ([(host, reader.host_data(host)) for host in members], {})
    listed = {host for members, _ in groups.values() for host, _ in members}
    ungrouped = [host for host in reader.members["all"] if host not in listed]
    if ungrouped:
        groups["ungrouped"] = ([(host, reader.host_data(host)) for host in ungrouped], {})
    return groups


class _Reader:
    def __init__(self, path: str):
        self.path = path
        self.members: dict[str, list[str]] = {}
        self.group_vars: dict[str, dict] = {}
        self.host_vars: dict[str, dict] = {}
        self.host_groups: dict[str, list[list[str]]] = {}  # host -> each chain of groups it is in

    def _where(self, chain: list[str]) -> str:
        return f"{self.path}: group {' > '.join(chain)}"

    def group(self, name: str, section: Any, parents: list[str]) -> list[str]:
        chain = [*parents, name]
        if name in parents:
            raise AnsibleInventoryError(f"{self._where(chain)}: a group cannot contain itself")
        if section is None:
            section = {}
        if not isinstance(section, Mapping) or not set(section) <= SECTION_KEYS:
            raise AnsibleInventoryError(
                f"{self._where(chain)}: a group is a mapping of hosts, children and vars (got {_kind(section)})"
            )
        variables = section.get("vars") or {}
        if not isinstance(variables, Mapping):
            raise AnsibleInventoryError(f"{self._where(chain)}: vars must be a mapping")
        self.group_vars.setdefault(name, {}).update(variables)
        members = self.members.setdefault(name, [])
        hosts = section.get("hosts") or {}
        if not isinstance(hosts, Mapping):
            raise AnsibleInventoryError(f"{self._where(chain)}: hosts must be a mapping of host names to variables")
        for host, host_vars in hosts.items():
            if host_vars is not None and not isinstance(host_vars, Mapping):
                raise AnsibleInventoryError(f"{self._where(chain)}: host {host}: its variables must be a mapping")
            self.host_vars.setdefault(str(host), {}).update(host_vars or {})
            self.host_groups.setdefault(str(host), []).append(chain)
            _add(members, str(host))
        children = section.get("children") or {}
        if not isinstance(children, Mapping):
            raise AnsibleInventoryError(f"{self._where(chain)}: children must be a mapping of group names")
        for child, child_section in children.items():
            for host in self.group(str(child), child_section, chain):
                _add(members, host)
        return members

    def host_data(self, host: str) -> dict[str, Any]:
        # Ansible's order: all, then groups by depth (parents before children), the host last.
        depth: dict[str, int] = {}
        for chain in self.host_groups[host]:
            for level, group in enumerate(chain):
                depth[group] = max(depth.get(group, 0), level)
        merged: dict[str, Any] = {}
        for group in sorted(depth, key=lambda g: (depth[g], g)):
            merged.update(self.group_vars.get(group, {}))
        merged.update(self.host_vars[host])
        data = {}
        for key, value in merged.items():
            if key in CONNECTION:
                data[CONNECTION[key]] = value
            elif not str(key).startswith("ansible_"):
                data[str(key)] = value
        return data


def _add(members: list[str], host: str) -> None:
    if host not in members:
        members.append(host)


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]

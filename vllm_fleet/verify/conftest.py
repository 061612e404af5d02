"""The verify suite: proves each host of a pyinfra inventory serves vLLM.

    vllm-fleet verify inventories/prod.py [--limit HOST ...] [-n 8] [--junit-xml out.xml]
    pytest vllm_fleet/verify --inventory inventories/prod.py ...   (the same, as vllm-fleet runs it)

Hosts, SSH settings and each host's expected state come from the inventory
itself (loaded by pyinfra, group_data included) and our settings schema.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

import pytest
import testinfra

from vllm_fleet import launch, paths
from vllm_fleet.cluster import Place
from vllm_fleet.facts.host import HostFacts
from vllm_fleet.inventory import connection, load_inventory, validate_inventory
from vllm_fleet.plan import HostPlan, resolve_host
from vllm_fleet.repository import REPO, SANDBOX_INVENTORY
from vllm_fleet.settings import Settings
from vllm_fleet.settings.secrets import secrets_withheld


def pytest_addoption(parser):
    parser.addoption(
        "--inventory",
        default=os.environ.get("VLLM_FLEET_INVENTORY", str(SANDBOX_INVENTORY)),
        help="pyinfra inventory whose hosts are verified",
    )
    parser.addoption("--limit", action="append", default=[], help="only this host (repeat for more)")


@dataclass
class Target:
    """One inventory host: its testinfra handle and what it should be running."""

    name: str
    hostspec: str
    connection: dict
    inventory_settings: Settings  # as validated, before sizing
    fleet: dict[str, Settings] = field(default_factory=dict, repr=False)  # every host of the inventory

    @property
    def role(self) -> str:
        return self.inventory_settings.role

    @cached_property
    def host(self):
        return testinfra.get_host(self.hostspec, **self.connection)

    @cached_property
    def facts(self) -> HostFacts:
        """What the host's tools say, read with the deploy's own facts (run over testinfra)."""

        def read_fact(fact):
            output = self.host.run(fact().command()).stdout
            self.tool_output[fact.__name__] = output
            return fact().process(output.splitlines())

        return HostFacts.read(read_fact, self.inventory_settings.accelerator)

    @cached_property
    def tool_output(self) -> dict[str, str]:
        """What each fact's command printed, by the fact's name (for the checks' messages)."""
        return {}

    @property
    def accelerator(self) -> str:
        return self.facts.accelerator(self.inventory_settings.accelerator)

    @property
    def gpus(self) -> list[dict]:
        """The GPUs the host's tools list (nvidia-smi, or rocm-smi's JSON); [] on a CPU host or
        when the tool fails."""
        return self.facts.gpus

    @cached_property
    def plan(self) -> HostPlan:
        """What the deploy resolved for this host: sized from the GPUs the host itself reports."""
        return resolve_host(self.inventory_settings, {}, self.facts, self.fleet)

    @property
    def settings(self) -> Settings:
        return self.plan.settings

    @property
    def place(self) -> Place | None:
        """Its place in a cluster serving one model, None for a host serving alone."""
        return self.plan.cluster

    def api(self, path: str, body: str | None = None, with_key: bool = True):
        """curl on the host; the key goes from the root-only env file to curl's stdin."""
        header = f"sed -n 's/^VLLM_API_KEY=/Authorization: Bearer /p' {paths.ENV_FILE}" if with_key else "true"
        data = f"-H 'Content-Type: application/json' --data-binary {_sh(body)}" if body else ""
        # A cluster's member serves through its leader: asked from the member, across the cluster network.
        place = self.place
        url = (place.leader_url if place and not place.is_leader else launch.local_url(self.settings)) + path
        return self.host.run(f"{header} | curl -sS --max-time 30 -w '\\n%{{http_code}}' -H @- {data} {_sh(url)}")


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _hostspec(name: str, data: dict) -> tuple[str, dict]:
    if name.startswith("@local"):
        return "local://", {"sudo": bool(data.get("_sudo"))}
    user = data.get("ssh_user") or "root"
    address = data.get("ssh_hostname") or name
    spec = f"paramiko://{user}@{address}:{data.get('ssh_port') or 22}"
    connection: dict = {"sudo": bool(data.get("_sudo")), "timeout": 15}
    if data.get("ssh_key"):
        connection["ssh_identity_file"] = data.get("ssh_key")
    return spec, connection


def load_targets(inventory_path: str) -> list[Target]:
    """The inventory's hosts, loaded by pyinfra and validated as the deploy validates them, each
    secret withheld."""
    try:
        inventory = load_inventory(inventory_path, REPO)
        fleet = {name: secrets_withheld(s) for name, s in validate_inventory(inventory).fleet().items()}
    except Exception as exc:  # an inventory file is Python: whatever it raises, verify nothing
        raise pytest.UsageError(f"cannot load {inventory_path}: {exc}") from None
    targets = []
    for host in inventory:
        spec, connection_args = _hostspec(host.name, connection(host))
        targets.append(Target(host.name, spec, connection_args, fleet[host.name], fleet))
    return targets


def pytest_generate_tests(metafunc):
    """`target`: each vLLM host; `gateway`: each gateway host; `monitor`: each monitoring host;
    `any_host`: each host, of any role (of --limit, when given)."""
    config = metafunc.config
    for fixture, role in (("target", "vllm"), ("gateway", "gateway"), ("monitor", "monitoring"), ("any_host", None)):
        if fixture not in metafunc.fixturenames:
            continue
        if not hasattr(config, "_vllm_fleet_targets"):
            limit = set(config.getoption("limit"))
            targets = load_targets(config.getoption("inventory"))
            config._vllm_fleet_all = targets
            config._vllm_fleet_targets = [t for t in targets if not limit or t.name in limit]
        targets = [t for t in config._vllm_fleet_targets if role in (None, t.role)]
        if not targets:
            hosts = f"{role} hosts" if role else "hosts"
            none = pytest.param(None, marks=pytest.mark.skip(reason=f"no {hosts} among those verified"), id="none")
            metafunc.parametrize(fixture, [none], scope="module")
            continue
        metafunc.parametrize(fixture, targets, ids=[t.name for t in targets], scope="module")


@pytest.fixture
def fleet(request) -> dict[str, Settings]:
    """Every host of the inventory, --limit or not (a monitoring host scrapes them all)."""
    return {t.name: t.inventory_settings for t in request.config._vllm_fleet_all}


def split_status(result) -> tuple[str, int]:
    """Body and HTTP status from Target.api's output."""
    body, _, status = result.stdout.rpartition("\n")
    return body, int(status or 0)

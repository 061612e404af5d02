"""Firewall: vLLM's port admits loopback, the gateways in front of the host and the monitoring
sources, nothing else; every other port (SSH included) is left as it is."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from vllm_fleet import paths, templates
from vllm_fleet.facts.probe import Probe
from vllm_fleet.firewall import rules, wanted
from vllm_fleet.operations import deploy
from vllm_fleet.settings import Settings

FIREWALL_UNIT = paths.unit_path(paths.FIREWALL_SERVICE)


@deploy("Firewall")
def firewall(settings: Settings, fleet: dict[str, Settings], probe: Probe | None = None) -> None:
    """probe: pre-flight's HostProbe on vLLM hosts, which says whether our table is loaded now."""
    if not wanted(settings, fleet):
        loaded = probe.firewall if probe else host.get_fact(File, path=FIREWALL_UNIT)
        if loaded:
            systemd.service(name="Remove the firewall", service=paths.FIREWALL_SERVICE, running=False, enabled=False)
        return
    server.packages(name="Install nftables", packages=["nftables"])
    table = files.put(
        name=f"Write the firewall {paths.FIREWALL_RULES}",
        src=StringIO(rules(settings, fleet)),
        dest=paths.FIREWALL_RULES,
        mode="600",
    )
    unit = files.put(
        name=f"Install {paths.FIREWALL_SERVICE}",
        src=templates.rendered("vllm-firewall.service.j2"),
        dest=FIREWALL_UNIT,
        mode="644",
    )
    systemd.daemon_reload(name=f"Reload systemd for {paths.FIREWALL_SERVICE}", _if=unit.did_change)
    systemd.service(
        name="Load the firewall and keep it at boot",
        service=paths.FIREWALL_SERVICE,
        running=True,
        enabled=True,
    )
    # A reload replaces the table in one nft transaction; a restart would open the port between
    # its stop and its start.
    systemd.service(
        name="Replace the loaded firewall table with the new one",
        service=paths.FIREWALL_SERVICE,
        reloaded=True,
        _if=any_changed(table, unit),
    )

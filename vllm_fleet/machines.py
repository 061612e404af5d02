"""One inventory name per machine: two names for one machine (the same fleet_address, names that
differ only in case, the same SSH destination) would each deploy to it, and the second would
overwrite the first's unit, firewall table and configuration. rules.check_fleet calls
check_fleet for each host; the inventory's validation calls check_destinations, which reads how
pyinfra connects (host data the settings do not keep)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vllm_fleet.settings import Settings, SettingsError
from vllm_fleet.settings.places import is_loopback


def check_fleet(s: Settings, fleet: Mapping[str, Settings]) -> None:
    """The host is refused when a host before it in the inventory is the same machine."""
    for other in fleet.values():
        if other.host == s.host:
            return
        if other.host.lower() == s.host.lower():
            raise SettingsError(
                s.host,
                "name",
                repr(s.host),
                f"a name of its own: {other.host} differs only in case (host names are not case-sensitive)",
            )
        # Loopback is each connector's own machine (@local, @docker containers without an address).
        if other.fleet_address.lower() == s.fleet_address.lower() and not is_loopback(s.fleet_address):
            raise SettingsError(
                s.host,
                "fleet_address",
                s.show("fleet_address"),
                f"an address of its own: {other.host} is at {other.fleet_address} too, and two inventory names for "
                "one machine would each deploy to it (one role per machine; set fleet_address if they differ)",
            )


# How pyinfra's SSH connector reaches a host besides its address and port: the same address
# through another configuration or proxy may be another machine (two sites' private networks).
ROUTE_KEYS = ("ssh_config_file", "ssh_paramiko_connect_kwargs")


def ssh_destination(name: str, data: Mapping[str, Any]) -> tuple | None:
    """Where pyinfra's SSH connector logs in for this host; None for another connector (@local,
    @docker/...). A DNS name's trailing dot and its case name the same machine."""
    if name.startswith("@"):
        return None
    address = str(data.get("ssh_hostname") or name).lower().rstrip(".")
    return (address, str(data.get("ssh_port") or 22), *(repr(data.get(key)) for key in ROUTE_KEYS))


def check_destinations(hosts: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, SettingsError]:
    """Each host that pyinfra would reach at the SSH destination of a host before it, refused."""
    first: dict[tuple, str] = {}
    refusals = {}
    for name, data in hosts:
        destination = ssh_destination(name, data)
        if destination is None:
            continue
        if destination in first:
            address, port = destination[:2]
            refusals[name] = SettingsError(
                name,
                "ssh_hostname",
                repr(data.get("ssh_hostname") or name),
                f"a machine of its own: {first[destination]} is reached at {address} port {port} too, and two "
                "inventory names for one machine would each deploy to it (one role per machine)",
            )
        else:
            first[destination] = name
    return refusals

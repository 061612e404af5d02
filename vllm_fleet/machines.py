"""One inventory name per machine: two names for one machine (the same fleet_address, or names
that differ only in case) would each deploy to it, and the second would overwrite the first's
unit, firewall table and configuration. rules.check_fleet calls it for each host."""

from __future__ import annotations

from collections.abc import Mapping

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

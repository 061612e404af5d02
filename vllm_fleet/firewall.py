"""The firewall in front of vLLM's port: which networks it admits, and its nftables table
(templates/vllm-firewall.nft.j2). tasks/firewall.py installs it."""

from __future__ import annotations

import ipaddress

from vllm_fleet import templates
from vllm_fleet.rules import gateway_backends
from vllm_fleet.settings import Settings


def allowed_sources(settings: Settings, fleet: dict[str, Settings]) -> list[str]:
    """Networks admitted to the vLLM port: the gateways that front this host, then vllm_allowed_sources."""
    gateways = [
        g.fleet_address or g.host  # parse() always sets fleet_address
        for g in fleet.values()
        if g.role == "gateway" and settings.host in {b.host for b in gateway_backends(g, fleet)}
    ]
    networks = {str(ipaddress.ip_network(a, strict=False)) for a in [*gateways, *settings.vllm_allowed_sources]}
    return sorted(networks, key=lambda n: (ipaddress.ip_network(n).version, ipaddress.ip_network(n)))


def rules(settings: Settings, fleet: dict[str, Settings]) -> str:
    sources = allowed_sources(settings, fleet)
    return templates.render(
        "vllm-firewall.nft.j2",
        port=settings.vllm_port,
        ipv4=[n for n in sources if ipaddress.ip_network(n).version == 4],
        ipv6=[n for n in sources if ipaddress.ip_network(n).version == 6],
    )


def wanted(settings: Settings) -> bool:
    """Laptops bind to loopback; the other phases filter unless vllm_firewall is off."""
    return settings.vllm_firewall and settings.phase != "laptop"

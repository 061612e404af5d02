"""The firewall in front of vLLM's port: which networks it admits, and its nftables table
(templates/vllm-firewall.nft.j2). tasks/firewall.py installs it."""

from __future__ import annotations

import ipaddress

from vllm_fleet import paths, templates
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
        container_port=paths.CONTAINER_PORT if settings.serving_method == "docker" else None,
        ipv4=[n for n in sources if ipaddress.ip_network(n).version == 4],
        ipv6=[n for n in sources if ipaddress.ip_network(n).version == 6],
    )


def wanted(settings: Settings) -> bool:
    """Every vLLM host filters unless vllm_firewall is off, laptops too: Docker before 28 lets the
    hosts of a laptop's network reach a port published on 127.0.0.1 (moby issue 45610)."""
    return settings.role == "vllm" and settings.vllm_firewall

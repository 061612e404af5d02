"""The firewall: which networks reach which of a host's ports, and its nftables table
(templates/vllm-firewall.nft.j2). vLLM's port admits loopback, the gateways in front of the host,
the monitoring hosts and vllm_allowed_sources; the exporters' ports the monitoring hosts; a
monitoring host's Prometheus and Alertmanager monitoring_allowed_sources. tasks/firewall.py
installs it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from vllm_fleet import cluster, paths, templates
from vllm_fleet.exposure import ALERTMANAGER_CLUSTER_PORT
from vllm_fleet.monitoring.exporters import exporters
from vllm_fleet.monitoring.prometheus import monitoring_sources, scrapes_vllm
from vllm_fleet.rules import gateway_backends
from vllm_fleet.settings import Settings


@dataclass(frozen=True)
class Guard:
    name: str  # the nftables sets' prefix
    what: str
    who: str
    ports: tuple[int | str, ...]  # a port, or a range "LOW-HIGH"
    sources: tuple[str, ...]
    # Only new connections are dropped: the range holds the local ends of the host's own outgoing ones.
    new_only: bool = False

    @property
    def match(self) -> str:
        """The ports as nftables' tcp dport takes them."""
        return str(self.ports[0]) if len(self.ports) == 1 else "{ " + ", ".join(map(str, self.ports)) + " }"

    @property
    def ipv4(self) -> list[str]:
        return [n for n in self.sources if ipaddress.ip_network(n).version == 4]

    @property
    def ipv6(self) -> list[str]:
        return [n for n in self.sources if ipaddress.ip_network(n).version == 6]


def _networks(addresses: Iterable[str]) -> tuple[str, ...]:
    """The networks, each once and none inside another: an nftables interval set refuses elements
    that overlap (a member's address inside vllm_allowed_sources, say)."""
    networks = {ipaddress.ip_network(a, strict=False) for a in addresses}
    kept = [n for n in networks if not any(n != o and n.version == o.version and n.subnet_of(o) for o in networks)]  # type: ignore[arg-type]
    return tuple(str(n) for n in sorted(kept, key=lambda n: (n.version, n)))


def allowed_sources(settings: Settings, fleet: dict[str, Settings]) -> list[str]:
    """Networks admitted to the vLLM port: the gateways that front this host, the monitoring
    hosts, then vllm_allowed_sources."""
    gateways = [
        g.fleet_address
        for g in fleet.values()
        if g.role == "gateway" and settings.host in {b.host for b in gateway_backends(g, fleet)}
    ]
    monitors = monitoring_sources(fleet) if scrapes_vllm(settings) else []
    # A cluster's members ask their leader whether the cluster serves (their readiness check).
    members = cluster.peer_addresses(settings, fleet)
    return list(_networks([*gateways, *monitors, *members, *settings.vllm_allowed_sources]))


def guards(settings: Settings, fleet: dict[str, Settings]) -> list[Guard]:
    found = []
    if settings.role == "vllm":
        sources = tuple(allowed_sources(settings, fleet))
        found.append(
            Guard(
                "vllm",
                "vLLM's port",
                "its gateways, monitoring hosts and vllm_allowed_sources",
                (settings.vllm_port,),
                sources,
            )
        )
    others = cluster.peer_addresses(settings, fleet)
    if settings.role == "vllm" and settings.vllm_cluster and others:
        found.append(
            Guard(
                "cluster",
                "the cluster's ports (the leader's meeting port, and where NCCL, Gloo and vLLM's queues listen)",
                f"the other members of cluster {settings.vllm_cluster}",
                (settings.vllm_cluster_port, settings.vllm_cluster_dynamic_ports),
                _networks(others),
                new_only=True,
            )
        )
    exported = exporters(settings, fleet)
    if exported:
        found.append(
            Guard(
                "metrics",
                "the exporters' ports",
                "the monitoring hosts",
                tuple(e.port for e in exported),
                _networks(monitoring_sources(fleet)),
            )
        )
    if settings.role == "monitoring":
        ports = (settings.prometheus_port, settings.alertmanager_port, ALERTMANAGER_CLUSTER_PORT)
        found.append(
            Guard(
                "monitoring",
                "Prometheus' and Alertmanager's ports",
                "monitoring_allowed_sources",
                ports,
                _networks(settings.monitoring_allowed_sources),
            )
        )
    return found


def rules(settings: Settings, fleet: dict[str, Settings]) -> str:
    return templates.render(
        "vllm-firewall.nft.j2",
        guards=guards(settings, fleet),
        container_port=paths.CONTAINER_PORT
        if settings.role == "vllm" and settings.serving_method == "docker"
        else None,
    )


def wanted(settings: Settings, fleet: dict[str, Settings]) -> bool:
    """Every vLLM host filters unless vllm_firewall is off, laptops too: Docker before 28 lets the
    hosts of a laptop's network reach a port published on 127.0.0.1 (moby issue 45610). Gateways
    and monitoring hosts filter the ports of their exporters and of Prometheus."""
    return settings.vllm_firewall and bool(guards(settings, fleet))

"""What a host opens, and to whom: the rules that keep a switch or a typo from exposing a port
with no authentication behind it, and the firewall from dropping the deploy's own SSH session.
rules.validate and rules.check_fleet call them; each refusal is a SettingsError."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vllm_fleet.monitoring.exporters import exporters
from vllm_fleet.settings import Settings, SettingsError
from vllm_fleet.settings.places import is_loopback

# Alertmanager's gossip port: closed by the firewall (no cluster), still a port it listens on.
ALERTMANAGER_CLUSTER_PORT = 9094


def check_switches(s: Settings) -> None:
    """One host's own settings: what turning the firewall off would open to every network."""
    if s.vllm_firewall:
        return
    if s.role == "vllm" and s.vllm_cluster:
        raise SettingsError(
            s.host,
            "vllm_firewall",
            "False",
            f"True on a member of cluster {s.vllm_cluster!r}: the members' meeting port and message queues have no "
            "authentication (vLLM's security guide: they exchange pickled objects, so whoever reaches them runs "
            "code on the host); the firewall admits only the other members",
        )
    if s.role == "monitoring" and not is_loopback(s.prometheus_bind_address):
        raise SettingsError(
            s.host,
            "vllm_firewall",
            "False",
            "True on a monitoring host whose Prometheus and Alertmanager listen beyond loopback "
            f"(prometheus_bind_address = {s.prometheus_bind_address!r}): neither has authentication, so anyone "
            "could read every metric and silence every alert; or set prometheus_bind_address to 127.0.0.1",
        )
    if s.role == "vllm" and s.phase == "laptop" and not s.vllm_api_key:
        raise SettingsError(
            s.host,
            "vllm_firewall",
            "False",
            "True on a laptop without vllm_api_key: Docker before 28 lets the hosts of the laptop's network reach "
            "a port published on 127.0.0.1 (moby issue 45610), and vLLM would answer them without a key",
        )


@dataclass(frozen=True)
class Listener:
    """A port the deploy makes the host listen on, by the knob (or the exporter) that sets it."""

    name: str
    low: int
    high: int

    def covers(self, port: int) -> bool:
        return self.low <= port <= self.high

    def meets(self, other: Listener) -> bool:
        return self.low <= other.high and other.low <= self.high

    @property
    def shown(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


def listeners(s: Settings, fleet: Mapping[str, Settings]) -> list[Listener]:
    """Every port the deploy opens on the host, in the order the refusals name them."""
    own: list[tuple[str, int | str]] = []
    if s.role == "vllm":
        own.append(("vllm_port", s.vllm_port))
        if s.vllm_cluster:
            own += [
                ("vllm_cluster_port", s.vllm_cluster_port),
                ("vllm_cluster_dynamic_ports", s.vllm_cluster_dynamic_ports),
            ]
    elif s.role == "gateway":
        own.append(("gateway_port", s.gateway_port))
    else:
        own += [
            ("prometheus_port", s.prometheus_port),
            ("alertmanager_port", s.alertmanager_port),
            (f"Alertmanager's gossip port ({ALERTMANAGER_CLUSTER_PORT})", ALERTMANAGER_CLUSTER_PORT),
        ]
    own += [(f"the {e.what} exporter's port ({e.port})", e.port) for e in exporters(s, fleet)]
    found = []
    for name, port in own:
        low, _, high = str(port).partition("-")
        found.append(Listener(name, int(low), int(high or low)))
    return found


def check_ports(s: Settings, fleet: Mapping[str, Settings]) -> None:
    """A rule across hosts (the exporters depend on the inventory): no port the deploy opens is the
    port pyinfra's SSH session comes in on, and no two of them meet."""
    found = listeners(s, fleet)
    fields = type(s).model_fields
    for listener in found:
        if listener.covers(s.ssh_port):
            name = listener.name if listener.name in fields else "ssh_port"
            raise SettingsError(
                s.host,
                name,
                s.show(name),
                f"a port other than {listener.name}'s ({listener.shown})"
                if name == "ssh_port"
                else f"a port other than the host's SSH port ({s.ssh_port}, ssh_port), which the firewall would "
                "then filter: the deploy's own session would be cut and the host locked out",
            )
    for i, first in enumerate(found):
        for second in found[i + 1 :]:
            if first.meets(second):
                blamed, other = (second, first) if second.name in fields else (first, second)
                raise SettingsError(
                    s.host,
                    blamed.name,
                    s.show(blamed.name),
                    f"a port of its own: {other.name} ({other.shown}) is there already",
                )

"""What a host's own tools say about it, read once into typed data: the GPU vendors on its PCI
bus, the GPUs its vendor's tool lists, and its machine. deploy.py reads them with pyinfra's
facts, `plan --facts` with pyinfra's API (read_over_ssh), the verify suite over testinfra; all
three then resolve the host's plan with plan.resolve_host."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent
from pyinfra.api import Config, FactBase, Host, State
from pyinfra.facts.server import Arch

from vllm_fleet.facts.gpus import GPU_FACTS, GpuVendors
from vllm_fleet.gpus import resolve_accelerator

# A fact class in, its processed value out (None when it could not be read).
ReadFact = Callable[[type[FactBase]], Any]


@dataclass(frozen=True)
class HostFacts:
    vendors: list[str]
    gpus: list[dict] = field(default_factory=list)  # as the GPU fact of the accelerator lists them
    machine: str = ""  # `uname -m`; '' when not read (x86_64)

    @classmethod
    def read(cls, read_fact: ReadFact, accelerator_setting: str) -> HostFacts:
        """Read with read_fact: the bus first, then the GPU tool of the accelerator it implies."""
        vendors = read_fact(GpuVendors) or []
        fact = GPU_FACTS.get(resolve_accelerator(accelerator_setting, vendors))
        return cls(vendors, (read_fact(fact) or []) if fact else [], read_fact(Arch) or "")

    def accelerator(self, setting: str) -> str:
        return resolve_accelerator(setting, self.vendors)


# What reading one host's facts may take: connecting, then each fact's command (a few small ones).
CONNECT_TIMEOUT = 15
FACT_TIMEOUT = 120


def read_over_ssh(hosts: Sequence[Host], accelerators: Mapping[str, str]) -> dict[str, HostFacts]:
    """Each reachable host's facts, read with pyinfra's API (`plan --facts`), connecting to all
    hosts at once; a host that cannot be reached is left out, to be planned from its data.
    accelerators: each host's accelerator setting ('auto' where it has none)."""
    if not hosts:
        return {}
    state = State(hosts[0].inventory, Config(CONNECT_TIMEOUT=CONNECT_TIMEOUT))
    gevent.joinall([state.pool.spawn(host.connect, show_errors=False) for host in hosts])
    read = {}
    for host in hosts:
        if not host.connected:
            continue

        def read_fact(fact: type[FactBase], host: Host = host):
            return host.get_fact(fact, _timeout=FACT_TIMEOUT)

        read[host.name] = HostFacts.read(read_fact, accelerators.get(host.name, "auto"))
        host.disconnect()
    return read

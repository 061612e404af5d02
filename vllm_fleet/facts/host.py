"""What a host's own tools say about it, read once into typed data: the GPU vendors on its PCI
bus, the GPUs its vendor's tool lists, and its machine. deploy.py reads them with pyinfra's
facts, `plan --facts` through pyinfra's fact command, the verify suite over testinfra; all three
then resolve the host's plan with plan.resolve_host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api import FactBase
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


# Every fact HostFacts.read may need, for reading them all in one pyinfra run.
ALL_FACTS: tuple[type[FactBase], ...] = (GpuVendors, *GPU_FACTS.values(), Arch)

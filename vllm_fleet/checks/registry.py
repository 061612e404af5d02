"""The pre-flight check registry: what a check reads, and how one is declared.

A check is a pure function of a Context (the host's probe, settings and sizing): None when it
passes, else what is wrong and what to do. @check registers it under a name the settings know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vllm_fleet.distro import Distro
from vllm_fleet.facts.probe import Probe
from vllm_fleet.settings import PREFLIGHT_CHECKS, Settings
from vllm_fleet.sizing import Sizing

KIB_PER_GIB = 1024 * 1024


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    message: str


@dataclass(frozen=True)
class Context:
    """What a check reads: the probe, the GPU vendors on the bus, settings, sizing."""

    probe: Probe
    vendors: list[str]
    settings: Settings
    accelerator: str
    sizing: Sizing
    image: str
    distro: Distro | None = None  # None when unsupported
    unsupported_os: str | None = None  # why, from vllm_fleet.distro
    machine: str = ""  # the host's `uname -m` (pyinfra's Arch fact), '' when not read
    gpu_capabilities: tuple[tuple[str, str], ...] = ()  # each GPU's name and compute capability, () unread

    @property
    def managed(self) -> bool:
        """The GPU stack is installed by this run (so its absence is no failure)."""
        return self.settings.manage_gpu_stack


Check = Callable[[Context], "str | None"]  # None: passed; a string: what is wrong and what to do
CHECKS: dict[str, Check] = {}
APPLIES: dict[str, tuple[str, ...]] = {}
METHODS: dict[str, tuple[str, ...]] = {}


def check(
    name: str, accelerators: tuple[str, ...] = ("nvidia", "amd", "cpu"), methods: tuple[str, ...] = ("docker", "nix")
):
    def register(func: Check) -> Check:
        if name not in PREFLIGHT_CHECKS:
            raise ValueError(f"pre-flight check {name!r} is missing from vllm_fleet.settings.types.PreflightCheck")
        CHECKS[name] = func
        APPLIES[name] = accelerators
        METHODS[name] = methods
        return func

    return register


def gib(kib: int) -> float:
    return kib / KIB_PER_GIB

"""Reboot after a GPU driver change, as reboot_policy allows; or stop this host with the reason."""

from __future__ import annotations

from collections.abc import Sequence

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server

from vllm_fleet.facts.probe import Probe
from vllm_fleet.operations import deploy, stop_host
from vllm_fleet.settings import Settings


def live_load_possible(probe: Probe, accelerator: str) -> bool:
    """A new NVIDIA module loads without a reboot only when nouveau and no other nvidia module hold the GPU."""
    if accelerator != "nvidia":
        return False  # amdgpu-install replaces a loaded amdgpu: reboot
    return not probe.nouveau and not probe.nvidia_driver


@deploy("Reboot for the GPU driver")
def gpu_reboot(settings: Settings, probe: Probe, accelerator: str, changes: Sequence[OperationMeta]) -> None:
    # A driver updated since boot (unattended-upgrades) is a reboot owed as much as one the OS asks for.
    pending = probe.reboot_required or (accelerator == "nvidia" and probe.nvidia_mismatch)
    live = live_load_possible(probe, accelerator)

    def changed() -> bool:
        return any(op.did_change() for op in changes)

    def needed() -> bool:
        return pending or (changed() and (settings.reboot_policy == "always" or not live))

    if settings.reboot_policy == "never":
        stop_host(
            name="Stop: a reboot is needed and reboot_policy is never",
            reasons=[
                f"{host.name} needs a reboot to load the new GPU driver (reboot_policy is never): "
                "reboot it, then run the deploy again; the other hosts go on"
            ],
            _if=needed,
        )
    else:
        server.reboot(name="Reboot to load the GPU driver", delay=10, reboot_timeout=900, _if=needed)
    if live:
        server.shell(
            name="Load the NVIDIA module", commands=["modprobe nvidia"], _if=lambda: changed() and not needed()
        )

"""The GPUs on the host: the vendors on its PCI bus (sysfs), and the GPUs each vendor's tool lists."""

from __future__ import annotations

import json

from pyinfra.api import FactBase

# PCI vendor IDs of GPU makers we deploy for.
PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd"}
# PCI class 0x03xxxx is "display controller" (VGA, 3D, other); AMD Instinct cards
# report 0x0380, NVIDIA data-centre cards 0x0302.
DISPLAY_CLASS_PREFIX = "0x03"


class GpuVendors(FactBase):
    """Vendors of the display/3D controllers on the PCI bus, read from sysfs.

    Returns a sorted list such as ['nvidia'] (one entry per vendor), empty when
    the host has no NVIDIA or AMD GPU. sysfs needs no pciutils on the host.
    """

    default = list

    def command(self) -> str:
        return (
            "for d in /sys/bus/pci/devices/*; do "
            '[ -r "$d/class" ] && echo "$(cat "$d/class") $(cat "$d/vendor")"; '
            "done 2>/dev/null || true"
        )

    def process(self, output: list[str]) -> list[str]:
        return parse_pci_classes(output)


def parse_pci_classes(lines: list[str]) -> list[str]:
    vendors = set()
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith(DISPLAY_CLASS_PREFIX) and parts[1] in PCI_VENDORS:
            vendors.add(PCI_VENDORS[parts[1]])
    return sorted(vendors)


NVIDIA_QUERY = "name,memory.total,driver_version,compute_cap"
# The GPU tools hang on a GPU that fell off the bus (an Xid 79): the deploy reads none then.
GPU_TOOL_TIMEOUT = 60


class NvidiaGpus(FactBase):
    """GPUs as nvidia-smi lists them; [] when the driver or nvidia-smi is absent.

    Each: {"name", "memory_mib", "driver_version", "compute_capability"}.
    """

    default = list

    def command(self) -> str:
        return (
            f"command -v nvidia-smi >/dev/null 2>&1 && "
            f"timeout {GPU_TOOL_TIMEOUT} nvidia-smi --query-gpu={NVIDIA_QUERY} --format=csv,noheader,nounits"
            " 2>/dev/null || true"
        )

    def process(self, output: list[str]) -> list[dict]:
        return parse_nvidia_smi(output)


def parse_nvidia_smi(lines: list[str]) -> list[dict]:
    """One dict per GPU line; memory_mib is None where nvidia-smi prints [N/A] (unified-memory
    parts such as GB10 have no dedicated memory to report). Error text yields no GPU."""
    gpus = []
    for line in lines:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not (parts[1].isdigit() or parts[1] == "[N/A]") or not parts[2][:1].isdigit():
            continue
        name, memory, driver, capability = parts
        gpus.append(
            {
                "name": name,
                "memory_mib": int(memory) if memory.isdigit() else None,
                "driver_version": driver,
                "compute_capability": capability,
            }
        )
    return gpus


class AmdGpus(FactBase):
    """GPUs as rocm-smi lists them (JSON); [] when ROCm is absent. Each: {"name", "memory_mib"}."""

    default = list

    def command(self) -> str:
        return (
            "command -v rocm-smi >/dev/null 2>&1 && "
            f"timeout {GPU_TOOL_TIMEOUT} rocm-smi --showproductname --showmeminfo vram --json 2>/dev/null || true"
        )

    def process(self, output: list[str]) -> list[dict]:
        return parse_rocm_smi("\n".join(output))


def parse_rocm_smi(text: str) -> list[dict]:
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return []
    gpus = []
    for key, card in sorted(data.items()):
        if not key.startswith("card"):
            continue
        total = card.get("VRAM Total Memory (B)")
        name = card.get("Card Series") or card.get("Card series") or card.get("Card model") or key
        if total and str(total).isdigit():
            gpus.append({"name": name, "memory_mib": int(total) // 2**20})
    return gpus


# The fact that lists each vendor's GPUs (deploy.py, plan --facts and the verify suite read it).
GPU_FACTS: dict[str, type[FactBase]] = {"nvidia": NvidiaGpus, "amd": AmdGpus}

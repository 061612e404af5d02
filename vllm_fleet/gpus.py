"""A host's GPUs, for sizing: from facts when the driver answers, else from host data."""

from __future__ import annotations

import json
import re

from pyinfra.api import FactBase

from vllm_fleet.sizing import Gpus

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


def gpus_from_facts(listed: list[dict]) -> Gpus | None:
    """What sizing plans for; None when the tools list no GPU or not every GPU's memory (then
    the host data's gpu_count and gpu_memory_gib decide)."""
    if not listed or any(g["memory_mib"] is None for g in listed):
        return None
    smallest = min(g["memory_mib"] for g in listed)
    return Gpus(len(listed), round(smallest / 1024, 1), listed[0]["name"], "facts")


def gpus_from_data(settings) -> Gpus | None:
    if settings.gpu_count and settings.gpu_memory_gib:
        return Gpus(settings.gpu_count, settings.gpu_memory_gib, settings.gpu_name or "GPU", "host data")
    return None


def vendor_from_name(name: str | None) -> str | None:
    """The vendor a GPU model name implies, for planning without reading the PCI bus."""
    lowered = (name or "").lower()
    if any(word in lowered for word in ("nvidia", "geforce", "rtx", "tesla", "quadro", "h100", "a100", "l40")):
        return "nvidia"
    if any(word in lowered for word in ("amd", "radeon", "instinct", "mi300", "mi250")):
        return "amd"
    return None


# AMD GPUs AITER (AMD's kernels behind VLLM_ROCM_USE_AITER) is built for: gfx942 (MI300X,
# MI300A, MI325X) and gfx950 (MI350X, MI355X). AMD's vLLM guide: set it to 0 elsewhere.
AITER_GPUS = ("MI300", "MI325", "MI350", "MI355")


def has_aiter_kernels(name: str) -> bool:
    return any(model in (name or "").upper() for model in AITER_GPUS)


# NVIDIA's open kernel modules support Turing and later, and are the only ones for Blackwell
# (NVIDIA's driver installation guide, "Open GPU kernel modules").
PRE_TURING = re.compile(r"\b(K80|K40|M40|M60|P4|P40|P100|V100|TITAN V|TITAN Xp|GTX 10\d\d|Quadro [KMP]\d+|GV100)\b")
BLACKWELL = re.compile(r"\b(GB?[123]00|B[123]00|RTX 50\d\d|RTX PRO \d+ Blackwell)\b")


def open_kernel_modules_for(name: str | None) -> bool | None:
    """True where only the open modules work, False where only the proprietary ones do, else None."""
    if PRE_TURING.search(name or ""):
        return False
    if BLACKWELL.search(name or ""):
        return True
    return None

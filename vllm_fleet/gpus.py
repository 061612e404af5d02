"""A host's GPUs, for sizing and the accelerator: from facts when the driver answers, else from host
data (the facts themselves are read in vllm_fleet.facts.gpus)."""

from __future__ import annotations

import re
from importlib import resources

from vllm_fleet.catalogue import Gpus


def resolve_accelerator(setting: str, vendors: list[str]) -> str:
    """The accelerator a host uses: the setting, or with 'auto', what the bus shows.

    A host with both vendors' GPUs (a hybrid laptop) takes NVIDIA, the one vLLM's
    default images target; set accelerator explicitly to choose AMD.
    """
    if setting != "auto":
        return setting
    for vendor in ("nvidia", "amd"):
        if vendor in vendors:
            return vendor
    return "cpu"


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
PRE_TURING = re.compile(r"\b(K80|K40|M40|M60|P4|P40|P100|V100S?|TITAN V|TITAN Xp|GTX 10\d\d|Quadro [KMP]\d+|GV100)\b")


def _pre_turing_pci_ids() -> dict[str, str]:
    """PCI device ID ('1db4') -> pci.ids' name, of NVIDIA's GPUs older than Turing (data/)."""
    text = resources.files("vllm_fleet").joinpath("data/nvidia_pre_turing_pci_ids.txt").read_text()
    rows = (line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {device: name for device, name in rows}


PRE_TURING_PCI_IDS = _pre_turing_pci_ids()
BLACKWELL = re.compile(r"\b(GB?[123]00|B[123]00|RTX 50\d\d|RTX PRO \d+ Blackwell)\b")


def open_kernel_modules_for(name: str | None) -> bool | None:
    """True where only the open modules work, False where only the proprietary ones do, else None."""
    if PRE_TURING.search(name or ""):
        return False
    if BLACKWELL.search(name or ""):
        return True
    return None

"""A GPU's health as its driver reports it, and the conditions that keep a host from serving.

Read by pre-flight (a host refused before anything is installed), by the verify suite (so a
rollout puts no unhealthy host back in rotation, and `vllm-fleet verify` says why), both from the
probe's fields: nvidia-smi's ECC, retired-page, reset and row-remap queries and the kernel log's
Xid lines for NVIDIA; amdgpu's RAS error counts and retired VRAM pages (sysfs) for AMD. A
condition the operator accepts knowingly (gpu_health_accept) is reported, not refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vllm_fleet.facts.probe import FIELDS, HEALTH_TIMEOUT, Field, Probe, Where, script
from vllm_fleet.settings.types import GPU_CONDITIONS

# What each condition means and what to do (keys: settings.types.GpuCondition).
CONDITIONS: dict[str, str] = {
    "unresponsive": (
        f"nvidia-smi failed or did not answer within {HEALTH_TIMEOUT} s while the NVIDIA module is loaded (a GPU "
        "that fell off the bus hangs it): reboot; if it recurs the GPU or its slot needs service"
    ),
    "ecc_uncorrected": (
        "uncorrectable ECC errors since the driver loaded: drain it, reset the GPU (nvidia-smi -r) or reboot; "
        "if they come back the GPU needs service"
    ),
    "retired_pages_pending": "memory pages wait to be retired, which the next driver load does: reboot",
    "row_remap_pending": "a memory row remap waits for a GPU reset: reset the GPU (nvidia-smi -r) or reboot",
    "row_remap_failed": "a memory row remap failed, no spare rows are left: the GPU needs service",
    "reset_required": "the driver asks for a GPU reset (or a drain and reset): reset the GPU or reboot",
    "xid": (
        "the kernel log since boot has an Xid that NVIDIA's Xid catalog answers with a GPU reset or a reboot: "
        "reboot (the log keeps the Xid until then: after a GPU reset that cured it, gpu_health_accept = ['xid'] "
        "serves until the next boot), and read the Xid's entry in the catalog"
    ),
    "ras_uncorrectable": ("amdgpu's RAS counted uncorrectable errors: reboot; if they come back the GPU needs service"),
    "bad_pages_pending": "VRAM pages wait to be retired (gpu_vram_bad_pages flag P): reboot",
    "bad_pages_failed": "VRAM pages could not be retired (gpu_vram_bad_pages flag F): the GPU needs service",
}
if tuple(CONDITIONS) != GPU_CONDITIONS:
    raise TypeError("gpu_health.CONDITIONS and settings.types.GpuCondition name different conditions")

# Xids whose immediate action in NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors/
# analyzing-xid-catalog.html, its copy of 2025-10-29 in leptonai/gpud's catalog_generated.go) is
# RESET_GPU, RESTART_BM (79) or RESTART_VM (151). Xids the catalog answers with RESTART_APP or
# IGNORE pass, and so do the workflows 48 and 63 (the ECC and row-remap queries read what they
# decide) and 74 (NVLink: not read here).
RESET_XIDS = {
    46: "GPU stopped processing",
    62: "internal micro-controller halt",
    64: "memory remapping failure",
    79: "GPU has fallen off the bus",
    95: "uncontained memory error",
    109: "context switch timeout",
    110: "security fault",
    119: "GSP RPC timeout",
    120: "GSP error",
    136: "link training failed",
    140: "unrecovered ECC error",
    143: "GPU initialization error",
    151: "key rotation error",
    155: "NVLink software-defined error",
    156: "resource retirement event",
    158: "GPU fatal timeout",
}
# Where the fields come from, by vendor (the verify suite reads only its vendor's).
VENDOR_FIELDS = {
    "nvidia": ("nvidia_driver", "nvidia_ecc", "nvidia_reset", "nvidia_remap", "nvidia_xid"),
    "amd": ("amd_ras", "amd_bad_pages"),
}


@dataclass(frozen=True)
class Problem:
    condition: str  # a key of CONDITIONS
    gpu: str  # which GPU: 'GPU 0', a PCI address, 'card1'
    seen: str  # what the tool said

    def __str__(self) -> str:
        return f"{self.gpu}: {self.seen} ({self.condition})"


def script_for(accelerator: str) -> str:
    """The probe's lines for this vendor's health fields alone (what the verify suite runs)."""
    fields: list[Field] = [f for f in FIELDS if f.name in VENDOR_FIELDS.get(accelerator, ())]
    return script(Where(0, "", "", ()), fields)


def problems(probe: Probe, accelerator: str) -> list[Problem]:
    """Every condition the probe shows for this accelerator's GPUs."""
    if accelerator == "nvidia":
        return _nvidia(probe)
    if accelerator == "amd":
        return _amd(probe)
    return []


def refusal(found: list[Problem], accepted: tuple[str, ...]) -> str | None:
    """What is wrong and what to do, for the problems not accepted; None when there are none."""
    refused = [p for p in found if p.condition not in accepted]
    if not refused:
        return None
    conditions = dict.fromkeys(p.condition for p in refused)
    todo = "; ".join(f"{name}: {CONDITIONS[name]}" for name in conditions)
    return (
        f"{'; '.join(map(str, refused))}. {todo}. To serve on it knowingly, add "
        f"{', '.join(conditions)} to gpu_health_accept"
    )


def accepted_note(found: list[Problem], accepted: tuple[str, ...]) -> str | None:
    """The problems served with because gpu_health_accept names them (said, never silent)."""
    kept = [str(p) for p in found if p.condition in accepted]
    return f"serving despite {'; '.join(kept)} (gpu_health_accept)" if kept else None


def _rows(text: str, columns: int) -> list[list[str]]:
    rows = [[part.strip() for part in line.split(",")] for line in text.split(";") if line.strip()]
    return [row for row in rows if len(row) == columns]  # error text ("not a valid field") is not a row


def _yes(value: str) -> bool:
    return value.lower() in ("yes", "1", "true")


def _count(value: str) -> int:
    return int(value) if value.isdigit() else 0  # "[N/A]": the GPU has no such counter


def _nvidia(probe: Probe) -> list[Problem]:
    found = []
    # The ECC query's fields exist on every driver this deploys: its failure is the GPU's, not the field's.
    failed = re.search(r"exit=(\d+)", probe.nvidia_ecc)
    if failed and probe.nvidia_driver:
        said = (
            f"did not answer within {HEALTH_TIMEOUT} s" if failed[1] == "124" else f"failed (exit status {failed[1]})"
        )
        found.append(Problem("unresponsive", "nvidia-smi", f"the ECC query {said}"))
    for gpu, ecc, pending in _rows(probe.nvidia_ecc, 3):
        if _count(ecc):
            found.append(Problem("ecc_uncorrected", f"GPU {gpu}", f"{ecc} uncorrected ECC errors"))
        if _yes(pending):
            found.append(Problem("retired_pages_pending", f"GPU {gpu}", "retired pages pending"))
    for gpu, required, drain in _rows(probe.nvidia_reset, 3):
        if _yes(required) or _yes(drain):
            said = "reset required" if _yes(required) else "drain and reset recommended"
            found.append(Problem("reset_required", f"GPU {gpu}", said))
    for bus, pending, failure in _rows(probe.nvidia_remap, 3):
        if _yes(pending):
            found.append(Problem("row_remap_pending", bus, "row remap pending"))
        if _yes(failure):
            found.append(Problem("row_remap_failed", bus, "row remap failed"))
    for line in probe.nvidia_xid.split(";"):
        match = re.search(r"Xid \((?:PCI:)?([^)]*)\): (\d+)", line)
        if match and int(match[2]) in RESET_XIDS:
            found.append(Problem("xid", match[1], f"Xid {match[2]} ({RESET_XIDS[int(match[2])]}) since boot"))
    return found


def _amd(probe: Probe) -> list[Problem]:
    found = []
    for line in probe.amd_ras.split(";"):
        match = re.fullmatch(r"\s*(card\d+)/device/ras/(\w+)_err_count ue: *(\d+)\s*", line)
        if match and int(match[3]):
            found.append(Problem("ras_uncorrectable", match[1], f"{match[3]} uncorrectable {match[2]} errors"))
    for line in probe.amd_bad_pages.split(";"):
        match = re.fullmatch(r"\s*(card\d+)/device/ras/gpu_vram_bad_pages (\d+) (\d+)\s*", line)
        if not match:
            continue
        if int(match[2]):
            found.append(Problem("bad_pages_pending", match[1], f"{match[2]} VRAM pages pending retirement"))
        if int(match[3]):
            found.append(Problem("bad_pages_failed", match[1], f"{match[3]} VRAM pages failed to retire"))
    return found

"""Custom pyinfra facts. Each must answer on a bare host (no Docker, no GPU tools)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from pyinfra.api import FactBase

from vllm_fleet import prerequisites

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


class DockerImageId(FactBase):
    """The local image ID ('sha256:...') of an image reference, or None."""

    def command(self, image: str) -> str:
        return (
            f"command -v docker >/dev/null 2>&1 && "
            f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(image)} 2>/dev/null || true"
        )

    def process(self, output: list[str]) -> str | None:
        value = "".join(output).strip()
        return value if value.startswith("sha256:") else None


class DaemonJsonError(ValueError):
    """/etc/docker/daemon.json exists but cannot be read as a JSON object (returned, not raised)."""


def parse_daemon_json(content: str) -> dict[str, Any] | DaemonJsonError:
    if not content.strip():
        return {}
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        return DaemonJsonError(f"it does not parse as JSON ({exc})")
    if not isinstance(value, dict):
        return DaemonJsonError("it is JSON but not an object")
    return value


class HostTools(FactBase):
    """Which of the tools the deploy runs on the host are there (name=yes/no), the package family,
    and lock_holder: "pid name" of a process holding the package manager's lock, else empty."""

    def command(self, tools: str) -> str:
        return prerequisites.probe_script(tuple(t for t in tools.split(",") if t))

    def process(self, output: list[str]) -> dict[str, str]:
        state = {}
        for line in output:
            key, sep, value = line.partition("=")
            if sep:
                state[key] = value.strip()
        return state

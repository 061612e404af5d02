"""Facts parsed from outputs written by hand in the kernel's and Docker's formats (sysfs class and
vendor files, daemon.json): the PCI IDs are the vendors' registered ones."""

import pytest

from vllm_fleet.facts.docker import DaemonJsonError, parse_daemon_json
from vllm_fleet.facts.gpus import parse_pci_classes
from vllm_fleet.gpus import resolve_accelerator

# /sys/bus/pci/devices/*/{class,vendor} as the GpuVendors fact prints them.
# An H100 SXM host (NVIDIA 3D controller 0x0302 beside the BMC's ASPEED VGA):
H100_SERVER = ["0x060000 0x8086", "0x030000 0x1a03", "0x030200 0x10de", "0x020000 0x15b3"]
# An MI300X host (AMD "display controller" 0x0380) with AMD host bridges (0x0600):
MI300X_SERVER = ["0x060000 0x1022", "0x038000 0x1002", "0x038000 0x1002", "0x030000 0x1a03"]
# A hybrid laptop: Intel iGPU plus an RTX 4060 Laptop GPU (VGA 0x0300) and its audio (0x0403).
HYBRID_LAPTOP = ["0x030000 0x8086", "0x030000 0x10de", "0x040300 0x10de"]
# A VM or this sandbox: no GPU at all, an AMD chipset that must not count.
NO_GPU = ["0x060000 0x1022", "0x010000 0x1af4", ""]


@pytest.mark.parametrize(
    "lines, vendors, auto",
    [
        (H100_SERVER, ["nvidia"], "nvidia"),
        (MI300X_SERVER, ["amd"], "amd"),
        (HYBRID_LAPTOP, ["nvidia"], "nvidia"),
        (NO_GPU, [], "cpu"),
        (MI300X_SERVER + H100_SERVER, ["amd", "nvidia"], "nvidia"),
    ],
)
def test_gpu_vendors_and_auto_accelerator(lines, vendors, auto):
    assert parse_pci_classes(lines) == vendors
    assert resolve_accelerator("auto", vendors) == auto


def test_explicit_accelerator_wins_over_the_bus():
    assert resolve_accelerator("amd", ["nvidia"]) == "amd"
    assert resolve_accelerator("cpu", ["nvidia"]) == "cpu"


def test_daemon_json_parsing():
    assert parse_daemon_json("") == {}
    nvidia = '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}'
    assert parse_daemon_json(nvidia)["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert isinstance(parse_daemon_json('{"log-driver": "journald",}'), DaemonJsonError)
    assert isinstance(parse_daemon_json("[1, 2]"), DaemonJsonError)

"""GPU facts parsed from the tools' outputs: what the deploy sizes from and what the verify
suite's GPU checks count (both read the same facts, so these tests hold the GPU checks too).

Which outputs are recorded and which are written by hand:
- nvidia-smi lines are in our query's format (`--query-gpu=name,memory.total,driver_version,
  compute_cap --format=csv,noheader,nounits`), written by hand from values recorded on real
  hosts (an H100 80GB HBM3 reports 81559 MiB, an L4 23034 MiB). The driver-failure line is
  nvidia-smi's own message, recorded. The [N/A] memory line is written by hand after parsers
  that handle unified-memory parts (GB10) reporting no dedicated memory.
- rocm-smi JSON: RX_7900_XT is recorded (`rocm-smi --showproductname --showuse --showmeminfo vram
  --json`, marimo-team/marimo issue 9237); the MI300X cards are written by hand in that shape.
The verify suite's GPU checks run against stand-in tools answering with the outputs in
tests/unit/data/gpu-tools/, each file's first line saying where it was recorded or how it was written
(tests/unit/test_verify_gpu_checks.py).
"""

from vllm_fleet.catalogue import CATALOGUE, Gpus
from vllm_fleet.facts.gpus import parse_nvidia_smi, parse_rocm_smi
from vllm_fleet.gpus import gpus_from_data, gpus_from_facts, vendor_from_name
from vllm_fleet.rules import validate
from vllm_fleet.sizing import best_tp

NVIDIA_SMI_2X_H100 = [
    "NVIDIA H100 80GB HBM3, 81559, 570.133.20, 9.0",
    "NVIDIA H100 80GB HBM3, 81559, 570.133.20, 9.0",
]
NVIDIA_SMI_RTX_4060_LAPTOP = ["NVIDIA GeForce RTX 4060 Laptop GPU, 8188, 550.120, 8.9"]
NVIDIA_SMI_FAILED = ["NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."]
_CARD = """{"VRAM Total Memory (B)": "206141652992", "VRAM Total Used Memory (B)": "296960000",
  "Card Series": "AMD Instinct MI300X OAM", "Card Model": "0x74a1",
  "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]"}"""
ROCM_SMI_MI300X = f'{{"card0": {_CARD}, "card1": {_CARD}}}'


def test_nvidia_smi_two_h100s():
    gpus = parse_nvidia_smi(NVIDIA_SMI_2X_H100)
    assert gpus[0] == {
        "name": "NVIDIA H100 80GB HBM3",
        "memory_mib": 81559,
        "driver_version": "570.133.20",
        "compute_capability": "9.0",
    }
    assert gpus_from_facts(gpus) == Gpus(2, 79.6, "NVIDIA H100 80GB HBM3", "facts")


def test_nvidia_smi_laptop_and_a_driver_that_does_not_answer():
    assert gpus_from_facts(parse_nvidia_smi(NVIDIA_SMI_RTX_4060_LAPTOP)) == Gpus(
        1, 8.0, "NVIDIA GeForce RTX 4060 Laptop GPU", "facts"
    )
    assert parse_nvidia_smi(NVIDIA_SMI_FAILED) == [] and gpus_from_facts([]) is None


def test_rocm_smi_json():
    gpus = parse_rocm_smi(ROCM_SMI_MI300X)
    assert gpus == [{"name": "AMD Instinct MI300X OAM", "memory_mib": 196592}] * 2
    assert gpus_from_facts(gpus) == Gpus(2, 192.0, "AMD Instinct MI300X OAM", "facts")
    assert parse_rocm_smi("") == [] and parse_rocm_smi("ERROR: not json") == []


# Recorded: marimo-team/marimo issue 9237 (2026-04-16), one Radeon RX 7900 XT.
ROCM_SMI_RX_7900_XT = """{
  "card0": {
    "GPU use (%)": "0",
    "VRAM Total Memory (B)": "21458059264",
    "VRAM Total Used Memory (B)": "27856896",
    "Card Series": "Radeon RX 7900 XT",
    "Card Model": "0x744c",
    "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
    "Card SKU": "D70401XT",
    "Subsystem ID": "0x471e",
    "Device Rev": "0xcc",
    "Node ID": "1",
    "GUID": "26967",
    "GFX Version": "gfx1100"
  }
}"""


def test_rocm_smi_json_as_recorded_from_a_radeon():
    gpus = parse_rocm_smi(ROCM_SMI_RX_7900_XT)
    assert gpus == [{"name": "Radeon RX 7900 XT", "memory_mib": 20464}]
    assert gpus_from_facts(gpus) == Gpus(1, 20.0, "Radeon RX 7900 XT", "facts")


def test_a_gpu_without_dedicated_memory_is_listed_but_not_sized_from():
    listed = parse_nvidia_smi(["NVIDIA GB10, [N/A], 580.95.05, 12.1"])
    assert listed == [
        {"name": "NVIDIA GB10", "memory_mib": None, "driver_version": "580.95.05", "compute_capability": "12.1"}
    ]
    # The verify suite counts it; sizing falls back to the host data's gpu_memory_gib.
    assert gpus_from_facts(listed) is None


def test_nvidia_smi_error_lines_list_no_gpu():
    assert parse_nvidia_smi(["No devices were found"]) == []
    assert parse_nvidia_smi(["Failed to initialize NVML: Unknown Error"]) == []


def test_vendor_from_gpu_names():
    assert vendor_from_name("NVIDIA GeForce RTX 4060") == "nvidia"
    assert vendor_from_name("AMD Instinct MI300X") == "amd"
    assert vendor_from_name("Radeon RX 7900 XTX") == "amd"
    assert vendor_from_name("Intel Arc A770") is None and vendor_from_name(None) is None


def test_gpus_from_host_data_needs_count_and_memory(settings_for):
    assert gpus_from_data(settings_for("single_gpu", gpu_count=2, gpu_memory_gib=48)) == Gpus(
        2, 48.0, "GPU", "host data"
    )
    assert gpus_from_data(settings_for("single_gpu", gpu_count=2)) is None


def test_an_l4_is_sized_by_the_memory_it_reports_not_the_24_gb_on_its_box():
    """nvidia-smi on an L4 reports memory.total 23034 MiB (NVIDIA's L4 datasheet: 24 GB)."""
    l4 = gpus_from_facts(parse_nvidia_smi(["NVIDIA L4, 23034, 570.133.20, 8.9"]))
    assert l4 == Gpus(1, 22.5, "NVIDIA L4", "facts")
    assert CATALOGUE.reference_gpus("single_gpu").memory_gib == l4.memory_gib
    s = validate("l4", {"phase": "single_gpu", "vllm_max_model_len": 8192}, ["single_gpu"])
    on_box = Gpus(1, 24.0, "as sold", "host data")
    model = CATALOGUE.get("Qwen/Qwen2.5-32B-Instruct-AWQ")
    # The 1.5 GiB between the box and the report is the KV cache of thousands of tokens.
    assert best_tp(model, on_box, s).kv_cache_gib - best_tp(model, l4, s).kv_cache_gib > 1.3


def test_the_pre_turing_pci_ids_are_pci_ids_volta_pascal_and_older_and_nothing_newer():
    """From pci.ids' chip names (data/nvidia_pre_turing_pci_ids.txt says which pci.ids)."""
    from vllm_fleet.gpus import PRE_TURING_PCI_IDS

    assert PRE_TURING_PCI_IDS["1db4"] == "GV100GL [Tesla V100 PCIe 16GB]"
    assert PRE_TURING_PCI_IDS["1df6"] == "GV100GL [Tesla V100S PCIe 32GB]"
    assert PRE_TURING_PCI_IDS["15f8"] == "GP100GL [Tesla P100 PCIe 16GB]"
    assert PRE_TURING_PCI_IDS["1b38"] == "GP102GL [Tesla P40]" and "1bb3" in PRE_TURING_PCI_IDS  # P4
    # T4 (TU104GL), A100 (GA100), H100 (GH100), L4 (AD104GL): Turing and newer.
    assert not {"1eb8", "20b0", "2330", "27b8"} & PRE_TURING_PCI_IDS.keys()
    assert all(name.startswith(("GV", "GP", "GM", "GK", "GF")) for name in PRE_TURING_PCI_IDS.values())

"""GPU stack steps Debian provides, run for real on a sandbox host over SSH."""

from __future__ import annotations

import json

import pytest
from conftest import PYINFRA, SANDBOX_INVENTORY, SESSION_FLEET, deploy_json, on_host, run, write_inventory

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group(SESSION_FLEET)]


def test_debian_non_free_sources_are_added_and_the_driver_packages_resolve(fleet, tmp_path):
    first, _ = fleet.names
    inventory = write_inventory(tmp_path, {first: {"nvidia_driver_branch": "535"}})
    deploy = "tests/integration/deploys/debian_nvidia_sources.py"
    result = run([PYINFRA, "-y", "--limit", first, inventory, deploy])
    assert result.rc == 0, result.failure

    source = on_host(first, "cat /etc/apt/sources.list.d/vllm-fleet-nonfree.sources")
    assert "Components: contrib non-free non-free-firmware" in source
    simulated = on_host(first, "cat /tmp/nvidia-simulate.log")
    for package in ("nvidia-driver", "nvidia-smi", "firmware-misc-nonfree", "linux-headers-amd64"):
        assert f"Inst {package} " in simulated, f"apt cannot resolve {package}"
    assert "535." in on_host(first, "apt-cache policy nvidia-driver | sed -n 's/ *Candidate: //p'")
    # Nothing was installed: --simulate only.
    assert on_host(first, "dpkg-query -W -f '${Status}' nvidia-driver 2>/dev/null || true") != "install ok installed"

    again = run([PYINFRA, "-y", "--json", "--limit", first, inventory, deploy])
    outcomes = {op["name"]: op for op in json.loads(again.stdout)["results"]["operations"]}
    assert outcomes["Add Debian's contrib, non-free and non-free-firmware components"]["no_change"] == [first]
    assert outcomes["Refresh apt lists for the new sources"]["no_change"] == [first]


def test_gpu_less_host_claiming_nvidia_is_refused_with_nothing_installed(fleet, tmp_path):
    first, _ = fleet.names
    result, outcomes = deploy_json(
        write_inventory(tmp_path, {first: {"accelerator": "nvidia", "nvidia_driver_branch": "535"}})
    )
    assert result.rc != 0
    assert "pre-flight refused: gpu_present: accelerator is nvidia but the PCI bus shows no NVIDIA GPU" in result.output
    assert not any(name.startswith("NVIDIA") for name, hosts in outcomes.items() if hosts.get(first) == "success")
    assert on_host(first, "ls /etc/modprobe.d/blacklist-nouveau.conf 2>/dev/null || echo absent") == "absent"
    back, _ = deploy_json(SANDBOX_INVENTORY)
    assert back.rc == 0

"""The GPU stack planned for each distribution x vendor x state, against facts written by hand
(see harness.py: which assertions follow a vendor's source and which are change detectors).

One pyinfra run plans every "before" host (pyinfra's @fake connector: nothing runs
anywhere); assertions read the commands each operation would run. A --dry run from
the "after" facts of an installed host plans no change to the GPU stack.
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.planning.harness import FakeHost, changes, plan, plan_each, write_inventory
from vllm_fleet import gpu_packages, paths

GPU80 = {"gpu_count": 1, "gpu_memory_gib": 80}
# Ubuntu 22.04 on the 6.8 HWE kernel (the harness's default kernel), open modules (NVIDIA's default).
UBUNTU_580 = [
    "linux-modules-nvidia-580-server-open-generic-hwe-22.04",
    "linux-modules-nvidia-580-server-open-6.8.0-45-generic",
    "nvidia-headless-no-dkms-580-server-open",
    "nvidia-utils-580-server",
]
OWN_CUDA_12_2_IMAGE = {"vllm_image": "registry.local/vllm:cu122"}
STACK_GROUPS = ("NVIDIA driver |", "NVIDIA container toolkit |", "AMD ROCm |", "Reboot for the GPU driver |")


def amd_ready(name: str, data: dict | None = None, **probe: str) -> FakeHost:
    """An Ubuntu 22.04 host with eight MI300X and ROCm's devices, groups and targets in place."""
    ready = {"kfd": "yes", "render_group": "yes", "gfx": "gfx942,", **probe}
    return FakeHost(
        name, "ubuntu22", pci="mi300x", probe=ready, data={"gpu_count": 8, "gpu_memory_gib": 192, **(data or {})}
    )


BEFORE = [
    FakeHost("ubuntu22-bare", "ubuntu22", probe={"nouveau": "yes"}, data=GPU80),
    FakeHost("ubuntu24-bare-live", "ubuntu24", data=GPU80),
    FakeHost(
        "debian12-bare",
        "debian12",
        probe={"kernel": "6.1.0-28-amd64", "nouveau": "yes"},
        data={**GPU80, "nvidia_driver_branch": "535", **OWN_CUDA_12_2_IMAGE},
    ),
    FakeHost("debian12-580", "debian12", data=GPU80),
    FakeHost("debian12-535-default-image", "debian12", data={**GPU80, "nvidia_driver_branch": "535"}),
    FakeHost("rocky9-bare", "rocky9", probe={"kernel": "5.14.0-427.13.1.el9_4.x86_64"}, data=GPU80),
    FakeHost("ubuntu22-cuda", "ubuntu22", data={**GPU80, "nvidia_driver_source": "cuda"}),
    FakeHost(
        "ubuntu22-wrong-branch",
        "ubuntu22",
        nvidia_smi=["NVIDIA H100 80GB HBM3, 81559, 535.183.01, 9.0"],
        probe={"nvidia_driver": "535.183.01", "held": "nvidia-headless-no-dkms-535-server,nvidia-utils-535-server,"},
    ),
    FakeHost("ubuntu22-secure-boot", "ubuntu22", probe={"secure_boot": "SecureBoot enabled"}, data=GPU80),
    FakeHost(
        "debian12-secure-boot",
        "debian12",
        probe={"secure_boot": "SecureBoot enabled"},
        data={**GPU80, "nvidia_driver_branch": "535", **OWN_CUDA_12_2_IMAGE},
    ),
    FakeHost("ubuntu22-reboot-pending", "ubuntu22", probe={"reboot_required": "yes"}, data=GPU80),
    FakeHost("ubuntu22-never-reboot", "ubuntu22", probe={"nouveau": "yes"}, data={**GPU80, "reboot_policy": "never"}),
    FakeHost("ubuntu22-amd-bare", "ubuntu22", pci="mi300x", data={"gpu_count": 8, "gpu_memory_gib": 192}),
    FakeHost("debian12-amd", "debian12", pci="mi300x", data={"gpu_count": 8, "gpu_memory_gib": 192}),
    FakeHost("ubuntu22-no-gpu-claims-nvidia", "ubuntu22", pci="none", data={**GPU80, "accelerator": "nvidia"}),
    FakeHost("rocky9-secure-boot", "rocky9", probe={"secure_boot": "SecureBoot enabled"}, data=GPU80),
    FakeHost(
        "rocky9-amd-bare",
        "rocky9",
        pci="mi300x",
        probe={"kernel": "5.14.0-427.13.1.el9_4.x86_64"},
        data={"gpu_count": 8, "gpu_memory_gib": 192},
    ),
    FakeHost(
        "ubuntu24-secure-boot-open",
        "ubuntu24",
        probe={"secure_boot": "SecureBoot enabled"},
        data={**GPU80, "nvidia_open_kernel_modules": True},
    ),
    FakeHost("ubuntu22-ga-kernel", "ubuntu22", probe={"kernel": "5.15.0-126-generic"}, data=GPU80),
    # A V100 under an image of the operator's own built with CUDA 12 (the default's CUDA 13 builds
    # nothing for it), and under the default image: a bare host (no nvidia-smi yet) and one whose
    # driver answers.
    FakeHost("ubuntu22-v100", "ubuntu22", data={**GPU80, "gpu_name": "Tesla V100-SXM2-32GB", **OWN_CUDA_12_2_IMAGE}),
    FakeHost("ubuntu22-v100-default-image", "ubuntu22", data={**GPU80, "gpu_name": "Tesla V100-SXM2-32GB"}),
    FakeHost(
        "ubuntu22-p40-driver-answers",
        "ubuntu22",
        nvidia_smi=["Tesla P40, 24576, 580.95.05, 6.1"],
        probe={"nvidia_driver": "580.95.05"},
    ),
    FakeHost(
        "ubuntu22-gh200-cuda",
        "ubuntu22",
        probe={"machine": "aarch64"},
        data={**GPU80, "nvidia_driver_source": "cuda", "gpu_name": "NVIDIA GH200 480GB"},
    ),
    FakeHost(
        "rocky9-other-branch",
        "rocky9",
        nvidia_smi=["NVIDIA H100 80GB HBM3, 81559, 570.133.20, 9.0"],
        probe={
            "kernel": "5.14.0-427.13.1.el9_4.x86_64",
            "nvidia_driver": "570.133.20",
            "nvidia_rpm": "570.133.20",
            "epel": "yes",
        },
        data=GPU80,
    ),
    amd_ready("ubuntu22-amd-installed", rocm_installed="7.2.1-81"),
    # The dkms use case installs amdgpu alone: no /opt/rocm/.info/version, only what our install wrote.
    amd_ready("ubuntu22-amd-dkms-installed", rocm_marked="dkms 7.2.1", data={"rocm_usecase": "dkms"}),
    # ROCm 7.2.10 is not 7.2.1, though its version starts with it.
    amd_ready("ubuntu22-amd-other-patch", rocm_installed="7.2.10-1"),
]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    return plan_each(tmp_path_factory.mktemp("plans"), BEFORE)


def commands(planned, host: str, operation: str) -> list[str]:
    return planned.ops.get(operation, {}).get(f"@fake/{host}", [])


def ran(planned, host: str, operation: str) -> bool:
    """The operation changed the host (or failed on it)."""
    return planned.status.get(operation, {}).get(f"@fake/{host}") in ("Success", "Error")


def installs(planned, host: str, operation: str) -> str:
    found = [c for c in commands(planned, host, operation) if " install " in f" {c} "]
    assert found, f"{operation} installs nothing on {host}"
    return found[-1]


def test_ubuntu_bare_host_gets_canonical_signed_open_modules_that_follow_the_kernel(planned):
    """Ubuntu's NVIDIA drivers installation guide: linux-modules-nvidia-<branch>-server[-open]-<flavour>
    (-hwe-<release> on an HWE kernel) follows kernel upgrades; nothing is held, or the next kernel
    would come without modules (the package of the running kernel loads them now)."""
    host = "ubuntu22-bare"
    assert installs(planned, host, "NVIDIA driver | Install NVIDIA driver 580").endswith(" ".join(UBUNTU_580))
    assert commands(planned, host, "NVIDIA driver | Rebuild the initramfs without nouveau") == ["update-initramfs -u"]
    assert not [name for name in planned.names(host) if "hold" in name.lower()]
    assert not any("apt-mark hold" in c for cmds in planned.ops.values() for c in cmds.get(f"@fake/{host}", []))
    assert not ran(planned, host, "NVIDIA driver | Install kernel headers for DKMS")  # prebuilt modules
    # nouveau held the GPU: the new module cannot load live.
    assert ran(planned, host, "Reboot for the GPU driver | Reboot to load the GPU driver")
    assert not ran(planned, host, "Reboot for the GPU driver | Load the NVIDIA module")


def test_the_release_kernel_gets_the_plain_metapackage_and_pre_turing_gets_proprietary_modules(planned):
    """NVIDIA: open modules are the default from branch 560 and need Turing or newer."""
    ga = installs(planned, "ubuntu22-ga-kernel", "NVIDIA driver | Install NVIDIA driver 580")
    assert ga.endswith(
        "linux-modules-nvidia-580-server-open-generic linux-modules-nvidia-580-server-open-5.15.0-126-generic "
        "nvidia-headless-no-dkms-580-server-open nvidia-utils-580-server"
    )
    v100 = installs(planned, "ubuntu22-v100", "NVIDIA driver | Install NVIDIA driver 580")
    assert "linux-modules-nvidia-580-server-generic-hwe-22.04 " in v100 and "-open" not in v100


def test_a_pre_turing_gpu_under_the_default_image_is_refused_before_the_driver_is_touched(planned):
    """vLLM's docker/Dockerfile builds its CUDA 13.0 image for torch_cuda_arch_list '7.5 8.0 8.6 8.9 9.0
    10.0 11.0 12.0' without PTX: a V100 (7.0) or a P40 (6.1) has no kernel in it."""
    for host, name, capability in (
        ("ubuntu22-v100-default-image", "Tesla V100-SXM2-32GB", "below 7.5"),
        ("ubuntu22-p40-driver-answers", "Tesla P40", "6.1"),
    ):
        assert planned.names(host) == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
        [refusal] = planned.refusals(host)
        assert refusal.startswith(
            f"gpu_arch: {name} has compute capability {capability}, and vllm/vllm-openai:v0.33.0 is built with "
            "CUDA 13.0 for 7.5 (Turing) and newer"
        )


def test_arm64_hosts_use_the_sbsa_cuda_repository_and_arm64_toolkit_packages(planned):
    """NVIDIA's CUDA repositories serve arm64 servers (GH200, GB200) from sbsa/; the toolkit's apt
    repository from stable/deb/arm64."""
    host = "ubuntu22-gh200-cuda"
    keyring = " ".join(commands(planned, host, "NVIDIA driver | Add NVIDIA's CUDA repository (cuda-keyring)"))
    assert gpu_packages.CUDA_REPO + "/ubuntu2204/sbsa/cuda-keyring_1.1-1_all.deb" in keyring
    assert ran(planned, host, "NVIDIA container toolkit | Add the NVIDIA container toolkit repository (deb822)")
    assert "URIs: https://nvidia.github.io/libnvidia-container/stable/deb/arm64\n" in (
        gpu_packages.toolkit_apt_source("arm64")
    )
    assert "vllm/vllm-openai:v" in " ".join(commands(planned, host, "vLLM service | Pull vllm/vllm-openai:v0.33.0"))


def test_without_nouveau_the_new_module_loads_live(planned):
    host = "ubuntu24-bare-live"
    assert commands(planned, host, "Reboot for the GPU driver | Load the NVIDIA module") == ["modprobe nvidia"]
    assert not ran(planned, host, "Reboot for the GPU driver | Reboot to load the GPU driver")


def test_container_toolkit_from_nvidias_repository_and_the_runtime_registered_once(planned):
    host = "ubuntu22-bare"
    assert installs(planned, host, "NVIDIA container toolkit | Install the NVIDIA container toolkit").endswith(
        " nvidia-container-toolkit"
    )
    assert "nvidia-ctk runtime configure --runtime=docker" in commands(
        planned, host, "NVIDIA container toolkit | Register the NVIDIA runtime with Docker"
    )
    assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in commands(
        planned,
        host,
        "NVIDIA container toolkit | Generate the CDI spec for the loaded driver (Podman, Docker's CDI mode)",
    )
    restart = commands(planned, host, "NVIDIA container toolkit | Restart Docker engine for the NVIDIA runtime")
    assert any(
        c.startswith("systemctl restart docker.service") or c == "systemctl start docker.service" for c in restart
    )


def test_debian_adds_non_free_and_builds_535_with_dkms(planned):
    host = "debian12-bare"
    assert ran(planned, host, "NVIDIA driver | Add Debian's contrib, non-free and non-free-firmware components")
    assert commands(planned, host, "NVIDIA driver | Refresh apt lists for the new sources") == ["apt-get update"]
    assert installs(planned, host, "NVIDIA driver | Install kernel headers for DKMS").endswith(" linux-headers-amd64")
    assert installs(planned, host, "NVIDIA driver | Install NVIDIA driver 535").endswith(
        " nvidia-driver nvidia-smi firmware-misc-nonfree"
    )
    assert ran(planned, host, "Reboot for the GPU driver | Reboot to load the GPU driver")


def test_debian_refuses_a_branch_it_does_not_ship_and_its_535_under_the_default_image(planned):
    assert planned.refusals("debian12-580") == [
        "gpu_stack: Debian 12's non-free archive has NVIDIA branch 535 only, not 580: set nvidia_driver_branch = "
        "'535', or nvidia_driver_source = 'cuda'"
    ]
    assert planned.names("debian12-580") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    [refusal] = planned.refusals("debian12-535-default-image")
    assert refusal.startswith(
        "gpu_stack: the managed NVIDIA driver would be branch 535, older than the 580.65 that "
        "vllm/vllm-openai:v0.33.0's CUDA 13.0 needs: set nvidia_driver_source = 'cuda'"
    )
    assert planned.names("debian12-535-default-image") == [
        "Pre-flight checks | Refuse the host: pre-flight checks failed"
    ]


def test_rocky_uses_the_cuda_repository_module_stream_and_dockers_rpm_repository(planned):
    """NVIDIA's driver installation guide, RHEL 9: EPEL with CRB enabled, then the module stream."""
    host = "rocky9-bare"
    assert commands(planned, host, "NVIDIA driver | Enable CRB and install EPEL (DKMS lives there)") == [
        "dnf config-manager --set-enabled crb",
        "rpm -q epel-release >/dev/null || dnf install -y epel-release",
    ]
    download = " ".join(commands(planned, host, "NVIDIA driver | Add NVIDIA's CUDA repository"))
    assert gpu_packages.CUDA_REPO + "/rhel9/x86_64/cuda-rhel9.repo" in download
    headers = installs(planned, host, "NVIDIA driver | Install kernel headers for DKMS")
    assert "kernel-devel-5.14.0-427.13.1.el9_4.x86_64" in headers
    assert commands(planned, host, "NVIDIA driver | Install NVIDIA driver module stream nvidia-driver:580-open") == [
        "dnf module install -y nvidia-driver:580-open"
    ]
    assert commands(planned, host, "NVIDIA driver | Rebuild the initramfs without nouveau") == ["dracut --force"]
    assert ran(planned, host, "Docker engine | Add Docker's rpm repository")
    assert ran(planned, host, "NVIDIA container toolkit | Add the NVIDIA container toolkit repository")


def test_another_module_stream_is_switched_to_not_reset(planned):
    """NVIDIA's guide: changing streams is `dnf module switch-to ... --allowerasing`."""
    switch = "NVIDIA driver | Switch the NVIDIA driver from 570.133.20 to module stream nvidia-driver:580-open"
    assert commands(planned, "rocky9-other-branch", switch) == [
        "dnf module switch-to -y --allowerasing nvidia-driver:580-open"
    ]
    # EPEL is there already: the step that adds it does not run again.
    assert not ran(planned, "rocky9-other-branch", "NVIDIA driver | Enable CRB and install EPEL (DKMS lives there)")


def test_cuda_source_on_ubuntu_installs_the_keyring_and_cuda_drivers(planned):
    host = "ubuntu22-cuda"
    keyring = " ".join(commands(planned, host, "NVIDIA driver | Add NVIDIA's CUDA repository (cuda-keyring)"))
    assert gpu_packages.CUDA_REPO + "/ubuntu2204/x86_64/cuda-keyring_1.1-1_all.deb" in keyring
    assert installs(planned, host, "NVIDIA driver | Install NVIDIA driver 580").endswith(" nvidia-open-580")
    # NVIDIA's driver installation guide, "Version locking": the branch's pinning package, before
    # the driver, keeps apt from upgrading to the newest branch (590 drops pre-Turing GPUs).
    pin = installs(planned, host, "NVIDIA driver | Keep apt on driver branch 580 (nvidia-driver-pinning-580)")
    assert pin.endswith(" install nvidia-driver-pinning-580")
    # Its place, after the headers and before the driver: test_plans_unchanged replays this host alone.


def test_wrong_branch_is_released_replaced_and_rebooted(planned):
    host = "ubuntu22-wrong-branch"
    released = (
        "NVIDIA driver | Release holds on NVIDIA driver packages "
        "(nvidia-headless-no-dkms-535-server, nvidia-utils-535-server): they keep the next kernel's modules out"
    )
    assert commands(planned, host, released) == [
        "apt-mark unhold nvidia-headless-no-dkms-535-server nvidia-utils-535-server"
    ]
    assert installs(planned, host, "NVIDIA driver | Install NVIDIA driver 580").endswith(" ".join(UBUNTU_580))
    # A 535 module is loaded: 580 needs a reboot.
    assert ran(planned, host, "Reboot for the GPU driver | Reboot to load the GPU driver")


def test_secure_boot_signed_modules_go_on_dkms_is_refused(planned):
    assert ran(planned, "ubuntu22-secure-boot", "NVIDIA driver | Install NVIDIA driver 580")
    assert planned.names("debian12-secure-boot") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    assert (
        "[@fake/debian12-secure-boot] pre-flight refused: secure_boot: Secure Boot is on and this driver's modules"
        in (planned.output)
    )


def test_pending_reboot_is_taken_when_allowed(planned):
    assert ran(planned, "ubuntu22-reboot-pending", "Reboot for the GPU driver | Reboot to load the GPU driver")


def test_reboot_policy_never_stops_that_host_with_the_reason(planned):
    host = "ubuntu22-never-reboot"
    assert ran(planned, host, "Reboot for the GPU driver | Stop: a reboot is needed and reboot_policy is never")
    assert (
        "needs a reboot to load the new GPU driver (reboot_policy is never): reboot it, then run the deploy again"
        in (planned.output)
    )
    assert not ran(planned, host, "Docker engine | Install Docker engine")
    # ... and the rest of the fleet went on.
    assert ran(planned, "ubuntu22-bare", "vLLM service | Write vllm.service of the new release")


def test_amd_on_ubuntu_installs_amdgpu_install_and_rocm(planned):
    host = "ubuntu22-amd-bare"
    prerequisites = (
        "AMD ROCm | Install what amdgpu-install needs: the running kernel's headers and extra modules, Python tools"
    )
    assert installs(planned, host, prerequisites).endswith(
        " python3-setuptools python3-wheel linux-headers-6.8.0-45-generic linux-modules-extra-6.8.0-45-generic"
    )
    deb = " ".join(commands(planned, host, "AMD ROCm | Add AMD's repositories for ROCm 7.2.1 (amdgpu-install)"))
    assert "https://repo.radeon.com/amdgpu-install/7.2.1/ubuntu/jammy/amdgpu-install_7.2.1.70201-1_all.deb" in deb
    assert commands(planned, host, "AMD ROCm | Install the amdgpu driver and ROCm 7.2.1 (use case rocm)") == [
        "amdgpu-install -y --usecase=rocm",
        f"mkdir -p {paths.STATE_DIR} && echo 'rocm 7.2.1' > {paths.ROCM_INSTALLED}",
    ]
    assert ran(planned, host, "Reboot for the GPU driver | Reboot to load the GPU driver")
    assert not any(name.startswith("NVIDIA") for name in planned.names(host))


def test_amd_on_debian_and_missing_gpus_are_refused(planned):
    assert planned.names("debian12-amd") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    [refusal] = planned.refusals("debian12-amd")
    assert refusal.startswith("gpu_stack: vllm-fleet installs ROCm on Ubuntu and RHEL-family hosts, not Debian")
    assert refusal.endswith("install ROCm yourself and set manage_gpu_stack = False")
    assert planned.names("ubuntu22-no-gpu-claims-nvidia") == [
        "Pre-flight checks | Refuse the host: pre-flight checks failed"
    ]
    assert planned.refusals("ubuntu22-no-gpu-claims-nvidia") == [
        "gpu_present: accelerator is nvidia but the PCI bus shows no NVIDIA GPU (GPU vendors seen: none); "
        "check the host, or set accelerator to match it"
    ]


INSTALLED_UBUNTU = FakeHost(
    "ubuntu22-installed",
    "ubuntu22",
    nvidia_smi=["NVIDIA H100 80GB HBM3, 81559, 580.95.05, 9.0"],
    probe={
        "nvidia_driver": "580.95.05",
        "cdi_spec": "current",
        "toolkit": "yes",
        "docker": "yes",
        "docker_runtimes": "nvidia,runc,",
    },
    packages={
        **{p: "580.95.05-0ubuntu0.22.04.1" for p in UBUNTU_580},
        "docker.io": "24.0.7",
        "curl": "7.81",
        "jq": "1.6",
        "nvidia-container-toolkit": "1.18.0-1",
    },
    files={
        paths.NOUVEAU_BLACKLIST: gpu_packages.NOUVEAU_BLACKLIST_TEXT,
        paths.DEV_CHAR_RULE: gpu_packages.DEV_CHAR_RULE_TEXT,
        paths.TOOLKIT_KEYRING: "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        paths.TOOLKIT_APT_SOURCE: gpu_packages.toolkit_apt_source(),
        paths.CDI_SPEC: "cdiVersion: 0.5.0  # libcuda.so.580.95.05",
        paths.DOCKER_DAEMON_JSON: '{"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}',
    },
    dirs=["/etc/apt/keyrings", "/etc/modprobe.d", "/etc/apt/sources.list.d", "/lib/udev/rules.d"],
)


def test_a_second_plan_from_the_after_facts_changes_no_part_of_the_gpu_stack(tmp_path):
    inventory = write_inventory(tmp_path, [INSTALLED_UBUNTU])
    certain = changes(inventory)
    assert {name: hosts for name, hosts in certain.items() if name.startswith(STACK_GROUPS)} == {}
    # Executed (on @fake), no conditional step fires either: nothing to rebuild, refresh or reboot.
    executed = plan(inventory)
    assert [name for name in executed.names("ubuntu22-installed") if name.startswith(STACK_GROUPS)] == []
    assert ran(
        executed, "ubuntu22-installed", "vLLM service | Write vllm.service of the new release"
    )  # the run did reach the end


def test_a_driver_updated_since_boot_is_rebooted_into_or_stops_the_host_when_reboots_are_off(tmp_path):
    """unattended-upgrades replaced the libraries (NVML now 580.95.05) under a loaded 580.82.07 module:
    every container start fails with "Driver/library version mismatch" until the host reboots."""
    updated = {**INSTALLED_UBUNTU.probe, "nvidia_driver": "580.82.07", "nvidia_libraries": "580.95.05"}
    hosts = [
        dataclasses.replace(INSTALLED_UBUNTU, name="ubuntu22-updated", probe=updated),
        dataclasses.replace(
            INSTALLED_UBUNTU, name="ubuntu22-updated-never", probe=updated, data={"reboot_policy": "never"}
        ),
    ]
    executed = plan(write_inventory(tmp_path, hosts))
    assert ran(executed, "ubuntu22-updated", "Reboot for the GPU driver | Reboot to load the GPU driver")
    assert ran(executed, "ubuntu22-updated", "vLLM service | Write vllm.service of the new release")
    never = "Reboot for the GPU driver | Stop: a reboot is needed and reboot_policy is never"
    assert ran(executed, "ubuntu22-updated-never", never)
    assert not ran(executed, "ubuntu22-updated-never", "vLLM service | Write vllm.service of the new release")


def test_rocky_under_secure_boot_refuses_dkms_modules(planned):
    assert planned.names("rocky9-secure-boot") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    [refusal] = planned.refusals("rocky9-secure-boot")
    assert refusal.startswith("secure_boot: Secure Boot is on and this driver's modules are built by DKMS, unsigned")


def test_amd_on_rocky_installs_the_rpm(planned):
    rpm = " ".join(
        commands(planned, "rocky9-amd-bare", "AMD ROCm | Add AMD's repositories for ROCm 7.2.1 (amdgpu-install)")
    )
    assert "https://repo.radeon.com/amdgpu-install/7.2.1/el/9.4/amdgpu-install-7.2.1.70201-1.el9.noarch.rpm" in rpm
    # AMD's RHEL 9 quick start: EPEL with CRB, then the running kernel's headers, devel and devel-matched.
    assert ran(planned, "rocky9-amd-bare", "AMD ROCm | Enable CRB and install EPEL (amdgpu's DKMS lives there)")
    prerequisites = installs(
        planned,
        "rocky9-amd-bare",
        "AMD ROCm | Install what amdgpu-install needs: the running kernel's headers for amdgpu's DKMS, Python tools",
    )
    kernel = "5.14.0-427.13.1.el9_4.x86_64"
    assert prerequisites.endswith(
        f" python3-setuptools python3-wheel kernel-headers-{kernel} kernel-devel-{kernel} kernel-devel-matched-{kernel}"
    )


def test_open_modules_under_secure_boot_come_signed_from_canonical(planned):
    install = installs(planned, "ubuntu24-secure-boot-open", "NVIDIA driver | Install NVIDIA driver 580")
    assert install.endswith(
        "linux-modules-nvidia-580-server-open-generic linux-modules-nvidia-580-server-open-6.8.0-45-generic "
        "nvidia-headless-no-dkms-580-server-open nvidia-utils-580-server"
    )


def test_rocm_already_at_the_pinned_release_is_not_reinstalled(planned):
    host = "ubuntu22-amd-installed"
    assert not ran(planned, host, "AMD ROCm | Install the amdgpu driver and ROCm 7.2.1 (use case rocm)")
    assert not ran(planned, host, "Reboot for the GPU driver | Reboot to load the GPU driver")
    # ... and not because the host was refused: it was planned through to its service.
    assert ran(planned, host, "AMD ROCm | Add AMD's repositories for ROCm 7.2.1 (amdgpu-install)")
    assert ran(planned, host, "vLLM service | Write vllm.service of the new release")


def test_the_dkms_use_case_is_known_installed_and_a_version_matches_by_its_numbers(planned):
    """AMD's amdgpu-install: --usecase=dkms installs the kernel driver alone (no /opt/rocm)."""
    dkms = "ubuntu22-amd-dkms-installed"
    assert not ran(planned, dkms, "AMD ROCm | Install the amdgpu driver and ROCm 7.2.1 (use case dkms)")
    assert not ran(planned, dkms, "Reboot for the GPU driver | Reboot to load the GPU driver")
    assert ran(planned, dkms, "vLLM service | Write vllm.service of the new release")
    other = "ubuntu22-amd-other-patch"
    assert commands(planned, other, "AMD ROCm | Install the amdgpu driver and ROCm 7.2.1 (use case rocm)") == [
        "amdgpu-install -y --usecase=rocm",
        f"mkdir -p {paths.STATE_DIR} && echo 'rocm 7.2.1' > {paths.ROCM_INSTALLED}",
    ]


def test_an_unhealthy_gpu_is_refused_before_anything_is_installed_unless_accepted(tmp_path):
    """nvidia-smi --query-remapped-rows reports a row remap pending (what Xid 63 announces: "Row
    Remapper: New row marked for remapping, reset gpu to activate"); on the AMD host amdgpu counted
    uncorrectable UMC errors and a VRAM page pending retirement (the kernel's amdgpu_ras.c:
    umc_err_count's "ue: N", gpu_vram_bad_pages' flag P)."""
    pending = {**INSTALLED_UBUNTU.probe, "nvidia_remap": "00000000:17:00.0, Yes, No;"}
    accept = {**INSTALLED_UBUNTU.data, "gpu_health_accept": ["row_remap_pending"]}
    ras = {
        "amd_ras": "card1/device/ras/umc_err_count ue: 2;",
        "amd_bad_pages": "card1/device/ras/gpu_vram_bad_pages 1 0;",
    }
    hosts = [
        dataclasses.replace(INSTALLED_UBUNTU, name="ubuntu22-remap-pending", probe=pending),
        dataclasses.replace(INSTALLED_UBUNTU, name="ubuntu22-remap-accepted", probe=pending, data=accept),
        amd_ready("ubuntu22-amd-ras", **ras),
    ]
    executed = plan(write_inventory(tmp_path, hosts))
    refused = ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    assert executed.names("ubuntu22-remap-pending") == refused
    [remap] = executed.refusals("ubuntu22-remap-pending")
    assert remap.startswith("gpu_health: 00000000:17:00.0: row remap pending (row_remap_pending). row_remap_pending: ")
    assert remap.endswith("To serve on it knowingly, add row_remap_pending to gpu_health_accept")
    assert ran(executed, "ubuntu22-remap-accepted", "vLLM service | Write vllm.service of the new release")
    assert "GPU health: serving despite 00000000:17:00.0: row remap pending" in executed.output
    assert executed.names("ubuntu22-amd-ras") == refused
    [amd] = executed.refusals("ubuntu22-amd-ras")
    assert amd.startswith(
        "gpu_health: card1: 2 uncorrectable umc errors (ras_uncorrectable); card1: 1 VRAM pages pending retirement "
        "(bad_pages_pending)."
    )


def test_podman_on_rocky_is_refused_before_docker_would_conflict_with_it(tmp_path):
    """Rocky 9's podman requires runc, which Docker's containerd.io obsoletes and conflicts with
    (containerd/containerd issue 5417; Docker's RHEL install guide removes podman and runc first):
    dnf would stop mid-deploy, after the driver. Refused before anything is installed."""
    host = FakeHost(
        "rocky9-podman",
        "rocky9",
        probe={"kernel": "5.14.0-427.13.1.el9_4.x86_64", "runc_needed_by": "podman,"},
        data=GPU80,
    )
    executed = plan(write_inventory(tmp_path, [host]))
    assert executed.names("rocky9-podman") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    [refusal] = executed.refusals("rocky9-podman")
    assert refusal.startswith("docker_conflicts: podman needs the distribution's runc")


def test_a_bare_pre_turing_host_is_known_by_its_pci_device_id_before_any_driver(tmp_path):
    """No driver answers yet and the inventory names no GPU: sysfs gives PCI 10de:1db4, which pci.ids
    (Debian 12's, 2023.04.10) names "GV100GL [Tesla V100 PCIe 16GB]": refused before the driver is
    installed and the host rebooted. A T4 (10de:1eb8, TU104GL: Turing) goes ahead."""
    hosts = [
        FakeHost("ubuntu22-bare-v100", "ubuntu22", probe={"nvidia_pci_devices": "0x1db4,0x1db4,"}, data=GPU80),
        FakeHost("ubuntu22-bare-t4", "ubuntu22", probe={"nvidia_pci_devices": "0x1eb8,"}, data=GPU80),
    ]
    executed = plan(write_inventory(tmp_path, hosts))
    assert executed.names("ubuntu22-bare-v100") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    [refusal] = executed.refusals("ubuntu22-bare-v100")
    assert refusal.startswith(
        "gpu_arch: GV100GL [Tesla V100 PCIe 16GB] (PCI 10de:1db4) is older than Turing, and "
        "vllm/vllm-openai:v0.33.0 is built with CUDA 13.0 for 7.5 (Turing) and newer"
    )
    assert ran(executed, "ubuntu22-bare-t4", "NVIDIA driver | Install NVIDIA driver 580")

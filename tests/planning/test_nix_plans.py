"""The Nix way planned for connected GPU hosts against facts written by hand (@fake): Nix from the
distribution's package or the pinned official installer, nix.conf with the caches, the flake
shipped and built, the driver libraries linked for Nix-built CUDA, no Docker at all; a
builder host building once for the hosts that copy from it; and nothing to do once built."""

from __future__ import annotations

import pytest

from tests.planning.harness import REPO, FakeHost, changes, plan, plan_each, write_inventory
from vllm_fleet import nix

# The repository's flake serves nixpkgs' old vLLM, which pre-flight refuses (nix_vllm, issue 27):
# turned into a warning here, the rest of the Nix way is planned as a flake of the operator's would be.
OLD_VLLM = {"preflight_warn_only": ["nix_vllm"]}
GPU80 = {"gpu_count": 1, "gpu_memory_gib": 80, "serving_method": "nix", **OLD_VLLM}
CPU_NIX = {"serving_method": "nix", "accelerator": "cpu", **OLD_VLLM}
AMD = {"gpu_count": 8, "gpu_memory_gib": 192, "serving_method": "nix", "accelerator": "amd", **OLD_VLLM}
LIBS = "libcuda.so.1,libnvidia-ml.so.1,"

HOSTS = [
    FakeHost("ubuntu24-nix", "ubuntu24", data=GPU80),
    FakeHost("ubuntu22-nix", "ubuntu22", data=GPU80),
    FakeHost("rocky9-nix", "rocky9", probe={"kernel": "5.14.0-427.13.1.el9_4.x86_64"}, data=GPU80),
    FakeHost("rocky9-nix-arm", "rocky9", data=GPU80, probe={"machine": "aarch64"}),
]


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    return plan_each(tmp_path_factory.mktemp("nix-plans"), HOSTS)


def commands(planned, host: str, operation: str) -> list[str]:
    return planned.ops.get(operation, {}).get(f"@fake/{host}", [])


def test_ubuntu_gets_nix_from_its_package_and_builds_the_cuda_server(planned):
    """Ubuntu 24.04's nix-bin is 2.18.1, as new as nixpkgs needs (lib/minver.nix)."""
    host = "ubuntu24-nix"
    names = planned.names(host)
    install = commands(planned, host, "Nix | Install Nix (nix-setup-systemd)")
    assert any(c.endswith(" nix-setup-systemd") for c in install), install
    assert "Nix | Include them from /etc/nix/nix.conf" in names
    build = commands(planned, host, "Nix server | Build vllm-server-nvidia with Nix")
    digest = nix.flake_hash(REPO / "nix", "vllm-server-nvidia")
    assert build == [
        f"/usr/local/lib/vllm-fleet/vllm-nix-install build @fake/{host} /var/lib/vllm-fleet/nix/flake "
        f"vllm-server-nvidia /var/lib/vllm-fleet/nix/vllm-server-nvidia "
        f"/var/lib/vllm-fleet/nix/vllm-server-nvidia.flake-sha256 {digest} 10800"
    ]
    assert "Nix server | Ship the flake nix/ to /var/lib/vllm-fleet/nix/flake" in names
    # The GPU stack still comes first; Docker and the container toolkit are not needed.
    assert any(name.startswith("NVIDIA driver |") for name in names)
    assert not [n for n in names if n.startswith(("Docker engine |", "NVIDIA container toolkit |"))]
    link = commands(planned, host, "Nix server | Link the host's NVIDIA driver libraries into /run/opengl-driver/lib")
    assert link and "test -e /run/opengl-driver/lib/libcuda.so.1" in link[0]
    assert "Nix server | Keep /run/opengl-driver at boot (systemd-tmpfiles)" in names
    order = list(planned.ops)
    build_at = order.index("Nix server | Build vllm-server-nvidia with Nix")
    assert build_at < order.index("vLLM service | Write vllm.service of the new release")


def test_el_gets_the_official_installer_pinned_by_checksum(planned):
    host = "rocky9-nix"
    download = commands(planned, host, "Nix | Download Nix 2.24.9 (checksum pinned)")
    assert any(nix.INSTALLER.url("x86_64") in c for c in download), download
    assert any(nix.INSTALLER.sha256["x86_64"] in c for c in download), download
    install = commands(planned, host, "Nix | Install Nix 2.24.9 (multi-user, official installer)")
    assert install and "install --daemon --yes" in install[0]


def test_ubuntu_22_04_gets_the_official_installer_as_its_package_is_too_old(planned):
    host = "ubuntu22-nix"
    assert not commands(planned, host, "Nix | Install Nix (nix-setup-systemd)")
    install = commands(
        planned,
        host,
        "Nix | Install Nix 2.24.9 (multi-user, official installer; Ubuntu 22.04's nix-setup-systemd is Nix 2.6.0, "
        "older than 2.18)",
    )
    assert install and "install --daemon --yes" in install[0]


def test_a_machine_without_a_pinned_installer_is_refused_in_pre_flight(planned):
    """Refused before any step, not stopped halfway through the deploy as it was."""
    assert planned.names("rocky9-nix-arm") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    [refusal] = planned.refusals("rocky9-nix-arm")
    assert refusal.startswith("nix_version: the official Nix installer is pinned by checksum for x86_64 only, and this")


def test_a_builder_builds_once_for_the_hosts_that_copy_from_it(tmp_path):
    builder = FakeHost("gpu-builder", "ubuntu22", data={**GPU80, "accelerator": "nvidia", "ssh_hostname": "10.0.0.5"})
    # A CPU host: nixpkgs' vLLM is not known to build for ROCm at the pin (pre-flight's nix_rocm).
    client = FakeHost("cpu-client", "ubuntu22", pci="none", data={**CPU_NIX, "nix_builder": "@fake/gpu-builder"})
    planned = plan(write_inventory(tmp_path, [builder, client]))
    built = planned.names("gpu-builder")
    assert "Nix server | Build vllm-server-nvidia with Nix" in built
    assert "Nix server | Build vllm-server-cpu with Nix" in built
    copy = "Nix server | Copy the Nix-built vllm-server-cpu from @fake/gpu-builder"
    assert commands(planned, "cpu-client", copy)[0].startswith(
        "/usr/local/lib/vllm-fleet/vllm-nix-install copy @fake/cpu-client 10.0.0.5 "
        "/var/lib/vllm-fleet/nix/vllm-server-cpu "
    )
    assert not [n for n in planned.names("cpu-client") if "Build vllm-server" in n or "Ship the flake" in n]
    order = list(planned.ops)
    assert order.index("Nix server | Build vllm-server-cpu with Nix") < order.index(copy)


def test_amd_hosts_are_refused_the_nix_way_at_this_pin(tmp_path):
    amd = FakeHost("gpu-amd", "ubuntu24", pci="mi300x", data=AMD)
    planned = plan(write_inventory(tmp_path, [amd]))
    [refusal] = planned.refusals("gpu-amd")
    assert refusal.startswith("nix_rocm: nixpkgs' vLLM at this flake's pin (nixos-25.11) is not known")
    assert planned.names("gpu-amd") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]


def test_a_host_built_from_this_flake_plans_no_build(tmp_path):
    digest = nix.flake_hash(REPO / "nix", "vllm-server-nvidia")
    built = FakeHost(
        "ubuntu22-nix-built",
        "ubuntu22",
        nvidia_smi=["NVIDIA H100 80GB HBM3, 81559, 580.95.05, 9.0"],
        data=GPU80,
        probe={
            "nvidia_driver": "580.95.05",
            "unit_method": "nix",
            "nix": "yes",
            "driver_libs": LIBS,
            "linked_driver_libs": LIBS,
            "nix_build_nvidia": f"/nix/store/0123-vllm-server {digest}",
        },
    )
    would_change = changes(write_inventory(tmp_path, [built]))
    # The hand-written facts hold no configuration files, so only the costly steps are asserted.
    costly = ("Install Nix", "Build vllm-server", "Ship the flake", "driver libraries")
    assert not [name for name in would_change if any(step in name for step in costly)], would_change
    # ... and the host was planned through to its service, not refused.
    assert "Nix server | Install the Nix build helper" in would_change, would_change


def test_an_air_gapped_host_gets_the_installer_shipped_and_checked_before_it_is_unpacked(tmp_path):
    """The official installer's tarball from the machine running pyinfra (nix_installer_archive),
    checked on the host against the pinned checksum as the download would be; a tarball of another
    release is refused in pre-flight. (Its contents are not a real installer: only planned.)"""
    tarball = tmp_path / "nix-2.24.9-x86_64-linux.tar.xz"
    tarball.write_bytes(b"stand-in for the installer tarball")
    older = tmp_path / "nix-2.18.1-x86_64-linux.tar.xz"
    older.write_bytes(b"another release")
    kernel = {"kernel": "5.14.0-427.13.1.el9_4.x86_64"}
    hosts = [
        FakeHost("rocky9-nix-shipped", "rocky9", probe=kernel, data={**GPU80, "nix_installer_archive": str(tarball)}),
        FakeHost("rocky9-nix-older", "rocky9", probe=kernel, data={**GPU80, "nix_installer_archive": str(older)}),
    ]
    executed = plan(write_inventory(tmp_path, hosts))
    host = "rocky9-nix-shipped"
    assert "Nix | Ship Nix 2.24.9's installer (nix-2.24.9-x86_64-linux.tar.xz)" in executed.names(host)
    assert not [name for name in executed.names(host) if name.startswith("Nix | Download Nix")]
    [install] = commands(executed, host, "Nix | Install Nix 2.24.9 (multi-user, official installer)")
    tar = "/var/lib/vllm-fleet/nix-installer/nix-2.24.9-x86_64-linux.tar.xz"
    assert install.startswith(f"echo '{nix.INSTALLER.sha256['x86_64']}  {tar}' | sha256sum -c --quiet && cd ")
    assert executed.names("rocky9-nix-older") == ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
    [refusal] = executed.refusals("rocky9-nix-older")
    assert refusal.startswith(
        "nix_version: nix_installer_archive is nix-2.18.1-x86_64-linux.tar.xz, and this host takes the pinned "
        "official installer nix-2.24.9-x86_64-linux.tar.xz"
    )

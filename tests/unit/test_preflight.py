"""Each pre-flight check on one recorded host probe and variants of it written by hand.

probe-debian12-sandbox-serving.txt is real HostProbe output, recorded on a sandbox host
(Debian 12, no GPU, our container serving on port 8000) by an older probe: it has two keys
today's probe no longer prints (os_id, os_version; left out when read) and lacks the fields
added since (the Nix and release fields among them), which read as their defaults
(test_probe.py names them). The GPU hosts below are that recording with the lines a GPU host
differs in, written by hand from the tools' documented outputs: /sys/module/nvidia/version,
`mokutil --sb-state` ("SecureBoot enabled"), `rocminfo` agent names (gfx942 on MI300X),
`ss -ltnp` users:(("name",pid=..,fd=..)).
"""

from pathlib import Path

import pytest

from vllm_fleet.catalogue import Gpus
from vllm_fleet.checks import CHECKS, Context, Finding, run_checks, verdict
from vllm_fleet.distro import Distro
from vllm_fleet.facts.distro import read_distro
from vllm_fleet.facts.probe import Probe, key_values

UBUNTU_2204 = Distro("ubuntu", "apt", "22.04", "jammy")
DEBIAN_12 = Distro("debian", "apt", "12", "bookworm")

RECORDED = key_values(
    (Path(__file__).parent / "fixtures" / "probe-debian12-sandbox-serving.txt").read_text().splitlines()
)
H100 = Gpus(1, 80, "NVIDIA H100 80GB HBM3", "facts")
NVIDIA_READY = {
    **RECORDED,
    "headers": "yes",
    "secure_boot": "SecureBoot enabled",
    "nvidia_driver": "580.95.05",
    "toolkit": "yes",
    "docker_runtimes": "io.containerd.runc.v2,nvidia,runc,",
    "daemon_json": '{"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}',
    "port_listeners": "",
    "vllm_container_port": "",
}
AMD_READY = {
    **RECORDED,
    "kfd": "yes",
    "render_group": "yes",
    "gfx": "gfx942,",
    "port_listeners": "",
    "vllm_container_port": "",
}


def findings(
    probe,
    accelerator="nvidia",
    vendors=None,
    gpus=H100,
    phase="single_gpu",
    distro=UBUNTU_2204,
    unsupported_os=None,
    capabilities=(),
    **data,
):
    from tests.unit.conftest import load_group_data
    from vllm_fleet import launch
    from vllm_fleet.plan import plan_host
    from vllm_fleet.rules import validate

    named = {"accelerator": accelerator} if "vllm_cluster" in data else {}  # a cluster's members name theirs
    s = validate("gpu-01", {**load_group_data(phase), **named, **data}, groups=[phase])
    p = plan_host(s, {}, accelerator, gpus, probe.get("machine", ""))
    vendors = [accelerator] if vendors is None and accelerator != "cpu" else (vendors or [])
    image = launch.image(p.settings, accelerator)
    machine = probe.get("machine", "")  # what pyinfra's Arch fact read
    context = Context(
        Probe.of(probe),
        vendors,
        p.settings,
        accelerator,
        p.sizing,
        image,
        distro,
        unsupported_os,
        machine,
        gpu_capabilities=capabilities,
    )
    return {f.check: f for f in run_checks(context)}


def failed(result: dict[str, Finding]) -> dict[str, str]:
    return {name: f.message for name, f in result.items() if not f.ok}


def test_recorded_sandbox_host_passes_every_cpu_check():
    result = findings(RECORDED, accelerator="cpu", gpus=None)
    assert failed(result) == {}
    assert "nvidia_driver" not in result and "gfx_target" not in result  # not for the CPU


def test_ready_nvidia_host_passes():
    assert failed(findings(NVIDIA_READY)) == {}


BARE_NVIDIA = {
    **NVIDIA_READY,
    "nvidia_driver": "",
    "toolkit": "no",
    "nouveau": "yes",
    "headers": "no",
    "docker_runtimes": "runc,",
    "kernel": "6.8.0-45-generic",
}


def test_bare_nvidia_host_with_secure_boot_and_nouveau_unmanaged():
    problems = failed(findings(BARE_NVIDIA, manage_gpu_stack=False))
    assert set(problems) == {"secure_boot", "nouveau", "nvidia_driver", "container_toolkit"}
    assert "enrol a Machine Owner Key" in problems["secure_boot"]
    assert "linux-headers-6.8.0-45-generic" in problems["nvidia_driver"]
    assert "could not select device driver" in problems["container_toolkit"]


def test_driver_too_old_for_the_images_cuda():
    problems = failed(findings({**NVIDIA_READY, "nvidia_driver": "535.183.01"}, manage_gpu_stack=False))
    assert problems == {
        "nvidia_driver": "NVIDIA driver 535.183.01 is older than 580.65, which "
        "vllm/vllm-openai:v0.33.0's CUDA 13.0 needs (CUDA error 803/804 at start): upgrade the driver"
    }


@pytest.mark.parametrize(
    ("driver", "refused"),
    [
        ("580.64.99", True),  # the image's major branch, but below its minor: refused
        ("579.99", True),
        ("580.65.06", False),  # exactly the minimum
        ("580.95.05", False),
        ("581.01", False),
        ("590", False),
    ],
)
def test_the_driver_is_compared_by_major_and_minor_version(driver, refused):
    problems = failed(findings({**NVIDIA_READY, "nvidia_driver": driver}, manage_gpu_stack=False))
    expected = (
        f"NVIDIA driver {driver} is older than 580.65, which vllm/vllm-openai:v0.33.0's CUDA 13.0 needs "
        "(CUDA error 803/804 at start): upgrade the driver"
    )
    assert problems == ({"nvidia_driver": expected} if refused else {})


def test_gpu_claimed_but_absent_from_the_pci_bus():
    problems = failed(findings(RECORDED, vendors=[]))
    assert problems["gpu_present"].startswith("accelerator is nvidia but the PCI bus shows no NVIDIA GPU")


@pytest.mark.parametrize(
    "change, check, words",
    [
        ({"docker_snap": "yes"}, "docker_snap", "snap remove docker"),
        ({"daemon_json": '{"runtimes": '}, "daemon_json", "does not parse as JSON"),
        ({"shm_kib": "65536"}, "shared_memory", "/dev/shm is 0.1 GiB, below the 4g"),
        ({"port_listeners": 'users:(("python3",pid=812'}, "port", "port 8000 is already taken by python3"),
        ({"port_listeners": 'users:(("docker-proxy",pid=90'}, "port", "taken by docker-proxy"),
        # vllm.service runs, but another process holds the port.
        (
            {"port_listeners": 'users:(("python3",pid=812', "vllm_main_pid": "77"},
            "port",
            "port 8000 is already taken by python3",
        ),
        ({"hf_cache_free_kib": "1048576"}, "disk", "has 1.0 GiB free, Qwen/Qwen2.5-32B-Instruct needs 67.7 GiB"),
        ({"docker_root_free_kib": "1048576"}, "disk", "/var/lib/docker has 1.0 GiB free, vLLM needs about 25.0"),
    ],
)
def test_each_field_problem_is_caught(change, check, words):
    problems = failed(findings({**NVIDIA_READY, **change}))
    assert list(problems) == [check]
    assert words in problems[check]


def test_model_already_cached_needs_no_cache_space():
    probe = {**NVIDIA_READY, "hf_cache_free_kib": "1048576", "hf_cache_has_model": "yes"}
    assert failed(findings(probe)) == {}


def test_gated_model_needs_hf_token():
    problems = failed(findings(NVIDIA_READY, vllm_model="meta-llama/Llama-3.1-8B-Instruct"))
    assert problems == {
        "gated_model": "meta-llama/Llama-3.1-8B-Instruct is gated on Hugging Face: "
        "accept its licence there and export HF_TOKEN"
    }
    assert (
        failed(
            findings(
                NVIDIA_READY, vllm_model="meta-llama/Llama-3.1-8B-Instruct", hf_token="hf_" + "x" * 22 + "Zq7wPm2x"
            )
        )
        == {}
    )


def test_model_that_does_not_fit_fails_model_fits():
    problems = failed(findings(NVIDIA_READY, gpus=Gpus(1, 24, "L4", "facts"), vllm_model="Qwen/Qwen2.5-32B-Instruct"))
    assert list(problems) == ["model_fits"] and "does not fit" in problems["model_fits"]


def test_amd_checks():
    mi300x = Gpus(8, 192, "AMD Instinct MI300X", "facts")
    assert failed(findings(AMD_READY, accelerator="amd", gpus=mi300x)) == {}
    problems = failed(
        findings(
            {**AMD_READY, "kfd": "no", "render_group": "no", "gfx": ""},
            accelerator="amd",
            gpus=mi300x,
            manage_gpu_stack=False,
        )
    )
    assert problems["amd_devices"].startswith("/dev/kfd and the render group missing")
    assert "rocminfo lists no gfx target" in problems["gfx_target"]
    problems = failed(findings({**AMD_READY, "gfx": "gfx1030,"}, accelerator="amd", gpus=mi300x))
    assert problems["gfx_target"].startswith("this host's GPU target(s) gfx1030 are not among the default ROCm image's")
    # Strix Halo (Ryzen AI Max, gfx1151) and Strix Point (gfx1150): Dockerfile.rocm_base builds for them.
    for apu in ("gfx1150", "gfx1151"):
        assert "gfx_target" not in failed(findings({**AMD_READY, "gfx": f"{apu},"}, accelerator="amd", gpus=mi300x))


def test_managed_bare_ubuntu_host_passes_with_canonical_signed_modules():
    assert failed(findings(BARE_NVIDIA)) == {}


def test_managed_debian_host_under_secure_boot_needs_a_mok_or_the_opt_in():
    debian = {**BARE_NVIDIA, "kernel": "6.1.0-28-amd64"}
    # An image built for Debian's 535 (CUDA 12.2), so only Secure Boot is in the way.
    own = {"nvidia_driver_branch": "535", "vllm_image": "registry.local/vllm:cu122"}
    problems = failed(findings(debian, distro=DEBIAN_12, **own))
    assert list(problems) == ["secure_boot"] and "enrol a Machine Owner Key (MOK) for DKMS" in problems["secure_boot"]
    assert failed(findings(debian, distro=DEBIAN_12, nvidia_secure_boot_unsigned_ok=True, **own)) == {}


def test_gpu_stack_refuses_what_the_distribution_does_not_have():
    problems = failed(findings(NVIDIA_READY, distro=DEBIAN_12))
    assert problems == {
        "gpu_stack": "Debian 12's non-free archive has NVIDIA branch 535 only, not 580: "
        "set nvidia_driver_branch = '535', or nvidia_driver_source = 'cuda'"
    }
    assert failed(findings(NVIDIA_READY, distro=DEBIAN_12, nvidia_driver_source="cuda")) == {}
    # Debian's own 535 (CUDA 12.2) cannot run the default image's CUDA 13.0 (needs 580.65).
    old = failed(findings(NVIDIA_READY, distro=DEBIAN_12, nvidia_driver_branch="535"))["gpu_stack"]
    assert old == (
        "the managed NVIDIA driver would be branch 535, older than the 580.65 that vllm/vllm-openai:v0.33.0's "
        "CUDA 13.0 needs: set nvidia_driver_source = 'cuda' (NVIDIA's repository for Debian 12), or vllm_image to "
        "an image built for that driver's CUDA"
    )
    ubuntu_old = failed(findings(NVIDIA_READY, nvidia_driver_branch="570"))["gpu_stack"]
    assert "set nvidia_driver_branch = '580'" in ubuntu_old
    amd = failed(findings(AMD_READY, accelerator="amd", distro=DEBIAN_12, gpus=Gpus(1, 192, "MI300X", "facts")))
    assert amd["gpu_stack"].startswith("vllm-fleet installs ROCm on Ubuntu and RHEL-family hosts, not Debian")


ROCKY_94 = {"name": "Rocky Linux", "major": 9, "minor": 4, "release_meta": {"ID": "rocky", "VERSION_ID": "9.4"}}
CENTOS_7 = {"name": "CentOS", "major": 7, "minor": 9, "release_meta": {"ID": "centos", "VERSION_ID": "7"}}


def test_os_check_reports_what_the_distribution_module_says():
    rocky, reason = read_distro(ROCKY_94)
    assert rocky == Distro("rocky", "dnf", "9.4", "") and reason is None
    assert "os" not in failed(findings(NVIDIA_READY, distro=rocky))
    none, reason = read_distro(CENTOS_7)
    assert none is None and reason.startswith("CentOS 7 is not supported (supported: Ubuntu 22, Ubuntu 24, Debian 12")
    assert failed(findings(NVIDIA_READY, distro=None, unsupported_os=reason))["os"] == reason


MI300X = Gpus(8, 192, "AMD Instinct MI300X", "facts")
# For every check, a host on which it (and only it, where that can be arranged) fails.
FAILS = {
    "os": dict(probe=NVIDIA_READY, distro=None, unsupported_os="CentOS 7 is not supported"),
    "gpu_stack": dict(probe=NVIDIA_READY, distro=DEBIAN_12),
    "gpu_present": dict(probe=NVIDIA_READY, vendors=[]),
    "secure_boot": dict(
        probe={**BARE_NVIDIA, "nouveau": "no"}, distro=DEBIAN_12, nvidia_driver_branch="535", vllm_image="r/v:cu122"
    ),
    "nouveau": dict(probe={**NVIDIA_READY, "nouveau": "yes"}, manage_gpu_stack=False),
    "nvidia_driver": dict(probe={**NVIDIA_READY, "nvidia_driver": ""}, manage_gpu_stack=False),
    "gpu_arch": dict(probe=NVIDIA_READY, capabilities=(("Tesla V100-PCIE-16GB", "7.0"),)),
    "container_toolkit": dict(
        probe={**NVIDIA_READY, "toolkit": "no", "docker_runtimes": "runc,"}, manage_gpu_stack=False
    ),
    "docker_snap": dict(probe={**NVIDIA_READY, "docker_snap": "yes"}),
    "daemon_json": dict(probe={**NVIDIA_READY, "daemon_json": "{"}),
    "docker_conflicts": dict(
        probe={**NVIDIA_READY, "runc_needed_by": "podman,buildah,"}, distro=Distro("rocky", "dnf", "9.4", "")
    ),
    "shared_memory": dict(probe={**NVIDIA_READY, "shm_kib": "65536"}),
    "model_fits": dict(probe=NVIDIA_READY, gpus=Gpus(1, 24, "L4", "facts"), vllm_model="Qwen/Qwen2.5-32B-Instruct"),
    "disk": dict(probe={**NVIDIA_READY, "hf_cache_free_kib": "1"}),
    "gated_model": dict(probe=NVIDIA_READY, vllm_model="meta-llama/Llama-3.1-8B-Instruct"),
    "port": dict(probe={**NVIDIA_READY, "port_listeners": 'users:(("nginx",pid=5'}),
    "amd_devices": dict(probe={**AMD_READY, "kfd": "no"}, accelerator="amd", gpus=MI300X, manage_gpu_stack=False),
    "gfx_target": dict(probe={**AMD_READY, "gfx": "gfx1030,"}, accelerator="amd", gpus=MI300X),
    "image": dict(probe={**AMD_READY, "machine": "aarch64"}, accelerator="amd", gpus=MI300X),
    "nix_rocm": dict(probe=AMD_READY, accelerator="amd", gpus=MI300X, serving_method="nix"),
    "nix_version": dict(probe={**NVIDIA_READY, "nix": "yes", "nix_version": "2.8.0"}, serving_method="nix"),
    "nix_vllm": dict(probe=NVIDIA_READY, serving_method="nix"),
    "gpu_health": dict(probe={**NVIDIA_READY, "nvidia_reset": "0, Yes, No;"}),
    "rdma": dict(
        probe=NVIDIA_READY,
        vllm_cluster="c1",
        vllm_cluster_rank=0,
        vllm_cluster_interface="eth0",
        fleet_address="10.1.0.1",
        gpu_count=8,
        vllm_bind_address="10.1.0.1",
        vllm_api_key="k" * 12 + "Zq7wPm2x",
        vllm_cluster_rdma=True,
    ),
}


def test_every_registered_check_has_a_failing_case():
    assert set(FAILS) == set(CHECKS)


@pytest.mark.parametrize("check", list(FAILS))
def test_each_check_fails_on_the_host_made_for_it(check):
    case = dict(FAILS[check])
    problems = failed(findings(case.pop("probe"), **case))
    assert check in problems, problems
    assert problems[check], "a failure must say what is wrong"


def test_warn_only_turns_a_failure_into_a_warning_and_nothing_is_skipped():
    found = [Finding("port", False, "taken"), Finding("disk", False, "full"), Finding("os", True, "ok")]
    assert verdict(found, ()) == (["port: taken", "disk: full"], [])
    assert verdict(found, ("port",)) == (["disk: full"], ["port: taken"])


def test_nix_hosts_skip_the_docker_checks_and_need_room_in_the_nix_store():
    broken_docker = {
        **NVIDIA_READY,
        **{"docker_snap": "yes", "daemon_json": "{", "toolkit": "no", "docker_runtimes": ""},
        "nix_store_free_kib": RECORDED["docker_root_free_kib"],
    }
    result = findings(broken_docker, serving_method="nix", manage_gpu_stack=False)
    assert {"container_toolkit", "docker_snap", "daemon_json"}.isdisjoint(result)
    assert list(failed(result)) == ["nix_vllm"]  # the repository's flake: see the next test
    assert failed(findings(broken_docker, serving_method="nix", manage_gpu_stack=False, nix_flake="nix")) == {}
    small_store = {**NVIDIA_READY, "nix_store_free_kib": "1048576", "docker_root_free_kib": "1048576"}
    assert (
        "/nix/store has 1.0 GiB free, vLLM needs about 25.0 GiB"
        in failed(findings(small_store, serving_method="nix"))["disk"]
    )


def test_the_nix_served_vllm_holding_its_own_port_passes():
    serving = {**NVIDIA_READY, "port_listeners": 'users:(("python3",pid=812', "vllm_main_pid": "812"}
    assert "port" not in failed(findings(serving, serving_method="nix"))
    stopped = {**serving, "vllm_main_pid": "0"}
    assert "port 8000 is already taken by python3" in failed(findings(stopped, serving_method="nix"))["port"]


def test_our_container_on_the_host_network_holding_its_port_passes():
    """A cluster's leader serves from its container on the host's network: the listener is the
    container's own process, not Docker's proxy nor vllm.service's `docker run`."""
    serving = {**NVIDIA_READY, "port_listeners": 'users:(("vllm",pid=5393', "vllm_main_pid": "5101"}
    assert "port" not in failed(findings({**serving, "vllm_container_pid": "5393"}))
    assert "already taken by vllm" in failed(findings({**serving, "vllm_container_pid": "0"}))["port"]


ROCKY_9 = Distro("rocky", "dnf", "9.4", "")


def test_nix_older_than_nixpkgs_needs_is_refused_before_anything_is_built():
    """nixpkgs' lib/minver.nix: 2.18. `nix --version` prints "nix (Nix) 2.8.0" on Debian 12."""
    nix_host = {**NVIDIA_READY, "nix": "yes", "nix_version": "2.8.0"}
    message = failed(findings(nix_host, serving_method="nix", distro=DEBIAN_12))["nix_version"]
    assert message.startswith("Nix 2.8.0 on this host is older than the 2.18 nixpkgs needs")
    assert "apt purge nix-bin nix-setup-systemd" in message
    assert "nix_version" not in failed(findings({**nix_host, "nix_version": "2.18.1"}, serving_method="nix"))
    # The stand-in flake uses no nixpkgs: any Nix builds it.
    standin = str(Path(__file__).resolve().parents[1] / "standin")
    assert "nix_version" not in failed(findings(nix_host, serving_method="nix", nix_flake=standin))


def test_selinux_enforcing_refuses_the_official_installer_only():
    """The multi-user installer stops when SELinux is enforcing (NixOS/nix scripts/install-multi-user.sh)."""
    enforcing = {**NVIDIA_READY, "nix": "no", "selinux": "Enforcing"}
    message = failed(findings(enforcing, serving_method="nix", distro=ROCKY_9))["nix_version"]
    assert message.startswith("SELinux is enforcing, and the official Nix installer refuses to run then")
    assert "nix_version" not in failed(
        findings({**enforcing, "selinux": "Permissive"}, serving_method="nix", distro=ROCKY_9)
    )
    installed = {**enforcing, "nix": "yes", "nix_version": "2.24.9"}
    assert "nix_version" not in failed(findings(installed, serving_method="nix", distro=ROCKY_9))


def test_a_port_seen_before_iproute2_is_refused_without_a_name():
    """Before the deploy installs ss, the probe reads /proc/net/tcp and knows no process name."""
    message = failed(findings({**NVIDIA_READY, "port_listeners": 'users:(("?",pid='}))["port"]
    assert message == (
        "port 8000 is already taken by a process (ss from iproute2 names it): stop it or choose another vllm_port"
    )


def test_every_check_name_the_settings_allow_is_a_check():
    from vllm_fleet.checks import CHECKS
    from vllm_fleet.settings import PREFLIGHT_CHECKS

    assert sorted(CHECKS) == sorted(PREFLIGHT_CHECKS)


def test_an_image_of_another_accelerator_is_refused_on_the_host_auto_found():
    """accelerator auto: the rules cannot tell before the bus is read; pre-flight can."""
    problems = failed(findings(AMD_READY, accelerator="amd", vllm_image="vllm/vllm-openai:v0.33.0"))
    assert problems["image"].startswith(
        "vllm_image vllm/vllm-openai:v0.33.0 is vLLM's nvidia image and this host's accelerator is amd"
    )
    assert "image" not in failed(findings(NVIDIA_READY, vllm_image="vllm/vllm-openai:v0.33.0"))


@pytest.mark.parametrize(
    ("text", "gib"),
    [
        ("4g", 4.0),
        ("4GiB", 4.0),
        ("512m", 0.5),
        ("1048576k", 1.0),
        ("1073741824", 1.0),  # bytes
        ("2t", 2048.0),
        ("1p", 1024.0**2),
        ("1.5 GB", 1.5),
        ("four", 0.0),
    ],
)
def test_sizes_read_in_dockers_units_of_1024(text, gib):
    from vllm_fleet.checks.docker import size_gib

    assert size_gib(text) == gib


def test_a_listener_is_its_process_name_and_pid():
    from vllm_fleet.checks.host import _listener

    assert _listener('users:(("python3",pid=812,fd=3))') == ("python3", "812,fd=3))")
    assert _listener('users:(("nginX",pid=5') == ("nginX", "5")


def test_a_check_passes_with_ok_and_every_applicable_check_runs():
    result = findings(NVIDIA_READY, manage_gpu_stack=False)
    assert all(f.message == "ok" for f in result.values() if f.ok)
    assert {name for name, f in result.items() if f.ok} >= {"nvidia_driver", "container_toolkit", "port"}


def test_a_check_registers_under_a_name_the_settings_know(monkeypatch):
    from vllm_fleet.checks import registry as checks

    for table in ("CHECKS", "APPLIES", "METHODS"):
        monkeypatch.setattr(checks, table, {})

    def probe_port(c):
        return None

    assert checks.check("port", ("cpu",), ("nix",))(probe_port) is probe_port
    assert checks.CHECKS == {"port": probe_port}
    assert (checks.APPLIES, checks.METHODS) == ({"port": ("cpu",)}, {"port": ("nix",)})
    missing = "^pre-flight check 'portt' is missing from vllm_fleet.settings.types.PreflightCheck$"
    with pytest.raises(ValueError, match=missing):
        checks.check("portt")(probe_port)


def test_an_image_loaded_already_needs_no_room_for_it(tmp_path, make_archive):
    """A second deploy changes a knob, not the image: the room a pull or a load would take is not asked for."""
    from vllm_fleet.launch import default_image

    low = {**NVIDIA_READY, "docker_root_free_kib": "1048576"}
    assert "/var/lib/docker has 1.0 GiB free" in failed(findings(low))["disk"]
    assert failed(findings({**low, "image_id": "sha256:" + "ab" * 32})) == {}
    # Another image under the archive's name is shipped and loaded again: that needs its room.
    archive = make_archive(tmp_path, default_image("nvidia"), config="blobs/sha256/" + "ab" * 32)
    none_left = {**NVIDIA_READY, "docker_root_free_kib": "0"}
    shipped = {"vllm_image": default_image("nvidia"), "vllm_image_archive": archive}
    other = findings({**none_left, "image_id": "sha256:" + "99" * 32}, **shipped)
    assert "/var/lib/docker has 0.0 GiB free" in failed(other)["disk"]
    assert failed(findings({**none_left, "image_id": "sha256:" + "ab" * 32}, **shipped)) == {}


@pytest.mark.parametrize(
    "name, capability", [("Tesla V100-SXM2-32GB", "7.0"), ("Tesla P40", "6.1"), ("Tesla P4", "6.1")]
)
def test_a_gpu_older_than_the_default_images_cuda_builds_for_is_refused(name, capability):
    """CUDA 13.0 builds nothing older than Turing (vLLM's Dockerfile: torch_cuda_arch_list from 7.5)."""
    refused = failed(findings(NVIDIA_READY, capabilities=((name, capability),)))
    assert list(refused) == ["gpu_arch"]
    assert refused["gpu_arch"].startswith(f"{name} has compute capability {capability}, and vllm/vllm-openai:v")
    assert "built with CUDA 13.0 for 7.5 (Turing) and newer" in refused["gpu_arch"]


def test_turing_and_newer_pass_and_an_image_of_the_operators_own_is_theirs_to_know():
    assert failed(findings(NVIDIA_READY, capabilities=(("Tesla T4", "7.5"), ("NVIDIA H100", "9.0")))) == {}
    cu12 = findings(
        NVIDIA_READY, capabilities=(("Tesla V100", "7.0"),), vllm_image="registry.example/vllm-cu12:v0.10.2"
    )
    assert "gpu_arch" not in failed(cu12)


def test_a_driver_updated_since_boot_is_refused_until_a_reboot_on_an_unmanaged_stack():
    updated = {**NVIDIA_READY, "nvidia_driver": "580.82.07", "nvidia_libraries": "580.95.05"}
    refused = failed(findings(updated, manage_gpu_stack=False))
    assert refused == {
        "nvidia_driver": "the loaded NVIDIA module is 580.82.07 and the installed driver libraries are 580.95.05 "
        '(updated since boot): containers fail with "Driver/library version mismatch" until the host reboots: '
        "reboot it"
    }
    assert "nvidia_driver" not in failed(findings(updated))  # a managed stack reboots it (gpu_reboot)


def test_an_arm64_host_the_official_nix_installer_would_serve_is_refused_before_any_step():
    """The installer's tarball is pinned by checksum for x86_64 alone: a Grace host stopped mid-deploy."""
    import dataclasses

    bare = {**NVIDIA_READY, "nix": "no"}
    grace = dataclasses.replace(ROCKY_9, machine="aarch64")
    message = failed(findings(bare, serving_method="nix", distro=grace))["nix_version"]
    assert message.startswith(
        "the official Nix installer is pinned by checksum for x86_64 only, and this host is aarch64: install Nix"
    )
    assert "nix_version" not in failed(findings(bare, serving_method="nix", distro=ROCKY_9))
    with_nix = {**bare, "nix": "yes", "nix_version": "2.24.9"}
    assert "nix_version" not in failed(findings(with_nix, serving_method="nix", distro=grace))


def test_daemon_config_keys_newer_than_the_hosts_dockerd_are_refused_before_it_restarts():
    """moby's json tags per release: log-format from 25.0, firewall-backend from 29.0; Debian 12's
    docker.io is 20.10.24, which refuses both and does not start."""
    config = {"docker_daemon_config": {"log-format": "json", "log-driver": "journald"}}
    old = {**NVIDIA_READY, "dockerd_version": "20.10.24"}
    refused = failed(findings(old, **config))["daemon_json"]
    assert refused.startswith(
        "docker_daemon_config sets keys the dockerd this host will run (20.10.24) does not read: log-format "
        "(dockerd 25.0); it would refuse /etc/docker/daemon.json and not start again"
    )
    assert refused.endswith("install a newer Docker (docker_source = 'docker')")
    assert "daemon_json" not in failed(findings({**NVIDIA_READY, "dockerd_version": "27.5.1"}, **config))
    # Not installed yet: Debian 12's own package will be 20.10.24.
    bare = {**NVIDIA_READY, "dockerd_version": ""}
    assert "log-format (dockerd 25.0)" in failed(findings(bare, distro=DEBIAN_12, **config))["daemon_json"]
    # Docker's repository replaces what is installed: its newest, or the pinned docker_version.
    ce = {"docker_source": "docker", **config}
    assert "daemon_json" not in failed(findings(old, distro=DEBIAN_12, **ce))
    pinned = failed(findings(old, distro=DEBIAN_12, docker_version="5:24.0.9-1~debian.12~bookworm", **ce))
    assert "will run (24.0) does not read: log-format (dockerd 25.0)" in pinned["daemon_json"]
    assert pinned["daemon_json"].endswith("pin a newer docker_version")


def test_a_v100s_is_known_pre_turing_by_its_name():
    from vllm_fleet.gpus import PRE_TURING

    assert PRE_TURING.search("Tesla V100S-PCIE-32GB") and PRE_TURING.search("Tesla V100-SXM2-32GB")
    assert not PRE_TURING.search("NVIDIA A100-SXM4-80GB")


def test_podman_beside_dockers_containerd_is_refused_on_rpm_hosts_only():
    """Docker's containerd.io obsoletes and conflicts with runc, which podman and buildah require
    (containerd/containerd issue 5417, docker/containerd-packaging issue 210): dnf cannot install it
    beside them. apt hosts resolve it (Debian's podman takes runc or crun)."""
    probe = {**NVIDIA_READY, "runc_needed_by": "podman,buildah,"}
    message = failed(findings(probe, distro=ROCKY_9))["docker_conflicts"]
    assert message.startswith("podman, buildah need the distribution's runc, which Docker's containerd.io")
    assert "dnf remove podman buildah runc" in message and "serving_method = 'nix'" in message
    assert "docker_conflicts" not in failed(findings(probe))  # Ubuntu
    assert "docker_conflicts" not in failed(findings(NVIDIA_READY, distro=ROCKY_9))


def test_a_managed_rocm_older_than_the_images_user_space_or_mi350s_is_refused():
    """AMD's user and kernel-space support matrix: the default ROCm image's user space runs on drivers
    from ROCm 7.0's on; MI350/MI355 (gfx950) need ROCm 7.0 (vLLM's ROCm installation page)."""
    old = failed(findings(AMD_READY, accelerator="amd", gpus=MI300X, rocm_version="6.4.1"))["gpu_stack"]
    assert old.startswith(
        "rocm_version 6.4.1 is older than ROCm 7.0, whose amdgpu drivers are the oldest the ROCm user space of "
        "vllm/vllm-openai-rocm"
    )
    assert "set rocm_version to 7.0 or newer (default 7.2.1)" in old
    own = {"vllm_image": "rocm/vllm-dev:rocm6.4.1_custom", "rocm_version": "6.4.1"}
    assert "gpu_stack" not in failed(findings(AMD_READY, accelerator="amd", gpus=MI300X, **own))
    mi355 = failed(findings({**AMD_READY, "gfx": "gfx950,"}, accelerator="amd", gpus=MI300X, **own))["gpu_stack"]
    assert (
        mi355
        == "MI350/MI355 GPUs (gfx950) need ROCm 7.0 or newer, and rocm_version is 6.4.1: set rocm_version = '7.2.1'"
    )
    assert "gpu_stack" not in failed(findings(AMD_READY, accelerator="amd", gpus=MI300X))  # 7.2.1 by default


def test_the_repositorys_flake_is_refused_for_its_old_vllm_and_a_flake_of_your_own_is_not():
    """nixpkgs' vLLM at nixos-25.11 is 0.11.0 (its vllm/default.nix), under the 0.33 the arguments are
    written for and before vLLM 0.22's Host-header fix of its API-key check (GHSA-94f4-hr76-p5j6)."""
    message = failed(findings(NVIDIA_READY, serving_method="nix"))["nix_vllm"]
    assert message.startswith(
        "the repository's flake serves nixpkgs' vLLM 0.11.0 (nixos-25.11), older than the vLLM 0.33"
    )
    assert "set nix_flake to a flake whose vLLM is 0.33 or newer" in message
    assert "nix_vllm" not in failed(findings(NVIDIA_READY, serving_method="nix", nix_flake="nix"))
    assert "nix_vllm" not in findings(NVIDIA_READY)  # the Docker way


def test_an_unmanaged_rocm_older_than_the_images_user_space_is_refused():
    old = {**AMD_READY, "rocm_installed": "6.4.1-89"}
    message = failed(findings(old, accelerator="amd", gpus=MI300X, manage_gpu_stack=False))["amd_devices"]
    assert message.startswith(
        "this host's ROCm 6.4.1-89 (/opt/rocm/.info/version) is older than ROCm 7.0, whose amdgpu drivers are the "
        "oldest the ROCm user space of"
    )
    assert "upgrade to ROCm 7.0 or newer" in message
    own = {"vllm_image": "rocm/vllm-dev:rocm6.4.1_custom"}
    assert "amd_devices" not in failed(findings(old, accelerator="amd", gpus=MI300X, manage_gpu_stack=False, **own))
    new = {**AMD_READY, "rocm_installed": "7.0.2-56"}
    assert "amd_devices" not in failed(findings(new, accelerator="amd", gpus=MI300X, manage_gpu_stack=False))


def test_rdma_is_refused_only_on_a_cluster_member_without_the_devices():
    """A group-wide vllm_cluster_rdma = True does nothing on a host in no cluster (launch.uses_rdma)."""
    assert "rdma" not in failed(findings(NVIDIA_READY, vllm_cluster_rdma=True))
    member = FAILS["rdma"]
    with_devices = {k: v for k, v in member.items() if k != "probe"}
    assert "rdma" not in failed(findings({**NVIDIA_READY, "infiniband": "yes"}, **with_devices))

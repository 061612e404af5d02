"""How vLLM is launched: its arguments, the container's, the env file, systemd quoting.

One function builds the vLLM arguments for every serving method, so a knob means
the same thing whichever way the server runs.
"""

from __future__ import annotations

import ipaddress
import re
import shlex

from vllm_fleet import nix, paths, releases
from vllm_fleet.cluster import Place
from vllm_fleet.images import default_image
from vllm_fleet.settings import Settings

CONTAINER_HF_CACHE = "/root/.cache/huggingface"

ACCELERATOR_CONTAINER_ARGS = {
    "nvidia": ["--gpus", "all"],
    # ROCm needs the compute (kfd) and render (dri) nodes, the video group that owns
    # them, and seccomp off for its memory mapping calls (AMD's vLLM guide).
    "amd": [
        "--device",
        "/dev/kfd",
        "--device",
        "/dev/dri",
        "--group-add",
        "video",
        "--cap-add",
        "SYS_PTRACE",
        "--security-opt",
        "seccomp=unconfined",
    ],
    # vLLM's CPU backend pins threads to cores (SYS_NICE) and reads the NUMA layout with
    # calls the default seccomp profile refuses (vLLM's CPU installation guide).
    "cpu": ["--cap-add", "SYS_NICE", "--security-opt", "seccomp=unconfined"],
}
# What NCCL needs to cross hosts over InfiniBand or RoCE (vllm_cluster_rdma; vLLM's
# docs/serving/parallelism_scaling.md, "Enabling GPUDirect RDMA": IPC_LOCK to pin memory).
RDMA_CONTAINER_ARGS = ["--device", "/dev/infiniband", "--cap-add", "IPC_LOCK", "--ulimit", "memlock=-1:-1"]
# KV cache of a CPU host when vllm_kv_cache_gib is unset: vLLM would otherwise take
# vllm_gpu_memory_utilization of the host's whole RAM.
CPU_KV_CACHE_GIB = 4


def vllm_args(s: Settings, accelerator: str = "nvidia", place: Place | None = None) -> list[str]:
    """The `vllm serve` arguments for a host's settings, and its place in a cluster."""
    args = ["--model", s.vllm_model]
    if s.vllm_served_model_name or s.vllm_model_dir:
        args += ["--served-model-name", s.served_model_name]
    if s.vllm_quantization:
        args += ["--quantization", s.vllm_quantization]
    args += ["--gpu-memory-utilization", f"{s.vllm_gpu_memory_utilization:g}"]
    if s.vllm_max_model_len:
        args += ["--max-model-len", str(s.vllm_max_model_len)]
    args += ["--max-num-seqs", str(s.vllm_max_num_seqs)]
    if place:
        args += place.vllm_args()
    elif isinstance(s.vllm_tensor_parallel_size, int) and s.vllm_tensor_parallel_size > 1:
        args += ["--tensor-parallel-size", str(s.vllm_tensor_parallel_size)]
    kv_cache = s.vllm_kv_cache_gib or (CPU_KV_CACHE_GIB if accelerator == "cpu" else None)
    if kv_cache:
        args += ["--kv-cache-memory-bytes", f"{kv_cache}G"]
    return args + list(s.vllm_extra_args)


def accelerator_env(s: Settings, accelerator: str) -> dict[str, str]:
    """Environment a vLLM build needs on this host's accelerator."""
    if accelerator == "amd":
        # AITER kernels exist for gfx942 (MI300) and gfx950 (MI350) only.
        return {"VLLM_ROCM_USE_AITER": "1" if s.vllm_rocm_aiter else "0"}
    return {}


def publish_arg(s: Settings) -> str:
    address = s.vllm_bind_address
    if ipaddress.ip_address(address).version == 6:
        address = f"[{address}]"
    return f"{address}:{s.vllm_port}:{paths.CONTAINER_PORT}"


def cache_env(s: Settings, hf_home: str) -> dict[str, str]:
    """Where vLLM keeps its compile and kernel caches (torch.compile, Inductor, Triton) and the
    hub's weights: directories that outlive the server, so a second start skips the compilation."""
    return {
        "XDG_CACHE_HOME": s.vllm_cache_dir,
        "VLLM_CACHE_ROOT": f"{s.vllm_cache_dir}/vllm",
        # Triton keeps its kernels in ~/.triton, not under XDG_CACHE_HOME.
        "TRITON_CACHE_DIR": f"{s.vllm_cache_dir}/triton",
        "HF_HOME": hf_home,
    }


def container_args(s: Settings, accelerator: str, place: Place | None = None) -> list[str]:
    """`docker run` options (before the image) for a host's settings and accelerator. A cluster's
    member runs on the host's network, as vLLM's multi-node guide runs it: the members connect to
    each other's ports, which the collective libraries choose as they start."""
    # The shipped model and the caches keep their host paths inside the container, so the
    # arguments are the same for Docker and Nix.
    model = ["-v", f"{s.vllm_model}:{s.vllm_model}:ro"] if s.vllm_model_dir else []
    variables = {**cache_env(s, CONTAINER_HF_CACHE), **accelerator_env(s, accelerator)}
    if place:
        variables.update(place.environment(accelerator))
    env = [arg for name, value in variables.items() for arg in ("-e", f"{name}={value}")]
    network = ["--network", "host"] if place else ["-p", publish_arg(s)]
    return [
        "--name",
        paths.CONTAINER_NAME,
        "--rm",
        *ACCELERATOR_CONTAINER_ARGS[accelerator],
        *(RDMA_CONTAINER_ARGS if uses_rdma(s, accelerator, place) else []),
        # PyTorch shares tensors between processes through /dev/shm; the seed's crash
        # came from leaving both of these out.
        "--ipc=host",
        f"--shm-size={s.vllm_container_shm_size}",
        *network,
        "-v",
        f"{s.hf_cache_dir}:{CONTAINER_HF_CACHE}",
        "-v",
        f"{s.vllm_cache_dir}:{s.vllm_cache_dir}",
        *model,
        *env,
        # Secrets reach the container from a root-only file, never a command line.
        "--env-file",
        paths.ENV_FILE,
    ]


def hub_cache_name(model: str) -> str:
    """A hub model's directory name in the cache's hub/ (huggingface_hub's layout)."""
    return "models--" + model.replace("/", "--")


def hub_cache_dir(s: Settings) -> str:
    """The model's directory in the hub cache on the host."""
    return f"{s.hf_cache_dir}/hub/{hub_cache_name(s.vllm_model)}"


# Run by the image's own Python: the checkpoint files vLLM loads (safetensors when the repository
# has them, else .bin), the config and tokenizer, none of the duplicates some repositories carry.
DOWNLOAD_SCRIPT = (
    "import sys; from huggingface_hub import list_repo_files, snapshot_download; m = sys.argv[1]; "
    "skip = ['original/*', '*.pth', '*.pt', '*.gguf', '*.onnx', '*.msgpack', '*.h5']; "
    "skip += ['*.bin'] if any(f.endswith('.safetensors') for f in list_repo_files(m)) else []; "
    "snapshot_download(m, ignore_patterns=skip); print('downloaded', m)"
)


def download_command(s: Settings, accelerator: str, env_file: str) -> str:
    """Download the hub model's weights into the host's cache with the serving image, the token
    from env_file (root-only), before the server restarts; marks the download finished."""
    run = [
        "timeout",
        str(s.vllm_download_timeout),
        "/usr/bin/docker",
        "run",
        "--rm",
        "--name",
        f"{paths.CONTAINER_NAME}-download",
        "--env-file",
        env_file,
        "-e",
        f"HF_HOME={CONTAINER_HF_CACHE}",
        "-v",
        f"{s.hf_cache_dir}:{CONTAINER_HF_CACHE}",
        "--entrypoint",
        "python3",
        image(s, accelerator),
        "-c",
        DOWNLOAD_SCRIPT,
        s.vllm_model,
    ]
    stopped = (
        f"the weights' download of {s.vllm_model} did not finish within {s.vllm_download_timeout}s "
        "(vllm_download_timeout) and was stopped; the host stays on its release"
    )
    mark = shlex.quote(hub_cache_dir(s) + "/" + paths.DOWNLOADED_MARK)
    return (
        f"{{ {shlex.join(run)} && touch {mark}; }} || "
        f"{{ status=$?; [ $status -ne 124 ] || echo {shlex.quote(stopped)} >&2; exit $status; }}"
    )


def image(s: Settings, accelerator: str) -> str:
    return s.vllm_image or default_image(accelerator)


def docker_run_argv(s: Settings, accelerator: str, place: Place | None = None) -> list[str]:
    # On the host's network the leader listens where Docker would have published its port.
    listen = ["--host", s.vllm_bind_address, "--port", str(s.vllm_port)] if place and place.is_leader else []
    return [
        "/usr/bin/docker",
        "run",
        *container_args(s, accelerator, place),
        image(s, accelerator),
        *vllm_args(s, accelerator, place),
        *listen,
    ]


def nix_server_argv(s: Settings, accelerator: str) -> list[str]:
    """The Nix-built server listens on the host itself, so it takes the address and port
    Docker would have published."""
    return [
        nix.server_program(accelerator),
        *vllm_args(s, accelerator),
        "--host",
        s.vllm_bind_address,
        "--port",
        str(s.vllm_port),
    ]


def uses_rdma(s: Settings, accelerator: str, place: Place | None) -> bool:
    """A GPU cluster member whose collectives cross hosts over RDMA."""
    return bool(place) and s.vllm_cluster_rdma and accelerator in ("nvidia", "amd")


def unit_context(s: Settings, accelerator: str, place: Place | None = None) -> dict:
    """The variables templates/vllm.service.j2 is rendered with, beside the on-host names."""
    context = {
        "method": s.serving_method,
        "model": s.vllm_model,
        "served_model_name": s.served_model_name,
        "bind_address": s.vllm_bind_address,
        "port": s.vllm_port,
        # ProtectHome hides /root: whatever else writes under ~ writes to the cache directory.
        "environment": {"HOME": s.vllm_cache_dir, **cache_env(s, s.hf_cache_dir), **accelerator_env(s, accelerator)},
        "read_only_paths": [s.vllm_model] if s.vllm_model_dir else [],
        # Every vLLM host's firewall guards at least vLLM's port (vllm_fleet/firewall.py).
        "firewall_unit": paths.FIREWALL_SERVICE if s.vllm_firewall else None,
        "cluster": place,
        "memlock_unlimited": uses_rdma(s, accelerator, place),  # the Nix way's RDMA: pinned memory
    }
    if s.serving_method == "nix":
        context["exec_start"] = exec_line(nix_server_argv(s, accelerator))
    else:
        context["exec_start"] = exec_line(docker_run_argv(s, accelerator, place), own_line=(image(s, accelerator),))
    return context


def local_url(settings: Settings) -> str:
    """The endpoint as seen from the host itself."""
    address = ipaddress.ip_address(settings.vllm_bind_address)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{shown}:{settings.vllm_port}"


def release_conf(s: Settings, place: Place | None = None) -> str:
    """What the activation needs to tell that a release serves (sourced by templates/vllm-activate.sh.j2):
    a cluster's member serves when its leader does, which needs every member."""
    url = place.leader_url if place and not place.is_leader else local_url(s)
    model, url = shlex.quote(s.served_model_name), shlex.quote(url)
    return f"MODEL={model}\nURL={url}\nTIMEOUT={s.vllm_ready_timeout}\n"


# Besides the two waits for readiness (the new release, then the one it falls back to): the
# restarts, the readiness probes' own timeouts and the journal lines printed on failure.
ACTIVATION_MARGIN = 300


def activation_limit(s: Settings) -> int:
    """Seconds an activation may take in all: the transient unit is stopped after them, and the
    pending mark it leaves makes the next deploy activate again."""
    return 2 * s.vllm_ready_timeout + ACTIVATION_MARGIN


def recovery(host_label: str) -> str:
    """The activation unit's ExecStopPost: the helper itself, which starts the current release
    again when its run was killed with an attempt unfinished, and does nothing otherwise."""
    return " ".join(systemd_quote(arg) for arg in [paths.ACTIVATE_SCRIPT, host_label, "--recover"])


def activate_command(host_label: str, release: str, limit: int) -> str:
    """Runs the activation as a transient systemd unit, so that a dropped SSH connection cannot
    stop it halfway, for at most `limit` seconds (activation_limit); prints its log and exits
    with its status."""
    run = shlex.join(
        [
            "systemd-run",
            f"--unit={paths.ACTIVATE_UNIT}",
            "--service-type=oneshot",
            "--collect",
            "--wait",
            "--quiet",
            "--property",
            # append: truncate: would empty the log again for the ExecStopPost (the wrapper empties it).
            f"StandardOutput=append:{paths.ACTIVATE_LOG}",
            # A oneshot unit has no start timeout by default.
            "--property",
            f"TimeoutStartSec={limit}",
            # The log may name the host's paths and model: root's alone, like its directory's files.
            "--property",
            "UMask=0077",
            # Killed halfway (its limit, an OOM kill, an operator), it leaves the unit of the release
            # it was trying installed: current, a release that served, is started again.
            "--property",
            f"ExecStopPost={recovery(host_label)}",
            "--property",
            f"TimeoutStopSec={limit}",
            paths.ACTIVATE_SCRIPT,
            host_label,
            release,
        ]
    )
    outcome = paths.ACTIVATE_OUTCOME
    return (
        f"rm -f {outcome}; : > {paths.ACTIVATE_LOG}; {run}; status=$?; cat {paths.ACTIVATE_LOG} >&2; "
        f'echo "{releases.OUTCOME_MARK} $(cat {outcome} 2>/dev/null)" >&2; exit $status'
    )


def env_file_content(s: Settings) -> str:
    """The env file read by `docker run --env-file` (KEY=value, taken literally), or by
    systemd's EnvironmentFile= (settings refuse the characters it would read otherwise)."""
    lines = ["# Managed by vllm-fleet. Root-only: holds secrets."]
    if s.hf_token:
        lines.append(f"HF_TOKEN={s.hf_token.get_secret_value()}")
    if s.vllm_api_key:
        lines.append(f"VLLM_API_KEY={s.vllm_api_key.get_secret_value()}")
    return "\n".join(lines) + "\n"


_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./\[\]-]+$")


def systemd_quote(arg: str) -> str:
    """Quote one argument for an ExecStart= line.

    systemd expands %specifiers and $VARIABLES itself, so both are doubled to stay
    literal; anything with spaces or quotes is double-quoted with escapes.
    """
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and _SYSTEMD_SAFE.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: list[str], own_line: tuple[str, ...] = ()) -> str:
    """An ExecStart= value: each option (and each of `own_line`) starts a continuation line."""
    lines: list[list[str]] = []
    for arg in argv:
        if not lines or arg.startswith("-") or arg in own_line:
            lines.append([])
        lines[-1].append(systemd_quote(arg))
    return " \\\n    ".join(" ".join(line) for line in lines)

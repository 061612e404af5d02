"""The settings schema: every knob, defined once, with its default and meaning.

Host data (inventory, group_data) is validated here before any operation is
planned. A bad value raises SettingsError, whose message names the host, the
key, the value and what is allowed; secrets are never echoed back.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from vllm_fleet import images

PHASES = ("laptop", "single_gpu", "enterprise")
ACCELERATORS = ("auto", "nvidia", "amd", "cpu")
SERVING_METHODS = ("docker", "nix")
QUANTIZATIONS = (
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "marlin",
    "fp8",
    "bitsandbytes",
    "compressed-tensors",
    "gguf",
    "experts_int8",
    "modelopt",
)
DOCKER_SOURCES = ("distro", "docker")
DRIVER_SOURCES = ("distro", "cuda")
REBOOT_POLICIES = ("never", "if_needed", "always")
GATEWAY_AUTH = ("passthrough", "gateway")
# Inventory groups that give a host a role other than serving vLLM.
GATEWAY_GROUP = "gateway"
ROCM_USECASES = ("rocm", "dkms")

# Flags a knob owns: passing them through vllm_extra_args would fight the knob
# (or, for --api-key, put a secret on a command line).
OWNED_FLAGS = {
    "--model": "vllm_model",
    "--served-model-name": "vllm_served_model_name",
    "--quantization": "vllm_quantization",
    "--max-model-len": "vllm_max_model_len",
    "--gpu-memory-utilization": "vllm_gpu_memory_utilization",
    "--max-num-seqs": "vllm_max_num_seqs",
    "--tensor-parallel-size": "vllm_tensor_parallel_size",
    "--kv-cache-memory-bytes": "vllm_kv_cache_gib",
    "--port": "vllm_port",
    "--host": "vllm_bind_address",
    "--api-key": "vllm_api_key",
}


SECRET_FLAGS = ("--api-key", "--hf-token")


class SettingsError(ValueError):
    """A host's data breaks the schema. The message is one clean line."""

    def __init__(self, host: str, key: str, shown_value: str, allowed: str):
        self.host, self.key, self.allowed = host, key, allowed
        super().__init__(f"host {host}: {key} = {shown_value} is not allowed: {allowed}")


class Invalid(ValueError):
    """Raised by a check with the 'allowed' part of the message."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    meaning: str
    check: Callable[[Any], Any]
    secret: bool = False

    def show(self, value: Any) -> str:
        if self.secret and value not in (None, ""):
            return f"<secret, {len(str(value))} characters>"
        if isinstance(value, (list, tuple)):
            return repr(redact_args(value))
        return repr(value)


def redact_args(args) -> list:
    """Command-line arguments with the value of any secret-bearing flag hidden."""
    shown, hide_next = [], False
    for arg in args:
        if hide_next:
            shown.append("<secret>")
        elif isinstance(arg, str) and arg.startswith(SECRET_FLAGS) and "=" in arg:
            shown.append(arg.split("=", 1)[0] + "=<secret>")
        else:
            shown.append(arg)
        hide_next = isinstance(arg, str) and arg in SECRET_FLAGS
    return shown


# --- checks: each returns the normalised value or raises Invalid(allowed) ---


def one_of(*choices: str) -> Callable[[Any], str]:
    def check(value):
        if value not in choices:
            raise Invalid("one of " + ", ".join(choices))
        return value

    return check


def accepting(extra: Any, inner: Callable[[Any], Any], allowed: str) -> Callable[[Any], Any]:
    """inner's check, with `extra` allowed too; `allowed` words the message around inner's ({})."""

    def check(value):
        if value == extra:
            return value
        try:
            return inner(value)
        except Invalid as exc:
            raise Invalid(allowed.format(exc)) from None

    return check


def optional(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return accepting(None, inner, "{} (or None)")


def integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Invalid(f"an integer from {low} to {high}")
        return value

    return check


def integer_or_auto(low: int, high: int) -> Callable[[Any], int | str]:
    return accepting("auto", integer(low, high), "'auto' or {}")


def gibibytes(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 1024:
        raise Invalid("a number of GiB from 1 to 1024 (memory of one GPU, e.g. 8 for an RTX 4060, 80 for an H100)")
    return float(value)


def free_text(value):
    if not isinstance(value, str) or not value.strip():
        raise Invalid("a non-empty string")
    return value


def check_names(value):
    from vllm_fleet.preflight import CHECKS

    if not isinstance(value, (list, tuple)) or not all(v in CHECKS for v in value):
        raise Invalid("a list of pre-flight check names from " + ", ".join(CHECKS))
    return tuple(value)


def boolean(value):
    if not isinstance(value, bool):
        raise Invalid("True or False")
    return value


def driver_branch(value):
    if not isinstance(value, str) or not value.isdigit() or len(value) != 3:
        raise Invalid("an NVIDIA driver branch as a string of three digits, such as '570'")
    return value


def version_text(value):
    if not isinstance(value, str) or not re.fullmatch(r"\d+\.\d+(\.\d+)?", value):
        raise Invalid("a version such as '6.4.1'")
    return value


def pattern_list(pattern: str, allowed: str) -> Callable[[Any], tuple[str, ...]]:
    """A list of strings, each matching pattern."""

    def check(value):
        items = value if isinstance(value, (list, tuple)) else [None]
        if not all(isinstance(v, str) and re.fullmatch(pattern, v) for v in items):
            raise Invalid(allowed)
        return tuple(value)

    return check


user_list = pattern_list(r"[a-z_][a-z0-9_-]*", "a list of user names")
url_list = pattern_list(
    r"(https?|file|ssh|ssh-ng|s3)://\S+", "a list of binary cache URLs such as 'https://cache.nixos.org'"
)
cache_keys = pattern_list(
    r"[\w.\-]+:[A-Za-z0-9+/]+=*", "a list of Nix public keys such as 'cache.nixos.org-1:6NCHdD59X431o0gW...='"
)


def host_address(value):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*|[0-9a-fA-F:.]+", value):
        raise Invalid("an IP address or a DNS name such as 'gpu-01.example.internal'")
    return value


def networks(value):
    items = value if isinstance(value, (list, tuple)) else [None]
    try:
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in items)
    except (ValueError, TypeError):
        raise Invalid("a list of IP addresses or networks such as '10.20.0.0/16'") from None


def host_names(value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise Invalid("a list of inventory host names")
    return tuple(value)


def local_file(value):
    if not isinstance(value, str) or not Path(value).is_file():
        raise Invalid("the path of an existing file on the machine running pyinfra")
    return value


def fraction(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise Invalid("a number greater than 0 and at most 1 (a fraction of each GPU's memory)")
    return float(value)


def text(value):
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise Invalid("a non-empty string without spaces")
    return value


def model_id(value):
    if value == "auto":
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?|/[\w./\-]+", value):
        raise Invalid("'auto' (sizing chooses), a Hugging Face model id such as 'org/name', or an absolute path")
    return value


def ip_address(value):
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise Invalid("an IP address such as 127.0.0.1 (loopback) or 0.0.0.0 (all interfaces)") from None


def absolute_path(value):
    if not isinstance(value, str) or not value.startswith("/") or any(c.isspace() for c in value):
        raise Invalid("an absolute path without spaces")
    return value


def secret_value(value):
    if not isinstance(value, str) or len(value) < 16 or any(c.isspace() for c in value):
        raise Invalid("a string of at least 16 characters without whitespace")
    return value


def pinned_image(value):
    if not isinstance(value, str) or not images.is_pinned(value):
        raise Invalid(
            "an image reference pinned to a version tag or digest, such as "
            "'vllm/vllm-openai:v0.11.0' (an untagged or ':latest' image changes under you)"
        )
    return value


def local_archive(value):
    if not isinstance(value, str) or not Path(value).is_file():
        raise Invalid("the path of an existing `docker save` archive on the machine running pyinfra")
    return value


def string_list(value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise Invalid("a list of strings, one command-line argument each")
    for arg in value:
        flag = arg.split("=", 1)[0]
        if flag in OWNED_FLAGS:
            raise Invalid(f"extra vLLM arguments other than {flag}, which is set by {OWNED_FLAGS[flag]}")
    return list(value)


def model_directory(value):
    if (
        not isinstance(value, str)
        or not re.fullmatch(r"[\w./\-]+", value)
        or not (Path(value) / "config.json").is_file()
    ):
        raise Invalid(
            "a model directory (config.json, weights, tokenizer) on the machine running pyinfra, its path made of "
            "letters, digits and . _ / -"
        )
    return str(Path(value).resolve())


def flake_directory(value):
    if not isinstance(value, str) or not (Path(value) / "flake.nix").is_file():
        raise Invalid("a directory holding flake.nix on the machine running pyinfra")
    return value


def mapping(value):
    if not isinstance(value, Mapping):
        raise Invalid("a mapping of daemon.json keys to values")
    return dict(value)


def _settings(*items: Setting) -> Mapping[str, Setting]:
    return MappingProxyType({s.name: s for s in items})


SCHEMA: Mapping[str, Setting] = _settings(
    Setting(
        "phase",
        None,
        "Deployment profile; set by putting the host in the inventory group of the "
        "same name, whose group_data/<phase>.py holds the profile.",
        optional(one_of(*PHASES)),
    ),
    Setting(
        "accelerator",
        "auto",
        "GPU vendor. auto: found from the PCI bus (no NVIDIA or AMD display device means cpu).",
        one_of(*ACCELERATORS),
    ),
    Setting(
        "serving_method",
        "docker",
        "How vLLM is run: a Docker container under systemd, or a Nix-built server under systemd.",
        one_of(*SERVING_METHODS),
    ),
    Setting(
        "gpu_count",
        None,
        "How many GPUs the host has; sizing uses it without contacting the host, and the verify suite "
        "checks that exactly this many are visible.",
        optional(integer(1, 64)),
    ),
    Setting(
        "gpu_memory_gib",
        None,
        "Memory of one GPU in GiB, for sizing without contacting the host.",
        optional(gibibytes),
    ),
    Setting(
        "gpu_name",
        None,
        "GPU model name (e.g. 'NVIDIA GeForce RTX 4060'), shown by plan; with accelerator auto it tells "
        "plan the vendor without contacting the host.",
        optional(free_text),
    ),
    Setting(
        "vllm_model",
        "auto",
        "Model to serve (Hugging Face id or a path inside the HF cache volume); auto: sizing picks the "
        "best model of the phase that fits the GPUs (vllm_fleet/data/models.toml).",
        model_id,
    ),
    Setting(
        "vllm_model_dir",
        None,
        "A model directory on the machine running pyinfra (config.json, weights, tokenizer), for hosts that "
        "cannot reach the hub: shipped to the host when its content changes, kept root-owned and read-only to "
        "the server, and served by its path under vllm_served_model_name (None: the directory's name). "
        "vllm_model stays 'auto'.",
        optional(model_directory),
    ),
    Setting("vllm_served_model_name", None, "Name clients use in the API; None: the model id.", optional(text)),
    Setting(
        "vllm_quantization",
        None,
        "vLLM --quantization; None lets vLLM read it from the model.",
        optional(one_of(*QUANTIZATIONS)),
    ),
    Setting(
        "vllm_max_model_len",
        None,
        "Context window in tokens (prompt + output); None: the model's own limit.",
        optional(integer(128, 1_048_576)),
    ),
    Setting(
        "vllm_gpu_memory_utilization",
        0.9,
        "Fraction of each GPU's memory vLLM may take for weights, activations and KV cache.",
        fraction,
    ),
    Setting("vllm_max_num_seqs", 256, "Most sequences batched at once.", integer(1, 4096)),
    Setting(
        "vllm_kv_cache_gib",
        None,
        "KV cache size in GiB (--kv-cache-memory-bytes). None: on GPUs what vllm_gpu_memory_utilization leaves; "
        "on CPU hosts 4 GiB of RAM (vLLM's CPU backend would otherwise take vllm_gpu_memory_utilization of all RAM).",
        optional(integer(1, 4096)),
    ),
    Setting(
        "vllm_rocm_aiter",
        "auto",
        "AMD hosts: AMD's AITER kernels (VLLM_ROCM_USE_AITER); auto: on for MI300/MI325 (gfx942) and MI350/MI355 "
        "(gfx950), the GPUs they are built for, off elsewhere.",
        accepting("auto", boolean, "auto or {}"),
    ),
    Setting(
        "vllm_tensor_parallel_size",
        "auto",
        "GPUs one model is split across on the host; auto: 1 when the model fits one GPU, else the fewest "
        "of the host's GPUs it fits on.",
        integer_or_auto(1, 64),
    ),
    Setting("vllm_port", 8000, "TCP port of the OpenAI-compatible endpoint on the host.", integer(1, 65535)),
    Setting(
        "vllm_bind_address",
        "127.0.0.1",
        "Address the endpoint is published on; anything but loopback requires vllm_api_key.",
        ip_address,
    ),
    Setting(
        "vllm_image",
        None,
        "Container image, pinned; None: the pinned default for the host's accelerator (vllm_fleet/images.py).",
        optional(pinned_image),
    ),
    Setting(
        "vllm_image_archive",
        None,
        "A local `docker save` archive holding vllm_image, shipped to "
        "the host and loaded instead of pulling (air-gapped hosts).",
        optional(local_archive),
    ),
    Setting("vllm_extra_args", (), "More vLLM command-line arguments, one list item each.", string_list),
    Setting(
        "vllm_container_shm_size",
        "4g",
        "Container --shm-size (with --ipc=host it is the floor if the host IPC namespace is ever dropped).",
        text,
    ),
    Setting(
        "vllm_ready_timeout",
        900,
        "Seconds to wait after a (re)start for /v1/models to list the model (first starts download weights).",
        integer(10, 7200),
    ),
    Setting(
        "vllm_firewall",
        True,
        "single_gpu and enterprise hosts: the vLLM port accepts connections only from loopback, the inventory's "
        "gateway hosts and vllm_allowed_sources (an nftables table of our own; SSH and other ports are left alone). "
        "Laptops bind to loopback instead.",
        boolean,
    ),
    Setting(
        "vllm_allowed_sources",
        (),
        "Addresses or networks besides the gateways allowed to reach the vLLM port: monitoring hosts "
        "(Prometheus scraping /metrics), or a team's LAN for a single_gpu host without a gateway.",
        networks,
    ),
    Setting(
        "fleet_address",
        None,
        "The address the other hosts of the fleet reach this host at, and see its connections come from "
        "(gateway backends, the vLLM hosts' firewall); None: ssh_hostname, else the inventory name.",
        optional(host_address),
    ),
    Setting(
        "gateway_backends",
        None,
        "Gateway hosts: the vLLM hosts HAProxy sends requests to; None: every enterprise host of the inventory.",
        optional(host_names),
    ),
    Setting("gateway_port", 8000, "Gateway hosts: the port clients connect to.", integer(1, 65535)),
    Setting("gateway_bind_address", "0.0.0.0", "Gateway hosts: the address clients connect to.", ip_address),
    Setting(
        "gateway_auth",
        "passthrough",
        "Gateway hosts: passthrough: the vLLM hosts check the client's key (vllm_api_key); gateway: HAProxy "
        "checks gateway_api_key and sends requests on with the vLLM hosts' key, which clients never see.",
        one_of(*GATEWAY_AUTH),
    ),
    Setting(
        "gateway_api_key",
        None,
        "Gateway hosts with gateway_auth = gateway: the key clients send; read from the environment "
        "(GATEWAY_API_KEY) in group_data/all.py, never committed.",
        optional(secret_value),
        secret=True,
    ),
    Setting(
        "gateway_tls_certificate",
        None,
        "Gateway hosts: a PEM file (certificate chain, then private key) on the machine running pyinfra; set, "
        "the gateway serves HTTPS only. None: plain HTTP.",
        optional(local_file),
    ),
    Setting(
        "gateway_drain_timeout",
        120,
        "Gateway hosts: seconds a rollout waits for a drained vLLM host's requests in flight to finish "
        "before it restarts the host anyway.",
        integer(5, 3600),
    ),
    Setting(
        "vllm_api_key",
        None,
        "API key clients must send; read from the environment (VLLM_API_KEY) in group_data/all.py, never committed.",
        optional(secret_value),
        secret=True,
    ),
    Setting(
        "hf_token",
        None,
        "Hugging Face token for gated models; read from the environment "
        "(HF_TOKEN) in group_data/all.py, never committed.",
        optional(secret_value),
        secret=True,
    ),
    Setting(
        "hf_cache_dir",
        "/var/lib/vllm-fleet/huggingface",
        "Host directory mounted as the container's Hugging Face cache, so weights survive restarts.",
        absolute_path,
    ),
    Setting(
        "vllm_download_weights",
        True,
        "Docker hosts serving a hub model: download its weights into hf_cache_dir in a step of their own, before "
        "the restart, so a release is out of service for the restart only. False: vLLM downloads them at start "
        "(or finds them in a cache you filled).",
        boolean,
    ),
    Setting(
        "vllm_download_timeout",
        7200,
        "Seconds the weights' download may take before it is stopped and the host fails, still on its old release.",
        integer(60, 86400),
    ),
    Setting(
        "vllm_cache_dir",
        "/var/lib/vllm-fleet/cache",
        "Host directory, root-only, for vLLM's compile and kernel caches (VLLM_CACHE_ROOT, XDG_CACHE_HOME), so "
        "the second start of the same model skips the compilation.",
        absolute_path,
    ),
    Setting(
        "nix_flake",
        None,
        "With serving_method nix: a flake directory on the machine running pyinfra exporting "
        "packages.<system>.vllm-server-<accelerator>; None: nix/ of this repository.",
        optional(flake_directory),
    ),
    Setting(
        "nix_substituters",
        ("https://cache.nixos.org", "https://cache.nixos-cuda.org", "https://cuda-maintainers.cachix.org"),
        "Binary caches Nix substitutes from (the CUDA builds of vLLM come from the community CUDA caches).",
        url_list,
    ),
    Setting(
        "nix_trusted_public_keys",
        (
            "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
            "cache.nixos-cuda.org:74DUi4Ye579gUqzH4ziL9IyiJBlDpMRn9MBN8oNan9M=",
            "cuda-maintainers.cachix.org-1:0dq3bujKpuEPMCX6U4WylrUDZ9JyUG0VpVZa7CNfq5E=",
        ),
        "Public keys of the binary caches in nix_substituters.",
        cache_keys,
    ),
    Setting(
        "nix_builder",
        None,
        "Inventory host that builds the server; this host copies the build from it (nix copy over SSH as root, "
        "so this host needs a root SSH key the builder accepts) instead of building. None: build here.",
        optional(text),
    ),
    Setting(
        "nix_build_timeout",
        10800,
        "Seconds a Nix build may take before it is stopped (a CUDA build missing from the caches takes hours).",
        integer(60, 86400),
    ),
    Setting(
        "package_lock_timeout",
        900,
        "Seconds apt and dnf wait for another package manager (unattended-upgrades on a fresh host) to release "
        "its lock before the host fails, naming the process that holds it.",
        integer(0, 7200),
    ),
    Setting(
        "preflight_warn_only",
        (),
        "Pre-flight checks whose failure only warns (they still run): names from vllm_fleet/preflight.py.",
        check_names,
    ),
    Setting(
        "manage_gpu_stack",
        True,
        "Install and keep the GPU driver and container runtime (NVIDIA driver and container toolkit, or "
        "AMD's amdgpu/ROCm); False: they are the host's own business and pre-flight only checks them.",
        boolean,
    ),
    Setting(
        "nvidia_driver_branch",
        "580",
        "NVIDIA driver branch (580: NVIDIA's current long-term support branch, which runs the default image's "
        "CUDA 13.0); updates stay within it. Debian 12's own packages are branch 535.",
        driver_branch,
    ),
    Setting(
        "nvidia_driver_source",
        "distro",
        "distro: the distribution's packages (Ubuntu's Canonical-signed modules, Debian non-free, Rocky's "
        "CUDA-repository module); cuda: NVIDIA's CUDA repository.",
        one_of(*DRIVER_SOURCES),
    ),
    Setting(
        "nvidia_open_kernel_modules",
        "auto",
        "NVIDIA's open kernel modules: NVIDIA's default since branch 560 and required from Blackwell on; the "
        "proprietary ones for GPUs older than Turing. auto: open, except for pre-Turing GPUs and Debian's own "
        "packages (which have none).",
        accepting("auto", boolean, "auto or {}"),
    ),
    Setting(
        "nvidia_secure_boot_unsigned_ok",
        False,
        "Install DKMS-built (unsigned) modules although Secure Boot is on, because you enrol a MOK yourself.",
        boolean,
    ),
    Setting(
        "nvidia_container_toolkit_version",
        None,
        "nvidia-container-toolkit version to pin (e.g. '1.17.8-1'); None: newest.",
        optional(text),
    ),
    Setting(
        "reboot_policy",
        "if_needed",
        "never: a host that needs a reboot stops with a message; if_needed: reboot when the new driver cannot "
        "be loaded live or the OS asks for it; always: reboot whenever the GPU stack changed.",
        one_of(*REBOOT_POLICIES),
    ),
    Setting("rocm_version", "6.4.1", "ROCm release amdgpu-install comes from (repo.radeon.com).", version_text),
    Setting(
        "rocm_usecase",
        "rocm",
        "amdgpu-install use case: rocm (driver and ROCm tools, rocm-smi for the verify suite) or dkms "
        "(driver only: the vLLM image carries ROCm).",
        one_of(*ROCM_USECASES),
    ),
    Setting("rocm_users", (), "Users added to the render and video groups (GPU access outside containers).", user_list),
    Setting(
        "docker_source",
        "distro",
        "Where the Docker engine comes from: the distribution's "
        "package (docker.io) or Docker's own repository (docker-ce).",
        one_of(*DOCKER_SOURCES),
    ),
    Setting(
        "docker_version",
        None,
        "docker-ce version to pin when docker_source is docker, as apt "
        "shows it (e.g. '5:27.3.1-1~debian.12~bookworm'); None: newest.",
        optional(text),
    ),
    Setting(
        "docker_daemon_config",
        MappingProxyType({}),
        "Keys merged one by one into /etc/docker/daemon.json; keys you do not name (another tool's runtime) are kept.",
        mapping,
    ),
)

# Connection and pyinfra keys, never typos of ours.
_FOREIGN_PREFIXES = ("ssh_", "_", "winrm_", "docker_ssh", "local_", "chroot_", "terraform_")


@dataclass(frozen=True)
class Settings:
    """One host's validated settings. Attribute access by knob name."""

    host: str
    values: Mapping[str, Any] = field(repr=False)
    role: str = "vllm"  # or "gateway": a host of the gateway group

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes: Any) -> Settings:
        return Settings(self.host, MappingProxyType({**self.values, **changes}), self.role)

    @property
    def served_model_name(self) -> str:
        if self.vllm_served_model_name:
            return self.vllm_served_model_name
        return Path(self.vllm_model_dir).name if self.vllm_model_dir else self.vllm_model

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.vllm_bind_address).is_loopback


def suggest(key: str) -> str | None:
    match = difflib.get_close_matches(key, SCHEMA.keys(), n=1, cutoff=0.8)
    return match[0] if match else None


def _check_unknown(host: str, data: Mapping[str, Any]) -> None:
    for key in data:
        if key in SCHEMA or key.startswith(_FOREIGN_PREFIXES):
            continue
        close = suggest(key)
        ours = key.startswith(("vllm_", "hf_", "docker_")) or key in ("accelerator", "phase")
        if close or ours:
            hint = f"did you mean {close}?" if close else "see the settings reference (python -m vllm_fleet settings)"
            raise SettingsError(host, key, repr(data[key]), f"{key} is not a setting; {hint}")


def validate(host: str, data: Mapping[str, Any], groups: Iterable[str] = ()) -> Settings:
    """Validate one host's data; returns its Settings or raises SettingsError."""
    _check_unknown(host, data)
    values: dict[str, Any] = {}
    for name, setting in SCHEMA.items():
        raw = data.get(name, setting.default)
        try:
            values[name] = setting.check(raw)
        except Invalid as exc:
            raise SettingsError(host, name, setting.show(raw), str(exc)) from None
    values["fleet_address"] = values["fleet_address"] or data.get("ssh_hostname") or host
    groups = set(groups)
    settings = Settings(host, MappingProxyType(values), "gateway" if GATEWAY_GROUP in groups else "vllm")
    if settings.role == "gateway":
        _check_gateway_rules(settings, groups)
    else:
        _check_rules(settings, data, groups)
    return settings


def _check_gateway_rules(s: Settings, groups: set[str]) -> None:
    phase_groups = sorted(groups & set(PHASES))
    if phase_groups:
        raise SettingsError(
            s.host,
            "phase",
            repr(phase_groups[0]),
            f"a host of the {GATEWAY_GROUP} group runs HAProxy, not vLLM: put it in no phase group",
        )
    if s.gateway_auth == "gateway" and not s.gateway_api_key:
        raise SettingsError(
            s.host,
            "gateway_api_key",
            "None",
            "a key of at least 16 characters with gateway_auth = 'gateway' (export GATEWAY_API_KEY before running "
            "pyinfra)",
        )


def _check_rules(s: Settings, data: Mapping[str, Any], groups: set[str]) -> None:
    """Rules across knobs that need no host."""
    phase_groups = sorted(groups & set(PHASES))
    if s.phase is None:
        raise SettingsError(
            s.host,
            "phase",
            "None",
            "put the host in exactly one inventory group of "
            + ", ".join(PHASES)
            + " (group_data/<phase>.py sets the profile)",
        )
    if groups and phase_groups != [s.phase]:
        where = ", ".join(phase_groups) or "no phase group"
        raise SettingsError(
            s.host,
            "phase",
            repr(s.phase),
            f"the host must be in exactly one phase group, "
            f"the one named by phase, so that group_data/{s.phase}.py applies; it is in {where}",
        )
    if s.phase == "laptop" and not s.is_loopback:
        raise SettingsError(
            s.host,
            "vllm_bind_address",
            repr(s.vllm_bind_address),
            "a loopback address on a laptop (phase laptop serves its own user only); use single_gpu to serve others",
        )
    if not s.is_loopback and not s.vllm_api_key:
        raise SettingsError(
            s.host,
            "vllm_bind_address",
            repr(s.vllm_bind_address),
            "a non-loopback address only with vllm_api_key set (export VLLM_API_KEY "
            "before running pyinfra), or 127.0.0.1",
        )
    if s.vllm_model_dir and s.vllm_model != "auto":
        raise SettingsError(
            s.host,
            "vllm_model",
            repr(s.vllm_model),
            "'auto' when vllm_model_dir is set (the directory is the model; name it with vllm_served_model_name)",
        )
    if s.serving_method == "nix":
        _check_nix_rules(s)
    if s.docker_version and s.docker_source != "docker":
        raise SettingsError(
            s.host,
            "docker_version",
            repr(s.docker_version),
            "only with docker_source = 'docker' (the distro package has its own version)",
        )
    if s.vllm_image_archive and not s.vllm_image:
        raise SettingsError(
            s.host,
            "vllm_image_archive",
            repr(s.vllm_image_archive),
            "only with vllm_image set to the tag the archive holds",
        )
    if s.vllm_image_archive:
        tags = images.archive_tags(s.vllm_image_archive)
        if s.vllm_image not in tags:
            raise SettingsError(
                s.host,
                "vllm_image_archive",
                repr(s.vllm_image_archive),
                f"an archive holding vllm_image {s.vllm_image!r}; it holds {sorted(tags)}",
            )


# Characters systemd's EnvironmentFile= would read as quoting or escapes, so the value
# vLLM saw would differ from the one Docker's --env-file passes literally.
_ENV_FILE_SPECIAL = set("'\"\\`$")


def _check_nix_rules(s: Settings) -> None:
    for name in ("vllm_api_key", "hf_token"):
        value = getattr(s, name)
        if value and _ENV_FILE_SPECIAL & set(value):
            raise SettingsError(
                s.host,
                name,
                SCHEMA[name].show(value),
                "with serving_method = 'nix', a secret without quotes, backslashes, backticks or $ "
                "(systemd's EnvironmentFile would change it)",
            )
    if s.nix_builder and s.accelerator == "auto":
        raise SettingsError(
            s.host,
            "accelerator",
            "'auto'",
            "nvidia, amd or cpu when nix_builder is set, so the builder knows which build this host takes",
        )
    if s.nix_builder == s.host:
        raise SettingsError(s.host, "nix_builder", repr(s.nix_builder), "another host (a builder builds for itself)")


def check_builder(s: Settings, builder: Settings | None) -> None:
    """A rule across hosts: nix_builder names a host of the inventory (builder: its settings,
    None when there is no such valid host) that serves with Nix and builds for itself."""
    if s.serving_method != "nix" or not s.nix_builder:
        return
    if builder is None or builder.serving_method != "nix" or builder.nix_builder:
        raise SettingsError(
            s.host,
            "nix_builder",
            repr(s.nix_builder),
            "the name of a host in this inventory with serving_method = 'nix' and no nix_builder of its own",
        )


def gateway_backends(gateway: Settings, fleet: Mapping[str, Settings]) -> list[Settings]:
    """The vLLM hosts a gateway fronts: gateway_backends, or every enterprise host."""
    if gateway.gateway_backends is None:
        return [s for s in fleet.values() if s.role == "vllm" and s.phase == "enterprise"]
    return [fleet[name] for name in gateway.gateway_backends if name in fleet]


def check_gateway(gateway: Settings, fleet: Mapping[str, Settings]) -> None:
    """Rules across hosts for a gateway: real backends it can reach, one key for all of them, and
    an address the backends' firewall can admit."""
    if gateway.role != "gateway":
        return
    allowed = "the names of vLLM hosts of this inventory"
    missing = [n for n in gateway.gateway_backends or () if n not in fleet or fleet[n].role != "vllm"]
    if missing:
        raise SettingsError(gateway.host, "gateway_backends", repr(list(gateway.gateway_backends)), allowed)
    backends = gateway_backends(gateway, fleet)
    shown = repr(None if gateway.gateway_backends is None else list(gateway.gateway_backends))
    if not backends:
        raise SettingsError(
            gateway.host, "gateway_backends", shown, f"{allowed} (None: the enterprise hosts, and there are none)"
        )
    local = [b.host for b in backends if b.is_loopback]
    if local:
        raise SettingsError(
            gateway.host,
            "gateway_backends",
            shown,
            f"hosts the gateway can reach: {', '.join(local)} bind(s) vLLM to loopback (set vllm_bind_address)",
        )
    if len({b.vllm_api_key for b in backends}) > 1:
        raise SettingsError(
            gateway.host,
            "gateway_backends",
            shown,
            "vLLM hosts sharing one vllm_api_key (the gateway checks and forwards one key)",
        )
    if any(b.vllm_firewall for b in backends):
        try:
            ipaddress.ip_address(gateway.fleet_address)
        except ValueError:
            raise SettingsError(
                gateway.host,
                "fleet_address",
                repr(gateway.fleet_address),
                "the gateway's IP address as its backends see it (their nftables firewall admits it by address)",
            ) from None


def public_values(s: Settings) -> dict[str, Any]:
    """Settings as JSON-able data, each secret replaced by whether it is set."""
    out = {}
    for name, value in s.values.items():
        if SCHEMA[name].secret:
            value = "<set>" if value else None
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def reference() -> str:
    """The settings reference, as text (python -m vllm_fleet settings)."""
    lines = []
    for s in SCHEMA.values():
        default = "(required)" if s.name == "phase" else repr(s.default if not isinstance(s.default, Mapping) else {})
        lines.append(f"{s.name}\n    default: {default}\n    {s.meaning}\n")
    return "\n".join(lines)

"""The knobs of the vLLM server."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from vllm_fleet import paths
from vllm_fleet.settings.types import (
    ADDRESS,
    ADDRESS_PATTERN,
    HOST_DIRECTORY,
    IP_ADDRESS,
    LAX,
    LOCAL_ARCHIVE,
    MODEL_DIRECTORY,
    NETWORKS,
    PINNED_IMAGE,
    QUANTIZATION,
    SECRET_RULE,
    SERVED_NAME,
    SIZE,
    Accelerator,
    Address,
    Bounded,
    ExtraArgs,
    HostDirectory,
    IpAddress,
    Knobs,
    LocalArchive,
    ModelDirectory,
    Networks,
    Phase,
    PinnedImage,
    Port,
    Quantization,
    RiskyFeature,
    Secret,
    ServedName,
    ServingMethod,
    Size,
    knob,
    one_of,
    or_none,
)
from vllm_fleet.vllm_flags import RISKY_FEATURE_NAMES, RISKY_FEATURES


class Vllm(Knobs):
    """The vLLM server: what it serves, on which GPUs, where, and how it is reached."""

    phase: Phase | None = knob(
        None,
        "Deployment profile; set by putting the host in the inventory group of the "
        "same name, whose group_data/<phase>.py holds the profile.",
        or_none(one_of(Phase)),
    )
    accelerator: Accelerator = knob(
        "auto",
        "GPU vendor. auto: found from the PCI bus (no NVIDIA or AMD display device means cpu).",
        one_of(Accelerator),
    )
    serving_method: ServingMethod = knob(
        "docker",
        "How vLLM is run: a Docker container under systemd, or a Nix-built server under systemd.",
        one_of(ServingMethod),
    )
    gpu_count: Annotated[int, Bounded(1, 64)] | None = knob(
        None,
        "How many GPUs the host has; sizing uses it without contacting the host, and the verify suite "
        "checks that exactly this many are visible.",
    )
    gpu_memory_gib: Annotated[float, Field(ge=1, le=1024)] | None = knob(
        None,
        "Memory of one GPU in GiB, for sizing without contacting the host.",
        or_none("a number of GiB from 1 to 1024 (memory of one GPU, e.g. 8 for an RTX 4060, 80 for an H100)"),
    )
    gpu_name: Annotated[str, Field(pattern=r"\S")] | None = knob(
        None,
        "GPU model name (e.g. 'NVIDIA GeForce RTX 4060'), shown by plan; with accelerator auto it tells "
        "plan the vendor without contacting the host.",
        or_none("a non-empty string"),
    )
    vllm_model: Annotated[
        str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)?|/[A-Za-z0-9_./\-]+)$")
    ] = knob(
        "auto",
        "Model to serve (Hugging Face id or a path inside the HF cache volume); auto: sizing picks the "
        "best model of the phase that fits the GPUs (vllm_fleet/data/models.toml).",
        "'auto' (sizing chooses), a Hugging Face model id such as 'org/name', or an absolute path",
    )
    vllm_model_dir: ModelDirectory | None = knob(
        None,
        "A model directory on the machine running pyinfra (config.json, weights, tokenizer), for hosts that "
        "cannot reach the hub: shipped to the host when its content changes, kept root-owned and read-only to "
        "the server, and served by its path under vllm_served_model_name (None: the directory's name). "
        "vllm_model stays 'auto'.",
        or_none(MODEL_DIRECTORY),
    )
    vllm_served_model_name: ServedName | None = knob(
        None, "Name clients use in the API; None: the model id.", or_none(SERVED_NAME)
    )
    vllm_quantization: Quantization | None = knob(
        None, "vLLM --quantization; None lets vLLM read it from the model.", or_none(QUANTIZATION)
    )
    vllm_max_model_len: Annotated[int, Bounded(128, 1_048_576)] | None = knob(
        None, "Context window in tokens (prompt + output); None: the model's own limit."
    )
    vllm_gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = knob(
        0.9,
        "Fraction of each GPU's memory vLLM may take for weights, activations and KV cache.",
        "a number greater than 0 and at most 1 (a fraction of each GPU's memory)",
    )
    vllm_max_num_seqs: Annotated[int, Bounded(1, 4096)] = knob(256, "Most sequences batched at once.")
    vllm_kv_cache_gib: Annotated[int, Bounded(1, 4096)] | None = knob(
        None,
        "KV cache size in GiB (--kv-cache-memory-bytes). None: on GPUs what vllm_gpu_memory_utilization leaves; "
        "on CPU hosts 4 GiB of RAM (vLLM's CPU backend would otherwise take vllm_gpu_memory_utilization of all RAM).",
    )
    vllm_rocm_aiter: Literal["auto"] | bool = knob(
        "auto",
        "AMD hosts: AMD's AITER kernels (VLLM_ROCM_USE_AITER); auto: on for MI300/MI325 (gfx942) and MI350/MI355 "
        "(gfx950), the GPUs they are built for, off elsewhere.",
        "auto or True or False",
    )
    vllm_tensor_parallel_size: Literal["auto"] | Annotated[int, Bounded(1, 64)] = knob(
        "auto",
        "GPUs one model is split across on the host; auto: 1 when the model fits one GPU, else the fewest "
        "of the host's GPUs it fits on.",
    )
    vllm_port: Port = knob(8000, "TCP port of the OpenAI-compatible endpoint on the host.")
    vllm_bind_address: IpAddress = knob(
        "127.0.0.1",
        "Address the endpoint is published on; anything but loopback requires vllm_api_key.",
        IP_ADDRESS,
    )
    vllm_image: PinnedImage | None = knob(
        None,
        "Container image, pinned; None: the pinned default for the host's accelerator (vllm_fleet/images.py).",
        or_none(PINNED_IMAGE),
    )
    vllm_image_archive: LocalArchive | None = knob(
        None,
        "A local `docker save` archive holding vllm_image, shipped to "
        "the host and loaded instead of pulling (air-gapped hosts).",
        or_none(LOCAL_ARCHIVE),
    )
    vllm_extra_args: ExtraArgs = knob(
        list,
        "More vLLM command-line arguments, one list item each.",
        "a list of strings, one command-line argument each",
        repr=False,  # a secret-bearing flag's value would show in a traceback
    )
    vllm_allow: Annotated[tuple[RiskyFeature, ...], *LAX] = knob(
        (),
        "vLLM features vllm_extra_args may turn on although they run code or hand out what the container holds, "
        "each by name: "
        + "; ".join(f"{name}: {what} ({', '.join(flags)})" for name, what, flags in RISKY_FEATURES)
        + ". plan lists each one allowed.",
        "a list of names from " + ", ".join(RISKY_FEATURE_NAMES),
    )
    vllm_container_shm_size: Size = knob(
        "4g",
        "Container --shm-size (with --ipc=host it is the floor if the host IPC namespace is ever dropped).",
        SIZE,
    )
    vllm_ready_timeout: Annotated[int, Bounded(10, 7200)] = knob(
        900, "Seconds to wait after a (re)start for /v1/models to list the model (first starts download weights)."
    )
    vllm_firewall: bool = knob(
        True,
        "The vLLM port accepts connections only from loopback, the inventory's gateway hosts that front the host, "
        "its monitoring hosts and vllm_allowed_sources (an nftables table of our own; SSH and other ports are left "
        "alone), and nobody reaches the container directly; the exporters' ports only the monitoring hosts. Laptops "
        "too: Docker before 28 lets their network reach a port published on 127.0.0.1. vLLM stops when the table "
        "goes (nftables.service stopped).",
        "True or False",
    )
    vllm_allowed_sources: Networks = knob(
        (),
        "Addresses or networks besides the gateways and the inventory's monitoring hosts allowed to reach the vLLM "
        "port: a team's LAN for a single_gpu host without a gateway, a Prometheus of your own.",
        NETWORKS,
    )
    fleet_address: Address = knob(
        None,
        "The address the other hosts of the fleet reach this host at, and see its connections come from "
        "(gateway backends, the vLLM hosts' firewall); None: ssh_hostname, else the inventory name.",
        or_none(ADDRESS),
        validate_default=True,
    )

    @field_validator("fleet_address", mode="before")
    @classmethod
    def _reached_at(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        return reached_at(info.data.get("host", ""), (info.context or {}).get("ssh_hostname"))


# The error of an ssh_hostname that cannot be a fleet_address: parse reports it under ssh_hostname.
SSH_HOSTNAME_ERROR = "ssh_hostname"


def reached_at(host: str, ssh_hostname: Any) -> str:
    """The fleet_address of a host that sets none: ssh_hostname, else the inventory name; for a
    pyinfra connector's name (@docker/NAME, @local) the part after it when that is an address,
    else this machine."""
    if isinstance(ssh_hostname, str) and ssh_hostname.startswith("@"):
        host, ssh_hostname = ssh_hostname, None  # pyinfra names a connector's hosts so in their data too
    if ssh_hostname is not None:
        if not isinstance(ssh_hostname, str) or not re.fullmatch(ADDRESS_PATTERN, ssh_hostname):
            raise PydanticCustomError(SSH_HOSTNAME_ERROR, f"{ADDRESS} (the fleet_address the others reach)")
        return ssh_hostname
    if host.startswith("@"):
        host = host.partition("/")[2]
    return host if re.fullmatch(ADDRESS_PATTERN, host) else "localhost"


class VllmKeysAndCaches(Knobs):
    """The vLLM server's keys, and the host directories its weights and caches live in."""

    vllm_api_key: Secret | None = knob(
        None,
        "API key clients must send; read from the environment (VLLM_API_KEY) in group_data/all.py, never committed.",
        or_none(SECRET_RULE),
    )
    hf_token: Secret | None = knob(
        None,
        "Hugging Face token for gated models; read from the environment "
        "(HF_TOKEN) in group_data/all.py, never committed.",
        or_none(SECRET_RULE),
    )
    hf_cache_dir: HostDirectory = knob(
        f"{paths.STATE_DIR}/huggingface",
        "Host directory mounted as the container's Hugging Face cache, so weights survive restarts.",
        HOST_DIRECTORY,
    )
    vllm_download_weights: bool = knob(
        True,
        "Docker hosts serving a hub model: download its weights into hf_cache_dir in a step of their own, before "
        "the restart, so a release is out of service for the restart only. False: vLLM downloads them at start "
        "(or finds them in a cache you filled).",
        "True or False",
    )
    vllm_download_timeout: Annotated[int, Bounded(60, 86400)] = knob(
        7200,
        "Seconds the weights' download may take before it is stopped and the host fails, still on its old release.",
    )
    vllm_cache_dir: HostDirectory = knob(
        f"{paths.STATE_DIR}/cache",
        "Host directory, root-only, for vLLM's compile and kernel caches (VLLM_CACHE_ROOT, XDG_CACHE_HOME), so "
        "the second start of the same model skips the compilation.",
        HOST_DIRECTORY,
    )

"""The settings schema: every knob, defined once, as a typed field with its default and meaning.

Host data (inventory, group_data) is parsed here into a `Settings` model before any operation
is planned; the rules across settings (a public address needs a key, ...) are in
`vllm_fleet/rules.py`. A bad value raises SettingsError, one line that names the host, the
key, the value and what is allowed; secrets are never echoed back.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic_core import PydanticCustomError

from vllm_fleet import images, paths
from vllm_fleet.images import AMD_METRICS_EXPORTER_IMAGE, DCGM_EXPORTER_IMAGE
from vllm_fleet.vllm_flags import OWNED_FLAGS, looks_secret, redact_args, vllm_flag

Phase = Literal["laptop", "single_gpu", "enterprise"]
Accelerator = Literal["auto", "nvidia", "amd", "cpu"]
ServingMethod = Literal["docker", "nix"]
Quantization = Literal[
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
]
DockerSource = Literal["distro", "docker"]
DriverSource = Literal["distro", "cuda"]
RebootPolicy = Literal["never", "if_needed", "always"]
GatewayAuth = Literal["passthrough", "gateway"]
RocmUsecase = Literal["rocm", "dkms"]
# The pre-flight checks (vllm_fleet/checks.py registers one function per name).
PreflightCheck = Literal[
    "os",
    "gpu_stack",
    "gpu_present",
    "secure_boot",
    "nouveau",
    "nvidia_driver",
    "image",
    "container_toolkit",
    "docker_snap",
    "daemon_json",
    "shared_memory",
    "model_fits",
    "disk",
    "gated_model",
    "port",
    "nix_version",
    "nix_rocm",
    "amd_devices",
    "gfx_target",
]
Role = Literal["vllm", "gateway", "monitoring"]

PHASES: tuple[str, ...] = get_args(Phase)
SERVING_METHODS: tuple[str, ...] = get_args(ServingMethod)
PREFLIGHT_CHECKS: tuple[str, ...] = get_args(PreflightCheck)
# Inventory groups that give a host a role other than serving vLLM.
GATEWAY_GROUP = "gateway"
MONITORING_GROUP = "monitoring"

# Connection and pyinfra keys, never typos of ours.
FOREIGN_PREFIXES = ("ssh_", "_", "winrm_", "docker_ssh", "local_", "chroot_", "terraform_")
# An unknown key with one of these in its name may hold a secret: its value is never shown.
SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "credential")


class SettingsError(ValueError):
    """A host's data breaks the schema. The message is one clean line."""

    def __init__(self, host: str, key: str, shown_value: str, allowed: str):
        self.host, self.key, self.allowed = host, key, allowed
        super().__init__(f"host {host}: {key} = {shown_value} is not allowed: {allowed}")


def show_secret(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "None"
    return "''" if value == "" else f"<secret, {len(str(value))} characters>"


# --- what each knob allows, as the error message words it ---


def one_of(kind: Any) -> str:
    return "one of " + ", ".join(get_args(kind))


def or_none(allowed: str) -> str:
    return f"{allowed} (or None)"


def integer(low: int, high: int) -> str:
    return f"an integer from {low} to {high}"


def knob(default: Any, meaning: str, allowed: str, **constraints: Any) -> Any:
    """A settings field: its default, its meaning (the reference's text) and the words of what it allows."""
    extra: dict[str, Any] = {"allowed": allowed}
    if callable(default):
        return Field(default_factory=default, description=meaning, json_schema_extra=extra, **constraints)
    return Field(default, description=meaning, json_schema_extra=extra, **constraints)


# --- checks beyond the type: each returns the normalised value or raises ValueError(allowed) ---


def _checked(test: Callable[[Any], bool], allowed: str, normalise: Callable[[Any], Any] = lambda v: v):
    def check(value):
        if not test(value):
            raise ValueError(allowed)
        return normalise(value)

    return AfterValidator(check)


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(IP_ADDRESS) from None


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.ip_network(v, strict=False)) for v in values)
    except ValueError:
        raise ValueError(NETWORKS) from None


def _secret(value: SecretStr) -> SecretStr:
    # Printable ASCII: it travels in an HTTP header, an env file and HAProxy's configuration.
    raw = value.get_secret_value()
    if len(raw) < 16 or not all("!" <= c <= "~" for c in raw):
        raise ValueError(SECRET_RULE)
    return value


# Directories a cache must not be (it is made root-only, mounted into the container and filled).
SYSTEM_DIRECTORIES = {
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/media",
    "/mnt",
    "/nix",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/var/tmp",
    "/var/spool",
    "/var/mail",
}
# Trees owned by the OS, its packages or another daemon: nothing of ours goes under them.
SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/nix",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/docker",
    "/var/lib/containerd",
)


def _port_range(value: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"([0-9]{4,5})-([0-9]{4,5})", value)
    if not match:
        return None
    low, high = int(match[1]), int(match[2])
    return (low, high) if 1024 <= low <= high <= 65535 else None


def _host_directory(value: str) -> str:
    if len(value) > 1:
        value = value.rstrip("/")
    parts = value.split("/")[1:]
    if (
        not re.fullmatch(r"(/[A-Za-z0-9_.+@-]+)+", value)
        or any(p in (".", "..") for p in parts)
        or value in SYSTEM_DIRECTORIES
        or value.startswith(tuple(tree + "/" for tree in SYSTEM_TREES))
    ):
        raise ValueError(HOST_DIRECTORY)
    return value


def control_characters(value: Any) -> bool:
    """Whether a value holds, anywhere inside it, a character that ends a line or a field of the
    formats settings are written into (newline, carriage return, tab, NUL, escapes, line and
    paragraph separators, invisible format characters)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value)
    if isinstance(value, Mapping):
        return any(control_characters(k) or control_characters(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(control_characters(v) for v in value)
    return False


def _extra_args(args: list[str]) -> list[str]:
    for arg in args:
        flag = vllm_flag(arg)
        if flag:
            given = arg.split("=", 1)[0]
            spelled = given if given == flag else f"{given} (vLLM reads it as {flag})"
            raise ValueError(f"extra vLLM arguments other than {spelled}, which is set by {OWNED_FLAGS[flag]}")
    return args


IP_ADDRESS = "an IP address such as 127.0.0.1 (loopback) or 0.0.0.0 (all interfaces)"
NETWORKS = "a list of IP addresses or networks such as '10.20.0.0/16'"
SECRET_RULE = "a string of at least 16 printable ASCII characters without whitespace"  # noqa: S105 (the rule)
HOST_DIRECTORY = (
    "an absolute path of letters, digits and . _ - + @, not a system directory nor under one "
    "(/, /etc, /usr, /var/lib, /run, /var/lib/docker, ...)"
)
NO_CONTROL = (
    "a value without control characters (newline, tab, NUL, escapes): it is written into unit files and commands"
)
SERVED_NAME = "a name of letters, digits and . _ : / @ + -, starting with a letter or digit"
MODEL_DIRECTORY = (
    "a model directory (config.json, weights, tokenizer) on the machine running pyinfra, its path made of "
    "letters, digits and . _ / -"
)
LOCAL_FILE = "the path of an existing file on the machine running pyinfra"
LOCAL_ARCHIVE = "the path of an existing `docker save` archive on the machine running pyinfra"
PINNED_IMAGE = (
    "an image reference pinned to a version tag or digest, such as "
    "'vllm/vllm-openai:v0.11.0' (an untagged or ':latest' image changes under you)"
)
FLAKE = "a directory holding flake.nix on the machine running pyinfra"
SIZE = "a size as Docker reads it, such as '4g', '16GB' or '1.5GiB'"
PACKAGE_VERSION = "a package version as apt or dnf shows it: letters, digits and . + ~ : _ -"
ADDRESS = "an IP address or a DNS name such as 'gpu-01.example.internal'"
WEBHOOK_URL = "an http:// or https:// URL without spaces, quotes or backslashes"
WEBHOOK_URL_PATTERN = r"^https?://[A-Za-z0-9\[][^\s\"'\\<>`]*$"
EMAIL = "a mail address such as 'oncall@example.com'"
SMTP_HOST = "a host and port such as 'smtp.example.com:587'"
HOST_NAME = (
    "an inventory name of letters, digits and . _ -, an IP address, or a pyinfra connector's name such as @docker/NAME"
)


def _only(*kinds: type) -> BeforeValidator:
    """Refuse what the lax checks below would take besides these (a set for a list, bytes for a
    string): the field's own words then say what is allowed."""

    def check(value):
        if not isinstance(value, kinds):
            raise PydanticCustomError("wrong_kind", "not a {kinds}", {"kinds": kinds})
        return value

    return BeforeValidator(check)


# Lists from the inventory become tuples; nothing else is taken for a list.
LAX = (Field(strict=False), _only(list, tuple))

# Docker's own size syntax (go-units RAMInBytes): 4g, 16GB, 1.5GiB, 512m, 1t.
SIZE_PATTERN = r"^([0-9]+(\.[0-9]+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$"
Size = Annotated[str, Field(pattern=SIZE_PATTERN)]
PackageVersion = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+~:_-]*$")]
# pyinfra's own names (@local, @docker/NAME) and plain host names: they end up as HAProxy server
# names, in shell commands and in file names.
# A host name (an ssh_config alias may hold _) or an IP address: no room for a shell or a format.
ADDRESS_PATTERN = r"^([A-Za-z0-9_][A-Za-z0-9._\-]*|[0-9a-fA-F:.]+)$"
Address = Annotated[str, Field(pattern=ADDRESS_PATTERN)]
INVENTORY_NAME_PATTERN = r"^(@[a-z]+(/[A-Za-z0-9._:@/-]*)?|[A-Za-z0-9_][A-Za-z0-9._-]*|[0-9a-fA-F:.]+)$"
InventoryName = Annotated[str, Field(pattern=INVENTORY_NAME_PATTERN)]
IpAddress = Annotated[str, AfterValidator(_ip_address)]
Secret = Annotated[SecretStr, Field(strict=False), _only(str), AfterValidator(_secret)]
HostDirectory = Annotated[str, AfterValidator(_host_directory)]
ServedName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$")]
LocalFile = Annotated[str, _checked(lambda v: Path(v).is_file(), LOCAL_FILE)]
PinnedImage = Annotated[str, _checked(images.is_pinned, PINNED_IMAGE)]
LocalArchive = Annotated[str, _checked(lambda v: Path(v).is_file(), LOCAL_ARCHIVE)]
ModelDirectory = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_./\-]+$"),
    _checked(lambda v: (Path(v) / "config.json").is_file(), MODEL_DIRECTORY, lambda v: str(Path(v).resolve())),
]
FlakeDirectory = Annotated[str, _checked(lambda v: (Path(v) / "flake.nix").is_file(), FLAKE)]
Port = Annotated[int, Field(ge=1, le=65535)]
WebhookUrl = Annotated[str, Field(pattern=WEBHOOK_URL_PATTERN)]
EmailAddress = Annotated[str, Field(pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")]
SmtpHost = Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9a-fA-F:.]+\]):[0-9]{1,5}$")]
CLUSTER_NAME = "a name of letters, digits, '.', '_' and '-', up to 63 characters"
ClusterName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
NETWORK_INTERFACE = "a network interface name such as eth0 or ens5f0 (up to 15 letters, digits, '.', '_', '-')"
NetworkInterface = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")]
PORT_RANGE = "a port range LOW-HIGH, from 1024 to 65535, such as 32768-60999"
PortRange = Annotated[str, _checked(lambda v: _port_range(v) is not None, PORT_RANGE)]
CacheUrl = Annotated[str, Field(pattern=r"^(https?|file|ssh|ssh-ng|s3)://\S+$")]
CacheKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9+/]+=*$")]


class Settings(BaseModel):
    """One host's validated settings: every knob a typed attribute."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    host: InventoryName = Field(description="The host's inventory name.")
    role: Role = Field("vllm", description="gateway or monitoring for a host of the group of that name, else vllm.")

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
    gpu_count: Annotated[int, Field(ge=1, le=64)] | None = knob(
        None,
        "How many GPUs the host has; sizing uses it without contacting the host, and the verify suite "
        "checks that exactly this many are visible.",
        or_none(integer(1, 64)),
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
        None, "vLLM --quantization; None lets vLLM read it from the model.", or_none(one_of(Quantization))
    )
    vllm_max_model_len: Annotated[int, Field(ge=128, le=1_048_576)] | None = knob(
        None,
        "Context window in tokens (prompt + output); None: the model's own limit.",
        or_none(integer(128, 1_048_576)),
    )
    vllm_gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = knob(
        0.9,
        "Fraction of each GPU's memory vLLM may take for weights, activations and KV cache.",
        "a number greater than 0 and at most 1 (a fraction of each GPU's memory)",
    )
    vllm_max_num_seqs: Annotated[int, Field(ge=1, le=4096)] = knob(
        256, "Most sequences batched at once.", integer(1, 4096)
    )
    vllm_kv_cache_gib: Annotated[int, Field(ge=1, le=4096)] | None = knob(
        None,
        "KV cache size in GiB (--kv-cache-memory-bytes). None: on GPUs what vllm_gpu_memory_utilization leaves; "
        "on CPU hosts 4 GiB of RAM (vLLM's CPU backend would otherwise take vllm_gpu_memory_utilization of all RAM).",
        or_none(integer(1, 4096)),
    )
    vllm_rocm_aiter: Literal["auto"] | bool = knob(
        "auto",
        "AMD hosts: AMD's AITER kernels (VLLM_ROCM_USE_AITER); auto: on for MI300/MI325 (gfx942) and MI350/MI355 "
        "(gfx950), the GPUs they are built for, off elsewhere.",
        "auto or True or False",
    )
    vllm_tensor_parallel_size: Literal["auto"] | Annotated[int, Field(ge=1, le=64)] = knob(
        "auto",
        "GPUs one model is split across on the host; auto: 1 when the model fits one GPU, else the fewest "
        "of the host's GPUs it fits on.",
        "'auto' or " + integer(1, 64),
    )
    vllm_port: Port = knob(8000, "TCP port of the OpenAI-compatible endpoint on the host.", integer(1, 65535))
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
    vllm_extra_args: Annotated[list[str], *LAX, AfterValidator(_extra_args)] = knob(
        list,
        "More vLLM command-line arguments, one list item each.",
        "a list of strings, one command-line argument each",
        repr=False,  # a secret-bearing flag's value would show in a traceback
    )
    vllm_container_shm_size: Size = knob(
        "4g",
        "Container --shm-size (with --ipc=host it is the floor if the host IPC namespace is ever dropped).",
        SIZE,
    )
    vllm_ready_timeout: Annotated[int, Field(ge=10, le=7200)] = knob(
        900,
        "Seconds to wait after a (re)start for /v1/models to list the model (first starts download weights).",
        integer(10, 7200),
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
    vllm_allowed_sources: Annotated[tuple[str, ...], *LAX, AfterValidator(_networks)] = knob(
        (),
        "Addresses or networks besides the gateways and the inventory's monitoring hosts allowed to reach the vLLM "
        "port: a team's LAN for a single_gpu host without a gateway, a Prometheus of your own.",
        NETWORKS,
    )
    fleet_address: Address | None = knob(
        None,
        "The address the other hosts of the fleet reach this host at, and see its connections come from "
        "(gateway backends, the vLLM hosts' firewall); None: ssh_hostname, else the inventory name.",
        or_none(ADDRESS),
    )
    vllm_cluster: ClusterName | None = knob(
        None,
        "The cluster this host serves one model with: every vLLM host of the inventory with the same name is one "
        "of its members (docs/clusters.md). None: the host serves its model alone.",
        or_none(CLUSTER_NAME),
    )
    vllm_cluster_rank: Annotated[int, Field(ge=0, le=63)] | None = knob(
        None,
        "Cluster members: the member's place in the cluster, 0 to members - 1; rank 0 is the leader (it serves the "
        "API; the others join it and serve nothing themselves).",
        or_none(integer(0, 63)),
    )
    vllm_cluster_interface: NetworkInterface | None = knob(
        None,
        "Cluster members: the network interface the members reach each other on, the one that holds fleet_address "
        "(NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME); required for members.",
        or_none(NETWORK_INTERFACE),
    )
    vllm_cluster_port: Port = knob(
        29501,
        "Cluster members: the leader's port the members meet at (vLLM --master-port, torch's TCPStore).",
        integer(1, 65535),
    )
    vllm_cluster_dynamic_ports: PortRange = knob(
        "32768-60999",
        "Cluster members: the port range the members' NCCL, Gloo and vLLM's message queues listen on: the kernel's "
        "net.ipv4.ip_local_port_range, which this must match (it is not read from the host). The firewall admits "
        "only the members to it.",
        PORT_RANGE,
    )
    vllm_cluster_split: Literal["pipeline", "tensor"] = knob(
        "pipeline",
        "Cluster members: pipeline: tensor parallel within each member, pipeline parallel across members (vLLM's "
        "advice); tensor: tensor parallel across every GPU of the cluster (only with a fast interconnect).",
        "pipeline or tensor",
    )
    vllm_cluster_join_timeout: Annotated[int, Field(ge=30, le=7200)] = knob(
        600,
        "Cluster members: seconds the leader waits for every member to join after a start before it says who is "
        "missing and starts again.",
        integer(30, 7200),
    )
    gateway_backends: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], *LAX] | None = knob(
        None,
        "Gateway hosts: the vLLM hosts HAProxy sends requests to; None: every enterprise host of the inventory.",
        or_none("a list of inventory host names"),
    )
    gateway_port: Port = knob(8000, "Gateway hosts: the port clients connect to.", integer(1, 65535))
    gateway_bind_address: IpAddress = knob("0.0.0.0", "Gateway hosts: the address clients connect to.", IP_ADDRESS)
    gateway_auth: GatewayAuth = knob(
        "passthrough",
        "Gateway hosts: passthrough: the vLLM hosts check the client's key (vllm_api_key); gateway: HAProxy "
        "checks gateway_api_key and sends requests on with the vLLM hosts' key, which clients never see.",
        one_of(GatewayAuth),
    )
    gateway_api_key: Secret | None = knob(
        None,
        "Gateway hosts with gateway_auth = gateway: the key clients send; read from the environment "
        "(GATEWAY_API_KEY) in group_data/all.py, never committed.",
        or_none(SECRET_RULE),
    )
    gateway_tls_certificate: LocalFile | None = knob(
        None,
        "Gateway hosts: a PEM file (certificate chain, then private key) on the machine running pyinfra; set, "
        "the gateway serves HTTPS only. None: plain HTTP.",
        or_none(LOCAL_FILE),
    )
    gateway_drain_timeout: Annotated[int, Field(ge=5, le=3600)] = knob(
        120,
        "Gateway hosts: seconds a rollout waits for a drained vLLM host's requests in flight to finish "
        "before it restarts the host anyway.",
        integer(5, 3600),
    )
    alert_ttft_p95_seconds: Annotated[float, Field(gt=0, le=3600)] = knob(
        5.0,
        "vLLM hosts: the alert TimeToFirstTokenSlow fires when the host's 95th percentile time to first token "
        "over 5 minutes is above this many seconds (phase defaults in group_data/).",
        "a number of seconds greater than 0 and at most 3600",
    )
    alert_queue_time_seconds: Annotated[float, Field(gt=0, le=3600)] = knob(
        10.0,
        "vLLM hosts: the alert RequestsWaitTooLong fires when the 95th percentile of the time requests waited "
        "in vLLM's queue over 5 minutes is above this many seconds.",
        "a number of seconds greater than 0 and at most 3600",
    )
    alert_kv_cache_usage: Annotated[float, Field(gt=0, le=1)] = knob(
        0.95,
        "vLLM hosts: the alert KvCacheNearlyFull fires when this fraction of the KV cache stays in use for 10 minutes.",
        "a fraction greater than 0 and at most 1",
    )
    alert_gpu_temperature_celsius: Annotated[int, Field(ge=40, le=120)] = knob(
        85,
        "GPU hosts: the alert GpuTooHot fires when a GPU stays above this temperature (degrees Celsius) for 5 minutes.",
        integer(40, 120),
    )
    alert_disk_free_ratio: Annotated[float, Field(gt=0, lt=1)] = knob(
        0.10,
        "Every host: the alert DiskFilling fires when a filesystem (models, images and caches live on them) has "
        "less than this fraction free, or will be full within 24 hours at its rate of the last 6.",
        "a fraction greater than 0 and less than 1",
    )
    gpu_exporter: bool = knob(
        True,
        "GPU hosts served with Docker, in an inventory with a monitoring group: run the vendor's GPU exporter "
        "(NVIDIA's DCGM exporter, AMD's device metrics exporter) in a container of its own.",
        "True or False",
    )
    dcgm_exporter_image: PinnedImage = knob(
        DCGM_EXPORTER_IMAGE,
        "NVIDIA hosts: NVIDIA's DCGM exporter image, pinned (listens on port 9400).",
        PINNED_IMAGE,
    )
    amd_metrics_exporter_image: PinnedImage = knob(
        AMD_METRICS_EXPORTER_IMAGE,
        "AMD hosts: AMD's device metrics exporter image, pinned (listens on port 5000).",
        PINNED_IMAGE,
    )
    prometheus_bind_address: IpAddress = knob(
        "127.0.0.1",
        "Monitoring hosts: the address Prometheus and Alertmanager listen on; loopback by default (reach them "
        "through an SSH tunnel, or a Grafana on the host). Any other address is filtered to "
        "monitoring_allowed_sources.",
        IP_ADDRESS,
    )
    prometheus_port: Port = knob(9090, "Monitoring hosts: Prometheus' port.", integer(1, 65535))
    alertmanager_port: Port = knob(9093, "Monitoring hosts: Alertmanager's port.", integer(1, 65535))
    monitoring_allowed_sources: Annotated[tuple[str, ...], *LAX, AfterValidator(_networks)] = knob(
        (),
        "Monitoring hosts: addresses or networks (a Grafana, the operators' network) admitted to Prometheus' and "
        "Alertmanager's ports when prometheus_bind_address is not loopback.",
        NETWORKS,
    )
    prometheus_scrape_interval: Annotated[int, Field(ge=1, le=600)] = knob(
        15,
        "Monitoring hosts: seconds between two scrapes of each target, and between rule evaluations.",
        integer(1, 600),
    )
    prometheus_retention_days: Annotated[int, Field(ge=1, le=3650)] = knob(
        15, "Monitoring hosts: days of metrics Prometheus keeps.", integer(1, 3650)
    )
    alert_not_serving_for: Annotated[int, Field(ge=0, le=86400)] = knob(
        120,
        "Monitoring hosts: seconds a vLLM host's metrics endpoint must stay unreachable before VllmNotServing "
        "fires (the rule's for:).",
        integer(0, 86400),
    )
    alert_group_wait: Annotated[int, Field(ge=0, le=3600)] = knob(
        30,
        "Monitoring hosts: seconds Alertmanager waits to group a new alert with others before it notifies.",
        integer(0, 3600),
    )
    alert_group_interval: Annotated[int, Field(ge=1, le=86400)] = knob(
        300,
        "Monitoring hosts: seconds Alertmanager waits before it notifies again about a group (an alert and a "
        "host) it has notified about: a new firing or a resolution in that group waits this long.",
        integer(1, 86400),
    )
    alert_webhook_url: WebhookUrl | None = knob(
        None,
        "Monitoring hosts: Alertmanager posts every alert, and its resolution, to this URL (Alertmanager's "
        "webhook format). A monitoring host needs this or alert_email_to.",
        or_none(WEBHOOK_URL),
    )
    alert_webhook_token: Secret | None = knob(
        None,
        "Monitoring hosts: a bearer token Alertmanager sends to alert_webhook_url; read from the environment "
        "(ALERT_WEBHOOK_TOKEN) in group_data/all.py, never committed.",
        or_none(SECRET_RULE),
    )
    alert_email_to: EmailAddress | None = knob(
        None, "Monitoring hosts: Alertmanager mails every alert, and its resolution, here.", or_none(EMAIL)
    )
    alert_email_from: EmailAddress | None = knob(
        None, "Monitoring hosts: the sender of the alert mails (required with alert_email_to).", or_none(EMAIL)
    )
    alert_smtp_smarthost: SmtpHost | None = knob(
        None,
        "Monitoring hosts: the mail relay, host:port, the alert mails go through (required with alert_email_to); "
        "Alertmanager requires TLS (STARTTLS).",
        or_none(SMTP_HOST),
    )
    alert_smtp_username: Annotated[str, Field(pattern=r"^[!-~]+$")] | None = knob(
        None, "Monitoring hosts: the user Alertmanager logs in to the mail relay as.", or_none("a name without spaces")
    )
    alert_smtp_password: Secret | None = knob(
        None,
        "Monitoring hosts: the mail relay's password; read from the environment (ALERT_SMTP_PASSWORD) in "
        "group_data/all.py, never committed.",
        or_none(SECRET_RULE),
    )
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
    vllm_download_timeout: Annotated[int, Field(ge=60, le=86400)] = knob(
        7200,
        "Seconds the weights' download may take before it is stopped and the host fails, still on its old release.",
        integer(60, 86400),
    )
    vllm_cache_dir: HostDirectory = knob(
        f"{paths.STATE_DIR}/cache",
        "Host directory, root-only, for vLLM's compile and kernel caches (VLLM_CACHE_ROOT, XDG_CACHE_HOME), so "
        "the second start of the same model skips the compilation.",
        HOST_DIRECTORY,
    )
    nix_flake: FlakeDirectory | None = knob(
        None,
        "With serving_method nix: a flake directory on the machine running pyinfra exporting "
        "packages.<system>.vllm-server-<accelerator>; None: nix/ of this repository.",
        or_none(FLAKE),
    )
    nix_substituters: Annotated[tuple[CacheUrl, ...], *LAX] = knob(
        ("https://cache.nixos.org", "https://cache.nixos-cuda.org", "https://cuda-maintainers.cachix.org"),
        "Binary caches Nix substitutes from (the CUDA builds of vLLM come from the community CUDA caches).",
        "a list of binary cache URLs such as 'https://cache.nixos.org'",
    )
    nix_trusted_public_keys: Annotated[tuple[CacheKey, ...], *LAX] = knob(
        (
            "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
            "cache.nixos-cuda.org:74DUi4Ye579gUqzH4ziL9IyiJBlDpMRn9MBN8oNan9M=",
            "cuda-maintainers.cachix.org-1:0dq3bujKpuEPMCX6U4WylrUDZ9JyUG0VpVZa7CNfq5E=",
        ),
        "Public keys of the binary caches in nix_substituters.",
        "a list of Nix public keys such as 'cache.nixos.org-1:6NCHdD59X431o0gW...='",
    )
    nix_builder: InventoryName | None = knob(
        None,
        "Inventory host that builds the server; this host copies the build from it (nix copy over SSH as root, "
        "so this host needs a root SSH key the builder accepts) instead of building. None: build here.",
        or_none(HOST_NAME),
    )
    nix_build_timeout: Annotated[int, Field(ge=60, le=86400)] = knob(
        10800,
        "Seconds a Nix build may take before it is stopped (a CUDA build missing from the caches takes hours).",
        integer(60, 86400),
    )
    package_lock_timeout: Annotated[int, Field(ge=0, le=7200)] = knob(
        900,
        "Seconds apt and dnf wait for another package manager (unattended-upgrades on a fresh host) to release "
        "its lock before the host fails, naming the process that holds it.",
        integer(0, 7200),
    )
    preflight_warn_only: Annotated[tuple[PreflightCheck, ...], *LAX] = knob(
        (),
        "Pre-flight checks whose failure only warns (they still run): names from vllm_fleet/checks.py.",
        "a list of pre-flight check names from " + ", ".join(PREFLIGHT_CHECKS),
    )
    manage_gpu_stack: bool = knob(
        True,
        "Install and keep the GPU driver and container runtime (NVIDIA driver and container toolkit, or "
        "AMD's amdgpu/ROCm); False: they are the host's own business and pre-flight only checks them.",
        "True or False",
    )
    nvidia_driver_branch: Annotated[str, Field(pattern=r"^[0-9]{3}$")] = knob(
        "580",
        "NVIDIA driver branch (580: NVIDIA's current long-term support branch, which runs the default image's "
        "CUDA 13.0); updates stay within it. Debian 12's own packages are branch 535.",
        "an NVIDIA driver branch as a string of three digits, such as '570'",
    )
    nvidia_driver_source: DriverSource = knob(
        "distro",
        "distro: the distribution's packages (Ubuntu's Canonical-signed modules, Debian non-free, Rocky's "
        "CUDA-repository module); cuda: NVIDIA's CUDA repository.",
        one_of(DriverSource),
    )
    nvidia_open_kernel_modules: Literal["auto"] | bool = knob(
        "auto",
        "NVIDIA's open kernel modules: NVIDIA's default since branch 560 and required from Blackwell on; the "
        "proprietary ones for GPUs older than Turing. auto: open, except for pre-Turing GPUs and Debian's own "
        "packages (which have none).",
        "auto or True or False",
    )
    nvidia_secure_boot_unsigned_ok: bool = knob(
        False,
        "Install DKMS-built (unsigned) modules although Secure Boot is on, because you enrol a MOK yourself.",
        "True or False",
    )
    nvidia_container_toolkit_version: PackageVersion | None = knob(
        None, "nvidia-container-toolkit version to pin (e.g. '1.17.8-1'); None: newest.", or_none(PACKAGE_VERSION)
    )
    reboot_policy: RebootPolicy = knob(
        "if_needed",
        "never: a host that needs a reboot stops with a message; if_needed: reboot when the new driver cannot "
        "be loaded live or the OS asks for it; always: reboot whenever the GPU stack changed.",
        one_of(RebootPolicy),
    )
    rocm_version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")] = knob(
        "6.4.1", "ROCm release amdgpu-install comes from (repo.radeon.com).", "a version such as '6.4.1'"
    )
    rocm_usecase: RocmUsecase = knob(
        "rocm",
        "amdgpu-install use case: rocm (driver and ROCm tools, rocm-smi for the verify suite) or dkms "
        "(driver only: the vLLM image carries ROCm).",
        one_of(RocmUsecase),
    )
    rocm_users: Annotated[tuple[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]*$")], ...], *LAX] = knob(
        (), "Users added to the render and video groups (GPU access outside containers).", "a list of user names"
    )
    docker_source: DockerSource = knob(
        "distro",
        "Where the Docker engine comes from: the distribution's "
        "package (docker.io) or Docker's own repository (docker-ce).",
        one_of(DockerSource),
    )
    docker_version: PackageVersion | None = knob(
        None,
        "docker-ce version to pin when docker_source is docker, as apt "
        "shows it (e.g. '5:27.3.1-1~debian.12~bookworm'); None: newest.",
        or_none(PACKAGE_VERSION),
    )
    docker_daemon_config: Annotated[dict[str, Any], Field(strict=False), _only(Mapping)] = knob(
        dict,
        "Keys merged one by one into /etc/docker/daemon.json; keys you do not name (another tool's runtime) are kept.",
        "a mapping of daemon.json keys to values",
    )

    def replace(self, **changes: Any) -> Settings:
        """A copy with these knobs changed (values the caller has already checked, such as sizing's)."""
        return self.model_copy(update=changes)

    @property
    def values(self) -> dict[str, Any]:
        """Knob name -> value."""
        return {name: getattr(self, name) for name in KNOBS}

    def show(self, name: str) -> str:
        """A knob's value as an error message may show it: secrets by their length only."""
        return show_value(name, getattr(self, name))

    @property
    def served_model_name(self) -> str:
        if self.vllm_served_model_name:
            return self.vllm_served_model_name
        return Path(self.vllm_model_dir).name if self.vllm_model_dir else self.vllm_model

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.vllm_bind_address).is_loopback


KNOBS = {name: info for name, info in Settings.model_fields.items() if name not in ("host", "role")}


def _extra(name: str) -> dict[str, Any]:
    extra = KNOBS[name].json_schema_extra
    assert isinstance(extra, dict)
    return extra


def _types_in(annotation: Any) -> set[Any]:
    """Every type an annotation names, through Annotated, unions and containers."""
    return {annotation, *(t for arg in get_args(annotation) for t in _types_in(arg))}


def allowed(name: str) -> str:
    return str(_extra(name)["allowed"])


def is_secret(name: str) -> bool:
    info = KNOBS.get(name)
    if info is not None:
        return SecretStr in _types_in(info.annotation)
    close = suggest(name)
    return bool(close and is_secret(close)) or any(word in name.lower() for word in SECRET_WORDS)


def show_value(name: str, value: Any, data: Mapping[str, Any] | None = None) -> str:
    """A value as an error may show it: never a secret's, nor one that looks like a key or equals
    one of the host's secrets (data), whatever the key it was put under."""
    if is_secret(name):
        return show_secret(value)
    secrets = {
        str(v.get_secret_value() if isinstance(v, SecretStr) else v)
        for k, v in (data or {}).items()
        if v and is_secret(k)
    }
    if isinstance(value, (list, tuple)):
        return repr(["<secret>" if str(v) in secrets else v for v in redact_args(value)])
    if looks_secret(value) or (value and str(value) in secrets):
        return show_secret(value)
    return repr(value)


def suggest(key: str) -> str | None:
    match = difflib.get_close_matches(key, KNOBS.keys(), n=1, cutoff=0.8)
    return match[0] if match else None


def _ours(key: str) -> bool:
    """A key the model reads: a knob, or an unknown key that looks like one (which it refuses)."""
    if key in KNOBS:
        return True
    if key.startswith(FOREIGN_PREFIXES):
        return False
    return (
        bool(suggest(key))
        or key.startswith(("vllm_", "hf_", "docker_", "gateway_", "nix_", "alert_", "prometheus_", "monitoring_"))
        or key
        in (
            "accelerator",
            "phase",
        )
    )


def _error(host: str, data: Mapping[str, Any], error: Mapping[str, Any]) -> SettingsError:
    key = str(error["loc"][0])
    shown = show_value(key, data.get(key), data)
    if error["type"] == "extra_forbidden":
        close = suggest(key)
        hint = f"did you mean {close}?" if close else "see the settings reference (vllm-fleet settings)"
        return SettingsError(host, key, shown, f"{key} is not a setting; {hint}")
    if error["type"] == "value_error":
        words = str(error["ctx"]["error"])
        return SettingsError(host, key, shown, or_none(words) if allowed(key).endswith("(or None)") else words)
    return SettingsError(host, key, shown, allowed(key))


def parse(host: str, data: Mapping[str, Any], role: str = "vllm") -> Settings:
    """One host's data as Settings, or SettingsError naming the first bad key (unknown keys first)."""
    if not re.fullmatch(INVENTORY_NAME_PATTERN, host):
        raise SettingsError(repr(host), "name", repr(host), HOST_NAME)
    knob_data = {key: value for key, value in data.items() if _ours(key)}
    for key, value in knob_data.items():
        if key in KNOBS and control_characters(value):
            raise SettingsError(host, key, show_value(key, value, data), NO_CONTROL)
    try:
        settings = Settings.model_validate({**knob_data, "host": host, "role": role})
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise _error(host, data, errors[0]) from None
    if settings.fleet_address is None:
        settings = settings.replace(fleet_address=_fleet_address(host, data))
    return settings


def _fleet_address(host: str, data: Mapping[str, Any]) -> str:
    """ssh_hostname, else the inventory name; for a pyinfra connector's name (@docker/NAME,
    @local) the part after it when that is an address, else this machine."""
    given = data.get("ssh_hostname")
    if isinstance(given, str) and given.startswith("@"):
        host, given = given, None  # pyinfra names a connector's hosts so in their data too
    if given is not None:
        if not isinstance(given, str) or not re.fullmatch(ADDRESS_PATTERN, given):
            shown = show_value("ssh_hostname", given, data)
            raise SettingsError(host, "ssh_hostname", shown, f"{ADDRESS} (the fleet_address the others reach)")
        return given
    if host.startswith("@"):
        host = host.partition("/")[2]
    return host if re.fullmatch(ADDRESS_PATTERN, host) else "localhost"


def require_ip_fleet_address(s: Settings, allowed: str) -> None:
    """Refuse a fleet_address that is not an IP address (a firewall admits the host by address)."""
    try:
        ipaddress.ip_address(s.fleet_address or "")
    except ValueError:
        raise SettingsError(s.host, "fleet_address", s.show("fleet_address"), allowed) from None


def public_values(s: Settings) -> dict[str, Any]:
    """Settings as JSON-able data, each secret replaced by whether it is set."""
    out = {}
    for name, value in s.values.items():
        if is_secret(name):
            value = "<set>" if value else None
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, (list, tuple)):
            value = redact_args(value)
        out[name] = value
    return out


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: int, 'auto' | int, list of str, secret, ..."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (tuple, list):
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if annotation is SecretStr:
        return "secret"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _default(name: str) -> str:
    info = KNOBS[name]
    return "(required)" if name == "phase" else repr(info.get_default(call_default_factory=True))


def reference() -> str:
    """The settings reference, as text (vllm-fleet settings)."""
    lines = []
    for name, info in KNOBS.items():
        lines.append(
            f"{name}\n    type: {type_name(info.annotation)}\n    default: {_default(name)}\n"
            f"    {info.description}\n    allowed: {allowed(name)}\n"
        )
    return "\n".join(lines)


def reference_markdown() -> str:
    """The settings page of the documentation (docs/settings-reference.md), made from the model."""
    lines = [
        "# Settings reference",
        "",
        "<!-- Generated from vllm_fleet/settings.py by `vllm-fleet settings --format markdown`: edit the model. -->",
        "",
        "Every knob, in the order of `vllm_fleet/settings.py`. Rules across knobs are in",
        "`vllm_fleet/rules.py`; see [Settings](settings.md).",
        "",
    ]
    for name, info in KNOBS.items():
        secret = " Secret: never shown, read from the environment." if is_secret(name) else ""
        lines += [
            f"## `{name}`",
            "",
            f"- type: `{type_name(info.annotation)}`",
            f"- default: `{_default(name)}`",
            f"- allowed: {allowed(name)}",
            "",
            f"{info.description}{secret}",
            "",
        ]
    return "\n".join(lines)

"""The kinds of value a knob takes: their types, the checks beyond the type, and the words of
what each allows, as an error message and the settings reference say it."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, GetCoreSchemaHandler, SecretStr
from pydantic_core import PydanticCustomError, core_schema

from vllm_fleet import images
from vllm_fleet.settings.places import (  # noqa: F401 (re-exported)
    HOST_DIRECTORY,
    NETWORKS,
    PRIVATE_NETWORKS,
    host_directory,
    networks,
    private_networks,
)
from vllm_fleet.settings.secret_rules import weak_secret
from vllm_fleet.settings.urls import (  # noqa: F401 (re-exported)
    CACHE_URL,
    EMAIL,
    EMAIL_PATTERN,
    SMTP_HOST,
    WEBHOOK_URL,
    cache_url,
    smtp_host,
    webhook_url,
)
from vllm_fleet.vllm_flags import OWNED_FLAGS, QUANTIZATION_METHODS, UNICODE_DASHES, read_args, vllm_flag

Phase = Literal["laptop", "single_gpu", "enterprise"]
Accelerator = Literal["auto", "nvidia", "amd", "cpu"]
ServingMethod = Literal["docker", "nix"]
DockerSource = Literal["distro", "docker"]
DriverSource = Literal["distro", "cuda"]
RebootPolicy = Literal["never", "if_needed", "always"]
GatewayAuth = Literal["passthrough", "gateway"]
RocmUsecase = Literal["rocm", "dkms"]
# The pre-flight checks (vllm_fleet/checks/ registers one function per name).
PreflightCheck = Literal[
    "os",
    "gpu_stack",
    "gpu_present",
    "secure_boot",
    "nouveau",
    "nvidia_driver",
    "gpu_arch",
    "image",
    "container_toolkit",
    "docker_snap",
    "docker_conflicts",
    "daemon_json",
    "shared_memory",
    "model_fits",
    "disk",
    "gated_model",
    "port",
    "nix_version",
    "nix_vllm",
    "nix_rocm",
    "amd_devices",
    "gfx_target",
    "gpu_health",
    "rdma",
]
# The GPU health conditions (vllm_fleet/gpu_health.py says what each is and what to do).
GpuCondition = Literal[
    "unresponsive",
    "ecc_uncorrected",
    "retired_pages_pending",
    "row_remap_pending",
    "row_remap_failed",
    "reset_required",
    "xid",
    "ras_uncorrectable",
    "bad_pages_pending",
    "bad_pages_failed",
]
Role = Literal["vllm", "gateway", "monitoring"]
# vllm_flags.RISKY_FEATURES' names (tests/unit/test_settings.py keeps the two in step).
RiskyFeature = Literal["remote_code", "plugins", "local_media", "dummy_weights", "prompt_logging"]

PHASES: tuple[str, ...] = get_args(Phase)
SERVING_METHODS: tuple[str, ...] = get_args(ServingMethod)
PREFLIGHT_CHECKS: tuple[str, ...] = get_args(PreflightCheck)
GPU_CONDITIONS: tuple[str, ...] = get_args(GpuCondition)
# Inventory groups that give a host a role other than serving vLLM.
GATEWAY_GROUP = "gateway"
MONITORING_GROUP = "monitoring"

# --- what each knob allows, as the error message words it ---


def one_of(kind: Any) -> str:
    return "one of " + ", ".join(get_args(kind))


def or_none(allowed: str) -> str:
    return f"{allowed} (or None)"


@dataclass(frozen=True)
class Bounded:
    """An integer from low to high, as pydantic checks it and as the words of what a knob allows say
    it (`Annotated[int, Bounded(1, 64)]`), so the bounds are written once."""

    low: int
    high: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return handler(Annotated[source, Field(ge=self.low, le=self.high)])

    @property
    def allowed(self) -> str:
        return f"an integer from {self.low} to {self.high}"


def types_in(annotation: Any) -> set[Any]:
    """Every type an annotation names, through Annotated, unions and containers (Annotated's
    metadata included)."""
    return {annotation, *(t for arg in get_args(annotation) for t in types_in(arg))}


def bounded_allowed(annotation: Any) -> str | None:
    """The words of what a knob of a Bounded type allows, from the type alone: the bounds, after
    'auto' where auto is allowed too, with (or None) where None is; None for a knob of another type."""
    kinds = types_in(annotation)
    bounds = [kind for kind in kinds if isinstance(kind, Bounded)]
    if not bounds:
        return None
    words = bounds[0].allowed
    if any(get_origin(kind) is Literal and "auto" in get_args(kind) for kind in kinds):
        words = "'auto' or " + words
    return or_none(words) if type(None) in kinds else words


def knob(default: Any, meaning: str, allowed: str | None = None, **constraints: Any) -> Any:
    """A settings field: its default, its meaning (the reference's text) and the words of what it
    allows (a Bounded type says them itself)."""
    extra: dict[str, Any] = {} if allowed is None else {"allowed": allowed}
    if callable(default):
        return Field(default_factory=default, description=meaning, json_schema_extra=extra, **constraints)
    return Field(default, description=meaning, json_schema_extra=extra, **constraints)


class Knobs(BaseModel):
    """The knobs of one component (vLLM, the gateway, ...); Settings is all of them."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


def holds_secret(annotation: Any) -> bool:
    return SecretStr in types_in(annotation)


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


def _secret(value: SecretStr) -> SecretStr:
    # Printable ASCII: it travels in an HTTP header, an env file and HAProxy's configuration.
    raw = value.get_secret_value()
    if len(raw) < 16 or not all("!" <= c <= "~" for c in raw) or weak_secret(raw):
        raise ValueError(SECRET_RULE)
    return value


def _port_range(value: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"([0-9]{4,5})-([0-9]{4,5})", value)
    if not match:
        return None
    low, high = int(match[1]), int(match[2])
    return (low, high) if 1024 <= low <= high <= 65535 else None


EXTRA_ARG = (
    "options of vLLM's serve parser and their values, one list item each: no empty item, no dash other than "
    "'-' (a pasted en dash or minus sign), no spaces around an item, and no word that is no option's value "
    "(vLLM would serve it as the model, over vllm_model)"
)


def _extra_args(args: list[str]) -> list[str]:
    for arg in args:
        if not arg.strip() or arg.lstrip()[:1] in UNICODE_DASHES or arg != arg.strip():
            raise ValueError(EXTRA_ARG)
    positional = [word for flag, word in read_args(args) if flag is None]
    if positional:
        raise ValueError(f"{EXTRA_ARG}: {positional[0]!r} is such a word")
    for arg in args:
        flag = vllm_flag(arg)
        if flag:
            given = arg.split("=", 1)[0]
            spelled = given if given == flag else f"{given} (vLLM reads it as {flag})"
            raise ValueError(f"extra vLLM arguments other than {spelled}, which is set by {OWNED_FLAGS[flag]}")
    return args


IP_ADDRESS = "an IP address such as 127.0.0.1 (loopback) or 0.0.0.0 (all interfaces)"
SECRET_RULE = (
    "a string of at least 16 printable ASCII characters without whitespace, 8 or more of them different, "  # noqa: S105 (the rule)
    "not a placeholder (changeme, example, your-key, ${VAR}, <key>, ...)"
)
SERVED_NAME = "a name of letters, digits and . _ : / @ + -, starting with a letter or digit"
MODEL_DIRECTORY = (
    "a model directory (config.json, weights, tokenizer) on the machine running pyinfra, its path made of "
    "letters, digits and . _ / -"
)
LOCAL_FILE = "the path of an existing file on the machine running pyinfra"
LOCAL_ARCHIVE = "the path of an existing `docker save` archive on the machine running pyinfra"
NIX_INSTALLER = (
    "the path of an existing nix-<version>-<machine>-linux.tar.xz (the official installer's tarball, from "
    "releases.nixos.org) on the machine running pyinfra"
)
PINNED_IMAGE = (
    "an image reference pinned to a version tag or digest, such as "
    "'vllm/vllm-openai:v0.11.0' (an untagged or ':latest' image changes under you)"
)
FLAKE = "a directory holding flake.nix on the machine running pyinfra"
SIZE = "a size as Docker reads it, such as '4g', '16GB' or '1.5GiB'"
PACKAGE_VERSION = "a package version as apt or dnf shows it: letters, digits and . + ~ : _ -"
ADDRESS = "an IP address or a DNS name such as 'gpu-01.example.internal'"
HOST_NAME = (
    "an inventory name of letters, digits and . _ -, an IP address, or a pyinfra connector's name such as @docker/NAME"
)


def only(*kinds: type) -> BeforeValidator:
    """Refuse what the lax checks below would take besides these (a set for a list, bytes for a
    string): the field's own words then say what is allowed."""

    def check(value):
        if not isinstance(value, kinds):
            raise PydanticCustomError("wrong_kind", "not a {kinds}", {"kinds": kinds})
        return value

    return BeforeValidator(check)


# Lists from the inventory become tuples; nothing else is taken for a list.
LAX = (Field(strict=False), only(list, tuple))

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
Secret = Annotated[SecretStr, Field(strict=False), only(str), AfterValidator(_secret)]
HostDirectory = Annotated[str, AfterValidator(host_directory)]
ServedName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$")]
LocalFile = Annotated[str, _checked(lambda v: Path(v).is_file(), LOCAL_FILE)]
PinnedImage = Annotated[str, _checked(images.is_pinned, PINNED_IMAGE)]
LocalArchive = Annotated[str, _checked(lambda v: Path(v).is_file(), LOCAL_ARCHIVE)]
NixInstallerArchive = Annotated[
    str,
    _checked(
        lambda v: Path(v).is_file() and re.fullmatch(r"nix-[0-9.]+-[a-z0-9_]+-linux\.tar\.xz", Path(v).name),
        NIX_INSTALLER,
    ),
]
ModelDirectory = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_./\-]+$"),
    _checked(lambda v: (Path(v) / "config.json").is_file(), MODEL_DIRECTORY, lambda v: str(Path(v).resolve())),
]
FlakeDirectory = Annotated[str, _checked(lambda v: (Path(v) / "flake.nix").is_file(), FLAKE)]
Port = Annotated[int, Bounded(1, 65535)]
WebhookUrl = Annotated[str, AfterValidator(webhook_url)]
EmailAddress = Annotated[str, Field(pattern=EMAIL_PATTERN)]
SmtpHost = Annotated[str, AfterValidator(smtp_host)]
CLUSTER_NAME = "a name of letters, digits, '.', '_' and '-', up to 63 characters"
ClusterName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
NETWORK_INTERFACE = "a network interface name such as eth0 or ens5f0 (up to 15 letters, digits, '.', '_', '-')"
NetworkInterface = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")]
PORT_RANGE = "a port range LOW-HIGH, from 1024 to 65535, such as 32768-60999"
PortRange = Annotated[str, _checked(lambda v: _port_range(v) is not None, PORT_RANGE)]
CacheUrl = Annotated[str, AfterValidator(cache_url)]
CacheKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9+/]+=*$")]
Networks = Annotated[tuple[str, ...], *LAX, AfterValidator(networks)]
PrivateNetworks = Annotated[tuple[str, ...], *LAX, AfterValidator(private_networks)]
ExtraArgs = Annotated[list[str], *LAX, AfterValidator(_extra_args)]
QUANTIZATION = "one of the pinned vLLM's methods: " + ", ".join(QUANTIZATION_METHODS)


def _quantization(value: str) -> str:
    if value not in QUANTIZATION_METHODS:
        raise ValueError(QUANTIZATION)
    return value


Quantization = Annotated[str, Field(strict=True), AfterValidator(_quantization)]

"""Pre-flight checks: what goes wrong in the field, caught before anything is installed.

One fact (facts.probe.HostProbe) reads everything in a single round trip; each check is a pure
function of that probe, the host's settings and its sizing, so each is tested on
recorded outputs. A check applies to some accelerators and methods; a failed check
refuses the host unless its name is in preflight_warn_only (then it warns).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from vllm_fleet import gpu_packages, images, nix, paths, shipped_model
from vllm_fleet.distro import Distro
from vllm_fleet.facts.probe import Probe
from vllm_fleet.gpus import PRE_TURING
from vllm_fleet.settings import KNOBS, PREFLIGHT_CHECKS, SIZE_PATTERN, Settings, daemon_json
from vllm_fleet.sizing import CATALOGUE, Sizing

# Image size on disk, GiB, by accelerator (CUDA and ROCm images are large; pulled plus unpacked).
IMAGE_DISK_GIB = {"nvidia": 25.0, "amd": 40.0, "cpu": 10.0}
# Where each serving method keeps the server, and the probe's key for its free space.
SERVER_STORE = {"docker": ("/var/lib/docker", "docker_root_free_kib"), "nix": ("/nix/store", "nix_store_free_kib")}
# gfx targets the default ROCm image ships kernels for: vLLM's docker/Dockerfile.rocm_base, ARG
# PYTORCH_ROCM_ARCH=gfx90a;gfx942;gfx950;gfx1100;gfx1101;gfx1200;gfx1201;gfx1150;gfx1151 (gfx1150 and
# gfx1151: the Ryzen AI 300 and AI Max laptops' and mini PCs' integrated GPUs).
ROCM_IMAGE_GFX = {"gfx90a", "gfx942", "gfx950", "gfx1100", "gfx1101", "gfx1200", "gfx1201", "gfx1150", "gfx1151"}
KIB_PER_GIB = 1024 * 1024


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    message: str


@dataclass(frozen=True)
class Context:
    """What a check reads: the probe, the GPU vendors on the bus, settings, sizing."""

    probe: Probe
    vendors: list[str]
    settings: Settings
    accelerator: str
    sizing: Sizing
    image: str
    distro: Distro | None = None  # None when unsupported
    unsupported_os: str | None = None  # why, from vllm_fleet.distro
    machine: str = ""  # the host's `uname -m` (pyinfra's Arch fact), '' when not read
    gpu_capabilities: tuple[tuple[str, str], ...] = ()  # each GPU's name and compute capability, () unread

    @property
    def managed(self) -> bool:
        """The GPU stack is installed by this run (so its absence is no failure)."""
        return self.settings.manage_gpu_stack


Check = Callable[[Context], "str | None"]  # None: passed; a string: what is wrong and what to do
CHECKS: dict[str, Check] = {}
APPLIES: dict[str, tuple[str, ...]] = {}
METHODS: dict[str, tuple[str, ...]] = {}


def check(
    name: str, accelerators: tuple[str, ...] = ("nvidia", "amd", "cpu"), methods: tuple[str, ...] = ("docker", "nix")
):
    def register(func: Check) -> Check:
        if name not in PREFLIGHT_CHECKS:
            raise ValueError(f"pre-flight check {name!r} is missing from vllm_fleet.settings.types.PreflightCheck")
        CHECKS[name] = func
        APPLIES[name] = accelerators
        METHODS[name] = methods
        return func

    return register


def _gib(kib: int) -> float:
    return kib / KIB_PER_GIB


@check("os")
def _os(c: Context):
    return c.unsupported_os


@check("gpu_stack", ("nvidia", "amd"))
def _gpu_stack(c: Context):
    if not c.managed or c.distro is None:
        return None
    try:
        if c.accelerator == "nvidia":
            plan = gpu_packages.nvidia_driver(c.distro, c.settings, c.probe.kernel)
            branch = gpu_packages.DEBIAN_NVIDIA_BRANCH if plan.debian_nonfree else c.settings.nvidia_driver_branch
            if c.image in images.DEFAULT_IMAGES.values() and int(branch) < images.MIN_NVIDIA_DRIVER[0]:
                fix = (
                    "nvidia_driver_source = 'cuda' (NVIDIA's repository for Debian 12)"
                    if plan.debian_nonfree
                    else f"nvidia_driver_branch = '{KNOBS['nvidia_driver_branch'].default}'"
                )
                return (
                    f"the managed NVIDIA driver would be branch {branch}, older than the "
                    f"{'.'.join(map(str, images.MIN_NVIDIA_DRIVER))} that {c.image}'s CUDA {images.IMAGE_CUDA} "
                    f"needs: set {fix}, or vllm_image to an image built for that driver's CUDA"
                )
        elif c.distro.id == "debian":
            return (
                "vllm-fleet installs ROCm on Ubuntu and RHEL-family hosts, not Debian (AMD's Debian 12 "
                "path reuses its Ubuntu 22.04 packages, untested here): "
                "install ROCm yourself and set manage_gpu_stack = False"
            )
    except gpu_packages.DriverUnavailable as exc:
        return str(exc)
    return None


@check("gpu_present", ("nvidia", "amd"))
def _gpu_present(c: Context):
    if c.accelerator not in c.vendors:
        seen = ", ".join(c.vendors) or "none"
        return (
            f"accelerator is {c.accelerator} but the PCI bus shows no {c.accelerator.upper()} GPU "
            f"(GPU vendors seen: {seen}); check the host, or set accelerator to match it"
        )
    return None


@check("secure_boot", ("nvidia",))
def _secure_boot(c: Context):
    if "enabled" not in c.probe.secure_boot.lower():
        return None
    if c.managed:
        # A module already loaded under Secure Boot is signed by an enrolled key.
        if c.distro is None or c.settings.nvidia_secure_boot_unsigned_ok or c.probe.nvidia_driver:
            return None
        try:
            dkms = gpu_packages.nvidia_driver(c.distro, c.settings, c.probe.kernel).dkms
        except gpu_packages.DriverUnavailable:
            return None  # gpu_stack says why
        if dkms:
            return (
                "Secure Boot is on and this driver's modules are built by DKMS, unsigned: enrol a Machine Owner Key "
                "(MOK) for DKMS and set nvidia_secure_boot_unsigned_ok = True, or use signed packages (Ubuntu's "
                "prebuilt modules: nvidia_driver_source = 'distro')"
            )
        return None
    if not c.probe.nvidia_driver:
        return (
            "Secure Boot is on and no NVIDIA module is loaded: an unsigned driver module will not load; "
            "enrol a Machine Owner Key (MOK) for DKMS-signed modules, or use your distribution's signed driver packages"
        )
    return None


@check("nouveau", ("nvidia",))
def _nouveau(c: Context):
    if c.probe.nouveau and not c.managed:
        return (
            "the nouveau module is loaded and holds the GPU: blacklist it (modprobe.d), rebuild the initramfs, reboot"
        )
    return None


@check("nvidia_driver", ("nvidia",))
def _nvidia_driver(c: Context):
    version = c.probe.nvidia_driver
    if c.managed:
        return None  # installed, or replaced by the pinned branch, by this run (which reboots a mismatch)
    if c.probe.nvidia_mismatch:
        return (
            f"the loaded NVIDIA module is {version} and the installed driver libraries are "
            f'{c.probe.nvidia_libraries} (updated since boot): containers fail with "Driver/library version '
            'mismatch" until the host reboots: reboot it'
        )
    if not version:
        headers = "" if c.probe.headers else f" (and linux-headers-{c.probe.kernel} for DKMS)"
        return f"no NVIDIA driver is loaded: install the driver{headers} and reboot before deploying vLLM"
    have = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if c.image in images.DEFAULT_IMAGES.values() and have < images.MIN_NVIDIA_DRIVER:
        return (
            f"NVIDIA driver {version} is older than {'.'.join(map(str, images.MIN_NVIDIA_DRIVER))}, which "
            f"{c.image}'s CUDA {images.IMAGE_CUDA} needs (CUDA error 803/804 at start): upgrade the driver"
        )
    return None


@check("gpu_arch", ("nvidia",), methods=("docker",))
def _gpu_arch(c: Context):
    if c.image not in images.DEFAULT_IMAGES.values():
        return None  # an image of the operator's choosing: what it is built for is theirs to know
    oldest = images.MIN_COMPUTE_CAPABILITY
    for name, capability in c.gpu_capabilities:
        have = tuple(int(p) for p in capability.split(".")[:2] if p.isdigit())
        if (have and have < oldest) or (not have and PRE_TURING.search(name)):
            capability = capability or "below 7.5"
            return (
                f"{name} has compute capability {capability}, and {c.image} is built with CUDA {images.IMAGE_CUDA} "
                f'for {".".join(map(str, oldest))} (Turing) and newer: it would fail at the first request with "no '
                'kernel image is available". Set vllm_image to a vLLM image built with CUDA 12 for this GPU (vLLM '
                "before 0.12), or serve from newer GPUs"
            )
    return None


@check("image", methods=("docker",))
def _image(c: Context):
    if c.settings.vllm_image:
        built_for = images.built_for_another(c.settings.vllm_image, c.accelerator)
        if built_for:
            return (
                f"vllm_image {c.settings.vllm_image} is vLLM's {built_for} image and this host's accelerator is "
                f"{c.accelerator}: set vllm_image to one built for {c.accelerator}, or leave it unset"
            )
        return None
    try:
        images.default_image(c.accelerator, c.machine)
    except images.NoDefaultImage as exc:
        return str(exc)
    return None


@check("container_toolkit", ("nvidia",), ("docker",))
def _toolkit(c: Context):
    if not c.managed and not c.probe.toolkit and "nvidia" not in c.probe.docker_runtimes:
        return (
            "the NVIDIA container toolkit is missing, so `docker run --gpus all` fails with "
            '"could not select device driver": install nvidia-container-toolkit'
        )
    return None


@check("docker_snap", methods=("docker",))
def _docker_snap(c: Context):
    if c.probe.docker_snap:
        return "Docker is installed from snap, which confines GPU devices and config paths: `snap remove docker`"
    return None


@check("daemon_json", methods=("docker",))
def _daemon_json(c: Context):
    parsed = c.probe.daemon_config
    if not isinstance(parsed, dict):
        return (
            f"{paths.DOCKER_DAEMON_JSON} exists but {parsed}: fix or remove it (it is merged into, never overwritten)"
        )
    dockerd, newer_docker = _dockerd_after_this_run(c)
    newer = daemon_json.too_new(c.settings.docker_daemon_config, dockerd)
    if newer:
        keys = ", ".join(f"{key} (dockerd {release})" for key, release in newer.items())
        return (
            f"docker_daemon_config sets keys the dockerd this host will run ({dockerd}) does not read: {keys}; it "
            f"would refuse {paths.DOCKER_DAEMON_JSON} and not start again, taking every container down: leave them "
            f"out, or {newer_docker}"
        )
    return None


def _dockerd_after_this_run(c: Context) -> tuple[str, str]:
    """The dockerd release the host runs once the Docker step is done ('' unknown: the newest), and
    how to get a newer one: Docker's repository installs docker_version (else its newest), the
    distribution's package keeps what is installed (else the release's own)."""
    if c.settings.docker_source == "docker":
        pinned = re.match(r"(?:\d+:)?(\d+\.\d+)", c.settings.docker_version or "")
        return (pinned[1] if pinned else ""), "pin a newer docker_version"
    dockerd = c.probe.dockerd_version
    if not dockerd and c.distro:
        dockerd = daemon_json.DISTRO_DOCKERD.get((c.distro.id, c.distro.version), "")
    return dockerd, "install a newer Docker (docker_source = 'docker')"


@check("shared_memory")
def _shm(c: Context):
    # --ipc=host shares the host's /dev/shm with the container.
    size = _gib(c.probe.shm_kib)
    wanted = _size_gib(c.settings.vllm_container_shm_size)
    if size and size < wanted:
        return (
            f"/dev/shm is {size:.1f} GiB, below the {c.settings.vllm_container_shm_size} vLLM's workers share "
            "(NCCL ncclShmOpen errors): enlarge the /dev/shm mount"
        )
    return None


@check("model_fits")
def _model_fits(c: Context):
    return c.sizing.refusal


@check("disk")
def _disk(c: Context):
    problems = []
    if c.settings.vllm_model_dir and os.path.basename(c.sizing.model) not in c.probe.shipped_models:
        free, need = _gib(c.probe.models_free_kib), shipped_model.size_gib(c.settings.vllm_model_dir) * 1.1
        if free < need:
            problems.append(f"{paths.MODELS_DIR} has {free:.1f} GiB free, vllm_model_dir needs {need:.1f} GiB")
    model = CATALOGUE.get(c.sizing.model)
    if model and not c.probe.hf_cache_has_model:
        free = _gib(c.probe.hf_cache_free_kib)
        if free < model.disk_gib * 1.1:
            problems.append(
                f"{c.settings.hf_cache_dir} has {free:.1f} GiB free, {model.id} needs {model.disk_gib * 1.1:.1f} GiB"
            )
    # The Nix closure of vLLM is about the size of its image (the same CUDA or ROCm libraries).
    where, key = SERVER_STORE[c.settings.serving_method]
    free = _gib(getattr(c.probe, key))
    need = IMAGE_DISK_GIB[c.accelerator]
    if c.settings.vllm_image_archive and c.settings.serving_method == "docker":
        need = 2.2 * os.path.getsize(c.settings.vllm_image_archive) / 2**30  # shipped copy + loaded layers
    if c.settings.serving_method == "docker" and images.image_loaded(
        c.probe.image_id, c.image, c.settings.vllm_image_archive
    ):
        need = 0.0  # loaded already: nothing is pulled, shipped or loaded
    if free < need:
        problems.append(f"{where} has {free:.1f} GiB free, vLLM needs about {need:.1f} GiB there")
    return "; ".join(problems) + ": free some space or point hf_cache_dir elsewhere" if problems else None


@check("gated_model")
def _gated(c: Context):
    model = CATALOGUE.get(c.sizing.model)
    if model and model.gated and not c.settings.hf_token:
        return f"{model.id} is gated on Hugging Face: accept its licence there and export HF_TOKEN"
    return None


@check("port")
def _port(c: Context):
    listeners = [_listener(item) for item in c.probe.port_listeners.split()]
    # Ours: vllm.service's own process (Nix), Docker's proxy while our container is up, or our
    # container's server itself (a cluster's member runs on the host's network).
    ours_up = bool(c.probe.vllm_container_port)
    ours = {str(pid) for pid in (c.probe.vllm_main_pid, c.probe.vllm_container_pid) if pid}
    others = [name for name, pid in listeners if pid not in ours and not (name == "docker-proxy" and ours_up)]
    if others:
        # "?": read from /proc/net/tcp before the deploy installed ss, which names the process.
        taken = ", ".join(name if name != "?" else "a process (ss from iproute2 names it)" for name in others)
        return f"port {c.settings.vllm_port} is already taken by {taken}: stop it or choose another vllm_port"
    return None


def _listener(item: str) -> tuple[str, str]:
    """(process name, pid) from one of ss's users:(("name",pid=N entries."""
    name, _, pid = item.removeprefix('users:(("').partition(",pid=")
    return name.rstrip('"'), pid


@check("nix_version", methods=("nix",))
def _nix_version(c: Context):
    need = nix.minimum_nix(nix.flake_dir(c.settings.nix_flake))
    if c.probe.nix:
        if nix.older(c.probe.nix_version, need):
            return (
                f"Nix {c.probe.nix_version} on this host is older than the {need} nixpkgs needs (nixpkgs' "
                "lib/minver.nix; Debian 12's package is 2.8, Ubuntu 22.04's 2.6): remove it (apt purge nix-bin "
                f"nix-setup-systemd) so the deploy installs Nix {nix.INSTALLER.version} with the official installer, "
                f"or install Nix {need} or newer yourself"
            )
        return None
    if c.distro is None:
        return None
    source, _ = nix.install_source(c.distro.id, c.distro.version, need)
    if source == "official" and c.distro.machine not in nix.INSTALLER.sha256:
        return (
            f"the official Nix installer is pinned by checksum for {', '.join(nix.INSTALLER.sha256)} only, and this "
            f"host is {c.distro.machine}: install Nix {need} or newer yourself, or serve this host with Docker "
            "(serving_method = 'docker')"
        )
    if source == "official" and c.probe.selinux.lower() == "enforcing":
        return (
            "SELinux is enforcing, and the official Nix installer refuses to run then: install Nix yourself with "
            "an installer that brings an SELinux policy (Determinate Systems' nix-installer), or serve this host "
            "with Docker (serving_method = 'docker')"
        )
    return None


@check("nix_rocm", ("amd",), ("nix",))
def _nix_rocm(c: Context):
    if c.settings.nix_flake:
        return None  # a flake of your own, built for ROCm by you
    return (
        f"nixpkgs' vLLM at this flake's pin ({nix.NIXPKGS_PIN}) is not known to build with rocmSupport (it has "
        "not for most of 2025-26): serve AMD hosts with Docker (serving_method = 'docker'), or set nix_flake to a "
        "flake you have built for ROCm"
    )


@check("amd_devices", ("amd",))
def _amd_devices(c: Context):
    if c.managed:
        return None  # amdgpu-install provides them
    missing = [
        what for what, present in (("/dev/kfd", c.probe.kfd), ("the render group", c.probe.render_group)) if not present
    ]
    if missing:
        return f"{' and '.join(missing)} missing: install amdgpu (amdgpu-install --usecase=rocm) and reboot"
    return None


@check("gfx_target", ("amd",))
def _gfx(c: Context):
    targets = set(c.probe.gfx)
    if not targets and c.managed:
        return None  # rocminfo arrives with ROCm in this run; the next run checks the targets
    if not targets:
        return "rocminfo lists no gfx target: install ROCm (rocminfo) so the image's targets can be checked"
    unsupported = sorted(targets - ROCM_IMAGE_GFX)
    if unsupported and c.image == images.default_image("amd"):
        return (
            f"this host's GPU target(s) {', '.join(unsupported)} are not among the default ROCm image's "
            f"({', '.join(sorted(ROCM_IMAGE_GFX))}): set vllm_image to an image built for them"
        )
    return None


def _size_gib(text: str) -> float:
    """A size in Docker's syntax (settings.SIZE_PATTERN; units of 1024, as Docker counts them) in GiB."""
    match = re.fullmatch(SIZE_PATTERN, text)
    if not match:
        return 0.0
    power = {"": -3, "k": -2, "m": -1, "g": 0, "t": 1, "p": 2}[(match[3] or "").lower()]
    return float(match[1]) * 1024.0**power


def run_checks(c: Context) -> list[Finding]:
    findings = []
    for name, func in CHECKS.items():
        if c.accelerator not in APPLIES[name] or c.settings.serving_method not in METHODS[name]:
            continue
        problem = func(c)
        findings.append(Finding(name, problem is None, problem or "ok"))
    return findings


def verdict(findings: list[Finding], warn_only: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(failures, warnings): a failed check refuses the host unless warn_only names it."""
    failures: list[str] = []
    warnings: list[str] = []
    for finding in findings:
        if not finding.ok:
            (warnings if finding.check in warn_only else failures).append(f"{finding.check}: {finding.message}")
    return failures, warnings

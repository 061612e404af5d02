"""What pre-flight's probe found on a host, as typed data: one field per line the probe prints
(checks.probe_script, nix.probe_lines, releases.probe_lines), read once and handed to every task.

Values are what the host printed ('yes'/'no', a version, a comma-separated list, '' when the
host printed nothing); daemon.json is parsed here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from vllm_fleet.facts import DaemonJsonError, parse_daemon_json

RELEASE_SHA_PREFIX = "release_sha_"
NIX_BUILD_PREFIX = "nix_build_"


def key_values(lines: Iterable[str]) -> dict[str, str]:
    """The probe's `key=value` lines as a mapping (a line that is not one is ignored)."""
    values = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            values[key] = value.strip()
    return values


@dataclass(frozen=True)
class Probe:
    # The kernel and the GPU stack
    kernel: str = ""  # uname -r
    headers: str = ""  # yes: /lib/modules/<kernel>/build exists
    reboot_required: str = ""  # yes: the OS asks for a reboot
    held: str = ""  # apt's held packages, comma-separated
    nvidia_rpm: str = ""  # nvidia-driver's RPM version
    epel: str = ""  # yes: epel-release is installed
    rocm_installed: str = ""  # /opt/rocm/.info/version
    secure_boot: str = ""  # mokutil --sb-state
    nouveau: str = ""  # yes: the nouveau module is loaded
    nvidia_driver: str = ""  # the loaded nvidia module's version
    cdi_spec: str = ""  # current: the CDI spec names the loaded driver
    toolkit: str = ""  # yes: NVIDIA's container toolkit is installed
    kfd: str = ""  # yes: /dev/kfd exists
    render_group: str = ""  # yes: the render group exists
    gfx: str = ""  # the AMD GPUs' gfx targets, comma-separated
    # Docker
    docker: str = ""  # yes: a docker command exists
    docker_snap: str = ""  # yes: Docker comes from a snap
    docker_runtimes: str = ""  # docker info's runtimes, comma-separated
    daemon_json: str = ""  # /etc/docker/daemon.json without its newlines
    # Room
    shm_kib: str = ""
    docker_root_free_kib: str = ""
    nix_store_free_kib: str = ""
    hf_cache_free_kib: str = ""
    models_free_kib: str = ""
    # The model and the port
    shipped_models: str = ""  # directories in paths.MODELS_DIR, comma-separated
    hf_cache_has_model: str = ""  # yes: the hub cache holds the model's directory
    hf_cache_downloaded: str = ""  # yes: its download finished
    port_listeners: str = ""  # who listens on vllm_port (ss's users:(...) items)
    vllm_main_pid: str = ""  # vllm.service's MainPID (0: not running)
    vllm_container_port: str = ""  # where our container's port is published
    vllm_container_pid: str = ""  # our container's main process, as the host sees it (0 or '': not running)
    firewall: str = ""  # yes: our firewall's unit is active
    # How vLLM is served now, and the Nix way (nix.probe_lines)
    unit_method: str = ""  # docker or nix, from the installed unit
    nix: str = "no"  # yes: Nix is installed
    nix_version: str = ""
    selinux: str = ""  # getenforce's answer
    nix_links: str = ""
    driver_libs: str = ""
    linked_driver_libs: str = ""
    nix_builds: Mapping[str, str] = field(default_factory=dict)  # accelerator -> "target hash"
    # Releases (releases.probe_lines)
    release_current: str = ""
    release_previous: str = ""
    release_unit_sha: str = ""
    release_sha: Mapping[str, str] = field(default_factory=dict)  # release file -> its sha256

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Probe:
        """The probe's `key=value` lines (a line that is not one is ignored)."""
        return cls.of(key_values(lines))

    @classmethod
    def of(cls, values: Mapping[str, str]) -> Probe:
        """From key -> value (a recorded probe, a test's). A key this probe does not print (one an
        older probe did) means nothing and is left out."""
        known = {f.name for f in fields(cls)} - {"nix_builds", "release_sha"}
        plain: dict[str, Any] = {}
        builds, shas = {}, {}
        for key, value in values.items():
            if key.startswith(NIX_BUILD_PREFIX):
                builds[key.removeprefix(NIX_BUILD_PREFIX)] = value
            elif key.startswith(RELEASE_SHA_PREFIX):
                shas[key.removeprefix(RELEASE_SHA_PREFIX)] = value
            elif key in known:
                plain[key] = value
        return cls(**plain, nix_builds=builds, release_sha=shas)

    @cached_property
    def daemon_config(self) -> dict[str, Any] | DaemonJsonError:
        """daemon.json as it stands: its keys, {} when absent, or why it cannot be read."""
        return parse_daemon_json(self.daemon_json)

    def nix_build(self, accelerator: str) -> tuple[str, str]:
        """The Nix build of an accelerator's server on this host: (its store path, the hash of the
        flake it was built from); ('', '') when there is none."""
        target, _, digest = self.nix_builds.get(accelerator, "").partition(" ")
        return target.strip(), digest.strip()

    def listed(self, name: str) -> list[str]:
        """A comma-separated field as a list."""
        return [item for item in getattr(self, name).split(",") if item]

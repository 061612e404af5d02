"""NVIDIA container toolkit: Docker can hand GPUs to containers; CDI spec for Podman users."""

from __future__ import annotations

from collections.abc import Sequence
from io import StringIO

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, dnf, files, server

from tasks.docker_engine import restart_engine
from vllm_fleet import gpu_packages, paths
from vllm_fleet.distro import APT_CACHE_SECONDS, Distro
from vllm_fleet.facts.probe import Probe
from vllm_fleet.operations import deploy
from vllm_fleet.settings import Settings


@deploy("NVIDIA container toolkit")
def nvidia_container_toolkit(
    settings: Settings, distro: Distro, probe: Probe, driver_changes: Sequence[OperationMeta] = ()
) -> list[OperationMeta]:
    """driver_changes: the driver's operations (a new driver needs a new CDI spec). Returns the
    operations that restart the Docker engine."""
    packages = gpu_packages.toolkit_packages(distro, settings.nvidia_container_toolkit_version)
    if distro.family == "apt":
        files.directory(name=f"Create {paths.APT_KEYRINGS_DIR}", path=paths.APT_KEYRINGS_DIR, mode="755")
        files.download(
            name="Download the NVIDIA container toolkit signing key",
            src=f"{gpu_packages.TOOLKIT_REPO}/gpgkey",
            dest=paths.TOOLKIT_KEYRING,
            mode="644",
        )
        source = files.put(
            name="Add the NVIDIA container toolkit repository (deb822)",
            src=StringIO(gpu_packages.toolkit_apt_source(distro.deb_arch)),
            dest=paths.TOOLKIT_APT_SOURCE,
            mode="644",
        )
        apt.update(name="Refresh apt lists for the toolkit repository", _if=source.did_change)
        apt.packages(
            name="Install the NVIDIA container toolkit", packages=packages, update=True, cache_time=APT_CACHE_SECONDS
        )
    else:
        files.put(
            name="Add the NVIDIA container toolkit repository",
            src=StringIO(gpu_packages.toolkit_dnf_repo()),
            dest=paths.TOOLKIT_DNF_REPO,
            mode="644",
        )
        dnf.packages(name="Install the NVIDIA container toolkit", packages=packages)

    rule = files.put(
        name="Keep /dev/char links to the NVIDIA devices (udev rule), so a systemctl daemon-reload leaves "
        "running containers their GPUs",
        src=StringIO(gpu_packages.DEV_CHAR_RULE_TEXT),
        dest=paths.DEV_CHAR_RULE,
        mode="644",
    )
    server.shell(
        name="Create the /dev/char links to the NVIDIA devices now",
        commands=["if [ -d /sys/module/nvidia ]; then nvidia-ctk system create-dev-char-symlinks --create-all; fi"],
        _if=rule.did_change,
    )
    # The spec names the driver's library files by version: written again whenever the driver changes.
    spec_current = probe.cdi_spec
    server.shell(
        name="Generate the CDI spec for the loaded driver (Podman, Docker's CDI mode)",
        commands=[f"nvidia-ctk cdi generate --output={paths.CDI_SPEC}"],
        _if=lambda: not spec_current or any(op.did_change() for op in driver_changes),
    )

    # nvidia-ctk rewrites daemon.json: only when the runtime is missing, so a second run changes nothing.
    config = probe.daemon_config
    if isinstance(config, dict) and "nvidia" in config.get("runtimes", {}):
        return []
    configured = server.shell(
        name="Register the NVIDIA runtime with Docker", commands=["nvidia-ctk runtime configure --runtime=docker"]
    )
    return restart_engine("the NVIDIA runtime", after=configured)

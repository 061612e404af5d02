"""Docker engine: installed, daemon.json merged key by key, running."""

from __future__ import annotations

import json
from io import StringIO

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, dnf, files, systemd

from vllm_fleet import docker_repo, paths
from vllm_fleet.distro import APT_CACHE_SECONDS, Distro
from vllm_fleet.facts.docker import DaemonJsonError
from vllm_fleet.facts.probe import Probe
from vllm_fleet.operations import deploy
from vllm_fleet.settings import Settings


def merged_daemon_config(current: dict, wanted: dict) -> dict:
    """daemon.json with our keys set and every other key (another tool's runtime) kept."""
    return {**current, **wanted}


@deploy("Docker engine")
def docker_engine(settings: Settings, distro: Distro, probe: Probe) -> list[OperationMeta]:
    """Returns the operations that restart the engine (which stops its containers).

    probe: pre-flight's HostProbe, whose daemon_json is the file as it stands.
    """
    if distro.family == "dnf":
        # RHEL and Rocky ship no Docker engine of their own: Docker's repository it is.
        files.put(
            name="Add Docker's rpm repository",
            src=StringIO(docker_repo.dnf_repo(distro)),
            dest=paths.DOCKER_DNF_REPO,
            mode="644",
        )
        dnf.packages(name="Install Docker engine", packages=docker_repo.packages(settings.docker_version, "-"))
    else:
        if settings.docker_source == "docker":
            _add_docker_repository(distro, settings)
            packages = docker_repo.packages(settings.docker_version)
        else:
            packages = ["docker.io"]
        apt.packages(name="Install Docker engine", packages=packages, update=True, cache_time=APT_CACHE_SECONDS)

    current = probe.daemon_config
    if isinstance(current, DaemonJsonError):  # only reached when daemon_json is in preflight_warn_only
        raise PyinfraError(
            f"host {host.name}: {paths.DOCKER_DAEMON_JSON} exists but {current}; fix or remove it by hand "
            "(vllm-fleet merges into it and will not overwrite a file it cannot read)"
        )
    wanted = dict(settings.docker_daemon_config)
    merged = merged_daemon_config(current, wanted)
    config_changed = None
    if merged != current:
        config_changed = files.put(
            name=f"Merge our keys into {paths.DOCKER_DAEMON_JSON}",
            src=StringIO(json.dumps(merged, indent=2, sort_keys=True) + "\n"),
            dest=paths.DOCKER_DAEMON_JSON,
            mode="644",
            create_remote_dir=True,
        )

    systemd.service(
        name="Start Docker engine and enable it at boot",
        service="docker.service",
        running=True,
        enabled=True,
    )
    if config_changed is None:
        return []
    return restart_engine("its new daemon.json", after=config_changed)


def restart_engine(reason: str, after: OperationMeta) -> list[OperationMeta]:
    """Restart the engine when `after` changed something; returns the restart for those who wait on it."""
    return [
        systemd.service(
            name=f"Restart Docker engine for {reason}", service="docker.service", restarted=True, _if=after.did_change
        )
    ]


def _add_docker_repository(distro: Distro, settings: Settings) -> None:
    source = docker_repo.apt_source(distro)
    files.directory(name=f"Create {paths.APT_KEYRINGS_DIR}", path=paths.APT_KEYRINGS_DIR, mode="755")
    files.download(
        name="Download Docker's repository signing key",
        src=source.key_url,
        dest=paths.DOCKER_KEYRING,
        mode="644",
    )
    source_added = files.put(
        name="Add Docker's apt repository (deb822)",
        src=StringIO(source.deb822()),
        dest=paths.DOCKER_APT_SOURCE,
        mode="644",
    )
    if settings.docker_version:
        files.put(
            name="Pin docker-ce to the chosen version",
            src=StringIO(docker_repo.apt_pin(settings.docker_version)),
            dest=paths.DOCKER_APT_PIN,
            mode="644",
        )
    apt.update(name="Refresh apt lists for Docker's repository", _if=source_added.did_change)

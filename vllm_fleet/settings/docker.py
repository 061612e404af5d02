"""The knobs of the Docker engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from vllm_fleet import paths
from vllm_fleet.settings.daemon_json import DAEMON_CONFIG, daemon_config
from vllm_fleet.settings.types import PACKAGE_VERSION, DockerSource, Knobs, PackageVersion, knob, one_of, only, or_none


class Docker(Knobs):
    """The Docker engine."""

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
    docker_daemon_config: Annotated[
        dict[str, Any], Field(strict=False), only(Mapping), AfterValidator(daemon_config)
    ] = knob(
        dict,
        f"Keys merged one by one into {paths.DOCKER_DAEMON_JSON}; keys you do not name (another tool's runtime) "
        "are kept.",
        DAEMON_CONFIG,
    )

"""vLLM service: image in place, then a release (unit, secrets, readiness) activated only on change,
and rolled back on the host when it does not come up."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from vllm_fleet import cluster, images, launch, paths, releases, shipped_model, templates
from vllm_fleet.facts.probe import Probe
from vllm_fleet.operations import deploy, root_only_directory, secret_file
from vllm_fleet.settings import Settings

ACTIVATE_NEW = (
    "Activate the new release: restart vLLM, wait for the model, go back to the previous release if it does not come up"
)
# `docker rm -f` of a container that systemctl stop has already stopped (TimeoutStopSec=60): only a
# daemon that no longer answers takes longer, and then the Nix server starts beside it anyway.
CONTAINER_REMOVE_TIMEOUT = 60


@deploy("vLLM service")
def vllm_service(
    settings: Settings,
    accelerator: str,
    probe: Probe,
    restarts: Sequence[OperationMeta] = (),
    place: cluster.Place | None = None,
) -> None:
    """probe: pre-flight's HostProbe, which also says how vLLM is served now. restarts: operations
    after which the current release is restarted and waited for (an engine restart stopped its
    container; a new Nix build is a new server). place: the host's place in a cluster serving one
    model, whose watch is installed before the release that wants it."""
    root_only_directory(paths.CONFIG_DIR, f"Create root-only config directory {paths.CONFIG_DIR}")
    root_only_directory(paths.RELEASES_DIR, f"Create root-only release directory {paths.RELEASES_DIR}")
    _activation_log()
    files.directory(
        name=f"Create Hugging Face cache {settings.hf_cache_dir}",
        path=settings.hf_cache_dir,
        mode="755",
    )
    root_only_directory(settings.vllm_cache_dir, f"Create root-only compile cache {settings.vllm_cache_dir}")
    if settings.vllm_model_dir:
        _ship_model(settings.vllm_model_dir, settings.vllm_model, probe)

    server_ops = _install_image(settings, accelerator, probe) if settings.serving_method == "docker" else []

    for script, dest in (("vllm-ready.sh.j2", paths.READY_SCRIPT), ("vllm-activate.sh.j2", paths.ACTIVATE_SCRIPT)):
        files.put(name=f"Install {Path(dest).name}", src=templates.rendered(script), dest=dest, mode="755")
    _cluster_watch(place)
    release = _stage_release(settings, accelerator, probe, place)
    if wants_download(settings, probe):
        env_file = f"{paths.RELEASES_DIR}/{release}/vllm.env" if release else paths.ENV_FILE
        server.shell(
            name=f"Download the weights of {settings.vllm_model} before the restart "
            f"(up to {settings.vllm_download_timeout} s)",
            commands=[launch.download_command(settings, accelerator, env_file)],
        )

    if settings.serving_method == "nix" and probe.unit_method == "docker":
        server.shell(
            name="Stop and remove the Docker-served vLLM (switching to Nix)",
            commands=[
                f"systemctl stop {paths.SERVICE}; "
                f"timeout {CONTAINER_REMOVE_TIMEOUT} docker rm -f {paths.CONTAINER_NAME} >/dev/null 2>&1 || true"
            ],
        )
    # A new image or Nix build under the same release, or an engine restart that stopped the
    # container, restarts the current release, with the same wait and fallback.
    restarts = [*server_ops, *restarts]
    if release:
        server.shell(
            name=ACTIVATE_NEW, commands=[launch.activate_command(host.name, release, launch.activation_limit(settings))]
        )
    elif restarts:
        server.shell(
            name="Restart the current release: wait for the model, go back to the previous release if it does not "
            "come up",
            commands=[launch.activate_command(host.name, "current", launch.activation_limit(settings))],
            _if=any_changed(*restarts),
        )
    systemd.service(
        name="Keep vLLM running and enabled at boot",
        service=paths.SERVICE,
        running=True,
        enabled=True,
    )
    if settings.serving_method == "docker" and probe.nix_links:
        # Only the GC roots go: the store paths stay until nix-collect-garbage.
        server.shell(
            name="Release the Nix-built vLLM server (switched to Docker)",
            commands=[f"rm -rf {paths.NIX_DIR}/vllm-server-* {paths.FLAKE_DIR}"],
        )


def _cluster_watch(place: cluster.Place | None) -> None:
    """A member's watch (its script, settings and unit), or, on a host in no cluster, none left."""
    unit = paths.unit_path(paths.CLUSTER_WATCH_SERVICE)
    if place is None:
        removed = files.file(name=f"Remove {paths.CLUSTER_WATCH_SERVICE} (in no cluster)", path=unit, present=False)
        server.shell(
            name=f"Stop {paths.CLUSTER_WATCH_SERVICE} and forget its cluster",
            commands=[
                f"systemctl stop {paths.CLUSTER_WATCH_SERVICE} || true; "
                f"rm -f {paths.CLUSTER_CONF} {paths.CLUSTER_WATCH_SCRIPT} {paths.CLUSTER_STATUS}; "
                "systemctl daemon-reload"
            ],
            _if=removed.did_change,
        )
        return
    script = files.put(
        name=f"Install {Path(paths.CLUSTER_WATCH_SCRIPT).name}",
        src=templates.rendered("vllm-cluster-watch.sh.j2"),
        dest=paths.CLUSTER_WATCH_SCRIPT,
        mode="755",
    )
    conf = files.put(
        name=f"Write the members of cluster {place.name} for the watch",
        src=StringIO(cluster.watch_conf(place)),
        dest=paths.CLUSTER_CONF,
        mode="644",
    )
    unit_file = files.put(
        name=f"Install {paths.CLUSTER_WATCH_SERVICE}",
        src=templates.rendered("vllm-cluster-watch.service.j2"),
        dest=unit,
        mode="644",
    )
    systemd.daemon_reload(name="Reload systemd for the cluster watch", _if=unit_file.did_change)
    server.shell(
        name=f"Restart a running {paths.CLUSTER_WATCH_SERVICE} on its new settings",
        commands=[f"systemctl try-restart {paths.CLUSTER_WATCH_SERVICE}"],
        _if=any_changed(script, conf, unit_file),
    )


def _stage_release(settings: Settings, accelerator: str, probe: Probe, place: cluster.Place | None) -> str | None:
    """Write a new release beside the serving one when the unit, env file or readiness parameters
    differ from the current release's; returns its name, or None when the current one is wanted."""
    contents = {
        "vllm.service": templates.render("vllm.service.j2", **launch.unit_context(settings, accelerator, place)),
        "vllm.env": launch.env_file_content(settings),
        "release.conf": launch.release_conf(settings, place),
    }
    if releases.is_current(probe, contents):
        return None
    release = releases.new_release_id()
    directory = f"{paths.RELEASES_DIR}/{release}"
    root_only_directory(directory, "Create the new release's root-only directory")
    files.put(
        name=f"Write {paths.SERVICE} of the new release",
        src=StringIO(contents["vllm.service"]),
        dest=f"{directory}/vllm.service",
        mode="644",
    )
    secret_file(
        name="Write secrets to root-only vllm.env of the new release",
        dest=f"{directory}/vllm.env",
        content=contents["vllm.env"],
    )
    files.put(
        name="Write readiness parameters of the new release",
        src=StringIO(contents["release.conf"]),
        dest=f"{directory}/release.conf",
        mode="644",
    )
    return release


def wants_download(settings: Settings, probe: Probe) -> bool:
    """A hub model on a Docker host whose cache holds no finished download of ours."""
    hub_model = not settings.vllm_model_dir and not settings.vllm_model.startswith("/")
    return (
        hub_model
        and settings.vllm_download_weights
        and settings.serving_method == "docker"
        and not probe.hf_cache_downloaded
    )


def _ship_model(model_dir: str, target: str, probe: Probe) -> None:
    """Copy vllm_model_dir to target, its content-named directory, unless the host has it already;
    it appears whole or not at all (copied beside it, then renamed)."""
    if Path(target).name in probe.shipped_models:
        return
    root_only_directory(paths.MODELS_DIR, f"Create root-only model directory {paths.MODELS_DIR}")
    incoming = f"{paths.MODELS_DIR}/.incoming-{Path(target).name}"
    files.sync(
        name=f"Ship the model {Path(model_dir).name} ({shipped_model.size_gib(model_dir):.2f} GiB) from this machine",
        src=model_dir,
        dest=incoming,
        user="root",
        group="root",
        mode="644",
        dir_mode="755",
        delete=True,
        exclude=[".*"],
        exclude_dir=[".*", "__pycache__"],
    )
    server.shell(
        name=f"Put the shipped model in place as {target}",
        commands=[f"rm -rf {shlex.quote(target)} && mv -T {shlex.quote(incoming)} {shlex.quote(target)}"],
    )


def _activation_log() -> None:
    """The activation's log and outcome are written by systemd (StandardOutput=truncate:, which
    fails when the directory is missing) and by the activation into a directory that a host whose
    caches are elsewhere would not have. The log holds the service's journal lines, which the
    journal shows only to its readers' groups: it is root-only, and systemd keeps the mode of a
    file it truncates."""
    for directory in sorted({posixpath.dirname(paths.ACTIVATE_LOG), posixpath.dirname(paths.ACTIVATE_OUTCOME)}):
        files.directory(
            name=f"Create {directory} (the activation writes its log there)",
            path=directory,
            user="root",
            group="root",
            mode="755",
        )
    files.file(
        name=f"Keep the activation's log {Path(paths.ACTIVATE_LOG).name} root-only",
        path=paths.ACTIVATE_LOG,
        user="root",
        group="root",
        mode="600",
        create_remote_dir=False,
    )


def says_when_timed_out(command: str, what: str, seconds: int, setting: str) -> str:
    """command, which runs something under `timeout seconds`; when that ran out of time (status
    124, and nothing says so otherwise), a message naming what was stopped and the setting."""
    message = shlex.quote(f"{what} did not finish within {seconds} s ({setting}) and was stopped")
    return f'{command} || {{ status=$?; [ "$status" -ne 124 ] || echo {message} >&2; exit "$status"; }}'


def pull_command(ref: str, seconds: int) -> str:
    return says_when_timed_out(
        f"timeout {seconds} docker pull --quiet {shlex.quote(ref)}",
        f"docker pull of {ref}",
        seconds,
        "vllm_download_timeout",
    )


def load_command(archive: str, staged: str, size: int, ref: str, seconds: int) -> str:
    """Load the shipped archive into Docker, then remove it whatever happened: loaded, failed, or
    timed out, and when the shell was signalled meanwhile, once the load has ended. staged: where
    files.put's upload passes first under sudo, left behind when the copy from it fails. An archive
    that did not arrive whole (the upload failed) is not loaded."""
    quoted = shlex.quote(archive)
    name = Path(archive).name
    load = says_when_timed_out(
        f"timeout {seconds} docker load --quiet --input {quoted}",
        f"docker load of {name} ({ref})",
        seconds,
        "vllm_download_timeout",
    )
    incomplete = shlex.quote(f"the image archive {name} reached the host incomplete")
    leftovers = f"{quoted} {shlex.quote(staged)}"
    return (
        f"cleanup() {{ rm -f {leftovers}; rmdir {shlex.quote(posixpath.dirname(archive))} 2>/dev/null; }}; "
        "trap cleanup EXIT; trap 'exit 143' HUP INT TERM; "
        f"arrived=$(stat -c %s {quoted} 2>/dev/null || echo 0); "
        f'[ "$arrived" -eq {size} ] || {{ echo {incomplete} "($arrived of {size} bytes): not loaded" >&2; exit 1; }}; '
        f"{load}"
    )


def _install_image(settings: Settings, accelerator: str, probe: Probe) -> list[OperationMeta]:
    """Make the image present; returns the operations that changed it. probe.image_id: the local ID of
    this image as pre-flight read it."""
    ref = launch.image(settings, accelerator)
    limit = settings.vllm_download_timeout
    if images.image_loaded(probe.image_id, ref, settings.vllm_image_archive):
        _forget_archives()
        return []
    if settings.vllm_image_archive:
        local = settings.vllm_image_archive
        remote = f"{paths.IMAGE_DIR}/{Path(local).name}"
        shipped = files.put(
            name=f"Ship image archive {Path(local).name}",
            src=local,
            dest=remote,
            mode="600",
            create_remote_dir=True,
            # The load step runs whatever the upload did: it removes what arrived and fails the host.
            _ignore_errors=True,
        )
        loaded = server.shell(
            name=f"Load {ref} into Docker",
            commands=[load_command(remote, _staged(remote), Path(local).stat().st_size, ref, limit)],
        )
        return [shipped, loaded]
    _forget_archives()
    return [server.shell(name=f"Pull {ref}", commands=[pull_command(ref, limit)])]


def _staged(dest: str) -> str:
    """Where files.put uploads dest first under sudo: its own choice, made the same way."""
    return host.get_temp_filename(dest, temp_directory=host.data.get("_temp_dir"))


def _forget_archives() -> None:
    """An archive a dropped connection cut off mid-upload or mid-load is never loaded from; a load
    that ended removed its own, so this changes nothing on a host where none was cut off."""
    files.directory(
        name=f"Remove image archives left in {paths.IMAGE_DIR}",
        path=paths.IMAGE_DIR,
        present=False,
    )

"""paths.HELD names everything the deploy writes on a host: what the recorded plans' commands
wrote, and what the tasks the plans never reach (Docker's own repository, a daemon.json to merge
into, a gateway) ask pyinfra to write, are all in it or under a directory it owns."""

from __future__ import annotations

import gzip
import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from vllm_fleet import paths
from vllm_fleet.distro import Distro
from vllm_fleet.facts.probe import Probe
from vllm_fleet.rules import validate

RECORDED = Path(__file__).resolve().parents[1] / "planning" / "data" / "plans-bcf6af1.jsonl.gz"
# Where pyinfra stages uploads and downloads, and the kernel's own trees: never the deploy's to keep.
NOT_KEPT = ("/tmp/", "/dev/", "/proc/", "/sys/")
_SEPARATORS = re.compile(r"\s*(?:&&|\|\||;|\|)\s*")
_REDIRECTED = re.compile(r"(?<![0-9&])>>?\s*(/[^\s;&|)]+)")
_NAMED = re.compile(r"(?:--output=|StandardOutput=(?:append|truncate|file):)(/[^\s;&|)]+)")
_VALUED_OPTIONS = {"-m", "-o", "-g", "-t"}


def written_by(command: str) -> set[str]:
    """The host paths one shell command writes (or makes, links, chmods, chowns, moves into)."""
    found = set(_REDIRECTED.findall(command)) | set(_NAMED.findall(command))
    for part in _SEPARATORS.split(command):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        words = [w for w in words if not re.fullmatch(r"\w+=.*", w) and w not in ("{", "}", "(", ")", "sudo")]
        if not words:
            continue
        verb, args = words[0], words[1:]
        operands = []
        skip = False
        for arg in args:
            if skip:
                skip = False
            elif arg in _VALUED_OPTIONS:
                skip = True
            elif not arg.startswith("-"):
                operands.append(arg)
        if verb in ("mkdir", "touch") or (verb == "install" and "-d" in args):
            found.update(operands)
        elif verb in ("chmod", "chown"):
            found.update(operands[1:])
        elif verb in ("mv", "install", "ln", "cp") and operands:
            found.add(operands[-1])
    return {p.rstrip("/") for p in found if p.startswith("/") and not p.startswith(NOT_KEPT)}


def planned_writes() -> dict[str, str]:
    """Every path the recorded deploys wrote, with an operation that wrote it."""
    with gzip.open(RECORDED, "rt") as lines:
        records = [json.loads(line) for line in lines]
    found: dict[str, str] = {}
    for record in records:
        if record["kind"] != "deploy":
            continue
        for name, hosts in record["ops"].items():
            for commands in hosts.values():
                for command in commands:
                    for path in written_by(command):
                        found.setdefault(path, name)
    return found


class _Recorder:
    """A pyinfra operations module whose operations are recorded, not planned."""

    def __init__(self, ops: list):
        self._ops = ops

    def __getattr__(self, kind: str):
        def op(*args, **kwargs):
            self._ops.append((kind, kwargs))
            return SimpleNamespace(did_change=lambda: False)

        return op


def _record(monkeypatch, module, call) -> dict[str, str]:
    """What a task asks to write (files.*'s dest and path, secret files, root-only directories,
    shell commands), by operation name."""
    ops: list[tuple[str, dict]] = []
    for name in ("files", "server", "systemd", "apt", "dnf"):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, _Recorder(ops))
    if hasattr(module, "secret_file"):
        monkeypatch.setattr(module, "secret_file", lambda **kwargs: ops.append(("secret_file", kwargs)))
    if hasattr(module, "root_only_directory"):
        monkeypatch.setattr(module, "root_only_directory", lambda path, name: ops.append(("root_only", {"path": path})))
    if hasattr(module, "content_differs"):
        monkeypatch.setattr(module, "content_differs", lambda path, content: True)
    call()
    found: dict[str, str] = {}
    for kind, kwargs in ops:
        if kwargs.get("present") is False:
            continue
        targets = {kwargs[key] for key in ("dest", "path") if isinstance(kwargs.get(key), str)}
        for command in kwargs.get("commands", ()):
            targets |= written_by(command)
        for target in targets:
            found.setdefault(target, kwargs.get("name", kind))
    return found


def unplanned_writes(monkeypatch, tmp_path) -> dict[str, str]:
    from tasks import docker_engine, exporters, gateway
    from vllm_fleet.monitoring.exporters import NODE

    found: dict[str, str] = {}
    wanted = {"docker_source": "docker", "docker_version": "5:27.3.1", "docker_daemon_config": {"log-driver": "local"}}
    settings = validate("gpu-01", {"phase": "single_gpu", **wanted}, ["single_gpu"])
    bookworm = Distro("debian", "apt", "12", "bookworm")
    rocky = Distro("rocky", "dnf", "9.4", "")
    for distro in (bookworm, rocky):
        found |= _record(
            monkeypatch, docker_engine, lambda d=distro: docker_engine.docker_engine.__wrapped__(settings, d, Probe())
        )
    # Node metrics from a container: on a host whose OS has no package for them (none planned).
    found |= _record(monkeypatch, exporters, lambda: exporters._container(NODE, settings, paths.NODE_EXPORTER_SERVICE))
    certificate = tmp_path / "gateway.pem"
    certificate.write_text("-----BEGIN CERTIFICATE-----\n")
    backend = validate(
        "a",
        {
            "phase": "enterprise",
            "vllm_bind_address": "0.0.0.0",
            "vllm_api_key": "k" * 16 + "Zq7wPm2x",
            "fleet_address": "10.0.0.2",
        },
        ["enterprise"],
    )
    front = validate("gw", {"fleet_address": "10.0.9.1", "gateway_tls_certificate": str(certificate)}, ["gateway"])
    found |= _record(
        monkeypatch, gateway, lambda: gateway.gateway.__wrapped__(front, {h.host: h for h in (front, backend)})
    )
    return found


def uncovered(written: dict[str, str], held=paths.HELD) -> list[str]:
    """The written paths HELD does not name, is not an owned directory of, nor is a directory of
    (pyinfra makes the directory a file goes in; /etc/apt/keyrings is made for the keyrings)."""
    where = [h.path for h in held if h.path]
    return sorted(
        f"{path} ({name})"
        for path, name in written.items()
        if not any(path == w or path.startswith(f"{w}/") or w.startswith(f"{path}/") for w in where)
    )


@pytest.fixture(scope="module")
def planned() -> dict[str, str]:
    return planned_writes()


def test_the_plans_are_read_for_what_they_write(planned):
    assert {paths.NOUVEAU_BLACKLIST, paths.TMPFILES_CONF, paths.NIX_CONF, paths.UPLOAD_DIR} <= set(planned)
    assert f"{paths.RELEASES_DIR}/RELEASE" not in planned and not any(p.startswith("/tmp/") for p in planned)


def test_every_path_the_recorded_deploys_write_is_held(planned):
    assert uncovered(planned) == []


def test_every_path_the_unplanned_tasks_write_is_held(monkeypatch, tmp_path):
    written = unplanned_writes(monkeypatch, tmp_path)
    assert {paths.DOCKER_KEYRING, paths.DOCKER_APT_PIN, paths.DOCKER_DAEMON_JSON, paths.HAPROXY_CONFIG} <= set(written)
    assert uncovered(written) == []


# Held entries whose paths the helpers the deploy installs write on the host, unseen here.
WRITTEN_ON_THE_HOST = {
    paths.RUN_DIR: "the cluster watch writes its status there",
    paths.OPENGL_DRIVER: "systemd-tmpfiles makes the link TMPFILES_CONF names",
    paths.SERVICE: "vllm-activate links the current release's unit",
}


@pytest.mark.parametrize(
    "held", [h for h in paths.HELD if h.path and h.name not in WRITTEN_ON_THE_HOST], ids=lambda h: h.name
)
def test_each_entry_is_needed(held, planned, monkeypatch, tmp_path):
    """Every path entry is what some write needs: without it, a written path is not held (so
    these tests fail when an entry goes missing)."""
    written = {**planned, **unplanned_writes(monkeypatch, tmp_path)}
    others = tuple(h for h in paths.HELD if h != held)
    assert uncovered(written, others) != [], f"{held.name} is written by no plan nor task recorded here"

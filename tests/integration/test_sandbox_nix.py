"""serving_method nix on a real Debian 12 sandbox host: Nix from Debian, the daemon, the
flake built by the deploy (the stand-in's flake: nixpkgs cannot be fetched here), the same
vLLM arguments and env file as Docker, the verify suite, idempotence, the shipped flake's
build failing clearly, and switching Docker -> Nix -> Docker."""

from __future__ import annotations

import shutil
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import (
    ACTIVATE,
    REPO,
    SANDBOX_INVENTORY,
    SESSION_FLEET,
    changed,
    deploy_json,
    host_state,
    invocation,
    models,
    on_host,
    run,
    write_inventory,
)

from vllm_fleet import nix, paths

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group(SESSION_FLEET)]

UNIT = "/etc/systemd/system/vllm.service"
# The sandbox's hosts are given an image: a Nix host runs none (validation refuses one).
NO_IMAGE = {"vllm_image": None, "vllm_image_archive": None}
STANDIN_FLAKE = {"serving_method": "nix", "nix_flake": str(REPO / "tests" / "standin"), **NO_IMAGE}


@pytest.fixture(scope="module")
def switched(fleet, tmp_path_factory):
    """The first host switched from Docker (as the rest of the suite leaves it) to Nix."""
    first, _ = fleet.names
    before, _ = deploy_json(SANDBOX_INVENTORY)
    assert before.rc == 0, before.failure
    assert on_host(first, "docker ps --format '{{.Names}}'") == "vllm"
    # The stand-in's flake runs the host's python3, which a minimal host lacks (the real one brings its own).
    on_host(first, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null")
    inventory = write_inventory(tmp_path_factory.mktemp("nix"), {first: STANDIN_FLAKE})
    started = time.monotonic()
    result, outcomes = deploy_json(inventory)
    print(f"Docker -> Nix switch in {time.monotonic() - started:.0f}s")
    assert result.rc == 0, result.failure
    return inventory, result, outcomes


def test_docker_host_switches_to_nix_installed_from_debian(fleet, switched):
    first, second = fleet.names
    _, result, outcomes = switched
    done = changed(outcomes, first)
    for step in (
        "Nix | Install Nix (nix-setup-systemd)",
        "Nix server | Build vllm-server-cpu with Nix",
        "vLLM service | Stop and remove the Docker-served vLLM (switching to Nix)",
        ACTIVATE,
    ):
        assert step in done, f"{step} did not run on {first}"
    assert on_host(first, "dpkg-query -W -f '${Status}' nix-setup-systemd") == "install ok installed"
    assert on_host(first, "systemctl is-active nix-daemon.service") == "active"
    assert on_host(first, "nix show-config | sed -n 's/^experimental-features = //p'") == "flakes nix-command"
    assert "https://cache.nixos-cuda.org" in on_host(first, "nix show-config | grep '^substituters'")
    # Debian's own setting is kept: ours is included, not written over it.
    assert "sandbox = false" in on_host(first, f"cat {paths.NIX_CONF}")
    assert on_host(first, f"ls {paths.FLAKE_DIR}").split() == ["flake.nix", "server.py"]
    assert on_host(first, f"readlink {nix.out_link('cpu')}").startswith("/nix/store/")
    assert on_host(first, "docker ps -a --format '{{.Names}}'") == "", "the Docker container was left behind"
    assert changed(outcomes, second) == []
    assert fleet.api_key not in result.output and fleet.hf_token not in result.output


def test_unit_runs_the_nix_build_with_the_docker_paths_arguments(fleet, switched):
    first, _ = fleet.names
    unit = on_host(first, f"cat {UNIT}")
    assert f"ExecStart={nix.server_program('cpu')} \\" in unit
    for line in (f"--model {fleet.model_path} \\", "--max-model-len 8192 \\", "--host 0.0.0.0 \\", "--port 8000"):
        assert f"    {line}" in unit.splitlines(), line
    assert "EnvironmentFile=/etc/vllm-fleet/vllm.env" in unit and "docker" not in unit.split("[Service]")[1]
    assert [card["id"] for card in models(fleet, fleet.hosts[0])["data"]] == [fleet.model]


def test_verify_suite_passes_unchanged_on_the_nix_host(fleet, switched, tmp_path):
    inventory, _, _ = switched
    first, second = fleet.names
    junit = tmp_path / "verify.xml"
    result = run(
        [sys.executable, "-m", "pytest", "vllm_fleet/verify", "--inventory", inventory, "-p", "no:cacheprovider"]
        + ["--junit-xml", str(junit)]
    )
    assert result.rc == 0, result.failure
    outcome = {
        case.get("name"): "skipped" if case.find("skipped") is not None else "passed"
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    assert outcome[f"test_service_runs_the_nix_build[{first}]"] == "passed"
    assert outcome[f"test_container_runs_configured_image[{first}]"] == "skipped"
    assert outcome[f"test_container_runs_configured_image[{second}]"] == "passed"
    for check in ("test_models_lists_served_model", "test_secrets_not_in_process_arguments"):
        matching = [name for name in outcome if name.startswith(check) and first in name]
        assert matching and all(outcome[name] == "passed" for name in matching), matching


def test_second_nix_run_changes_nothing(fleet, switched):
    inventory, _, _ = switched
    first, _ = fleet.names
    before = host_state(first)
    result, outcomes = deploy_json(inventory)
    assert result.rc == 0, result.failure
    assert changed(outcomes, first) == []
    assert host_state(first) == before


def test_shipped_flake_is_refused_before_anything_is_built_on_debians_nix(fleet, switched, tmp_path):
    """nixpkgs needs Nix 2.18 (lib/minver.nix); the host has Debian 12's 2.8, read from `nix --version`;
    and nixpkgs' vLLM at the pin is 0.11.0."""
    first, _ = fleet.names
    inventory = write_inventory(tmp_path, {first: {"serving_method": "nix", **NO_IMAGE}})
    before = host_state(first)
    result, outcomes = deploy_json(inventory)
    assert result.rc != 0
    assert "pre-flight refused: nix_version: Nix 2.8.0 on this host is older than the 2.18 nixpkgs needs" in (
        result.output
    )
    # And the flake's nixpkgs serves a vLLM too old for the deploy's arguments and its key check.
    assert "pre-flight refused: nix_vllm: the repository's flake serves nixpkgs' vLLM 0.11.0" in result.output
    assert "Nix server | Build vllm-server-cpu with Nix" not in outcomes
    assert host_state(first) == before


def test_a_flake_whose_inputs_cannot_be_fetched_fails_clearly_and_keeps_serving(fleet, switched, tmp_path):
    first, _ = fleet.names
    flake = tmp_path / "flake"
    shutil.copytree(REPO / "tests" / "standin", flake)
    text = (flake / "flake.nix").read_text()
    # An input no machine can fetch (nothing listens on the host's port 9), so the test holds on a
    # connected runner too; not nixpkgs, which pre-flight would refuse first on Debian's Nix.
    unreachable = "http://127.0.0.1:9/upstream.tar.gz"
    text = text.replace(
        "  outputs =\n    { self }:",
        f'  inputs.upstream = {{ url = "{unreachable}"; flake = false; }};\n  outputs =\n    {{ self, ... }}:',
    )
    assert "inputs.upstream" in text
    (flake / "flake.nix").write_text(text)
    overrides = {"serving_method": "nix", "nix_flake": str(flake), "nix_build_timeout": 300, **NO_IMAGE}
    inventory = write_inventory(tmp_path, {first: overrides})
    unit, before = on_host(first, f"sha256sum {UNIT}"), invocation(first)
    started = time.monotonic()
    result, outcomes = deploy_json(inventory)
    took = time.monotonic() - started
    assert result.rc != 0
    assert outcomes["Nix server | Build vllm-server-cpu with Nix"][first] == "error"
    assert f"nix build of vllm-server-cpu on {first} failed" in result.output
    assert f"{first} cannot reach what the build fetches" in result.output
    assert took < 240, f"the failing build took {took:.0f}s: it should fail fast, not hang"
    # The last good build keeps serving: unit, link and process untouched.
    assert on_host(first, f"sha256sum {UNIT}") == unit and invocation(first) == before
    assert [card["id"] for card in models(fleet, fleet.hosts[0])["data"]] == [fleet.model]


def test_switching_back_to_docker_releases_the_nix_build(fleet, switched):
    first, _ = fleet.names
    result, outcomes = deploy_json(SANDBOX_INVENTORY)
    assert result.rc == 0, result.failure
    assert "vLLM service | Release the Nix-built vLLM server (switched to Docker)" in changed(outcomes, first)
    assert on_host(first, "docker ps --format '{{.Names}}'") == "vllm"
    assert on_host(first, f"ls {paths.NIX_DIR}") == ""
    assert [card["id"] for card in models(fleet, fleet.hosts[0])["data"]] == [fleet.model]

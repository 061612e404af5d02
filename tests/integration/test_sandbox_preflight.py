"""Pre-flight on real sandbox hosts: a host that would fail is refused before anything
changes on it, with what is wrong and what to do; the other hosts go on."""

from __future__ import annotations

import json
import re
import sys

import pytest
from conftest import (
    ACTIVATE,
    PYINFRA,
    SANDBOX_INVENTORY,
    SESSION_FLEET,
    changed,
    deploy_json,
    host_state,
    on_host,
    run,
    write_inventory,
)

from vllm_fleet import paths
from vllm_fleet.catalogue import CATALOGUE

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group(SESSION_FLEET)]


@pytest.fixture(scope="module")
def converged(fleet):
    result, _ = deploy_json(SANDBOX_INVENTORY)
    assert result.rc == 0, result.failure


@pytest.fixture
def squatter(fleet):
    """Another program listening on port 8001 of the first host (systemd's own socket tool: the
    hosts have nothing else that listens)."""
    first = fleet.names[0]
    on_host(first, "systemd-run --unit=squatter systemd-socket-activate --accept -l 8001 cat")
    # Listening before the test goes on, or the fixture fails here (on_host checks the exit status).
    on_host(
        first,
        "for i in $(seq 50); do bash -c 'exec 3<>/dev/tcp/127.0.0.1/8001' 2>/dev/null && exit 0; sleep 0.2; done; "
        "echo 'nothing listens on 8001' >&2; exit 1",
    )
    yield first
    on_host(first, "systemctl stop squatter || true")


def refused(fleet, tmp_path, overrides: dict, expected: str) -> str:
    """Deploy with the first host changed; assert it is refused untouched and the second is fine."""
    first, second = fleet.names
    before = {host: host_state(host) for host in fleet.names}
    result, outcomes = deploy_json(write_inventory(tmp_path, {first: overrides}))
    assert result.rc != 0
    assert f"pre-flight refused: {expected}" in result.output, result.failure
    assert [n for n in outcomes if outcomes[n].get(first)] == [
        "Pre-flight checks | Refuse the host: pre-flight checks failed"
    ]
    assert host_state(first) == before[first], f"{first} was changed although refused"
    assert changed(outcomes, second) == [] and outcomes["Docker engine | Install Docker engine"][second] == "no_change"
    assert host_state(second) == before[second]
    return result.output


def test_gpu_absent_is_refused_before_anything_is_installed(fleet, converged, tmp_path):
    expected = "gpu_present: accelerator is nvidia but the PCI bus shows no NVIDIA GPU (GPU vendors seen: none)"
    out = refused(fleet, tmp_path, {"accelerator": "nvidia"}, expected)
    assert "pre-flight refused: nvidia_driver" not in out  # a managed stack installs the driver
    unmanaged = refused(fleet, tmp_path, {"accelerator": "nvidia", "manage_gpu_stack": False}, expected)
    assert "pre-flight refused: nvidia_driver: no NVIDIA driver is loaded" in unmanaged


def test_port_taken_by_another_program_is_refused(fleet, converged, squatter, tmp_path):
    expected = "port: port 8001 is already taken by systemd-socket-: stop it or choose another vllm_port"
    refused(fleet, tmp_path, {"vllm_port": 8001}, expected)


def test_disk_nearly_full_is_refused(fleet, converged, tmp_path):
    first, _ = fleet.names
    on_host(first, "mkdir -p /mnt/tiny && mount -t tmpfs -o size=50m tiny /mnt/tiny")
    try:
        refused(
            fleet,
            tmp_path,
            # A model from the hub, not the shipped test model, so the cache must hold it.
            {"hf_cache_dir": "/mnt/tiny/hf", "vllm_model_dir": None},
            f"disk: /mnt/tiny/hf has 0.0 GiB free, {CATALOGUE.phases['cpu']['prefer'][0]} needs 1.1 GiB",
        )
        assert on_host(first, "ls /mnt/tiny") == "", "the refused host got its cache directory"
    finally:
        on_host(first, "umount /mnt/tiny")


def test_dry_run_shows_the_refusal(fleet, converged, tmp_path):
    first, _ = fleet.names
    before = host_state(first)
    result = run([PYINFRA, "--dry", write_inventory(tmp_path, {first: {"accelerator": "amd"}}), "deploy.py"])
    # pyinfra pads host names to the longest (the monitoring host's).
    refused_line = (
        rf"\[{re.escape(first)}\] +pre-flight refused: gpu_present: accelerator is amd but the PCI bus shows no AMD GPU"
    )
    assert re.search(refused_line, result.output), result.failure
    refusal = "pre-flight refused: gpu_stack: vllm-fleet installs ROCm on Ubuntu and RHEL-family hosts, not Debian"
    assert refusal in result.output
    assert host_state(first) == before


def test_warn_only_warns_and_goes_on(fleet, converged, squatter, tmp_path):
    first = squatter
    try:
        inventory = write_inventory(
            tmp_path, {first: {"vllm_port": 8001, "preflight_warn_only": ["port"], "vllm_ready_timeout": 10}}
        )
        result, outcomes = deploy_json(inventory)
        assert "pre-flight warning (in preflight_warn_only): port: port 8001 is already taken by systemd-socket-" in (
            result.output
        )
        # Not skipped, not refused: the deploy went on, and the port clash then failed the start.
        assert outcomes["vLLM service | Write vllm.service of the new release"][first] == "success"
        assert outcomes[ACTIVATE][first] == "error"
    finally:
        back, _ = deploy_json(SANDBOX_INVENTORY)
        assert back.rc == 0, back.failure


def test_plan_with_facts_reads_the_pci_bus(fleet, converged, tmp_path):
    first, _ = fleet.names
    inventory = write_inventory(tmp_path, {first: {"accelerator": "auto"}})
    offline = json.loads(run([sys.executable, "-m", "vllm_fleet", "plan", inventory, "--format", "json"]).stdout)
    assert offline["hosts"][first]["accelerator"] == "nvidia" and offline["hosts"][first]["machine"] == ""
    assert offline["hosts"][first]["warnings"][0].startswith("accelerator auto and no gpu_name: assumed nvidia")
    result = run([sys.executable, "-m", "vllm_fleet", "plan", inventory, "--facts", "--format", "json"])
    assert result.rc == 0, result.failure
    facts = json.loads(result.stdout)["hosts"][first]
    assert facts["accelerator"] == "cpu" and facts["warnings"] == []
    assert facts["machine"] == on_host(first, "uname -m")  # pyinfra's own Arch fact, read by its name
    assert facts["settings"]["vllm_model"] == {"value": fleet.model_path, "source": "sizing"}


@pytest.fixture
def lock_holder(fleet):
    """holds(seconds): dpkg installs a package whose preinst waits, holding the package lock, as
    unattended-upgrades does on a fresh host, until the seconds are over or the test is (then
    the fixture lets it go on at once and removes it)."""
    first = fleet.names[0]
    on_host(
        first,
        "mkdir -p /tmp/holder/DEBIAN && printf 'Package: lock-holder\\nVersion: 1\\nArchitecture: all\\n"
        "Maintainer: tests <tests@example.org>\\nDescription: holds the dpkg lock\\n' > /tmp/holder/DEBIAN/control "
        "&& printf '#!/bin/sh\\nfor i in $(seq $(cat /tmp/hold-seconds)); do "
        "[ -e /tmp/let-go ] && break; sleep 1; done\\n' > /tmp/holder/DEBIAN/preinst "
        "&& chmod 755 /tmp/holder/DEBIAN/preinst && dpkg-deb -b /tmp/holder /tmp/holder.deb >/dev/null",
    )

    def holds(seconds: int) -> None:
        on_host(
            first,
            f"rm -f /tmp/let-go; echo {seconds} > /tmp/hold-seconds; "
            "systemd-run --unit=lock-holder dpkg -i /tmp/holder.deb",
        )
        # Go on only once dpkg holds its own lock file (not any POSIX lock): fail if it never does.
        on_host(
            first,
            "i=$(stat -c %i /var/lib/dpkg/lock-frontend); for n in $(seq 100); do "
            "awk -v i=\":$i$\" '$6 ~ i {f = 1} END {exit !f}' /proc/locks && exit 0; sleep 0.2; done; "
            "echo 'dpkg never took its lock' >&2; exit 1",
        )

    yield holds
    on_host(
        first,
        "touch /tmp/let-go; while systemctl is-active -q lock-holder; do sleep 0.2; done; "
        "dpkg -r lock-holder >/dev/null 2>&1; rm -f /tmp/let-go",
    )


def test_a_held_package_lock_is_waited_for(fleet, converged, lock_holder):
    first, _ = fleet.names
    lock_holder(25)
    result, outcomes = deploy_json(SANDBOX_INVENTORY)
    assert result.rc == 0, result.failure
    waits = [name for name in outcomes if name.startswith("Host tools | Wait up to 900 s for the package manager")]
    assert len(waits) == 1 and waits[0].endswith("dpkg holds its lock)"), waits
    assert outcomes[waits[0]] == {first: "success"}


def test_a_package_lock_held_past_the_limit_fails_the_host_naming_the_holder(fleet, converged, lock_holder, tmp_path):
    first, second = fleet.names
    # The new limit is written before the wait (it is the setting that changed), and the holder
    # is a package being installed: the rest of the host must stay as it was.
    untouched = (paths.APT_LOCK_CONF, "packages")
    before = host_state(first, ignore=untouched)
    lock_holder(40)
    result, outcomes = deploy_json(write_inventory(tmp_path, {first: {"package_lock_timeout": 5}}))
    assert result.rc != 0
    assert "the package manager lock is still held by process" in result.output
    assert "dpkg after 5 s: let it finish (or stop it) and deploy again" in result.output
    assert host_state(first, ignore=untouched) == before
    assert on_host(first, f"cat {paths.APT_LOCK_CONF}").endswith('DPkg::Lock::Timeout "5";')
    # The other host went on to the end.
    assert outcomes["vLLM service | Keep vLLM running and enabled at boot"][second] == "no_change"
    assert "error" not in {hosts.get(second) for hosts in outcomes.values()}

"""The real deploy against sandbox hosts over SSH, serving the real vLLM (CPU build) and the
shipped test model: converge, verify, idempotence, a changed knob, a release that cannot start
rolled back, and a bad inventory refused with every host left as it was."""

from __future__ import annotations

import json
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import (
    ACTIVATE,
    PYINFRA,
    RESTART,
    SANDBOX_INVENTORY,
    changed,
    deploy_json,
    host_state,
    invocation,
    models,
    on_host,
    run,
    write_inventory,
)

pytestmark = pytest.mark.sandbox

UNIT = "/etc/systemd/system/vllm.service"
RELEASES = "/etc/vllm-fleet/releases"


@pytest.fixture(scope="module")
def converged(fleet):
    started = time.monotonic()
    result, outcomes = deploy_json(SANDBOX_INVENTORY)
    print(f"first deploy of {len(fleet.names)} hosts in {time.monotonic() - started:.0f}s")
    assert result.rc == 0, result.output[-4000:]
    return result, outcomes


def test_fresh_hosts_converge(fleet, converged):
    result, outcomes = converged
    for host in fleet.names:
        done = changed(outcomes, host)
        assert "Docker engine | Install Docker engine" in done
        # The hosts start as systemd and sshd alone: D-Bus (for systemd-run --wait), curl, jq and ss come first.
        assert any(name.startswith("Host tools | Install what the deploy runs on the host (dbus: ") for name in done)
        assert (
            on_host(host, "systemctl is-active dbus.service; for t in ss curl jq; do command -v $t; done | wc -l")
            == "active\n3"
        )
        assert any(name.startswith("vLLM service | Load ") for name in done)
        assert ACTIVATE in done
        assert on_host(host, "systemctl is-active vllm.service") == "active"
        assert on_host(host, "systemctl is-enabled vllm.service") == "enabled"
    assert fleet.api_key not in result.output, "the API key appeared in pyinfra's output"
    assert fleet.hf_token not in result.output, "the HF token appeared in pyinfra's output"


def test_real_vllm_serves_the_shipped_model_read_only(fleet, converged):
    for host in fleet.names:
        assert on_host(host, "docker exec vllm python3 -c 'import vllm; print(vllm.__version__)'") == "0.32.0"
        path = fleet.model_path
        assert path.startswith("/var/lib/vllm-fleet/models/vllm-fleet-test-llama-tiny-")
        assert on_host(host, f"stat -c '%U %a' {path} {path}/config.json") == "root 755\nroot 644"
        assert on_host(host, "stat -c '%U %a' /var/lib/vllm-fleet/models /var/lib/vllm-fleet/cache") == (
            "root 700\nroot 700"
        )
        mounts = json.loads(on_host(host, "docker inspect --format '{{json .Mounts}}' vllm"))
        assert {m["Destination"]: m["RW"] for m in mounts}[path] is False, "the model is writable by the server"
        # vLLM's compile cache outlives the container.
        assert on_host(host, "ls /var/lib/vllm-fleet/cache/vllm") != ""


def test_endpoint_answers_from_the_runner(fleet, converged):
    for host in fleet.hosts:
        cards = models(fleet, host)["data"]
        assert [card["id"] for card in cards] == [fleet.model]


def test_verify_suite_passes(fleet, converged, tmp_path):
    junit = tmp_path / "verify.xml"
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/verify",
            "--inventory",
            SANDBOX_INVENTORY,
            "-n",
            str(len(fleet.names)),
            "-p",
            "no:cacheprovider",
            "--junit-xml",
            str(junit),
        ]
    )
    assert result.rc == 0, result.output[-4000:]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("tests")) >= 8 * len(fleet.names)
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0
    # The sandbox serves on the CPU with Docker and has no gateway here: only the GPU checks, the
    # Nix way's and the gateway checks may skip.
    skipped = [case for case in suite.iter("testcase") if case.find("skipped") is not None]
    assert skipped and all(
        case.get("classname").endswith("test_gpu")
        or case.get("name").startswith("test_service_runs_the_nix_build")
        or (case.get("classname").endswith("test_gateway") and case.get("name").endswith("[none]"))
        for case in skipped
    ), [case.get("name") for case in skipped]


def test_second_run_changes_nothing(fleet, converged):
    before = {host: host_state(host) for host in fleet.names}
    result, outcomes = deploy_json(SANDBOX_INVENTORY)
    assert result.rc == 0, result.output[-4000:]
    for host in fleet.names:
        assert changed(outcomes, host) == [], f"{host} changed on a second run"
        assert host_state(host) == before[host], f"{host}: files, packages or services changed on a second run"


def test_changed_knob_restarts_once_and_serves_new_setting(fleet, converged, tmp_path):
    first, second = fleet.names
    inventory = write_inventory(tmp_path, {first: {"vllm_max_model_len": 4096}})
    before = {host: invocation(host) for host in fleet.names}
    since = on_host(first, "date '+%Y-%m-%d %H:%M:%S'")
    time.sleep(1)

    result, outcomes = deploy_json(inventory)
    assert result.rc == 0, result.output[-4000:]

    assert invocation(first) != before[first]
    starts = on_host(first, f"journalctl -u vllm.service --since '{since}' --no-pager -o cat | grep -c '^Started '")
    assert starts == "1", f"vllm.service started {starts} times on {first}, expected once"
    assert models(fleet, fleet.hosts[0])["data"][0]["max_model_len"] == 4096
    assert on_host(first, f"grep -- --max-model-len {UNIT}").split() == ["--max-model-len", "4096", "\\"]
    # The other host's settings did not change, so it was not touched.
    assert changed(outcomes, second) == []
    assert invocation(second) == before[second]

    again, outcomes = deploy_json(inventory)
    assert again.rc == 0 and changed(outcomes, first) == []

    back, _ = deploy_json(SANDBOX_INVENTORY)
    assert back.rc == 0 and models(fleet, fleet.hosts[0])["data"][0]["max_model_len"] == 8192


def test_invalid_host_aborts_run_and_touches_no_host(fleet, converged, tmp_path):
    first, second = fleet.names
    inventory = write_inventory(
        tmp_path,
        {first: {"vllm_max_model_len": 3072}, second: {"vllm_port": 70000}},
    )
    before = {host: host_state(host) for host in fleet.names}

    result, _ = deploy_json(inventory)

    assert result.rc != 0
    assert "Traceback" not in result.output
    assert f"host {second}: vllm_port = 70000 is not allowed: an integer from 1 to 65535" in result.output
    for host in fleet.names:
        assert host_state(host) == before[host], f"{host} was changed"


def test_dry_run_with_diff_shows_no_secret_and_changes_nothing(fleet, converged, tmp_path):
    first, _ = fleet.names
    new_key = "dry-run-key-" + "x" * 20
    inventory = write_inventory(tmp_path, {first: {"vllm_api_key": new_key}})
    before = host_state(first)

    # Without -y, so pyinfra detects and prints the changes it would make.
    result = run([PYINFRA, "--dry", "--diff", inventory, "deploy.py"])

    assert result.rc == 0, result.output[-4000:]
    line = next(x for x in result.output.splitlines() if "Write secrets to root-only" in x)
    assert f"1 ({first})" in line, line
    assert new_key not in result.output and fleet.api_key not in result.output
    assert fleet.hf_token not in result.output
    assert host_state(first) == before, f"a dry run changed {first}"


def test_release_that_does_not_come_up_goes_back_to_the_previous_one(fleet, converged, tmp_path):
    first, second = fleet.names
    # vLLM exits on an argument it does not know. The ready timeout stays long: the crashes,
    # not the timeout, must end the wait.
    inventory = write_inventory(tmp_path, {first: {"vllm_extra_args": ["--no-such-flag"]}})
    release, unit = on_host(first, f"readlink {RELEASES}/current"), on_host(first, f"sha256sum {UNIT}")
    since = on_host(first, "date '+%Y-%m-%d %H:%M:%S'")

    result, outcomes = deploy_json(inventory)

    assert result.rc != 0
    assert outcomes[ACTIVATE][first] == "error"
    assert f"vLLM on {first} did not list {fleet.model}" in result.output
    assert "(the server exited 2 times since it was started)" in result.output
    journal = f"journalctl --since '{since}' -o short-unix"
    crashed = on_host(first, f"{journal} -u vllm.service | grep -m1 'Main process exited'")
    back = on_host(first, f"{journal} -t vllm-fleet-activate | grep -m1 'going back'")
    assert float(back.split()[0]) - float(crashed.split()[0]) < 60, "the rollback started over a minute after the crash"
    assert "unrecognized arguments: --no-such-flag" in result.output, "journalctl lines missing"
    assert f"{first} ROLLED BACK to release {release}, which serves" in result.output
    # The host is back on its last good release, whole: link, unit, and the server answering.
    assert on_host(first, f"readlink {RELEASES}/current") == release
    assert on_host(first, f"sha256sum {UNIT}") == unit
    assert on_host(first, "systemctl is-active vllm.service") == "active"
    assert models(fleet, fleet.hosts[0])["data"][0]["id"] == fleet.model
    assert changed(outcomes, second) == [], "a failure on one host changed another"

    back, outcomes = deploy_json(SANDBOX_INVENTORY)
    assert back.rc == 0, back.output[-4000:]
    assert changed(outcomes, first) == [], "the rolled-back release is the one the inventory wants: nothing to do"


def test_daemon_json_is_merged_and_the_engine_restarted_only_then(fleet, converged, tmp_path):
    first, second = fleet.names
    other_tool = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
    on_host(first, f"echo '{json.dumps(other_tool)}' > /etc/docker/daemon.json")
    engine_before = on_host(first, "systemctl show -p InvocationID --value docker.service")
    inventory = write_inventory(tmp_path, {first: {"docker_daemon_config": {"log-opts": {"max-size": "10m"}}}})

    result, outcomes = deploy_json(inventory)

    assert result.rc == 0, result.output[-4000:]
    merged = json.loads(on_host(first, "cat /etc/docker/daemon.json"))
    assert merged == {**other_tool, "log-opts": {"max-size": "10m"}}
    assert on_host(first, "systemctl show -p InvocationID --value docker.service") != engine_before
    runtimes = json.loads(on_host(first, "docker info --format '{{json .Runtimes}}'"))
    assert runtimes["nvidia"]["path"] == "nvidia-container-runtime", "the engine lost the other tool's runtime"
    # The engine's restart stopped the container: vLLM was restarted and waited for.
    assert outcomes[RESTART][first] == "success"
    assert models(fleet, fleet.hosts[0])["data"][0]["id"] == fleet.model
    assert changed(outcomes, second) == []

    engine_after = on_host(first, "systemctl show -p InvocationID --value docker.service")
    again, outcomes = deploy_json(inventory)
    assert again.rc == 0 and changed(outcomes, first) == []
    assert on_host(first, "systemctl show -p InvocationID --value docker.service") == engine_after


def test_unparseable_daemon_json_stops_the_run_and_is_left_alone(fleet, converged):
    _, second = fleet.names
    on_host(second, "printf '{\"log-driver\": ' > /etc/docker/daemon.json")
    try:
        result, _ = deploy_json(SANDBOX_INVENTORY)
        assert result.rc != 0
        assert "pre-flight refused: daemon_json: /etc/docker/daemon.json exists but it does not parse as JSON" in (
            result.output
        )
        assert "Traceback" not in result.output
        assert on_host(second, "cat /etc/docker/daemon.json") == '{"log-driver":'
    finally:
        on_host(second, "rm -f /etc/docker/daemon.json")


def test_demo_endpoint_line_works(fleet, converged):
    """The last step of `make demo`: print the endpoint and a curl line, and run that line."""
    result = run([sys.executable, "-m", "tests.sandbox.sandbox", "endpoint"])
    assert result.rc == 0, result.output[-2000:]
    assert result.output.count("It answered: {") == len(fleet.names)
    assert f'"model": "{fleet.model}"' in result.stdout and '"choices"' in result.stdout
    assert fleet.api_key not in result.output, "the demo printed the API key"
    assert fleet.hf_token not in result.output, "the demo printed the HF token"

"""Rollouts on a sandbox fleet of four vLLM hosts behind a real HAProxy gateway, with a client
sending completions through the gateway the whole time: a changed setting in batches, a bad
release in the second batch, a host stopped in the middle, and pyinfra's connection cut while
a host activates its new release."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import (
    OWN_FLEETS,
    PYINFRA,
    REPO,
    SANDBOX_INVENTORY,
    SECRET_CHECKS,
    deploy_json,
    models,
    on_host,
    run,
    start_fleet,
    write_inventory,
)

from sandbox.runs import run_environment
from sandbox.traffic import Traffic
from vllm_fleet import haproxy, paths

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group(OWN_FLEETS)]

ENV = run_environment("roll")
PREFIX = ENV["VLLM_FLEET_SANDBOX_PREFIX"]
CURRENT = f"{paths.RELEASES_DIR}/current"


@pytest.fixture(scope="module")
def fleet():
    """Four vLLM hosts and a gateway, deployed once by a plain pyinfra run: each host gets its image
    as a `docker save` archive, shipped over SFTP and loaded (the air-gapped way)."""
    for fleet in start_fleet(ENV, hosts=4, gateways=1, engine="standin"):
        started = time.monotonic()
        result, outcomes = deploy_json(SANDBOX_INVENTORY, env=ENV)
        print(f"first deploy of 4 hosts and a gateway in {time.monotonic() - started:.0f}s")
        assert result.rc == 0, result.failure
        archive = Path(fleet.state["vllm_image_archive"]).name
        shipped = outcomes[f"vLLM service | Ship image archive {archive}"]
        loaded = outcomes[f"vLLM service | Load {fleet.state['vllm_image']} into Docker"]
        assert shipped == loaded == dict.fromkeys(fleet.names, "success"), (shipped, loaded)
        # The gateway came up while its backends were starting: its health checks see them UP
        # a few seconds after they serve.
        wait_until_up(fleet, fleet.names)
        yield fleet


def wait_until_up(fleet, names: list[str], seconds: int = 60) -> None:
    for _ in range(seconds * 2):
        status = gateway_status(fleet)
        if all(status.get(name) == "UP" for name in names):
            return
        time.sleep(0.5)
    pytest.fail(f"the gateway does not see {names} UP: {status}")


def traffic(fleet) -> Traffic:
    return Traffic(f"http://127.0.0.1:{fleet.gateways[0]['http_port']}", fleet.api_key, fleet.model)


def gateway_status(fleet) -> dict[str, str]:
    return haproxy.server_status(on_host(fleet.gateways[0]["name"], haproxy.SHOW_STAT))


def rollout(inventory: str, *args: str):
    return run([sys.executable, "-m", "vllm_fleet", "rollout", inventory, *args], timeout=1800, env=ENV)


def junit(path) -> dict[str, tuple[str, str]]:
    """host -> (outcome, failure type) from the rollout's JUnit file."""
    cases = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        failure, skipped = case.find("failure"), case.find("skipped")
        if failure is not None:
            cases[case.get("name")] = ("failure", failure.get("type"))
        else:
            cases[case.get("name")] = ("skipped" if skipped is not None else "passed", "")
    return cases


def releases(fleet) -> dict[str, str]:
    return {name: on_host(name, f"readlink {CURRENT}") for name in fleet.names}


def everywhere(fleet, value: dict) -> dict[str, dict]:
    return {name: value for name in fleet.names}


def test_changed_setting_rolls_out_in_batches_without_a_failed_request(fleet, tmp_path):
    inventory = write_inventory(tmp_path, everywhere(fleet, {"vllm_max_model_len": 4096}))
    before = releases(fleet)
    most_out = []  # backends not UP at the gateway, sampled every half second
    watch_errors = []
    done = threading.Event()

    def watch():
        try:
            while not done.is_set():
                most_out.append(sum(state != "UP" for state in gateway_status(fleet).values()))
                time.sleep(0.5)
        except Exception as exc:  # a dead watcher must fail the test, not pass as a calm gateway
            watch_errors.append(exc)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    with traffic(fleet) as client:
        result = rollout(inventory, "--canary", "1", "--batch", "2", "--junit-xml", str(tmp_path / "r.xml"))
        time.sleep(2)
    took = time.monotonic() - started
    done.set()
    watcher.join()

    assert not watch_errors, f"the capacity watcher died: {watch_errors[0]!r}"
    assert len(most_out) >= took / 2, f"{len(most_out)} samples of the gateway in {took:.0f}s"
    assert result.rc == 0, result.failure
    assert f"batch 1 of 3 (canary): {PREFIX}-1" in result.output
    assert "rollout completed" in result.output
    assert not client.failures(), client.failures()
    assert client.served > 100, f"only {client.served} requests went through during the rollout"
    # Capacity never fell below the hosts outside the batch (batches of at most 2 of 4).
    assert 0 < max(most_out) <= 2, most_out
    assert junit(tmp_path / "r.xml") == {name: ("passed", "") for name in fleet.names}
    after = releases(fleet)
    for host in fleet.hosts:
        assert after[host["name"]] != before[host["name"]], f"{host['name']} is not on a new release"
        assert models(fleet, host)["data"][0]["max_model_len"] == 4096
    assert set(gateway_status(fleet).values()) == {"UP"}


def test_bad_release_in_the_second_batch_rolls_back_and_stops(fleet, tmp_path):
    broken = fleet.state["vllm_image_variants"]["broken"]
    overrides = everywhere(fleet, {"vllm_max_model_len": 4096})
    for name in (f"{PREFIX}-2", f"{PREFIX}-3"):
        overrides[name] = {**overrides[name], "vllm_image": broken, "vllm_ready_timeout": 15}
    inventory = write_inventory(tmp_path, overrides)
    before = releases(fleet)
    last_start = on_host(f"{PREFIX}-4", "systemctl show -p InvocationID --value vllm.service")

    with traffic(fleet) as client:
        result = rollout(inventory, "--canary", "1", "--batch", "2", "--junit-xml", str(tmp_path / "r.xml"))

    assert result.rc == 1, result.failure
    assert "rollout STOPPED" in result.output and "more than --max-failures 0" in result.output
    assert junit(tmp_path / "r.xml") == {
        f"{PREFIX}-1": ("passed", ""),
        f"{PREFIX}-2": ("failure", "rolled_back"),
        f"{PREFIX}-3": ("failure", "rolled_back"),
        f"{PREFIX}-4": ("skipped", ""),
    }
    assert not client.failures(), client.failures()
    # The batch serves its previous release again, back in the gateway's rotation ...
    for host in fleet.hosts[1:3]:
        name = host["name"]
        assert on_host(name, f"readlink {CURRENT}") == before[name]
        assert on_host(name, "docker inspect --format '{{.Config.Image}}' vllm") == fleet.state["vllm_image"]
        assert models(fleet, host)["data"][0]["max_model_len"] == 4096
    assert set(gateway_status(fleet).values()) == {"UP"}
    # ... and the later batch was not touched.
    assert on_host(f"{PREFIX}-4", f"readlink {CURRENT}") == before[f"{PREFIX}-4"]
    assert on_host(f"{PREFIX}-4", "systemctl show -p InvocationID --value vllm.service") == last_start


def test_host_stopped_during_the_rollout_is_reported_unreachable(fleet, tmp_path):
    inventory = write_inventory(tmp_path, everywhere(fleet, {"vllm_max_model_len": 2048}))
    with traffic(fleet) as client:
        process = subprocess.Popen(
            [sys.executable, "-m", "vllm_fleet", "rollout", inventory, "--canary", "1", "--batch", "1"]
            + ["--junit-xml", str(tmp_path / "r.xml")],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = []
        for line in process.stdout:
            output.append(line)
            if line.startswith("[rollout] batch 2 of 4"):
                subprocess.run(["docker", "stop", f"{PREFIX}-4"], check=True, capture_output=True)
        process.wait(timeout=1200)
    output = "".join(output)

    assert process.returncode == 1, output[-4000:]
    cases = junit(tmp_path / "r.xml")
    assert cases[f"{PREFIX}-4"] == ("failure", "unreachable"), output[-3000:]
    assert all(cases[name] == ("passed", "") for name in fleet.names[:3]), cases
    assert f"{PREFIX}-4: unreachable (Could not connect" in output
    assert not client.failures(), client.failures()
    for host in fleet.hosts[:3]:
        assert models(fleet, host)["data"][0]["max_model_len"] == 2048

    # Back up, the host serves the release it had (vllm.service is enabled at boot).
    up = run([sys.executable, "-m", "sandbox.sandbox", "up", "--hosts", "4", "--gateways", "1"], env=ENV)
    assert up.rc == 0, up.failure
    wait_until_up(fleet, [f"{PREFIX}-4"])
    assert models(fleet, fleet.hosts[3])["data"][0]["max_model_len"] == 4096


# A oneshot unit is "activating" while its script runs.
RUNNING = f"systemctl is-active {paths.ACTIVATE_UNIT} || true"


def deploy_until_activating(name: str, inventory: str) -> subprocess.Popen:
    """A deploy of one host, returned once its activation runs."""
    deploy = subprocess.Popen(
        [PYINFRA, "-y", "--limit", name, inventory, "deploy.py"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(240):
        if on_host(name, RUNNING) == "activating":
            return deploy
        time.sleep(0.25)
    deploy.kill()
    pytest.fail(f"the activation never started on {name}")


@pytest.mark.parametrize(("variant", "ends_on"), [("slow", "new"), ("broken", "old")])
def test_connection_cut_during_activation_leaves_a_working_release(fleet, tmp_path, variant, ends_on):
    first = fleet.hosts[0]
    name = first["name"]
    image = fleet.state["vllm_image_variants"][variant]
    inventory = write_inventory(tmp_path, {name: {"vllm_image": image, "vllm_ready_timeout": 30}})
    before = on_host(name, f"readlink {CURRENT}")
    image_before = on_host(name, "docker inspect --format '{{.Config.Image}}' vllm")
    deploy = deploy_until_activating(name, inventory)
    # Cut every SSH session pyinfra has on the host, as a dropped network would.
    on_host(name, "pkill -KILL -f 'sshd: root[@]' || true")  # [@]: not this shell's own line
    assert deploy.wait(timeout=120) != 0, "pyinfra did not notice its connection was cut"

    for _ in range(120):
        if on_host(name, RUNNING) != "activating":
            break
        time.sleep(1)
    current = on_host(name, f"readlink {CURRENT}")
    assert (current != before) == (ends_on == "new"), f"{name} ended on release {current}, before {before}"
    unit = on_host(name, f"sha256sum < {paths.UNIT_PATH}; sha256sum < {CURRENT}/vllm.service")
    assert len(set(unit.splitlines())) == 1, f"{name} runs a unit that is not its current release's"
    assert on_host(name, "systemctl is-active vllm.service") == "active"
    assert [card["id"] for card in models(fleet, first)["data"]] == [fleet.model]
    expected = image if ends_on == "new" else image_before
    assert on_host(name, "docker inspect --format '{{.Config.Image}}' vllm") == expected


def test_activation_killed_midway_goes_back_to_current_and_the_next_deploy_finishes_it(fleet, tmp_path):
    """The activation itself killed (SIGKILL, as an OOM kill would) while the new release is
    tried: its unit's ExecStopPost starts the release that served again, and the next deploy
    activates the new one."""
    first = fleet.hosts[0]
    name = first["name"]
    image = fleet.state["vllm_image_variants"]["slow"]
    inventory = write_inventory(tmp_path, {name: {"vllm_image": image, "vllm_ready_timeout": 60}})
    before = on_host(name, f"readlink {CURRENT}")
    deploy = deploy_until_activating(name, inventory)
    time.sleep(2)  # into the wait for the new release
    on_host(name, f"systemctl kill --signal=SIGKILL {paths.ACTIVATE_UNIT} || true")
    assert deploy.wait(timeout=300) != 0, "the deploy did not fail with its activation killed"
    assert on_host(name, RUNNING) != "activating"
    assert on_host(name, f"readlink {CURRENT}") == before, "current moved to a release that never served"
    unit = on_host(name, f"sha256sum < {paths.UNIT_PATH}; sha256sum < {CURRENT}/vllm.service")
    assert len(set(unit.splitlines())) == 1, f"{name} was left on the unit of the release it was trying"
    assert on_host(name, f"test -e {paths.ACTIVATE_PENDING} && echo pending || echo settled") == "settled"
    assert [card["id"] for card in models(fleet, first)["data"]] == [fleet.model]

    again, _ = deploy_json(inventory, "--limit", name, env=ENV)
    assert again.rc == 0, again.failure
    current = on_host(name, f"readlink {CURRENT}")
    assert current != before
    unit = on_host(name, f"sha256sum < {paths.UNIT_PATH}; sha256sum < {CURRENT}/vllm.service")
    assert len(set(unit.splitlines())) == 1, f"{name} runs a unit that is not its current release's"
    assert on_host(name, f"test -e {paths.ACTIVATE_PENDING} && echo pending || echo settled") == "settled"
    assert on_host(name, "docker inspect --format '{{.Config.Image}}' vllm") == image
    assert [card["id"] for card in models(fleet, first)["data"]] == [fleet.model]


def test_firewall_admits_the_gateway_and_monitoring_only_and_leaves_ssh_open(fleet):
    first, second = fleet.hosts[0], fleet.hosts[1]
    gateway = fleet.gateways[0]
    probe = "curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://" + first["address"] + ":8000/health"
    # A gateway host has no curl (its task installs HAProxy and socat only): bash speaks HTTP.
    request = f"exec 3<>/dev/tcp/{first['address']}/8000; printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3; head -c 12 <&3"
    status_line = on_host(gateway["name"], "timeout 3 bash -c " + shlex.quote(request))
    assert re.fullmatch(r"HTTP/1\.[01] 200", status_line), status_line
    # Another vLLM host is neither a gateway nor a monitoring source: its packets are dropped.
    dropped = subprocess.run(["docker", "exec", second["name"], "sh", "-c", probe], capture_output=True, text=True)
    assert dropped.returncode == 28 and dropped.stdout == "000", (dropped.returncode, dropped.stdout)
    banner = "timeout 3 bash -c 'exec 3<>/dev/tcp/" + first["address"] + "/22; head -c 7 <&3'"
    assert on_host(second["name"], banner) == "SSH-2.0"
    table = on_host(first["name"], "nft list table inet vllm_fleet")
    assert gateway["address"] in table and fleet.state["runner_address"] in table
    # The runner (the monitoring source here) reaches the port through Docker's published port.
    assert models(fleet, first)["data"][0]["id"] == fleet.model


def test_verify_suite_checks_the_gateway(fleet, tmp_path):
    """The verify suite's gateway checks, against a real gateway (rollouts verify vLLM hosts only)."""
    gateway = fleet.gateways[0]["name"]
    junit = tmp_path / "verify.xml"
    verify = [sys.executable, "-m", "pytest", "vllm_fleet/verify", "--inventory", SANDBOX_INVENTORY]
    result = run([*verify, "--limit", gateway, "-p", "no:cacheprovider", "--junit-xml", str(junit)], env=ENV)
    assert result.rc == 0, result.failure
    outcomes = {
        case.get("name"): "skipped" if case.find("skipped") is not None else "passed"
        for case in ET.parse(junit).getroot().iter("testcase")
        if case.get("classname").endswith("test_gateway")
    }
    names = (
        "haproxy_enabled_and_active",
        "config_is_root_only",
        "every_backend_is_up",
        "gateway_answers",
        "gateway_checks_the_key_on_paths_vllm_leaves_open",
        "gateway_refuses_host_headers_that_are_not_a_name_and_a_port",
    )
    assert outcomes == {f"test_{name}[{gateway}]": "passed" for name in names}, outcomes
    secrets = {
        case.get("name"): "skipped" if case.find("skipped") is not None else "passed"
        for case in ET.parse(junit).getroot().iter("testcase")
        if case.get("classname").endswith("test_secrets") and case.get("name").endswith(f"[{gateway}]")
    }
    assert secrets == {f"{check}[{gateway}]": "passed" for check in SECRET_CHECKS}, secrets


def test_gateway_checks_its_own_key_over_tls(fleet, tmp_path):
    gateway = fleet.gateways[0]
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + [
            "-days",
            "1",
            "-subj",
            "/CN=vllm-fleet-sandbox-gateway",
            "-addext",
            "subjectAltName=DNS:vllm-fleet-sandbox-gateway",
        ],
        check=True,
        capture_output=True,
    )
    pem = tmp_path / "gateway.pem"
    pem.write_text(cert.read_text() + key.read_text())
    client_key = "gateway-client-key-" + "g" * 12
    settings = {"gateway_auth": "gateway", "gateway_api_key": client_key, "gateway_tls_certificate": str(pem)}
    inventory = write_inventory(tmp_path, {gateway["name"]: settings})
    result, _ = deploy_json(inventory, "--limit", gateway["name"], env=ENV)
    assert result.rc == 0, result.failure
    assert client_key not in result.output and fleet.api_key not in result.output
    assert fleet.hf_token not in result.output

    url = f"https://127.0.0.1:{gateway['http_port']}"

    def status(path: str, key: str | None) -> str:
        header = ["-H", f"Authorization: Bearer {key}"] if key else []
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(cert), "--max-time", "10"]
            + ["--resolve", f"vllm-fleet-sandbox-gateway:{gateway['http_port']}:127.0.0.1", *header]
            + [url.replace("127.0.0.1", "vllm-fleet-sandbox-gateway") + path],
            capture_output=True,
            text=True,
        )
        return done.stdout

    assert status("/v1/models", client_key) == "200"
    assert status("/v1/models", fleet.api_key) == "401", "the vLLM hosts' key must not open the gateway"
    assert status("/v1/models", None) == "401"
    assert status("/health", None) == "200"
    assert on_host(gateway["name"], "stat -c '%U %a' /etc/haproxy/haproxy.cfg /etc/vllm-fleet/gateway.pem").split(
        "\n"
    ) == ["root 600", "root 600"]


def test_a_verify_step_past_its_limit_ends_with_a_report_and_the_batch_back(fleet, tmp_path):
    """The verify suite outlives its limit: no traceback, the batch failed and put back into
    rotation, the later batches not started, the JUnit report written."""
    inventory = write_inventory(tmp_path, {})
    report = tmp_path / "r.xml"
    result = rollout(inventory, "--canary", "1", "--batch", "3", "--verify-timeout", "1", "--junit-xml", str(report))
    assert result.rc == 1, result.failure
    assert "Traceback" not in result.output
    assert "rollout STOPPED" in result.output and "step 'verify suite' timed out after 1s" in result.output
    assert junit(report) == {
        f"{PREFIX}-1": ("failure", "failed"),
        f"{PREFIX}-2": ("skipped", ""),
        f"{PREFIX}-3": ("skipped", ""),
        f"{PREFIX}-4": ("skipped", ""),
    }
    assert "left drained" not in result.output
    wait_until_up(fleet, fleet.names)

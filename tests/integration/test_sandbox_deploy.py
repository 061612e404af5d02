"""The real deploy against sandbox hosts over SSH, serving the real vLLM (CPU build) and the
shipped test model: converge, verify, idempotence, a changed knob, a release that cannot start
rolled back, and a bad inventory refused with every host left as it was."""

from __future__ import annotations

import json
import shlex
import sys
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from conftest import (
    ACTIVATE,
    PYINFRA,
    RESTART,
    SANDBOX_INVENTORY,
    SECRET_CHECKS,
    SESSION_FLEET,
    changed,
    complete,
    deploy_json,
    host_state,
    invocation,
    models,
    on_host,
    run,
    write_inventory,
)

from tests import metric_names

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group(SESSION_FLEET)]

UNIT = "/etc/systemd/system/vllm.service"
RELEASES = "/etc/vllm-fleet/releases"


@pytest.fixture(scope="module")
def converged(fleet, alert_webhook):
    """alert_webhook: Alertmanager's receiver listens from the first deploy on, as an operator's would."""
    started = time.monotonic()
    result, outcomes = deploy_json(SANDBOX_INVENTORY)
    print(f"first deploy of {len(fleet.names)} hosts in {time.monotonic() - started:.0f}s")
    assert result.rc == 0, result.failure
    return result, outcomes


def test_fresh_hosts_converge(fleet, converged):
    result, outcomes = converged
    pulled = fleet.state["pulled"]["vllm_image"]
    for host in fleet.names:
        done = changed(outcomes, host)
        assert "Docker engine | Install Docker engine" in done
        # The hosts start as systemd and sshd alone: D-Bus (for systemd-run --wait), curl, jq and ss come first.
        assert any(name.startswith("Host tools | Install what the deploy runs on the host (dbus: ") for name in done)
        assert (
            on_host(host, "systemctl is-active dbus.service; for t in ss curl jq; do command -v $t; done | wc -l")
            == "active\n3"
        )
        # Each pulls the image from the sandbox's registry, by digest (the rollout tests' hosts, one
        # operation on all, get theirs as an archive).
        assert f"vLLM service | Pull {pulled}" in done, done
        assert ACTIVATE in done
        assert on_host(host, "systemctl is-active vllm.service") == "active"
        assert on_host(host, "systemctl is-enabled vllm.service") == "enabled"
    assert fleet.api_key not in result.output, "the API key appeared in pyinfra's output"
    assert fleet.hf_token not in result.output, "the HF token appeared in pyinfra's output"
    # Each serves the image it was given, by its digest.
    running = {host: on_host(host, "docker inspect -f '{{.Config.Image}}' vllm") for host in fleet.names}
    assert running == dict.fromkeys(fleet.names, pulled)


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


def prometheus(fleet, query: str) -> list[dict]:
    """An instant query to the sandbox's Prometheus, asked on its host (it listens on loopback)."""
    monitor = fleet.monitors[0]["name"]
    url = f"http://127.0.0.1:9090/api/v1/query?query={urllib.parse.quote(query)}"
    answer = json.loads(on_host(monitor, f"curl -sf {shlex.quote(url)}"))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for(what: str, test, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = test()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def test_prometheus_scrapes_every_host_and_the_request_counters_move(fleet, converged):
    # Every target of every job is up: vLLM, the node exporters, Prometheus and Alertmanager. (For
    # 5 minutes after the first deploy, `up` also returns the last samples of the Debian default
    # configuration Prometheus ran with before the deploy's own: they carry no host label.)
    hosts = set(fleet.names)
    wait_for(
        "every target up",
        lambda: (
            {(r["metric"]["job"], r["metric"]["host"]) for r in prometheus(fleet, 'up{host!=""} == 1')}
            >= {("vllm", h) for h in hosts} | {("node", h) for h in hosts | {fleet.monitors[0]["name"]}}
        ),
        timeout=60,
    )
    assert {r["metric"]["host"] for r in prometheus(fleet, "vllm:num_requests_running")} == hosts
    first = fleet.hosts[0]
    query = f'sum(vllm:request_success_total{{host="{first["name"]}"}})'
    wait_for("the counter scraped", lambda: prometheus(fleet, query), timeout=30)
    before = float(prometheus(fleet, query)[0]["value"][1])
    for _ in range(3):
        complete(fleet, first)
    wait_for(
        "the request counter moved by the 3 requests",
        lambda: float(prometheus(fleet, query)[0]["value"][1]) >= before + 3,
        timeout=30,
    )
    assert prometheus(fleet, f'sum(rate(vllm:generation_tokens_total{{host="{first["name"]}"}}[1m])) > 0')


def test_only_the_monitoring_host_reaches_the_exporters(fleet, converged):
    first, second = fleet.hosts
    monitor = fleet.monitors[0]
    probe = "curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{}/metrics; echo \" $?\""
    node = f"{first['address']}:9100"
    assert on_host(monitor["name"], probe.format(node)) == "200 0"
    # Dropped, not refused: curl gives up after its 3 s (exit 28).
    assert on_host(second["name"], probe.format(node)) == "000 28"
    assert on_host(second["name"], probe.format(f"{monitor['address']}:9090")) == "000 28"


def test_the_metrics_monitoring_reads_are_the_real_vllms_and_node_exporters(fleet, converged):
    """Every metric a rule or a panel reads exists in what the real vLLM and node exporter export,
    and vllm_fleet/data/metrics/ still records what they do."""
    host = fleet.hosts[0]
    complete(fleet, host)
    # vLLM leaves /metrics open whatever --api-key says (its key check covers /v1 only): Prometheus
    # needs no key. Should a release close it, this fails.
    with urllib.request.urlopen(f"http://127.0.0.1:{host['http_port']}/metrics", timeout=10) as response:
        vllm_live = metric_names.exported(response.read().decode())
    node_live = metric_names.exported(on_host(host["name"], "curl -sf http://127.0.0.1:9100/metrics"))
    used = metric_names.used()
    assert not used["vllm"] - vllm_live, used["vllm"] - vllm_live
    assert not used["node"] - node_live, used["node"] - node_live
    assert not metric_names.recorded("vllm") - vllm_live
    # The node exporter's metrics depend on the host's hardware: those the rules read are checked.


def test_stopping_vllm_fires_the_alert_at_the_webhook_and_restarting_clears_it(fleet, converged, alert_webhook):
    monitor = fleet.monitors[0]["name"]
    second = fleet.names[1]
    settings = fleet.monitor_settings
    since = len(alert_webhook.received)  # this host's first start fired and resolved it already
    started = time.monotonic()
    on_host(second, "systemctl stop vllm.service")
    try:
        deadline = settings["alert_not_serving_for"] + 2 * settings["prometheus_scrape_interval"]
        # Alertmanager's wait (group_wait for a new group, group_interval for a group it notified
        # about before) and the webhook's delivery come on top.
        limit = deadline + max(settings["alert_group_wait"], settings["alert_group_interval"]) + 5
        alert = wait_for(
            "VllmNotServing at the webhook",
            lambda: alert_webhook.find("VllmNotServing", second, "firing", since),
            timeout=limit,
            every=0.5,
        )
        fired_after = time.monotonic() - started
        print(f"VllmNotServing reached the webhook {fired_after:.1f} s after the stop (for + 2 scrapes: {deadline} s)")
        assert alert["labels"]["severity"] == "critical" and "is not serving" in alert["annotations"]["summary"]
        assert fleet.api_key not in json.dumps(alert_webhook.received)
        assert not alert_webhook.find("VllmNotServing", fleet.names[0], "firing", since), "the serving host alerted"
        firing = len(alert_webhook.received)
    finally:
        on_host(second, "systemctl start vllm.service")
    wait_for("vLLM serving again", lambda: _serves(fleet, fleet.hosts[1]), timeout=600)
    started = time.monotonic()
    wait_for(
        "the resolution at the webhook",
        lambda: alert_webhook.find("VllmNotServing", second, "resolved", firing),
        timeout=2 * settings["prometheus_scrape_interval"] + settings["alert_group_interval"] + 10,
    )
    print(f"its resolution reached the webhook {time.monotonic() - started:.1f} s after vLLM served again")
    active = "curl -sf 'http://127.0.0.1:9093/api/v2/alerts?active=true&filter=alertname=%22VllmNotServing%22'"
    assert not json.loads(on_host(monitor, active))
    assert not prometheus(fleet, 'ALERTS{alertname="VllmNotServing", alertstate="firing"}')


def _serves(fleet, host) -> bool:
    try:
        return bool(models(fleet, host)["data"])
    except OSError:
        return False


def test_verify_suite_passes(fleet, converged, tmp_path):
    junit = tmp_path / "verify.xml"
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "vllm_fleet/verify",
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
    assert result.rc == 0, result.failure
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("tests")) >= 8 * len(fleet.names)
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0
    # The sandbox serves on the CPU with Docker and has no gateway nor cluster here: only the GPU
    # checks, the Nix way's, the gateway checks and the cluster's may skip.
    skipped = [case for case in suite.iter("testcase") if case.find("skipped") is not None]
    assert skipped and all(
        case.get("classname").endswith("test_gpu")
        or case.get("name").startswith("test_service_runs_the_nix_build")
        or (case.get("classname").endswith("test_gateway") and case.get("name").endswith("[none]"))
        or case.get("classname").endswith("test_cluster")
        for case in skipped
    ), [case.get("name") for case in skipped]
    # The monitoring host's alerting credentials are searched for as a vLLM host's keys are.
    passed = {case.get("name") for case in suite.iter("testcase") if case.find("skipped") is None}
    for monitor in fleet.monitors:
        for check in SECRET_CHECKS:
            assert f"{check}[{monitor['name']}]" in passed, sorted(passed)


def test_second_run_changes_nothing(fleet, converged):
    every = fleet.names + [m["name"] for m in fleet.monitors]
    before = {host: host_state(host) for host in every}
    result, outcomes = deploy_json(SANDBOX_INVENTORY)
    assert result.rc == 0, result.failure
    for host in every:
        assert changed(outcomes, host) == [], f"{host} changed on a second run"
        assert host_state(host) == before[host], f"{host}: files, packages or services changed on a second run"


def test_changed_knob_restarts_once_and_serves_new_setting(fleet, converged, tmp_path):
    first, second = fleet.names
    inventory = write_inventory(tmp_path, {first: {"vllm_max_model_len": 4096}})
    before = {host: invocation(host) for host in fleet.names}
    since = on_host(first, "date '+%Y-%m-%d %H:%M:%S'")
    time.sleep(1)

    result, outcomes = deploy_json(inventory)
    assert result.rc == 0, result.failure

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
    new_key = "dry-run-key-" + "x" * 12 + "Zq7wPm2x"
    inventory = write_inventory(tmp_path, {first: {"vllm_api_key": new_key}})
    before = host_state(first)

    # Without -y, so pyinfra detects and prints the changes it would make.
    result = run([PYINFRA, "--dry", "--diff", inventory, "deploy.py"])

    assert result.rc == 0, result.failure
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
    assert back.rc == 0, back.failure
    assert changed(outcomes, first) == [], "the rolled-back release is the one the inventory wants: nothing to do"


def test_daemon_json_is_merged_and_the_engine_restarted_only_then(fleet, converged, tmp_path):
    first, second = fleet.names
    other_tool = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
    on_host(first, f"echo '{json.dumps(other_tool)}' > /etc/docker/daemon.json")
    engine_before = on_host(first, "systemctl show -p InvocationID --value docker.service")
    # Added to what the sandbox gives (its registry): the deploys after this one find their keys there.
    ours = {**fleet.state["pulled"]["docker_daemon_config"], "log-opts": {"max-size": "10m"}}
    inventory = write_inventory(tmp_path, {first: {"docker_daemon_config": ours}})

    result, outcomes = deploy_json(inventory)

    assert result.rc == 0, result.failure
    merged = json.loads(on_host(first, "cat /etc/docker/daemon.json"))
    assert merged == {**other_tool, **ours}
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
    # The host's own daemon.json (the sandbox's registry) is put back as it was, time included.
    on_host(second, "cp -a /etc/docker/daemon.json /root/daemon.json.kept 2>/dev/null; true")
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
        on_host(
            second,
            "if [ -e /root/daemon.json.kept ]; then mv /root/daemon.json.kept /etc/docker/daemon.json; "
            "else rm -f /etc/docker/daemon.json; fi",
        )


def test_demo_endpoint_line_works(fleet, converged):
    """The last step of `make demo`: print the endpoint and a curl line, and run that line."""
    result = run([sys.executable, "-m", "sandbox.sandbox", "endpoint"])
    assert result.rc == 0, result.failure
    assert result.output.count("It answered: {") == len(fleet.names)
    assert f'"model": "{fleet.model}"' in result.stdout and '"choices"' in result.stdout
    assert fleet.api_key not in result.output, "the demo printed the API key"
    assert fleet.hf_token not in result.output, "the demo printed the HF token"

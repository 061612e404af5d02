"""A monitoring host: Prometheus and Alertmanager run, every host of the inventory is scraped and
UP, the fleet's alert rules are loaded, and the receiver's configuration is not world-readable."""

import json
import time

import pytest

from vllm_fleet import paths
from vllm_fleet.monitoring.alerts import alert_names
from vllm_fleet.monitoring.prometheus import local_address, scrape_configs, target


def api(monitor, path: str) -> dict:
    s = monitor.inventory_settings
    url = f"http://{target(local_address(s.prometheus_bind_address), s.prometheus_port)}{path}"
    result = monitor.host.run(f"curl -sf '{url}'")
    if result.rc != 0:
        pytest.fail(f"Prometheus on {monitor.name} did not answer {path}: {result.stderr.strip() or result.rc}")
    return json.loads(result.stdout)


def test_prometheus_and_alertmanager_enabled_and_active(monitor):
    for service in ("prometheus", "prometheus-alertmanager"):
        unit = monitor.host.service(service)
        assert unit.is_enabled and unit.is_running, f"{service} is not enabled and running on {monitor.name}"


def test_every_host_is_scraped_and_up(monitor, fleet):
    expected = {
        (job["job_name"], t)
        for job in scrape_configs(monitor.inventory_settings, fleet)
        for static in job["static_configs"]
        for t in static["targets"]
    }
    # Targets new to this deploy are UP after their first scrape.
    deadline = time.monotonic() + 3 * monitor.inventory_settings.prometheus_scrape_interval + 10
    while True:
        active = api(monitor, "/api/v1/targets?state=active")["data"]["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}
        missing = expected - set(health)
        down = {target: state for target, state in health.items() if target in expected and state != "up"}
        if not (missing or down) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not missing, f"{monitor.name} does not scrape {sorted(missing)}"
    assert not down, f"{monitor.name} cannot scrape {down}"


def test_the_alert_rules_are_loaded(monitor, fleet):
    groups = api(monitor, "/api/v1/rules?type=alert")["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    missing = alert_names(monitor.inventory_settings, fleet) - loaded
    assert not missing, f"{monitor.name} has not loaded the alerts {sorted(missing)}"


def test_the_receiver_configuration_is_not_world_readable(monitor):
    config = monitor.host.file(paths.ALERTMANAGER_CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640)

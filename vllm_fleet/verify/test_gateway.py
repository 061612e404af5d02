"""The gateway: HAProxy runs, sees every vLLM host it fronts as UP, answers, and keeps its keys root-only."""

import pytest

from vllm_fleet import haproxy, paths


def servers(gateway) -> dict[str, str]:
    """Backend server -> HAProxy status, from the runtime API."""
    return haproxy.server_status(gateway.host.check_output(haproxy.SHOW_STAT))


def test_haproxy_enabled_and_active(gateway):
    service = gateway.host.service("haproxy")
    assert service.is_enabled and service.is_running, f"haproxy is not enabled and running on {gateway.name}"


def test_config_is_root_only(gateway):
    config = gateway.host.file(paths.HAPROXY_CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "root", 0o600)


def test_every_backend_is_up(gateway):
    status = servers(gateway)
    assert status, f"no vLLM host behind the gateway on {gateway.name}"
    down = {name: state for name, state in status.items() if state != "UP"}
    assert not down, f"{gateway.name} does not send requests to {down}"


def test_gateway_answers(gateway):
    port = gateway.inventory_settings.gateway_port
    scheme = "https" if gateway.inventory_settings.gateway_tls_certificate else "http"
    result = gateway.host.run(f"curl -sk -o /dev/null -w '%{{http_code}}' {scheme}://127.0.0.1:{port}/health")
    if result.rc != 0:
        pytest.fail(f"{gateway.name} refused the connection on port {port}: {result.stderr.strip()}")
    assert result.stdout == "200"


def test_gateway_refuses_host_headers_that_are_not_a_name_and_a_port(gateway):
    """vLLM before 0.22 skipped its key check for such Host headers (GHSA-94f4-hr76-p5j6)."""
    port = gateway.inventory_settings.gateway_port
    scheme = "https" if gateway.inventory_settings.gateway_tls_certificate else "http"
    answered = {}
    for host_header in ("gw.example/#@evil", "gw.example@evil"):
        result = gateway.host.run(
            f"curl -sk -o /dev/null -w '%{{http_code}}' -H 'Host: {host_header}' {scheme}://127.0.0.1:{port}/v1/models"
        )
        answered[host_header] = result.stdout or result.stderr.strip()
    assert set(answered.values()) == {"400"}, f"{gateway.name} answered {answered}"


def test_gateway_checks_the_key_on_paths_vllm_leaves_open(gateway):
    """vLLM leaves some endpoints open even with --api-key: the gateway asks for the key there too."""
    port = gateway.inventory_settings.gateway_port
    scheme = "https" if gateway.inventory_settings.gateway_tls_certificate else "http"
    result = gateway.host.run(
        f"curl -sk -o /dev/null -w '%{{http_code}}' -X POST {scheme}://127.0.0.1:{port}/invocations"
    )
    assert result.stdout == "401", f"{gateway.name} answered {result.stdout or result.stderr.strip()} without a key"

"""The verify suite reads each role's secrets on the host from the files the deploy wrote them to
(vllm_fleet/verify/secret_checks.py): the env file of a vLLM host, a gateway's haproxy.cfg and
TLS key, a monitoring host's alertmanager.yml. Each file is rendered here by the deploy's own
code, with secrets of any character a secret may hold (HAProxy's and YAML's quoting both
escape some), and the shell command the checks run must print those secrets, as written, and
nothing else: a secret it misses is one no check looks for."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.unit.monitored_fleet import fleet
from vllm_fleet.haproxy import haproxy_config
from vllm_fleet.launch import env_file_content
from vllm_fleet.monitoring.alertmanager import alertmanager_config
from vllm_fleet.rules import validate
from vllm_fleet.settings import SettingsError
from vllm_fleet.settings.secret_rules import weak_secret
from vllm_fleet.verify import secret_checks

# What the schema takes as a secret: printable ASCII without spaces, 16 characters or more, not weak.
SECRETS = st.text(st.characters(min_codepoint=ord("!"), max_codepoint=ord("~")), min_size=16, max_size=48).filter(
    lambda s: not weak_secret(s)
)
# Quotes, backslashes, dollars and percents: what HAProxy's and YAML's quoting escape.
AWKWARD = "a\\b\"c'd$e%f%%g#h:i-j" + "Zq7wPm2x"
PRIVATE_KEY_LINE = "MC4CAQAwBQYDK2VwBCIEIO" + "q" * 20
PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    f"-----BEGIN PRIVATE KEY-----\n{PRIVATE_KEY_LINE}\n-----END PRIVATE KEY-----\n"
)
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


def printed(role: str, files: dict[str, str]) -> list[str]:
    """What the check's command prints for a host of this role holding these files (global -> content)."""
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("ENV_FILE", "HAPROXY_CONFIG", "GATEWAY_CERTIFICATE", "ALERTMANAGER_CONFIG"):
            monkeypatch.setattr(secret_checks, name, str(Path(directory) / name.lower()))
        for name, content in files.items():
            Path(directory, name.lower()).write_text(content)
        done = subprocess.run(
            ["sh", "-c", secret_checks.secrets_command(role)], capture_output=True, text=True, check=True
        )
    return sorted(done.stdout.splitlines())


def valid(host: str, data: dict, groups: list[str]):
    """The host's settings; a draw the schema refuses for another reason (one secret twice, a
    secret inside another knob's value) is not one a host can hold."""
    try:
        return validate(host, data, groups)
    except SettingsError:
        assume(False)


def vllm_host(api_key: str, hf_token: str):
    data = {"vllm_bind_address": "0.0.0.0", "vllm_api_key": api_key, "hf_token": hf_token, "fleet_address": "10.0.0.5"}
    return valid("a", {"phase": "enterprise", **data}, ["enterprise"])


def gateway_files(backend_key: str, client_key: str | None, certificate: bool = False) -> dict[str, str]:
    backend = vllm_host(backend_key, "hf_" + "t" * 10 + "Zq7wPm2x")
    data: dict = {"fleet_address": "10.0.9.1"}
    if client_key:
        data |= {"gateway_auth": "gateway", "gateway_api_key": client_key}
    gateway = valid("gw", data, ["gateway"])
    files = {"HAPROXY_CONFIG": haproxy_config(gateway, {"gw": gateway, "a": backend})}
    return files | ({"GATEWAY_CERTIFICATE": PEM} if certificate else {})


@given(api_key=SECRETS, hf_token=SECRETS)
@EXAMPLES
def test_a_vllm_hosts_secrets_are_read_from_its_env_file(api_key, hf_token):
    files = {"ENV_FILE": env_file_content(vllm_host(api_key, hf_token))}
    assert printed("vllm", files) == sorted({api_key, hf_token})


@given(backend_key=SECRETS, client_key=SECRETS)
@EXAMPLES
def test_a_gateways_keys_are_read_from_haproxy_cfg(backend_key, client_key):
    assume(backend_key != client_key)  # the inventory's rules refuse one key for both
    # Its own key checked on the clients' requests, the vLLM hosts' key sent on with them.
    assert printed("gateway", gateway_files(backend_key, client_key)) == sorted({backend_key, client_key})
    # Passed through: the clients present the vLLM hosts' key.
    assert printed("gateway", gateway_files(backend_key, None)) == [backend_key]


def test_a_gateways_tls_key_and_awkward_keys_are_read():
    files = gateway_files(AWKWARD, AWKWARD[::-1], certificate=True)
    assert printed("gateway", files) == sorted({AWKWARD, AWKWARD[::-1], PRIVATE_KEY_LINE})


@given(webhook_token=SECRETS, smtp_password=SECRETS)
@EXAMPLES
def test_a_monitoring_hosts_credentials_are_read_from_alertmanager_yml(webhook_token, smtp_password):
    mail = {
        "alert_email_to": "oncall@example.com",
        "alert_email_from": "alerts@example.com",
        "alert_smtp_smarthost": "smtp.example.com:587",
        "alert_smtp_username": "alerts",
        "alert_smtp_password": smtp_password,
    }
    try:
        monitor = fleet(mon={"alert_webhook_token": webhook_token, **mail})["mon"]
    except SettingsError:
        assume(False)
    files = {"ALERTMANAGER_CONFIG": alertmanager_config(monitor)}
    assert printed("monitoring", files) == sorted({webhook_token, smtp_password})


def test_a_host_holding_no_secret_prints_no_line():
    """An empty line would be a pattern grep -F finds in every file and process."""
    assert printed("vllm", {"ENV_FILE": "# Managed by vllm-fleet.\nHF_TOKEN=\n"}) == []
    monitor = fleet(mon={"alert_webhook_token": None, "alert_webhook_url": "http://10.0.0.9:9999/hook"})["mon"]
    assert printed("monitoring", {"ALERTMANAGER_CONFIG": alertmanager_config(monitor)}) == []
    assert printed("gateway", {}) == []

"""HAProxy on a gateway host: its configuration (templates/haproxy.cfg.j2, installed by
tasks/gateway.py), and `show stat` read by the column names of its header line (not by position)."""

from __future__ import annotations

import csv

from vllm_fleet import paths, templates
from vllm_fleet.monitoring.exporters import HAPROXY, HAPROXY_METRICS_PORT, exporters
from vllm_fleet.rules import gateway_backends
from vllm_fleet.settings import Settings

SHOW_STAT = f"echo 'show stat' | socat stdio unix-connect:{paths.HAPROXY_ADMIN_SOCKET}"


def parse_show_stat(text: str, backend: str = paths.HAPROXY_BACKEND) -> dict[str, dict[str, str]]:
    """Server -> {column: value} for the servers of `backend`, from `show stat`'s CSV, whose first
    line names the columns ("# pxname,svname,qcur,..."; "#pxname,..." from older releases)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#"):
        raise ValueError(f"not HAProxy's show stat output: {text[:80]!r}")
    header = lines[0].lstrip("# ").split(",")
    rows = csv.DictReader(lines[1:], fieldnames=header)
    return {
        row["svname"]: row
        for row in rows
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")
    }


def server_status(text: str) -> dict[str, str]:
    """Server -> its status (UP, DOWN, MAINT, DRAIN, ...) in the vLLM backend."""
    return {server: row["status"] for server, row in parse_show_stat(text).items()}


def haproxy_quote(value: str) -> str:
    """A double-quoted HAProxy word: taken literally (HAProxy expands $VARS and escapes inside)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def haproxy_format(value: str) -> str:
    """A log-format argument (set-header, http-check's hdr), where % starts a sample fetch."""
    return haproxy_quote(value.replace("%", "%%"))


def haproxy_config(settings: Settings, fleet: dict[str, Settings]) -> str:
    backends = gateway_backends(settings, fleet)
    # Validation: every backend has one key, the same for all of them (a gateway fronts no host
    # that binds to loopback, and a host reachable from elsewhere needs a key).
    backend_key = backends[0].vllm_api_key
    assert backend_key is not None
    client_key = settings.gateway_api_key if settings.gateway_auth == "gateway" else backend_key
    assert client_key is not None
    backend_bearer = f"Bearer {backend_key.get_secret_value()}"
    return templates.render(
        "haproxy.cfg.j2",
        bind=settings.gateway_bind_address,
        port=settings.gateway_port,
        tls=paths.GATEWAY_CERTIFICATE if settings.gateway_tls_certificate else None,
        auth=settings.gateway_auth,
        client_header=haproxy_quote(f"Bearer {client_key.get_secret_value()}"),
        backend_header=haproxy_format(backend_bearer),
        backends=[(b.host, b.fleet_address, b.vllm_port) for b in backends],
        metrics_port=HAPROXY_METRICS_PORT if HAPROXY in exporters(settings, fleet) else None,
    )

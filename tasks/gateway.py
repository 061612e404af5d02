"""Gateway: HAProxy in front of the vLLM hosts, with active health checks, the API key checked
here or passed through, optional TLS, and a runtime API that rollouts drain hosts through."""

from __future__ import annotations

from pathlib import Path

from pyinfra.operations import files, server, systemd

from vllm_fleet import haproxy, paths, templates
from vllm_fleet.operations import content_differs, deploy, root_only_directory, secret_file
from vllm_fleet.settings import Settings


@deploy("Gateway")
def gateway(settings: Settings, fleet: dict[str, Settings]) -> None:
    server.packages(name="Install HAProxy and socat (its runtime API)", packages=["haproxy", "socat"])
    root_only_directory(paths.CONFIG_DIR, f"Create root-only config directory {paths.CONFIG_DIR}")
    certificate = None
    if settings.gateway_tls_certificate:
        certificate = secret_file(
            name=f"Write the TLS certificate and key to root-only {paths.GATEWAY_CERTIFICATE}",
            dest=paths.GATEWAY_CERTIFICATE,
            content=Path(settings.gateway_tls_certificate).read_text(),
        )
    config = haproxy.haproxy_config(settings, fleet)
    # HAProxy checks the new configuration before it replaces the one serving: a bad one
    # fails here and the gateway keeps answering with the old.
    secret_file(
        name="Write the HAProxy configuration (root-only: it holds API keys)",
        dest=paths.GATEWAY_STAGED_CONFIG,
        content=config,
    )
    staged = paths.GATEWAY_STAGED_CONFIG
    new_config = content_differs(paths.HAPROXY_CONFIG, config)
    if new_config:
        server.shell(
            name=f"Check the HAProxy configuration and install it as {paths.HAPROXY_CONFIG}",
            commands=[f"haproxy -c -q -f {staged} && install -m 600 -o root -g root {staged} {paths.HAPROXY_CONFIG}"],
        )
    files.put(
        name="Install vllm-gateway (drain and ready)",
        src=templates.rendered("vllm-gateway.sh.j2"),
        dest=paths.GATEWAY_SCRIPT,
        mode="755",
        create_remote_dir=True,
    )
    systemd.service(
        name="Keep HAProxy running and enabled at boot", service="haproxy.service", running=True, enabled=True
    )
    # A reload hands the listening sockets to new workers: no connection is refused meanwhile.
    reload = "Reload HAProxy for its new configuration"
    if new_config:
        systemd.service(name=reload, service="haproxy.service", reloaded=True)
    elif certificate:
        systemd.service(name=reload, service="haproxy.service", reloaded=True, _if=certificate.did_change)
